"""Intra-FID (``neg_intra_fid``): FID per label against the real images of that label,
averaged over the labels, from per-label moments that mix linearly; a label a mixture
lacks counts the prior's FID for it. Checked against FID computed directly with
``scipy.linalg.sqrtm`` on hand-made features."""

import numpy as np
import pytest
from scipy.linalg import sqrtm

from surrogateshap.tasks.features.statistics import (
    StatsBank,
    mix_stats,
    needs_label_moments,
    read_stats,
    stats_from_features,
    utility_from_stats,
    write_stats,
)

K, D = 3, 4
CENTROIDS = np.zeros((2, D))


def _fid(a, b):
    """FID of two feature sets, directly: unbiased covariances, the matrix square root."""
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(c1 + c2 - 2 * np.real(sqrtm(c1 @ c2))))


def _stats(feats, labels):
    return stats_from_features(feats, np.zeros((len(feats), 2)), CENTROIDS, labels=labels, n_labels=K)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    real = [rng.normal(k, 1 + k / 2, size=(40, D)) for k in range(K)]  # label k's real features
    prior = [rng.normal(0, 3, size=(30, D)) for _ in range(K)]  # the prior's samples asked for label k
    units = [(0, rng.normal(0.2, 1.1, size=(25, D))), (0, rng.normal(-0.5, 0.7, size=(15, D))),
             (1, rng.normal(1.5, 1.0, size=(20, D)))]  # (label, features) of each bank unit; label 2 absent
    y = lambda xs: np.concatenate([np.full(len(x), k) for k, x in xs])
    stack = lambda xs: np.concatenate([x for _, x in xs])
    return {"real": real, "prior": prior, "units": units, "y": y, "stack": stack,
            "real_stats": _stats(np.concatenate(real), y(enumerate(real))),
            "prior_stats": _stats(np.concatenate(prior), y(enumerate(prior))),
            "unit_stats": [_stats(x, np.full(len(x), k)) for k, x in units]}


def test_intra_fid_of_pooled_samples_is_the_mean_of_per_label_fids_the_prior_standing_in_for_a_missing_label(data):
    d = data
    gen = d["units"]  # labels 0 and 1 present, 2 absent
    stats = _stats(d["stack"](gen), d["y"](gen))
    direct = [_fid(np.concatenate([x for k, x in gen if k == 0]), d["real"][0]),
              _fid(gen[2][1], d["real"][1]), _fid(d["prior"][2], d["real"][2])]
    got = utility_from_stats("neg_intra_fid", stats, d["real_stats"], d["prior_stats"])
    assert got == pytest.approx(-np.mean(direct), rel=1e-9)
    # every label present: the prior is not read
    full = [*gen, (2, d["real"][2][:20] + 0.3)]
    direct = direct[:2] + [_fid(full[3][1], d["real"][2])]
    assert utility_from_stats("neg_intra_fid", _stats(d["stack"](full), d["y"](full)),
                              d["real_stats"]) == pytest.approx(-np.mean(direct), rel=1e-9)


def test_a_bank_mixture_equals_the_pooled_samples_and_the_empty_mixture_scores_the_prior(data):
    d = data
    bank = StatsBank(d["unit_stats"], d["real_stats"], prior=d["prior_stats"])
    # weights in proportion to the units' samples: the mixture is the pool of their samples
    counts = np.array([len(x) for _, x in d["units"]], float)
    rows = np.array([counts, counts * [1, 1, 0], counts * [0, 0, 1], counts * [1, 0, 0]])
    got = bank.utility("neg_intra_fid", rows / rows.sum(1, keepdims=True))
    for row, value in zip(rows, got):
        part = [u for u, c in zip(d["units"], row) if c > 0]
        pooled = utility_from_stats("neg_intra_fid", _stats(d["stack"](part), d["y"](part)), d["real_stats"],
                                    d["prior_stats"])
        assert value == pytest.approx(pooled, rel=1e-9)
    # the prior alone: every label scored as the prior's samples of it
    alone = np.mean([_fid(p, r) for p, r in zip(d["prior"], d["real"])])
    assert utility_from_stats("neg_intra_fid", d["prior_stats"], d["real_stats"]) == pytest.approx(-alone, rel=1e-9)


def test_mixed_statistics_carry_the_pooled_per_label_moments(data):
    d = data
    counts = np.array([len(x) for _, x in d["units"]], float)
    mixed = mix_stats(d["unit_stats"], counts / counts.sum())
    pooled = _stats(d["stack"](d["units"]), d["y"](d["units"]))
    for field in ("label_share", "label_mean", "label_second"):
        np.testing.assert_allclose(getattr(mixed, field), getattr(pooled, field), rtol=1e-12)
    assert mixed.given_label(0).count == 40 and mixed.given_label(1).count == 20


def test_a_missing_label_without_a_prior_or_statistics_without_label_moments_is_named(data):
    d = data
    with pytest.raises(ValueError, match="lacks label 2.*prior"):
        StatsBank(d["unit_stats"], d["real_stats"]).utility("neg_intra_fid", np.ones((1, 3)) / 3)
    plain = stats_from_features(d["real"][0], np.zeros((40, 2)), CENTROIDS)
    with pytest.raises(ValueError, match="per-label moments"):
        utility_from_stats("neg_intra_fid", plain, d["real_stats"])
    other = stats_from_features(d["real"][0], np.zeros((40, 2)), CENTROIDS, labels=np.zeros(40, int), n_labels=2)
    with pytest.raises(ValueError, match="statistics have 2 labels, the real statistics 3"):
        utility_from_stats("neg_intra_fid", other, d["real_stats"])
    with pytest.raises(ValueError, match="labels must be 40 integers in 0..2"):
        stats_from_features(d["real"][0], np.zeros((40, 2)), CENTROIDS, labels=np.full(40, 3), n_labels=K)


def test_label_moments_round_trip_through_a_store_and_only_per_label_utilities_ask_for_them(data, tmp_path):
    from surrogateshap.tasks.features.stats_store import ArrayStore

    store = ArrayStore(tmp_path / "s", {"k": 1})
    with store.writing() as w:
        write_stats(w, data["unit_stats"])
    back = read_stats(store)
    for a, b in zip(data["unit_stats"], back):
        for field in ("label_share", "label_mean", "label_second"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert needs_label_moments(["neg_fid", "neg_intra_fid"]) and not needs_label_moments(["neg_fid", "coverage"])


def test_a_bank_option_set_after_a_per_label_call_reaches_the_per_label_banks(data):
    # ProxyGame sets fid_rank, memory_budget and eig_backend on a bank as attributes; the
    # per-label banks built at a first call must follow a later change, as neg_fid does
    d = data
    bank = StatsBank(d["unit_stats"], d["real_stats"], prior=d["prior_stats"])
    w = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    exact = bank.utility("neg_intra_fid", w)
    bank.fid_rank = 2
    fresh = StatsBank(d["unit_stats"], d["real_stats"], prior=d["prior_stats"], fid_rank=2)
    approx = fresh.utility("neg_intra_fid", w)
    assert not np.allclose(approx, exact)  # the rank-2 approximation differs here
    np.testing.assert_allclose(bank.utility("neg_intra_fid", w), approx, rtol=1e-12)
    bank.fid_rank = None
    np.testing.assert_allclose(bank.utility("neg_intra_fid", w), exact, rtol=1e-12)
