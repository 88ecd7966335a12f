"""FID's eigensolves on torch (float64, the bank's device) give numpy's values to 1e-8
relative, singular covariances (a unit of one sample, units of fewer samples than
features, a dead real feature) included: on those the two round near-zero eigenvalues
differently (up to 4e-9), so a proxy game names a torch backend in its identity
(tests/test_proxy_scale.py) and numpy's values stay bit for bit what they were."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from surrogateshap.tasks.features import statistics
from surrogateshap.tasks.features.statistics import StatsBank


def _bank(n, d, per_unit, seed=0, **kw):
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(3, d))

    def stats(feats):
        return statistics.stats_from_features(feats, rng.normal(size=(len(feats), 4)), centroids)

    units = [stats(rng.normal(i % 3, 1 + i % 2, (1 if i == 0 else per_unit, d))) for i in range(n)]
    real = rng.normal(1, 2, (2 * d + 10, d))
    real[:, -1] = 0.5  # a dead feature: a singular reference covariance
    return StatsBank(units, stats(real), **kw)


def _weights(n, m, seed=1):
    rng = np.random.default_rng(seed)
    w = (rng.random((m, n)) < rng.random((m, 1))) * rng.random((m, n))
    w[:, 1] += w.sum(1) == 0  # no empty row
    w[0] = np.eye(n)[0]  # the single-sample unit alone
    return w / w.sum(1, keepdims=True)


CASES = [(6, 16, 40), (8, 16, 200), (8, 64, 20), (5, 64, 200), (4, 160, 60)]


def _check_torch_equals_numpy(n, d, per_unit, device):
    w = _weights(n, 40)
    numpy_fid = _bank(n, d, per_unit, eig_backend="numpy").utility("neg_fid", w)
    bank = _bank(n, d, per_unit, eig_backend="torch", device=device)
    for m in (1, 7, 40):  # several batches
        np.testing.assert_allclose(bank.utility("neg_fid", w[:m]), numpy_fid[:m], rtol=1e-8, atol=0)
    split = _bank(n, d, per_unit, eig_backend="torch", device=device, memory_budget=4 * bank.row_bytes() + 1)
    assert split.rows_per_call() == 3
    np.testing.assert_allclose(split.utility("neg_fid", w), numpy_fid, rtol=1e-8, atol=0)


@pytest.mark.parametrize("n,d,per_unit", CASES)
def test_torch_backend_equals_numpy_on_the_cpu(n, d, per_unit):
    _check_torch_equals_numpy(n, d, per_unit, device="cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("n,d,per_unit", CASES)
def test_torch_backend_equals_numpy_on_cuda(n, d, per_unit):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    _check_torch_equals_numpy(n, d, per_unit, device="cuda")


@pytest.mark.parametrize("kw,used", [({}, "numpy"), ({"device": "cpu"}, "numpy"), ({"device": "cuda"}, "torch"),
                                     ({"device": torch.device("cuda", 0)}, "torch"),
                                     ({"device": "cuda", "eig_backend": "numpy"}, "numpy"),
                                     ({"eig_backend": "torch"}, "torch")])
def test_a_cuda_device_picks_torch_unless_told(kw, used, monkeypatch):
    calls = []
    solve = statistics._eigvalsh
    monkeypatch.setattr(statistics, "_eigvalsh",
                        lambda k, backend, device: calls.append(backend) or solve(k, backend, None))
    bank = _bank(3, 4, 10, **kw)
    assert bank.eig_backend_used() == used
    bank.utility("neg_fid", np.eye(3))
    assert calls == [used]


def test_a_bad_backend_is_named():
    with pytest.raises(ValueError, match=r"eig_backend must be one of \('numpy', 'torch'\).*got 'cupy'"):
        _bank(3, 4, 10, eig_backend="cupy")


def test_a_missing_cuda_device_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="set to run on cuda, which this machine does not have"):
        _bank(3, 4, 10, device="cuda").utility("neg_fid", np.eye(3))


def test_the_backend_is_refused_and_left_out_of_the_identity_where_no_bank_solves(tmp_path):
    """Regenerated samples and a bank mixed image by image are scored one coalition at a
    time on numpy: a torch backend given there is refused (it would be named in the
    identity and ignored), and none is named."""
    from surrogateshap.tasks.catalog.digits10 import Digits10Config, Digits10Task

    task = Digits10Task(Digits10Config.preset("ci"), cache_dir=tmp_path)
    task.device = "cuda"  # where the bank's default backend is torch (nothing runs here)
    assert task.proxy_game("neg_fid").cache_id().endswith(":eig=torch")
    for kw in ({"mode": "regenerate"}, {"samples": 50}):
        with pytest.raises(ValueError, match="eig_backend= applies to"):
            task.proxy_game("neg_fid", eig_backend="torch", **kw)
        assert ":eig=" not in task.proxy_game("neg_fid", **kw).cache_id()
        with pytest.raises(ValueError, match="fid_rank= applies to"):  # ignored there as well
            task.proxy_game("neg_fid", fid_rank=8, **kw)
