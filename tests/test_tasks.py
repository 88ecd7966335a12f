"""The diffusion tasks: no data leakage, correct pi_S, statistics == pooled images,
a cache that neither loses nor duplicates, and clear errors."""

from __future__ import annotations

import sqlite3
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from surrogateshap.game import all_coalitions, coalition_key  # noqa: E402
from surrogateshap.tasks import get_task  # noqa: E402
from surrogateshap.tasks.base import DiffusionTask  # noqa: E402
from surrogateshap.tasks.common import allocate_counts
from surrogateshap.tasks.games import RetrainingGame
from surrogateshap.tasks.catalog.digits10 import Digits10Config, Digits10Task  # noqa: E402
from surrogateshap.tasks.reference import build_table, load_reference  # noqa: E402
from surrogateshap.tasks.features.statistics import mix_stats, utility_from_stats  # noqa: E402


@pytest.fixture
def task(tmp_path):
    torch.set_num_threads(1)
    return Digits10Task(Digits10Config.preset("ci"), cache_dir=tmp_path)


@pytest.fixture
def fast_task(tmp_path):
    """Few training steps: for tests of plumbing, not of sample quality."""
    torch.set_num_threads(1)
    return Digits10Task(Digits10Config.preset("ci", steps=30), cache_dir=tmp_path)


def test_members_and_proportions(task):
    mask = np.zeros(10, bool)
    mask[[1, 3, 7]] = True
    members = task.members(mask)
    assert set(task.item_contributor[members]) == {1, 3, 7}
    counts = task.counts()
    assert counts.sum() == 1797
    pi = task.proportions(mask)
    np.testing.assert_allclose(pi[[1, 3, 7]], counts[[1, 3, 7]] / counts[[1, 3, 7]].sum())
    assert pi[~mask].sum() == 0 and abs(pi.sum() - 1) < 1e-12
    with pytest.raises(ValueError, match="empty coalition"):
        task.proportions(np.zeros(10, bool))
    # sample labels follow pi_S exactly up to rounding
    labels = task.coalition_units(mask)
    assert len(labels) == task.config.n_samples
    np.testing.assert_allclose(np.bincount(labels, minlength=10) / len(labels), pi, atol=1 / len(labels))


def test_allocate_counts_sums_and_rounds():
    c = allocate_counts(10, np.array([0.5, 0.25, 0.25]))
    assert c.tolist() == [5, 3, 2] or c.tolist() == [5, 2, 3]
    assert allocate_counts(7, np.array([1, 1, 1])).sum() == 7


def test_training_never_sees_other_coalitions_data(fast_task):
    task = fast_task
    """Poison every item outside the coalition with NaN: one draw of them would make
    the loss, and so the weights, NaN."""
    from surrogateshap.tasks.models.mlp import train_denoisers

    x, y = task.training_data
    masks = np.zeros((2, 10), bool)
    masks[0, [0, 4]] = True
    masks[1, [9]] = True
    members = [task.members(m) for m in masks]
    for k, m in enumerate(masks):
        poisoned = x.clone()
        poisoned[~torch.as_tensor(m[y.numpy()])] = float("nan")
        model = train_denoisers(poisoned, y, [members[k]], task.family.denoiser_config(), steps=30,
                                batch_size=64, lr=1e-3, seeds=[0])
        assert all(torch.isfinite(p).all() for p in model.parameters())
    # and the poison would be caught: training on everything with the poisoned data fails
    model = train_denoisers(poisoned, y, [np.arange(len(x))], task.family.denoiser_config(), steps=5,
                            batch_size=64, lr=1e-3, seeds=[0])
    assert not all(torch.isfinite(p).all() for p in model.parameters())


def test_empty_coalition_cannot_be_trained(fast_task):
    task = fast_task
    with pytest.raises(ValueError, match="no training data"):
        task.train(np.zeros((1, 10), bool), seed=0)


def test_models_do_not_depend_on_their_batch(fast_task):
    task = fast_task
    masks = np.array([[1, 0, 1, 0, 0, 0, 0, 0, 0, 1], [1] * 10, [0, 1] * 5], bool)
    a = task.retrain_stats(masks, 0)
    b = task.retrain_stats(masks[[2, 0]], 0)
    assert task.score(a[0]) == task.score(b[1])
    assert task.score(a[2]) == task.score(b[0])
    c = task.retrain_stats(masks[[0]], 1)  # another seed, another model
    assert task.score(c[0]) != task.score(a[0])


