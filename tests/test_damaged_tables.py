"""A damaged reference table is refused with one error naming the file, row, coalition
and seed, and a failed write leaves the old table and its exact values as they were."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fake_tasks import FakeTask

from surrogateshap.exact import shapley_from_table
from surrogateshap.game import all_coalitions, coalition_key
from surrogateshap.table import CoalitionTable, DamagedTableError
from surrogateshap.tasks.reference import build_table, load_reference

PLAYERS = ("a", "b", "c")


def _frame(seeds=(0, 1)) -> pd.DataFrame:
    masks = all_coalitions(3)
    return pd.DataFrame([{"coalition": coalition_key(m), "seed": s, "v": float(m @ [1, 2, 4]) + s}
                         for s in seeds for m in masks])


def _csv(tmp_path, frame, name="table.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, "abc"])
def test_a_non_finite_utility_is_refused_naming_file_row_coalition_and_seed(tmp_path, bad):
    frame = _frame().astype({"v": object})
    frame.loc[5, "v"] = bad  # coalition 101 (players a, c) on seed 0
    path = _csv(tmp_path, frame)
    with pytest.raises(DamagedTableError, match=r"table\.csv: data row 6 \(coalition 101, seed 0\): utility 'v'"):
        CoalitionTable.read_csv(path, PLAYERS, ["v"])


def test_a_coalition_given_twice_with_two_values_is_refused(tmp_path):
    frame = _frame()
    twin = frame.iloc[[3]].assign(v=99.0)
    path = _csv(tmp_path, pd.concat([frame, twin]))
    with pytest.raises(DamagedTableError, match=r"table\.csv: coalition 110 on seed 0 appears in more than one"):
        CoalitionTable.read_csv(path, PLAYERS, ["v"])


def test_a_row_repeated_with_the_same_values_is_kept_once(tmp_path):
    """Decision: tables sharing rows may be concatenated; a whole repeat changes no value,
    so it is kept once and its seed stays complete."""
    frame = _frame()
    table = CoalitionTable.read_csv(_csv(tmp_path, pd.concat([frame, frame.iloc[[0, 7]]])), PLAYERS, ["v"])
    assert table.complete_seeds() == [0, 1] and len(table.frame) == 16
    expected = shapley_from_table(CoalitionTable(frame, PLAYERS, ["v"]).full_utilities("v"), 3)
    np.testing.assert_allclose(table.exact_shapley("v"), expected)


@pytest.mark.parametrize("coalition, seed, what", [("1x0", 0, "0/1"), ("1010", 0, "0/1"), ("110", "zero", "integer")])
def test_a_coalition_or_seed_that_is_not_one_is_refused(tmp_path, coalition, seed, what):
    frame = _frame().astype({"seed": object})
    frame.loc[2, ["coalition", "seed"]] = [coalition, seed]
    with pytest.raises(DamagedTableError, match=f"data row 3.*{what}"):
        CoalitionTable.read_csv(_csv(tmp_path, frame), PLAYERS, ["v"])


def test_a_folder_or_binary_file_in_place_of_the_task_table_is_named(tmp_path):
    task = FakeTask(cache_dir=tmp_path / "cache")
    folder = tmp_path / "retraining_table.csv"
    folder.mkdir()
    with pytest.raises(DamagedTableError, match="retraining_table.csv is not a file"):
        load_reference(task, folder)
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DamagedTableError, match="garbage.csv is not a text"):
        load_reference(task, garbage)


def test_a_shipped_table_with_an_infinite_row_is_refused_on_load_and_build(tmp_path):
    task = FakeTask(cache_dir=tmp_path / "cache")
    out = tmp_path / "ref"
    build_table(task, "all", [0], out_dir=out, progress=False)
    csv = out / "retraining_table.csv"
    lines = csv.read_text().splitlines(keepends=True)
    head = next(i for i, line in enumerate(lines) if line.startswith("coalition,"))
    cells = lines[head + 4].split(",")
    cells[2] = "inf"  # neg_fid of the 4th coalition in file order
    lines[head + 4] = ",".join(cells)
    csv.write_text("".join(lines))
    with pytest.raises(DamagedTableError, match=rf"retraining_table.csv: data row 4 \(coalition {cells[0]}, seed 0\)"):
        load_reference(task, csv)
    with pytest.raises(DamagedTableError, match="retraining_table.csv: data row 4"):
        build_table(FakeTask(cache_dir=tmp_path / "cache"), "all", [0], out_dir=out, progress=False)


def test_a_failed_write_of_the_exact_values_keeps_the_old_pair(tmp_path, monkeypatch):
    out = tmp_path / "ref"
    build_table(FakeTask(cache_dir=tmp_path / "cache"), "all", [0], out_dir=out, progress=False)
    files = [out / "retraining_table.csv", out / "exact_shapley.csv"]
    old = [f.read_bytes() for f in files]

    real_to_csv = pd.DataFrame.to_csv

    def fail_on_exact(self, f=None, **kw):  # the table is written, the exact values fail half-way
        text = real_to_csv(self, None, **kw)
        if "utility" in self.columns:
            f.write(text[: len(text) // 2])
            raise OSError(28, "No space left on device")
        f.write(text)

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_on_exact)
    with pytest.raises(OSError, match="No space"):
        build_table(FakeTask(cache_dir=tmp_path / "cache"), "all", [0, 1], out_dir=out, progress=False)
    assert [f.read_bytes() for f in files] == old  # neither a new table beside old values, nor a part
    assert not list(out.glob(".*.tmp"))

    monkeypatch.setattr(CoalitionTable, "exact_frame", lambda self: 1 / 0)  # the values cannot be computed
    with pytest.raises(ZeroDivisionError):
        build_table(FakeTask(cache_dir=tmp_path / "cache"), "all", [0, 1], out_dir=out, progress=False)
    assert [f.read_bytes() for f in files] == old
    assert not list(out.glob(".*.tmp"))

    monkeypatch.undo()
    table = build_table(FakeTask(cache_dir=tmp_path / "cache"), "all", [0, 1], out_dir=out, progress=False)
    assert table.complete_seeds() == [0, 1] and [f.read_bytes() for f in files] != old


def test_a_damaged_table_beneath_the_retraining_cache_is_an_error_not_ignored(tmp_path, monkeypatch):
    """The cache ignores a table of another configuration (not this game's values) but
    not a damaged one: ignoring it would retrain, without a word, what the table holds."""
    monkeypatch.setenv("SURROGATESHAP_DATASETS", str(tmp_path / "datasets"))
    task = FakeTask(cache_dir=tmp_path / "cache")
    build_table(task, "all", [0], out_dir=tmp_path / "datasets" / task.name, progress=False)
    csv = tmp_path / "datasets" / task.name / "retraining_table.csv"
    lines = csv.read_text().splitlines(keepends=True)
    head = next(i for i, line in enumerate(lines) if line.startswith("coalition,"))
    cells = lines[head + 1].split(",")
    cells[2] = ""  # an empty cell: NaN
    lines[head + 1] = ",".join(cells)
    csv.write_text("".join(lines))
    with pytest.raises(DamagedTableError, match="retraining_table.csv: data row 1"):
        _ = FakeTask(cache_dir=tmp_path / "cache").cache.reference
