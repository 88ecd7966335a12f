"""The networks that score shipped tables: shipped as package data, reproducible from
their recipe at any torch thread count, and named in the tables they scored."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from surrogateshap.tasks import get_task  # noqa: E402
from surrogateshap.tasks.features.nets import state_digest  # noqa: E402
from surrogateshap.tasks.reference import RETRAINING_CSV, reference_dir, table_scoring_id  # noqa: E402

#: tasks whose shipped tables are scored by networks the project trains
SCORED = ("digits10", "fashion-animal20", "clipart-artists", "fashion-brands", "spurious-sites")
#: tasks whose scoring networks ship before their table does
NETS_ONLY = ("fashion-sellers",)
#: digits10's network predates the one-thread recipe (same code, another machine): it is the
#: network its 3 x 1,024-row exact table was scored with, so it stays; retrained rows reproduce
#: the table with it (the dataset card)
RECIPE_PREDATES = {"digits10"}


def _task(name):
    task = get_task(name)
    missing = task.data_missing()
    if missing:
        pytest.skip(missing)
    return task


@pytest.mark.slow
@pytest.mark.parametrize("name", SCORED + NETS_ONLY)
def test_scoring_networks_are_shipped_and_deterministic(name):
    task = _task(name)
    recipes = task.scoring_recipes()
    assert recipes, f"{name} names no scoring network"
    old = torch.get_num_threads()
    try:
        for rname, recipe in recipes.items():
            assert recipe.shipped is not None and recipe.shipped.exists(), f"{name}/{rname} is not shipped"
            digests = []
            for threads in (1, 2):
                torch.set_num_threads(threads)
                digests.append(state_digest(recipe.train().state_dict()))
                assert torch.get_num_threads() == threads  # the caller's setting is restored
            assert digests[0] == digests[1], f"{name}/{rname}: other weights at 1 and 2 threads"
            shipped = state_digest(torch.load(recipe.shipped, map_location="cpu", weights_only=True))
            if name not in RECIPE_PREDATES:
                assert shipped == digests[0], f"{name}/{rname}: the shipped weights are not the recipe's"
            # the task scores with the shipped weights, whatever a cache holds
            assert task.scoring_parts()[rname] == shipped
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("name", SCORED)
def test_shipped_table_names_its_scoring_networks(name):
    task = _task(name)
    path = reference_dir(name) / RETRAINING_CSV
    if not path.exists():
        pytest.skip(f"{name} ships no table yet")
    assert table_scoring_id(path) == task.scoring_id()


def test_a_table_scored_by_other_networks_is_refused(tmp_path):
    from surrogateshap.tasks.reference import load_reference

    task = _task("digits10")
    src = (reference_dir("digits10") / RETRAINING_CSV).read_text().splitlines(keepends=True)
    other = "".join(line.replace(task.scoring_id(), "0123456789ab") if line.startswith("# scoring") else line
                    for line in src[:8])
    (tmp_path / "other.csv").write_text(other + "".join(src[8:40]))
    with pytest.raises(ValueError, match="scored with scoring networks 0123456789ab"):
        load_reference(task, tmp_path / "other.csv")
    unnamed = "".join(line for line in src[:40] if not line.startswith("# scoring"))
    (tmp_path / "unnamed.csv").write_text(unnamed)
    with pytest.raises(ValueError, match="no '# scoring' line"):
        load_reference(task, tmp_path / "unnamed.csv")


@pytest.mark.parametrize("name", SCORED)
def test_card_counts_are_true_to_the_shipped_table(name):
    """A card's block of table counts (kind x seed) is what the table holds now."""
    from surrogateshap.benchmark.protocol import CARD_MARKERS, counts_markdown
    from surrogateshap.tasks.reference import load_reference

    task = _task(name)
    card = (reference_dir(name) / "README.md").read_text()
    path = reference_dir(name) / RETRAINING_CSV
    if not path.exists():
        pytest.skip(f"{name} ships no table yet")
    if get_task(name).n_players <= 12 and name == "digits10":
        pytest.skip("digits10's table holds every coalition on all seeds (its card says so)")
    begin, end = CARD_MARKERS
    assert begin in card and end in card, f"{name}'s card has no counts block"
    block = card.split(begin, 1)[1].split(end, 1)[0].strip()
    assert block == counts_markdown(load_reference(task)), \
        f"{name}'s card counts differ from its table: run `surrogateshap table-counts --task {name} --update-card`"


@pytest.mark.parametrize("name", SCORED)
def test_the_shipped_networks_score_the_shipped_rows(name, capsys):
    """The empty coalition's row (the prior's samples through the shipped scoring networks,
    nothing trained) comes out of this checkout exactly as the table holds it. (Retraining
    rows is `surrogateshap verify-table --task T`; its results are on each card: CPU
    training need not reproduce bit for bit on another kind of CPU.)"""
    from surrogateshap.cli import main

    _task(name)  # skips without the data
    if not (reference_dir(name) / RETRAINING_CSV).exists():
        pytest.skip(f"{name} ships no table yet")
    assert main(["verify-table", "--task", name, "--score-only"]) == 0
    assert "1 of 1 rows reproduced" in capsys.readouterr().out
