"""Dense contributors: the fashion-sellers task's planted sellers, the label proxy's
blindness to sellers who share a label, and the seller view that sees them."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from surrogateshap.evaluation import GroundTruth, evaluate  # noqa: E402
from surrogateshap.exact import exact_shapley, grouped_shapley, separable_shapley  # noqa: E402
from surrogateshap.game import FunctionGame  # noqa: E402
from surrogateshap.tasks import get_task  # noqa: E402
from surrogateshap.tasks.catalog.fashion_sellers import FashionSellersConfig, FashionSellersTask  # noqa: E402
from surrogateshap.tasks.data.images import load_fashion_mnist, resize  # noqa: E402
from surrogateshap.tasks.jobs import TaskSpec  # noqa: E402
from study_scripts import SCRIPTS, load_script  # noqa: E402

#: a task small enough to train here in seconds (the shipped scoring network scores it)
TINY = dict(per_seller=12, hidden=32, steps=50, n_samples=48, bank_per_label=6, reference_per_class=40,
            sample_steps=4, models_per_batch=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    task = FashionSellersTask(FashionSellersConfig.preset("ci", **TINY),
                              cache_dir=tmp_path_factory.mktemp("sellers"))
    missing = task.data_missing()
    if missing:
        pytest.skip(missing)
    return task


def test_each_seller_sells_one_label_and_the_planted_ones_are_degraded(tiny):
    c, ds = tiny.config, tiny.dataset
    counts = tiny.unit_counts()  # (sellers, labels)
    assert counts.shape == (24, 6)
    assert ((counts > 0).sum(1) == 1).all() and (counts.sum(1) == c.per_seller).all()
    assert (counts.argmax(1) == np.arange(24) // 4).all()
    fx, fy = load_fashion_mnist("train")
    imgs = {s: ds.images[ds.contributors == s] for s in range(24)}
    planted = dict(c.planted)
    # the mislabelling seller offers ankle boots under its label, the next unused ones
    boots = resize(fx[np.flatnonzero(fy == c.mislabel_source)[: c.per_seller]][:, None], c.size)
    np.testing.assert_array_equal(imgs[11], boots)
    assert planted[11] == "mislabel" and (ds.labels[ds.contributors == 11] == 2).all()
    # a duplicating seller has n_unique distinct images
    assert len(np.unique(imgs[12].reshape(len(imgs[12]), -1), axis=0)) == c.n_unique
    # the blurring and the noisy seller's images are their clean images (the next unused of
    # their label, after the label's first seller) degraded
    def clean(klass, seller_in_label):
        idx = np.flatnonzero(fy == klass)[seller_in_label * c.per_seller : (seller_in_label + 1) * c.per_seller]
        return resize(fx[idx][:, None], c.size)
    from scipy.ndimage import gaussian_filter
    blurred = gaussian_filter(clean(c.classes[0], 1), sigma=(0, 0, c.blur_sigma, c.blur_sigma), mode="nearest")
    np.testing.assert_allclose(imgs[1], blurred, atol=1e-6)
    residual = imgs[6] - clean(c.classes[1], 2)
    assert planted[6] == "noise" and 0.4 < residual.std() < c.noise_sd


@pytest.mark.parametrize("bad, match", [
    (dict(planted=((24, "blur"),)), "planted seller 24"),
    (dict(planted=((3, "smudge"),)), "unknown defect 'smudge'"),
    (dict(planted=((3, "blur"), (3, "noise"))), "planted seller 3"),
    ({"planted": ((1.5, "blur"),)}, "planted seller 1.5"),  # not an index: no seller degraded
    ({"planted": (("1", "blur"),)}, "planted seller '1'"),
    (dict(mislabel_source=1), "mislabel_source"),
    (dict(classes=(0, 0, 1)), "distinct Fashion-MNIST class"),
])
def test_a_bad_configuration_is_named(bad, match, tmp_path):
    task = FashionSellersTask(FashionSellersConfig.preset("ci", **{**TINY, **bad}), cache_dir=tmp_path)
    with pytest.raises(ValueError, match=match):
        task.dataset


def test_the_label_proxy_cannot_tell_sellers_of_one_label_apart_and_the_seller_proxy_can(tiny):
    """Sellers a, b of one label with equal data: v(S + a) = v(S + b) exactly in the label
    proxy, for every S; the seller proxy's values differ."""
    rng = np.random.default_rng(0)
    label, seller = tiny.proxy_game("neg_fid"), tiny.seller_view().proxy_game("neg_fid")
    base = rng.random((30, 24)) < 0.4
    for a, b in [(0, 1), (4, 6), (8, 11), (12, 13)]:
        S = base.copy()
        S[:, [a, b]] = False
        Sa, Sb = S.copy(), S.copy()
        Sa[:, a], Sb[:, b] = True, True
        np.testing.assert_array_equal(label(Sa), label(Sb))
        assert np.abs(seller(Sa) - seller(Sb)).max() > 0
    # so its exact values come from label counts alone: equal within a label, efficient
    # (on the utility that is cheap to evaluate 5**6 times)
    label = tiny.proxy_game("label_accuracy")
    phi = grouped_shapley(label, np.arange(24) // 4)
    full, empty = label(np.ones((1, 24), bool))[0], label(np.zeros((1, 24), bool))[0]
    assert phi.sum() == pytest.approx(full - empty, rel=1e-9)
    assert all(np.ptp(phi[4 * k : 4 * k + 4]) == 0 for k in range(6))


def test_the_seller_view_is_its_own_task_for_the_proxy_only(tiny):
    view = tiny.seller_view()
    assert view.n_units == 24 and view.players == tiny.players
    assert (view.unit_parent == np.arange(24) // 4).all()
    assert view.config_id() == tiny.config_id() + "+seller"
    assert view.scoring_id() == tiny.scoring_id()  # scored by the task's own networks
    assert view.cache.full_model_path() != tiny.cache.full_model_path()
    with pytest.raises(NotImplementedError, match="proxy game only"):
        view.retraining_game("neg_fid")
    # a worker rebuilds the view, not the task
    spec = TaskSpec.of(view)
    assert spec.view == "seller"
    rebuilt = TaskSpec(spec.name, spec.scale, spec.kwargs, spec.module, spec.config_id, spec.view).build()
    assert rebuilt.config_id() == view.config_id() and rebuilt.n_units == 24


def test_a_task_whose_units_belong_to_one_contributor_each_has_no_seller_view(tmp_path):
    task = get_task("digits10", scale="ci", cache_dir=tmp_path)
    if task.data_missing():
        pytest.skip(task.data_missing())
    with pytest.raises(ValueError, match="already belongs to one contributor"):
        task.seller_view()


def test_precision_of_planted_low_quality_players_counts_the_lowest_values():
    values = np.array([5.0, -3.0, 2.0, -4.0, 1.0])
    high = GroundTruth(players=tuple("abcde"), planted=[1, 3])
    low = GroundTruth(players=tuple("abcde"), planted=[1, 3], planted_lowest=True)
    assert evaluate(values, high)["precision_at_2"] == 0.0
    assert evaluate(values, low)["precision_at_2"] == 1.0


def test_grouped_shapley_equals_enumeration_on_a_game_of_group_counts():
    groups = np.array([0, 0, 1, 1, 1, 2, 0, 2])
    table = np.random.default_rng(1).normal(size=(4, 4, 3))

    def utility(masks):
        c = np.stack([masks[:, groups == g].sum(1) for g in range(3)], 1)
        return np.array([table[a, b, d] + a * b - d**2 for a, b, d in c])

    game = FunctionGame(utility, 8, identity="group-counts")
    np.testing.assert_allclose(grouped_shapley(game, groups), exact_shapley(game), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="groups has 3 entries"):
        grouped_shapley(game, [0, 1, 2])


def test_separable_shapley_equals_enumeration_on_a_sum_of_group_games():
    groups = np.array([0, 0, 1, 1, 1, 2, 0, 2])
    tables = [np.random.default_rng(g).normal(size=2 ** int((groups == g).sum())) for g in range(3)]

    def utility(masks):  # each group's own game, on the bits of its members
        out = np.full(len(masks), 0.7)
        for g, t in enumerate(tables):
            bits = masks[:, groups == g].astype(int)
            out += t[bits @ (1 << np.arange(bits.shape[1]))]
        return out

    game = FunctionGame(utility, 8, identity="group-sum")
    np.testing.assert_allclose(separable_shapley(game, groups), exact_shapley(game), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="groups has 3 entries"):
        separable_shapley(game, [0, 1, 2])


def test_the_seller_view_refuses_a_proxy_it_cannot_play_before_training_anything(tmp_path):
    """mode='regenerate' asks the view to regenerate per coalition, which it refuses: the
    refusal comes when the game is made, not after the seller model and bank are trained."""
    task = FashionSellersTask(FashionSellersConfig.preset("ci", **TINY), cache_dir=tmp_path)
    if task.data_missing():
        pytest.skip(task.data_missing())
    view = task.seller_view()
    with pytest.raises(ValueError, match="mode='bank'"):
        view.proxy_game("neg_fid", mode="regenerate")
    assert not view.cache.full_model_path().exists()


@pytest.mark.parametrize("flag", ["--summarize", "--table"])
def test_the_script_names_a_missing_input_file(flag, tmp_path, capsys):
    script = load_script("sellers_proxy")
    path = SCRIPTS / "sellers_proxy.py"
    missing = tmp_path / "absent.csv"
    args = ["--summarize", str(missing)] if flag == "--summarize" else [
        "--summarize", str(path.parents[1] / "results" / "fashion_sellers_proxy.csv"), "--table", str(missing)]
    with pytest.raises(SystemExit):
        script.main([*args, "--out", str(tmp_path / "out")])
    assert f"{flag} {missing}: no such file" in capsys.readouterr().err
    assert not (tmp_path / "out.md").exists()  # refused before anything is written


def test_the_script_checks_separability_before_reading_exact_values_per_label(tmp_path, capsys):
    script = load_script("sellers_proxy")
    groups = np.arange(8) // 4
    weights = np.random.default_rng(0).normal(size=8)
    per_group = FunctionGame(lambda m: (m * weights).sum(1) + m[:, :4].all(1) - m[:, 4:].sum(1) ** 2, 8, identity="sep")
    across = FunctionGame(lambda m: (m * weights).sum(1) + m[:, 0] * m[:, 7], 8, identity="across")
    assert script.separable(per_group, groups) and not script.separable(across, groups)
    np.testing.assert_allclose(separable_shapley(per_group, groups), exact_shapley(per_group), atol=1e-12)
    # centred within a label: the label's worth out, the order within each label kept
    v = np.array([5.0, 6.0, 7.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(script.centred_in_label(v, [0, 0, 0, 1, 1, 1]), [-1, 0, 1, -1, 0, 1])
    with pytest.raises(SystemExit):
        script.main(["--utilities", "neg_fid", "no_such_utility", "--out", str(tmp_path / "out")])
    assert "--utilities: unknown ['no_such_utility']" in capsys.readouterr().err


def test_the_finetuned_seller_banks_mix_sellers_by_their_images(tiny):
    """The script's per-seller banks from fine-tunes: a coalition is its sellers' statistics
    mixed in proportion to their images (equal here), the empty one the prior."""
    banks = load_script("sellers_proxy").FinetunedBanks(tiny, steps=2)
    hits = banks.bank().scores["label_hit"]  # one row per seller
    masks = np.zeros((3, 24), bool)
    masks[1, [0, 5]] = masks[2] = True
    want = [tiny.score(tiny.empty_stats())["label_accuracy"], hits[[0, 5]].mean(), hits.mean()]
    np.testing.assert_allclose(banks.proxy_game("label_accuracy")(masks), want, rtol=1e-12)
    assert len(hits) == 24 and len(np.unique(banks.bank().mean[:, 0])) == 24  # each seller's own fine-tune


def test_the_seller_bank_is_stored_in_the_cache_and_mapped_by_every_task_object(tiny, monkeypatch):
    """The view's bank is kept in its cache like the task's own: a second task object (a
    worker, a later run) maps it for every utility's proxy instead of sampling it again."""
    from surrogateshap.tasks.base import SellerView

    first = tiny.seller_view().bank_stats()  # sampled here, or stored by an earlier test
    task = FashionSellersTask(tiny.config, cache_dir=tiny.cache_dir)

    def refuse(*a, **kw):
        raise AssertionError("sampled the seller bank again")

    monkeypatch.setattr(SellerView, "sample", refuse)
    for utility in task.utilities:
        task.seller_view().proxy_game(utility)(np.ones((1, task.n_players), bool))
    again = task.seller_view().bank_stats()
    assert isinstance(again[0].second, np.memmap)  # mapped from the cache
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.second, b.second)
        assert a.scores == b.scores


def test_intra_fid_scores_a_coalition_alike_in_the_proxy_and_in_the_scoring_of_its_samples(tiny):
    """The label proxy's bank mixed for a coalition and the same samples scored as one
    retrained model's are (task.score, what the retraining game calls): one utility, a
    label the coalition lacks counted as the prior's in both."""
    from surrogateshap.tasks.features.image_scoring import BANK_SEED

    task = FashionSellersTask(tiny.config, cache_dir=tiny.cache_dir)
    task.utilities = (*task.utilities, "neg_intra_fid")  # a registered utility the task does not list
    game = task.proxy_game("neg_intra_fid")
    B = task.config.bank_per_label
    labels = np.repeat(np.arange(task.n_units), B)
    images = task.sample(task.full_model, labels[None], seed=BANK_SEED)[0]  # the bank's samples
    for sellers in (np.arange(24), np.arange(12)):  # every label; labels 0-2 only
        mask = np.isin(np.arange(24), sellers)
        keep = np.isin(labels, np.unique(sellers // 4))
        pooled = task.score(task.stats_of(images[keep], labels[keep]))["neg_intra_fid"]
        assert game(mask[None])[0] == pytest.approx(pooled, rel=1e-9)
    empty = task.score(task.empty_stats())
    assert game(np.zeros((1, 24), bool))[0] == empty["neg_intra_fid"]
