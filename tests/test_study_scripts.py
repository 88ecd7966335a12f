"""Pieces of the study scripts under scripts/ that their tables rest on."""

import numpy as np
import pytest
from study_scripts import load_script


_script = load_script


@pytest.mark.parametrize("n", [5, 7, 23, 60])
def test_shard_counts_split_each_artist_without_losing_items(n):
    shard_counts = _script("players_scale").shard_counts
    items = np.array([20, 3, 11, 1, 25])
    counts = shard_counts(np.diag(items), n, seed=0)
    assert counts.shape == (n, 5)
    assert ((counts > 0).sum(1) == 1).all()  # a shard belongs to one artist
    assert (counts.sum(1) > 0).all()  # and is not empty
    np.testing.assert_array_equal(counts.sum(0), items)  # every item dealt once
    owner = counts.argmax(1)
    assert set(owner) == set(range(5))  # every artist keeps at least one shard
    for a in range(5):  # near-equal shards within an artist
        sizes = counts[owner == a, a]
        assert sizes.max() - sizes.min() <= 1
    if n == 5:
        np.testing.assert_array_equal(counts, np.diag(items))


def test_shard_counts_refuses_impossible_splits():
    shard_counts = _script("players_scale").shard_counts
    with pytest.raises(ValueError, match="below"):
        shard_counts(np.diag([4, 4, 4]), 2)
    with pytest.raises(ValueError, match="cannot make"):
        shard_counts(np.diag([1, 2, 1]), 5)


def test_spurious_audit_top_k_breaks_ties_by_player_order():
    top_k = _script("spurious_audit").top_k
    np.testing.assert_array_equal(top_k([0.1, 0.5, 0.5, -1.0, 0.2], 3), [1, 2, 4])


def test_players_scale_keeps_references_apart_per_game():
    # --ref-cache named a reference by n, border, permutations and seed only: a run on
    # another utility (or other shards) read the first run's reference back as its own
    script = _script("players_scale")

    class Proxy:  # what ShardedProxyGame uses of a task's proxy game
        def __init__(self, utility):
            self.utility, self.task = utility, type("T", (), {"n_units": 3})()

        def utility_of_weights(self, w):
            return np.zeros(len(np.atleast_2d(w)))

        def cache_id(self):
            return f"proxy:{self.utility}"

    counts = np.diag([2, 3, 4])
    fid, isc = (script.ShardedProxyGame(Proxy(u), counts) for u in ("neg_fid", "inception_score"))
    other_shards = script.ShardedProxyGame(Proxy("neg_fid"), counts[[1, 0, 2]])
    paths = {script.reference_file("kept", g, 2, 1000, 12345) for g in (fid, isc, other_shards)}
    assert len(paths) == 3
    assert script.reference_file("kept", fid, 2, 1000, 12345) == script.reference_file(
        "kept", script.ShardedProxyGame(Proxy("neg_fid"), counts), 2, 1000, 12345)