def test_mixture_statistics_equal_pooled_images(fast_task):
    task = fast_task
    """The proxy's statistics-based utility == torchmetrics on the pooled images."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore

    rng = np.random.default_rng(0)
    x = task.training_data[0]
    banks = [(x[rng.choice(len(x), size=n)] + 0.1 * torch.randn(n, 64)).clamp(-1, 1) for n in (60, 30, 90)]
    w = np.array([60, 30, 90]) / 180
    mixed = mix_stats([task.stats_of(b) for b in banks], w)
    pooled = torch.cat(banks)
    real = task.real_stats()

    fid = FrechetInceptionDistance(feature=task.feature_net, normalize=False)
    fid.update(x, real=True)
    fid.update(torch.cat(banks), real=False)
    ours = -utility_from_stats("neg_fid", mix_stats([task.stats_of(b) for b in banks], w), real)
    assert ours == pytest.approx(float(fid.compute()), rel=1e-3)

    net = task.feature_net
    net.logits = True
    try:
        is_ = InceptionScore(feature=net, splits=1, normalize=False)
        is_.update(torch.cat(banks))
        ref = float(is_.compute()[0])
    finally:
        net.logits = False
    assert utility_from_stats("inception_score", mixed, real) == pytest.approx(ref, rel=1e-4)
    # coverage: mode histogram of the pooled images
    assert utility_from_stats("coverage", mixed, real) == pytest.approx(
        utility_from_stats("coverage", task.stats_of(pooled), real), abs=1e-9)


def test_proxy_stats_agree_with_regeneration(task):
    for utility in ("neg_fid", "inception_score"):
        stats_game = task.proxy_game(utility)
        regen = task.proxy_game(utility, mode="regenerate")
        masks = np.array([[1] * 10, [1, 1, 0, 0, 1, 0, 0, 0, 0, 0], [0] * 9 + [1],
                          [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]], bool)
        a, b = stats_game(masks), regen(masks)
        # same mixture, independent samples (100 a label vs 200 a coalition): agree within
        # sampling error, and far closer than coalitions differ from each other
        np.testing.assert_allclose(a, b, rtol=0.2)
        assert np.corrcoef(a, b)[0, 1] > 0.95
    assert stats_game.cost_of(masks) == 0 and regen.cost_of(masks) == 4 * task.config.n_samples


def test_proxy_utility_of_weights_is_the_game_on_unit_counts(fast_task):
    """A study's contributors (shards of units) reach the proxy through unit weights:
    item counts of a coalition give the game's own value, scaled or not, and zero
    weights the empty coalition."""
    proxy = fast_task.proxy_game("neg_fid")
    masks = np.array([[1] * 10, [1, 1, 0, 0, 1, 0, 0, 0, 0, 0], [0] * 10], bool)
    counts = masks.astype(np.int64) @ fast_task.unit_counts()
    np.testing.assert_allclose(proxy.utility_of_weights(counts), proxy(masks), rtol=1e-9)
    np.testing.assert_allclose(proxy.utility_of_weights(3 * counts), proxy(masks), rtol=1e-9)
    half = proxy.utility_of_weights(np.eye(10)[[0, 1]].sum(0))[0]  # units 0 and 1 equally
    assert half != pytest.approx(proxy(masks[1:2])[0])
    with pytest.raises(ValueError, match="10 columns"):
        proxy.utility_of_weights(np.ones(9))
    with pytest.raises(ValueError, match="non-negative"):
        proxy.utility_of_weights(-np.eye(10)[0])


def test_empty_coalition_has_a_defined_value(task):
    proxy = task.proxy_game("neg_fid")
    retrain = task.retraining_game("neg_fid", cache=False)
    empty = np.zeros((1, 10), bool)
    assert proxy(empty)[0] == pytest.approx(retrain(empty)[0])
    assert np.isfinite(proxy(empty)[0]) and proxy(empty)[0] < proxy(np.ones((1, 10), bool))[0]


def test_unknown_utility_and_task():
    with pytest.raises(KeyError, match="known tasks"):
        get_task("cifar-1000")
    t = Digits10Task(scale="ci")
    with pytest.raises(KeyError, match="offers"):
        t.proxy_game("aesthetics")
    with pytest.raises(KeyError, match="unknown scale"):
        Digits10Config.preset("huge")


class _FakeTask(DiffusionTask):
    """A 4-player task whose 'training' is instant and whose failure can be scheduled."""

    name = "fake4"
    players = ("a", "b", "c", "d")
    utilities = ("neg_fid", "inception_score", "coverage")

    def __init__(self, cache_dir, fail_after=None):
        from dataclasses import dataclass

        @dataclass(frozen=True)
        class Cfg:
            models_per_batch: int = 2
            n_samples: int = 10

        super().__init__(Cfg(), cache_dir)
        self.trained = []
        self.fail_after = fail_after

    @property
    def item_contributor(self):
        return np.array([0, 0, 1, 2, 3, 3])

    def _stats(self, value):
        from surrogateshap.tasks.features.statistics import LabelStats

        return LabelStats(mean=np.array([value]), second=np.array([[value**2 + 1]]),
                          pbar=np.array([0.5, 0.5]), neg_entropy=-0.5, modes=np.array([1.0]), count=10)

    def retrain_stats(self, masks, seed):
        if self.fail_after is not None and len(self.trained) >= self.fail_after:
            raise KeyboardInterrupt("simulated crash")
        self.trained.extend(coalition_key(m) for m in masks)
        return [self._stats(float(m @ np.arange(1, 5))) for m in masks]

    def real_stats(self):
        return self._stats(0.0)

    def empty_stats(self):
        return self._stats(-1.0)

    def bank_stats(self):
        return [self._stats(float(i + 1)) for i in range(4)]

    def regenerate_stats(self, mask, seed):
        raise NotImplementedError


def test_retraining_cache_resumes_without_loss_or_duplicates(tmp_path):
    masks = all_coalitions(4)
    crashing = _FakeTask(tmp_path, fail_after=6)
    game = RetrainingGame(crashing, "neg_fid", seed=3, progress=False)
    with pytest.raises(KeyboardInterrupt):
        game(masks)
    done = set(crashing.trained)
    assert len(done) == 6

    resumed = _FakeTask(tmp_path)
    values = RetrainingGame(resumed, "neg_fid", seed=3, progress=False)(masks)
    assert set(resumed.trained).isdisjoint(done)  # nothing retrained twice
    assert len(resumed.trained) == 15 - 6
    np.testing.assert_allclose(values[1:], -(masks[1:] @ np.arange(1, 5)) ** 2 * 1.0, rtol=0, atol=1e-6)
    # another utility shares the same retrainings
    RetrainingGame(resumed, "coverage", seed=3, progress=False)(masks)
    assert len(resumed.trained) == 9
    path = tmp_path / resumed.config_id() / "retrain-seed3.sqlite"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    keys = [r[0] for r in db.execute("SELECT key FROM records")]
    db.close()
    assert len(keys) == len(set(keys)) == 15


def test_reference_table_roundtrip_and_missing_path(tmp_path):
    t = _FakeTask(tmp_path / "cache")
    table = build_table(t, "all", [0, 1], out_dir=tmp_path / "ref", progress=False)
    assert table.complete_seeds() == [0, 1]
    loaded = load_reference(t, tmp_path / "ref" / "retraining_table.csv")
    np.testing.assert_allclose(loaded.exact_shapley("neg_fid"), table.exact_shapley("neg_fid"))
    assert (tmp_path / "ref" / "exact_shapley.csv").exists()
    with pytest.raises(FileNotFoundError, match="build-table"):
        load_reference(t, tmp_path / "nowhere.csv")

    # building one seed keeps the table's other seeds; repeated seeds count once
    one = build_table(_FakeTask(tmp_path / "cache"), "all", [1, 1], out_dir=tmp_path / "ref",
                                 progress=False)
    assert one.complete_seeds() == [0, 1] and len(one.frame) == 2 * 16

    # a later session without the cache resumes from the shipped table: nothing retrained
    fresh = _FakeTask(tmp_path / "other-cache")
    again = build_table(fresh, "all", [0, 1], out_dir=tmp_path / "ref", progress=False)
    assert fresh.trained == []
    np.testing.assert_allclose(again.exact_shapley("neg_fid"), table.exact_shapley("neg_fid"), rtol=1e-5)


def test_table_of_another_configuration_is_not_overwritten(tmp_path):
    build_table(_FakeTask(tmp_path / "cache"), "all", [0], out_dir=tmp_path / "ref", progress=False)
    other = _FakeTask(tmp_path / "cache")
    other.name = "fake4-other"  # another config id
    with pytest.raises(ValueError, match="another configuration"):
        build_table(other, "all", [0], out_dir=tmp_path / "ref", progress=False)


def test_non_finite_utility_is_an_error(tmp_path):
    t = _FakeTask(tmp_path)
    bad = t._stats(float("nan"))
    with pytest.raises(ValueError, match="non-finite"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t.score(bad)
