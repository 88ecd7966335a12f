"""The proxy's bank on disk: sampled once into the task's cache, then memory-mapped by
every task object and process (its whitened FID arrays too); a damaged or mismatched
store is named and built again."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from surrogateshap.tasks.features import statistics

ROOT = Path(__file__).resolve().parents[1]
UTILITIES = ("neg_fid", "inception_score", "coverage")
MASKS = ((np.arange(1, 1024, 7)[:, None] >> np.arange(10)) & 1).astype(bool)


def _task(cache):
    from surrogateshap.tasks.catalog.digits10 import Digits10Config, Digits10Task

    return Digits10Task(Digits10Config.preset("ci", steps=30, bank_per_label=20), cache_dir=cache)


def _counting(task):
    """Count the task's samplings (the bank is the only thing these tests sample)."""
    calls, sample = [], task.sample
    task.sample = lambda *a, **k: calls.append(1) or sample(*a, **k)
    return calls


def _refuse_sampling(*a, **k):
    raise AssertionError("sampled the bank again")


def _values(task):
    bank = task.bank()
    w = task.unit_weights(MASKS)
    return {u: bank.utility(u, w) for u in UTILITIES}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("cache")
    task = _task(cache)
    calls = _counting(task)
    values = _values(task)
    assert len(calls) == 1
    return cache, values, task


def test_a_fresh_task_maps_the_stored_bank_instead_of_sampling(built):
    cache, values, _ = built
    fresh = _task(cache)
    fresh.sample = _refuse_sampling
    bank = fresh.bank()
    assert isinstance(bank._stats[0].second, np.memmap)  # mapped from the cache, not read into memory
    for u, v in _values(fresh).items():
        np.testing.assert_array_equal(v, values[u])


def test_a_second_process_maps_the_bank_and_its_whitened_arrays(built):
    cache, values, _ = built
    code = f"""
import json, sys
import numpy as np
sys.path.insert(0, {str(ROOT / 'tests')!r})
from test_bank_disk import MASKS, UTILITIES, _refuse_sampling, _task
from surrogateshap.tasks.features.statistics import WhitenedBasis
WhitenedBasis.rotate_second = _refuse_sampling  # FID's set-up is read too, not redone
task = _task({str(cache)!r})
task.sample = _refuse_sampling
bank = task.bank()
w = task.unit_weights(MASKS)
print(json.dumps({{u: bank.utility(u, w).tolist() for u in UTILITIES}}))
"""
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for u, v in values.items():
        np.testing.assert_array_equal(np.array(got[u]), v)  # JSON keeps float64 exactly


def test_a_bank_pickles_as_its_store_not_its_moments(built):
    cache, values, _ = built
    task = _task(cache)
    task.sample = _refuse_sampling
    bank = task.bank()
    moments = sum(s.second.nbytes for s in bank._stats)
    sent = pickle.dumps(bank)  # what an executor's worker sends back (tasks.jobs.bank_job)
    assert len(sent) < moments / 4
    again = pickle.loads(sent)
    np.testing.assert_array_equal(again.utility("neg_fid", task.unit_weights(MASKS)), values["neg_fid"])


def _damage_second(root):
    path = root / "second.npy"
    data = bytearray(path.read_bytes())
    data[-8:] = b"\xff" * 8  # the last unit's last moment
    path.write_bytes(bytes(data))


def _truncate_second(root):
    path = root / "second.npy"
    path.write_bytes(path.read_bytes()[:-64])


def _other_settings(root):
    header = json.loads((root / "header.json").read_text())
    header["identity"]["seed"] = 1
    (root / "header.json").write_text(json.dumps(header))


def _header_garbage(root):
    (root / "header.json").write_text("{not json")


@pytest.mark.parametrize("damage,match", [(_damage_second, "second.npy is not the file the header names"),
                                          (_truncate_second, "second.npy is not the file the header names"),
                                          (_other_settings, r"other settings \(seed differ\)"),
                                          (_header_garbage, "its header is not JSON")])
