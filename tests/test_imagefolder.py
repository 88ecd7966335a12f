"""The ``imagefolder`` task: a folder of images valued with no code.

Folders are built from packaged images (scikit-learn's digits; Fashion-MNIST and
Animal-MNIST for the fashion-animal20 twin) with a few bad files; ``run`` and a small
``build-table`` go through the command line at tiny settings.
"""

from __future__ import annotations

import csv
import io
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from surrogateshap.cli import main  # noqa: E402
from surrogateshap.tasks import get_task  # noqa: E402
from surrogateshap.tasks.catalog.imagefolder import ImageFolderConfig  # noqa: E402
from surrogateshap.tasks.data import imagefolder as folder_data  # noqa: E402
from surrogateshap.tasks.data.images import DataMissingError  # noqa: E402

#: a model that trains in a second or two: mechanics, not quality
TINY = dict(hidden=32, blocks=1, steps=40, batch_size=32, sample_steps=5, n_samples=60, bank_per_label=20,
            n_modes=5, size=8, models_per_batch=8)
BAD = {"zero/truncated.png": "truncated image", "one/garbage.png": "unreadable image",
       "one/notes.txt": "not an image file", "stray.png": "not in a contributor's sub-folder"}


def digits_folder(root: Path, per_digit: int = 12, digits=(0, 1, 2), bad: bool = True) -> Path:
    """``root/<digit name>/<k>.png``: the first ``per_digit`` sklearn digits of each digit
    as 8x8 grayscale PNGs, and the bad files of :data:`BAD`."""
    from sklearn.datasets import load_digits

    d = load_digits()
    names = ("zero", "one", "two", "three")
    for digit in digits:
        folder = root / names[digit]
        folder.mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(np.flatnonzero(d.target == digit)[:per_digit]):
            Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8)).save(folder / f"{k:03d}.png")
    if bad:
        whole = (root / "zero" / "000.png").read_bytes()
        (root / "zero" / "truncated.png").write_bytes(whole[: len(whole) // 2])
        (root / "one" / "garbage.png").write_bytes(b"not a png at all")
        (root / "one" / "notes.txt").write_text("scanned in 2024")
        shutil.copy(root / "zero" / "001.png", root / "stray.png")
        (root / ".hidden").mkdir()
        (root / ".hidden" / "x.png").write_bytes(b"ignored")
    return root


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """The ``ci`` preset shrunk to :data:`TINY`, and a private cache."""
    monkeypatch.setitem(ImageFolderConfig.PRESETS, "ci", TINY)
    monkeypatch.setenv("SURROGATESHAP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SURROGATESHAP_IMAGEFOLDER", raising=False)
    return tmp_path


def _cli(capsys, *argv):
    try:
        rc = main(list(argv))
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


# --- the command line: run, build-table, resume on another executor -----------------------
def test_run_and_build_table_on_a_folder_with_bad_files(tiny, capsys, monkeypatch):
    data = digits_folder(tiny / "digits")
    rc, out, err = _cli(capsys, "run", "--task", "imagefolder", "--data", str(data), "--scale", "ci",
                        "--budget", "8", "--compare")
    assert rc == 0, err
    # the bad files: listed with the reason, counted; the hidden folder is not a file of the data
    assert f"skipped {len(BAD)} of {3 * 12 + len(BAD)} file(s)" in err
    for path, why in BAD.items():
        assert f"{path}: {why}" in err
    assert ".hidden" not in err
    task = get_task("imagefolder", scale="ci", data_dir=str(data))
    assert task.players == ("one", "two", "zero") and task.counts().tolist() == [12, 12, 12]
    assert sorted(p for p, _ in task.skipped_files) == sorted(BAD)

    # the values printed are the estimator's on the proxy game, and efficient
    from surrogateshap.registry import get_estimator

    proxy = task.proxy_game("neg_fid")
    values = get_estimator("surrogateshap").estimate(proxy, 8, seed=0).values
    v_full, v_empty = proxy(np.array([[1, 1, 1], [0, 0, 0]], bool))
    assert values.sum() == pytest.approx(v_full - v_empty, rel=1e-9, abs=1e-9)
    for player, v in zip(task.players, values):
        assert f"{v:9.3f}" in next(line for line in out.splitlines() if line.startswith(player))

    # a small table, cut short, then resumed on worker processes: every coalition, once
    table_dir = tiny / "imagefolder"
    rc, out, err = _cli(capsys, "build-table", "--task", "imagefolder", "--data", str(data), "--scale", "ci",
                        "--seeds", "0", "--out", str(table_dir), "--limit", "4")
    assert rc == 0, err
    first = pd.read_csv(table_dir / "retraining_table.csv", comment="#", dtype={"coalition": str})
    assert len(first) == 4
    rc, out, err = _cli(capsys, "build-table", "--task", "imagefolder", "--data", str(data), "--scale", "ci",
                        "--seeds", "0", "--out", str(table_dir), "--executor", "processes", "--workers", "2")
    assert rc == 0, err
    assert "retraining 4 coalition(s)" in err  # only what the first run did not train
    table = pd.read_csv(table_dir / "retraining_table.csv", comment="#", dtype={"coalition": str})
    assert len(table) == 8 and set(table.coalition) == {format(i, "03b") for i in range(8)}
    pd.testing.assert_frame_equal(table[table.coalition.isin(first.coalition)].reset_index(drop=True),
                                  first.sort_values("coalition").reset_index(drop=True))
    header = (table_dir / "retraining_table.csv").read_text()
    assert f"# config {task.config_id()}" in header and f"# scoring {task.scoring_id()}" in header
    # exact values of the retraining game, efficient
    exact = pd.read_csv(table_dir / "exact_shapley.csv", comment="#")
    rows = table.set_index("coalition")
    for u in task.utilities:
        total = exact.loc[(exact.utility == u) & (exact.seed.astype(str) == "0"), list(task.players)].to_numpy().sum()
        assert total == pytest.approx(rows.loc["111", u] - rows.loc["000", u], rel=1e-5, abs=1e-4)

    # the benchmark runs on it like any task with a table: replayed, nothing trained
    from surrogateshap.benchmark import get_benchmark_task, options, run_case

    monkeypatch.setenv("SURROGATESHAP_IMAGEFOLDER", str(data))
    monkeypatch.setenv("SURROGATESHAP_DATASETS", str(tiny))
    get_benchmark_task.cache_clear()
    try:
        assert get_benchmark_task("imagefolder", "ci").unavailable() is None
        cases = options.select_cases("ci", tasks=["imagefolder"], utilities=["neg_fid"],
                                     estimators=["surrogateshap", "permutation"], budget=["6"], seed_option="1")
        assert {c.game for c in cases} == {"retraining", "proxy"}
        for case in cases:
            att, figures = run_case(case)
            assert np.isfinite(figures["relative_l2"])
        bt = get_benchmark_task("imagefolder", "ci", cases[0].retrain)
        exact_fid = exact.loc[(exact.utility == "neg_fid") & (exact.seed.astype(str) == "mean"), list(task.players)]
        np.testing.assert_allclose(bt.truth("neg_fid").exact, exact_fid.to_numpy()[0], rtol=1e-4)
        assert bt.costs()["coalition_models_trained"] == 0
    finally:
        get_benchmark_task.cache_clear()


# --- what a user gets wrong: one error naming it, before training ------------------------
def _no_training(monkeypatch):
    from surrogateshap.tasks.catalog.imagefolder import ImageFolderTask

    def boom(*a, **k):
        raise AssertionError("trained before the folder was checked")

    monkeypatch.setattr(ImageFolderTask, "train", boom)


def test_contributors_with_too_few_images_are_named(tiny, capsys, monkeypatch):
    _no_training(monkeypatch)
    data = digits_folder(tiny / "d", per_digit=12, bad=False)
    for p in sorted((data / "two").iterdir())[3:]:
        p.unlink()
    rc, out, err = _cli(capsys, "run", "--task", "imagefolder", "--data", str(data), "--scale", "ci")
    assert rc == 2 and "'two' (3)" in err and "min_images=5" in err and "Traceback" not in err
    # left short by its bad files: named after they are skipped
    for k in range(3, 12):
        (data / "two" / f"{k:03d}.png").write_bytes(b"broken")
    rc, out, err = _cli(capsys, "run", "--task", "imagefolder", "--data", str(data), "--scale", "ci")
    assert rc == 2 and "after skipping unreadable files: 'two' (3)" in err


@pytest.mark.parametrize("override, named", [
    (dict(n_modes=100), "n_modes=100"),
    (dict(family="lora"), "family 'lora': imagefolder trains mlp or unet, or the LoRA family with family= 'sd'"),
    (dict(model_path="/sd"), r"model_path: settings of the LoRA families, not of family='mlp' \(the LoRA family: "
                             "family= 'sd' or 'flux'"),
    (dict(image_channels=2), "image_channels 2"),
    (dict(featurizer="inception", inception_weights="/nowhere.pth"), "inception_weights"),
])
def test_a_config_that_does_not_fit_the_folder_is_refused_when_made(tiny, override, named):
    data = digits_folder(tiny / "d", bad=False)
    with pytest.raises((ValueError, DataMissingError), match=named):
        get_task("imagefolder", scale="ci", data_dir=str(data), **override)


def test_refuse_bad_files_names_them(tiny):
    data = digits_folder(tiny / "d")
    task = get_task("imagefolder", scale="ci", data_dir=str(data), bad_files="refuse")
    with pytest.raises(DataMissingError, match=r"refused \(bad_files='refuse'\): cannot read 2 of 38") as e:
        task.dataset
    assert "zero/truncated.png: truncated image" in str(e.value)


@pytest.mark.parametrize("argv, said", [
    (["--task", "imagefolder", "--data", "/no/such/folder"], "--data /no/such/folder: no such folder"),
    (["--task", "digits10", "--data", "."], "task digits10 reads no data folder"),
    (["--task", "imagefolder"], "imagefolder needs a folder of images: pass --data DIR"),
])
def test_data_option_is_checked(tiny, capsys, monkeypatch, argv, said):
    _no_training(monkeypatch)
    rc, out, err = _cli(capsys, "run", *argv)
    assert rc == 2 and said in err and len(err.splitlines()) == 1


def test_a_mapping_csv_gives_contributors_and_labels(tiny):
    data = digits_folder(tiny / "d", bad=False)
    rows = [(f"{digit}/{k:03d}.png", f"owner_{k % 3}", digit) for digit in ("zero", "one", "two") for k in range(12)]
    with open(data / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "contributor", "label", "caption"])
        w.writerows([(*r, "a digit") for r in rows])
        w.writerow(["one/missing.png", "owner_0", "one", ""])
    task = get_task("imagefolder", scale="ci", data_dir=str(data))
    assert task.players == ("owner_0", "owner_1", "owner_2") and task.units == ("one", "two", "zero")
    assert task.unit_counts().tolist() == [[4, 4, 4]] * 3
    assert ("one/missing.png", "named on metadata.csv line 38, not found") in task.skipped_files
    # a malformed CSV: one error naming the file, the line or the column
    (data / "metadata.csv").write_text("file_name,owner\nzero/000.png,a\n")
    with pytest.raises(DataMissingError, match="no column contributor"):
        get_task("imagefolder", scale="ci", data_dir=str(data))
    (data / "metadata.csv").write_text("file_name,contributor\nzero/000.png,a\nzero/000.png,b\n")
    with pytest.raises(DataMissingError, match="line 3: zero/000.png is named again"):
        get_task("imagefolder", scale="ci", data_dir=str(data))


# --- progress: the full model's training shows a bar on a terminal -----------------------
class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("family, extra", [("mlp", {}), ("unet", dict(channels=(8, 16), steps=6, batch_size=8))])
def test_the_full_models_training_shows_its_progress_on_a_terminal(tiny, monkeypatch, family, extra):
    from surrogateshap.tasks.models import mlp

    monkeypatch.setattr(mlp, "BAR_DELAY", 0.0, raising=False)  # the bar waits for long trainings; these are short
    data = digits_folder(tiny / "d", bad=False)
    steps = extra.get("steps", TINY["steps"])
    for stream, shown in ((_Terminal(), True), (io.StringIO(), False)):
        task = get_task("imagefolder", scale="ci", data_dir=str(data), family=family,
                        cache_dir=tiny / f"cache-{shown}", **extra)
        task.dataset  # read before stderr is replaced
        monkeypatch.setattr(sys, "stderr", stream)
        task.full_model
        full = stream.getvalue()
        # a coalition's retraining (its own bar counts models) shows none
        task.train(np.array([[1, 0, 1]], bool), seed=0)
        monkeypatch.setattr(sys, "stderr", sys.__stderr__)
        if shown:
            assert f"training 1 {family} model(s)" in full and f"{steps}/{steps}" in full
            assert stream.getvalue() == full
        else:  # a log file or a pipe: quiet
            assert stream.getvalue() == ""


# --- identity: a changed folder is a new configuration; a moved one is not ----------------
def test_the_config_id_follows_the_folders_content(tiny):
    data = digits_folder(tiny / "d", bad=False)
    first = get_task("imagefolder", scale="ci", data_dir=str(data)).config_id()
    moved = tiny / "elsewhere"
    shutil.copytree(data, moved)  # new place, new mtimes: same content
    assert get_task("imagefolder", scale="ci", data_dir=str(moved)).config_id() == first
    img = Image.open(moved / "one" / "000.png")
    arr = np.asarray(img).copy()
    arr[0, 0] ^= 1
    Image.fromarray(arr).save(moved / "one" / "000.png")  # one pixel, same size
    assert get_task("imagefolder", scale="ci", data_dir=str(moved)).config_id() != first
    shutil.move(moved / "one" / "000.png", moved / "two" / "000b.png")  # the same bytes, another owner
    changed = get_task("imagefolder", scale="ci", data_dir=str(moved)).config_id()
    assert changed != first
    (moved / "README.txt").write_text("not an image")  # a file that is not data changes nothing
    assert get_task("imagefolder", scale="ci", data_dir=str(moved)).config_id() == changed


def test_the_folders_identity_hashes_again_only_the_images_that_changed(tiny, monkeypatch):
    data = digits_folder(tiny / "d", bad=False)
    hashed = []
    digest = folder_data._file_digest
    monkeypatch.setattr(folder_data, "_file_digest", lambda path: hashed.append(path) or digest(path))
    monkeypatch.setattr(folder_data, "_DIGESTS", {})
    monkeypatch.setattr(folder_data, "SETTLED_NS", 60 * 10**9)

    def config_id():
        hashed.clear()
        return get_task("imagefolder", scale="ci", data_dir=str(data)).config_id()

    first = config_id()
    assert len(hashed) == 36
    assert config_id() == first and len(hashed) == 36  # not settled: a same-tick rewrite could hide
    monkeypatch.setattr(folder_data, "SETTLED_NS", 100_000_000)
    time.sleep(0.3)
    assert config_id() == first and len(hashed) == 36
    assert config_id() == first and hashed == []  # settled: remembered in this process
    monkeypatch.setattr(folder_data, "_DIGESTS", {})  # as a new process: read from the cache's store
    assert config_id() == first and hashed == []
    path = data / "one" / "003.png"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 1
    path.write_bytes(bytes(raw))  # other bytes, the same size, at once
    changed = config_id()
    assert changed != first and hashed == [path]
    monkeypatch.setattr(folder_data, "_DIGESTS", {})
    assert config_id() == changed


def test_the_scoring_network_is_deterministic_cached_and_recorded(tiny):
    from surrogateshap.tasks.features.nets import state_digest

    data = digits_folder(tiny / "d", bad=False)
    task = get_task("imagefolder", scale="ci", data_dir=str(data))
    recipe = task.scoring_recipes()["features"]
    digests = []
    for threads in (1, 2):
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            digests.append(state_digest(recipe.train().state_dict()))
        finally:
            torch.set_num_threads(old)
    assert digests[0] == digests[1] == task.scoring_parts()["features"]
    assert recipe.cache.exists() and recipe.cache.parent == tiny / "cache" / "featurenets"


# --- fashion-animal20's images laid out by class: the registered task's values -----------
def fa20_folder(root: Path, per_class: int) -> Path:
    """``root/<NN>_<player>/<k>.png``: fashion-animal20's first ``per_class`` images of each
    class as 28x28 PNGs, named so that sorting keeps the task's player and item order."""
    from surrogateshap.tasks.catalog.fashion_animal20 import FashionAnimal20Task
    from surrogateshap.tasks.data.images import _first_per_class, load_animal_mnist, load_fashion_mnist

    try:
        fx, fy = load_fashion_mnist("train")
        ax, ay = load_animal_mnist()
    except DataMissingError as e:
        pytest.skip(str(e))
    x = np.concatenate([fx[_first_per_class(fy, range(10), per_class)], ax[_first_per_class(ay, range(10), per_class)]])
    for k, img in enumerate(x):
        c = k // per_class
        folder = root / f"{c:02d}_{FashionAnimal20Task.players[c]}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{k:05d}.png")
    return root


