"""The proxy game at paper scale: FID in the whitened basis, calls split by a memory
budget, the approximate (``fid_rank``) mode. The reference is FID as computed up to commit
d58ea49 (``scripts/proxy_cost.py: todays_neg_fid``) and ``scipy.linalg.sqrtm``."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from study_scripts import load_script

from surrogateshap.tasks.features import statistics
from surrogateshap.tasks.features.statistics import (
    LabelStats,
    StatsBank,
    _unbiased_cov,
    frechet_distance,
    mix_stats,
    utility_from_stats,
)

ROOT = Path(__file__).resolve().parents[1]


pc = load_script("proxy_cost")


def _todays(bank, w):
    real = bank.real
    return pc.todays_neg_fid(bank, w, pc.psd_sqrt(_unbiased_cov(real.second, real.mean, real.count)))


def _stats(feats, rng):
    c = rng.normal(size=(3, feats.shape[1]))
    return statistics.stats_from_features(feats, rng.normal(size=(len(feats), 4)), c)


def _bank(n, d, per_unit, seed=0, **kw):
    """Units of ``per_unit`` samples (rank-deficient where per_unit <= d; one unit of a
    single sample: count 1, no n - 1 correction) and a real set with a dead feature."""
    rng = np.random.default_rng(seed)
    stats = [_stats(rng.normal(i % 3, 1 + i % 2, (1 if i == 0 else per_unit, d)), rng) for i in range(n)]
    real = rng.normal(1, 2, (4 * d + 10, d))
    real[:, -1] = 0.5  # a dead unit: a singular reference covariance
    return StatsBank(stats, _stats(real, rng), **kw)


def _weights(n, m, seed=1):
    w = pc.random_weights(n, m, np.random.default_rng(seed))
    w[0] = 0
    w[0, 0] = 1  # the single-sample unit alone
    w[1] = np.random.default_rng(seed).dirichlet(np.ones(n))  # unequal weights
    return w


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # sqrtm on singular covariances
@pytest.mark.parametrize("n,d,per_unit", [(4, 3, 50), (6, 16, 40), (8, 40, 12), (5, 64, 200)])
def test_fast_fid_equals_todays_and_sqrtm(n, d, per_unit):
    # guards the refactor: the same values as before it, to 1e-7 relative, singular
    # covariances (per_unit <= d, a dead real feature) included
    bank = _bank(n, d, per_unit)
    w = _weights(n, 60)
    new = bank.utility("neg_fid", w)
    np.testing.assert_allclose(new, _todays(bank, w), rtol=1e-7)
    np.testing.assert_allclose(new[:6], pc.naive_neg_fid(bank, w[:6]), rtol=1e-6)
    one = mix_stats(bank._stats, w[1])
    assert -utility_from_stats("neg_fid", one, bank.real) == pytest.approx(-new[1], rel=1e-7)


def test_frechet_distance_equals_sqrtm():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 30, 9))
    c1, c2 = a.T @ a / 30, b.T @ b / 30
    mu1, mu2 = rng.normal(size=(2, 9))
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * np.real(sqrtm(c1 @ c2)))
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-9)


def test_fast_fid_on_a_real_bank(tmp_path):
    # digits10's proxy bank (d = 64 features of the project's network), every coalition
    import torch

    from surrogateshap.tasks.catalog.digits10 import Digits10Config, Digits10Task

    torch.set_num_threads(1)
    task = Digits10Task(Digits10Config.preset("ci", steps=30), cache_dir=tmp_path)
    bank = task.bank()
    assert bank.mean.shape == (10, 64)
    masks = ((np.arange(1, 1024)[:, None] >> np.arange(10)) & 1).astype(bool)
    w = task.unit_weights(masks)
    np.testing.assert_allclose(bank.utility("neg_fid", w), _todays(bank, w), rtol=1e-7)
    game = task.proxy_game("neg_fid")
    # the exact mode keeps its identity: caches made before the change stay valid
    assert game.cache_id() == f"proxy:{task.config_id()}:neg_fid:bank:0"
    from surrogateshap.tasks.games import ProxyGame

    approx = task.proxy_game("neg_fid", fid_rank=16)  # the task passes the mode on
    assert approx.cache_id() == game.cache_id() + ":fid_rank=16:pooled"
    exact_values, approx_values = game(masks[:40]), approx(masks[:40])
    assert not np.allclose(exact_values, approx_values)
    assert (approx_values >= exact_values - 1e-8 * abs(exact_values)).all()  # the diagonal rest: FID from below
    assert ProxyGame(task, "neg_fid", fid_rank=64)(masks[:40]) == pytest.approx(exact_values, rel=1e-7)
    # the eigensolves' backend is passed on; torch rounds a singular bank differently: named in the identity
    on_torch = task.proxy_game("neg_fid", eig_backend="torch")
    assert on_torch.cache_id() == game.cache_id() + ":eig=torch"  # never shares numpy's cache
    np.testing.assert_allclose(on_torch(masks), game(masks), rtol=1e-9, atol=0)
    assert on_torch._bank.eig_backend_used() == "torch" and game._bank.eig_backend_used() == "numpy"
    with pytest.raises(ValueError, match="eig_backend must be one of"):
        task.proxy_game("neg_fid", eig_backend="gpu")


def test_a_large_batch_is_split_by_the_memory_budget(monkeypatch):
    n, d = 6, 16
    big = _bank(n, d, 40)
    w = _weights(n, 50)
    whole = {u: big.utility(u, w) for u in ("neg_fid", "inception_score", "coverage")}
    small = _bank(n, d, 40, memory_budget=4 * big.row_bytes() + 1)
    assert small.rows_per_call() == 3
    calls = []
    fn = statistics._UTILITY_FNS["neg_fid"]
    monkeypatch.setitem(statistics._UTILITY_FNS, "neg_fid", lambda b, x: calls.append(len(x)) or fn(b, x))
    for u, ref in whole.items():
        np.testing.assert_allclose(small.utility(u, w), ref, rtol=1e-12)
    assert calls == [3] * 16 + [2]


def test_whitened_moments_are_memory_mapped_past_the_budget(tmp_path):
    n, d = 5, 24
    bank = _bank(n, d, 30, memory_budget=8 * n * d * (d + 1) // 2 - 1, workdir=tmp_path)
    before = len(pickle.dumps(bank))
    w = _weights(n, 20)
    np.testing.assert_allclose(bank.utility("neg_fid", w), _bank(n, d, 30).utility("neg_fid", w), rtol=1e-12)
    assert isinstance(bank.whitened()[1], np.memmap)
    assert not list(tmp_path.iterdir())  # unlinked: the space goes with the array
    again = pickle.loads(pickle.dumps(bank))  # the map is rebuilt, not pickled
    assert len(pickle.dumps(bank)) == before
    np.testing.assert_allclose(again.utility("neg_fid", w), bank.utility("neg_fid", w), rtol=1e-12)


def test_fid_rank_is_exact_at_full_rank_and_bounds_fid_below():
    n, d = 6, 20
    w = _weights(n, 40)
    exact = _bank(n, d, 40).utility("neg_fid", w)
    np.testing.assert_allclose(_bank(n, d, 40, fid_rank=d).utility("neg_fid", w), exact, rtol=1e-9)
    approx = _bank(n, d, 40, fid_rank=5).utility("neg_fid", w)
    assert (approx >= exact - 1e-8 * abs(exact)).all() and not np.allclose(approx, exact)


@pytest.mark.parametrize("kw,match", [({"memory_budget": 0}, "memory_budget must be a positive"),
                                      ({"fid_rank": 0}, "fid_rank must be a positive"),
                                      ({"fid_rank": 2.5}, "fid_rank must be a positive")])
def test_bad_bank_options_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        _bank(3, 4, 10, **kw)


def test_a_rank_above_the_dimension_is_named():
    with pytest.raises(ValueError, match="fid_rank must be between 1 and the feature dimension 4"):
        _bank(3, 4, 10, fid_rank=5).utility("neg_fid", np.eye(3))


def test_proxy_cost_help_prints_usage_without_measuring():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "proxy_cost.py"), "--help"], cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("usage:") and "--accuracy" in out.stdout


def test_label_stats_stay_usable_without_stacking():
    # FID never stacks the raw second moments; a registered utility may still read them
    bank = _bank(3, 4, 10)
    bank.utility("neg_fid", np.eye(3))
    assert "second" not in vars(bank)
    assert bank.second.shape == (3, 16)
    assert isinstance(bank._stats[0], LabelStats)


def test_a_call_stays_within_its_memory_budget():
    import tracemalloc

    n, d = 6, 96
    w = _weights(n, 300)
    peaks = {}
    for budget in (10 * _bank(n, d, 40).row_bytes(), 2**30):
        bank = _bank(n, d, 40, memory_budget=budget)
        bank.whitened()
        tracemalloc.start()
        bank.utility("neg_fid", w)
        peaks[budget] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    small, unsplit = peaks
    assert peaks[small] <= small + 8 * 4 * len(w)  # the budget, and the call's (m,) outputs
    assert peaks[unsplit] > 10 * small  # what an unsplit call of 300 takes


@pytest.mark.parametrize("n", [1, 7, 8, 9, 64, 258])
def test_coalition_keys_equal_the_per_mask_key(n):
    from surrogateshap.game import coalition_key, coalition_keys, key_to_mask

    rng = np.random.default_rng(n)
    masks = rng.random((300, n)) < rng.random((300, 1))  # sparse to dense rows
    masks[0], masks[-1] = False, True
    spec = ["".join("1" if b else "0" for b in m) for m in masks]  # the key's definition
    assert coalition_keys(masks) == spec == [coalition_key(m) for m in masks]
    assert coalition_keys(masks[:, ::-1].astype(int)) == [k[::-1] for k in spec]  # a strided int view
    assert np.array_equal(np.stack([key_to_mask(k) for k in coalition_keys(masks)]), masks)
    assert coalition_keys(masks[:0]) == []


def test_fid_is_the_same_at_any_blas_thread_count():
    # from r = 256 up, LAPACK's eigensolve rounds differently on 2 BLAS threads than on 1
    # (7e-12 apart): the proxy's values depended on the machine's cores; the eigensolves
    # now run on one thread whatever the caller's setting
    from threadpoolctl import threadpool_limits

    bank = _bank(5, 256, 300)
    w = _weights(5, 8)
    with threadpool_limits(1, user_api="blas"):
        one = bank.utility("neg_fid", w)
    with threadpool_limits(2, user_api="blas"):
        two = bank.utility("neg_fid", w)
    assert np.array_equal(one, two)