def test_a_damaged_or_mismatched_bank_is_named_and_sampled_again(built, tmp_path, damage, match):
    import shutil

    cache, values, task = built
    store = task.scorer.bank_store()
    assert store.root.parent == cache / task.config_id()
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    damage(copy / store.root.relative_to(cache))
    task = _task(copy)
    calls = _counting(task)
    with pytest.warns(RuntimeWarning, match=f"stored arrays at .* are refused: .*{match}.*; they will be built again"):
        got = _values(task)
    assert len(calls) == 1
    for u, v in got.items():
        np.testing.assert_array_equal(v, values[u])
    fresh = _task(copy)  # and the rebuilt store is read from then on
    fresh.sample = _refuse_sampling
    np.testing.assert_array_equal(_values(fresh)["neg_fid"], values["neg_fid"])


def test_an_interrupted_write_leaves_no_store(tmp_path):
    from surrogateshap.tasks.features.stats_store import ArrayStore

    store = ArrayStore(tmp_path / "s", {"a": 1})
    with pytest.raises(KeyboardInterrupt), store.writing() as w:
        w.put("x", np.arange(3.0))
        w.array("y", (4, 2))[0] = 1
        raise KeyboardInterrupt
    assert store.read() is None and not list((tmp_path / "s").iterdir())
    with store.writing() as w:
        w.put("x", np.arange(3.0))
    got = store.read()
    assert isinstance(got["x"], np.memmap) and got["x"].tolist() == [0, 1, 2]
    with pytest.warns(RuntimeWarning, match=r"other settings \(a differ\)"):
        assert ArrayStore(tmp_path / "s", {"a": 2}).read() is None
    with pytest.warns(RuntimeWarning, match="they lack the arrays y; they will be built again"):
        assert store.read(need=("x", "y")) is None  # a store of an older layout


def _some_stats():
    rng = np.random.default_rng(0)
    stats = [statistics.stats_from_features(rng.normal(size=(30, 5)), rng.normal(size=(30, 3)),
                                            rng.normal(size=(4, 5)), {"fidelity_dist": rng.random(30)})
             for _ in range(3)]
    return stats


def test_statistics_round_trip_through_a_store(tmp_path):
    from surrogateshap.tasks.features.stats_store import ArrayStore

    stats = _some_stats()
    store = ArrayStore(tmp_path / "s", {"k": 1})
    with store.writing() as w:
        statistics.write_stats(w, stats)
    back = statistics.read_stats(store)
    assert len(back) == 3
    for a, b in zip(stats, back):
        for f in ("mean", "second", "pbar", "modes"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        assert (a.neg_entropy, a.count, a.scores) == (b.neg_entropy, b.count, b.scores)


def test_a_rebuilt_bank_gets_new_whitened_arrays(tmp_path):
    # the whitened arrays are derived from the bank's contents: rebuilt with other values,
    # the old ones must not be served
    from surrogateshap.tasks.features.stats_store import ArrayStore

    stats, real = _some_stats(), _some_stats()[0]
    store = ArrayStore(tmp_path / "s", {"k": 1})
    w = np.full((1, 3), 1 / 3)
    values = []
    for scale in (1.0, 2.0):
        for s in stats:
            s.second = s.second * scale
        with store.writing() as writer:
            statistics.write_stats(writer, stats)
        values.append(statistics.StatsBank(statistics.read_stats(store), real).utility("neg_fid", w))
        np.testing.assert_allclose(values[-1], statistics.StatsBank(stats, real).utility("neg_fid", w), rtol=1e-12)
    assert values[0] != values[1]


def test_a_store_is_readable_by_others_as_the_umask_allows(tmp_path):
    from surrogateshap.tasks.features.stats_store import ArrayStore

    old = os.umask(0o022)
    try:
        with ArrayStore(tmp_path / "s", {"a": 1}).writing() as w:
            w.put("x", np.arange(3.0))
    finally:
        os.umask(old)
    assert {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "s").iterdir()} == {"0o644"}