def _values_and_lds(task, budget, tests):
    from surrogateshap.metrics import lds
    from surrogateshap.registry import get_estimator

    values = get_estimator("surrogateshap").estimate(task.proxy_game("neg_fid"), budget, seed=0).values
    return values, lds(values, tests, task.retraining_game("neg_fid")(tests))


def test_fashion_animal20_as_a_folder_gives_its_values(tmp_path, monkeypatch):
    from surrogateshap.metrics import sample_test_coalitions
    from surrogateshap.tasks.catalog.fashion_animal20 import FashionAnimal20Task

    monkeypatch.setenv("SURROGATESHAP_CACHE", str(tmp_path / "cache"))
    data = fa20_folder(tmp_path / "fa20", per_class=10)
    small = dict(hidden=32, blocks=1, steps=30, batch_size=32, sample_steps=5, n_samples=60, bank_per_label=10,
                 n_modes=10)
    fa = FashionAnimal20Task(scale="ci", per_class=10, **small)
    fa.shipped_nets = {}  # shipped weights are of 300 images a class: train both from the one recipe
    fo = get_task("imagefolder", scale="ci", data_dir=str(data), image_channels=1, **small)
    assert np.array_equal(fa.dataset.images, fo.dataset.images)
    assert fo.scoring_parts() == fa.scoring_parts()
    tests = sample_test_coalitions(20, 0.5, m=4, seed=0)
    (va, la), (vo, lo) = _values_and_lds(fa, 32, tests), _values_and_lds(fo, 32, tests)
    np.testing.assert_array_equal(vo, va)
    assert lo == la


@pytest.mark.slow
def test_fashion_animal20_as_a_folder_at_full_size_matches_its_shipped_table(tmp_path, monkeypatch):
    """The default preset: the folder's own scoring network is the shipped one, and its
    values score the registered task's LDS on the shipped table."""
    from surrogateshap.benchmark.protocol import lds_test_coalitions
    from surrogateshap.metrics import lds
    from surrogateshap.registry import get_estimator
    from surrogateshap.tasks.reference import load_reference

    monkeypatch.setenv("SURROGATESHAP_CACHE", str(tmp_path / "cache"))
    data = fa20_folder(tmp_path / "fa20", per_class=300)
    fa = get_task("fashion-animal20")
    fo = get_task("imagefolder", data_dir=str(data), image_channels=1)
    assert np.array_equal(fa.dataset.images, fo.dataset.images)
    assert fo.scoring_parts() == fa.scoring_parts()
    table = load_reference(fa)
    values = [get_estimator("surrogateshap").estimate(t.proxy_game("neg_fid"), 256, seed=0).values for t in (fa, fo)]
    np.testing.assert_array_equal(values[1], values[0])
    for alpha, tests in lds_test_coalitions(20).items():
        masks, utils = table.lds_ground_truth("neg_fid", alpha, tests)
        assert lds(values[1], masks, utils.mean(0)) == lds(values[0], masks, utils.mean(0))
