"""Bad options are one line and exit status 2 before any work, on every subcommand, through
the one validation the benchmark plug-in uses too (:mod:`surrogateshap.benchmark.options`)."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    """Training, building a table or sampling the proxy is an error here: validation first."""
    pytest.importorskip("torch")
    from surrogateshap.tasks import games, reference
    from surrogateshap.tasks.catalog.digits10 import Digits10Task

    def boom(*a, **k):
        raise AssertionError("the work started before the options were checked")

    monkeypatch.setattr(games.ProxyGame, "_prepare", boom)
    monkeypatch.setattr(Digits10Task, "retrain_stats", boom)
    monkeypatch.setattr(reference, "build_table", boom)
    monkeypatch.setenv("SURROGATESHAP_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _cli(capsys, *argv):
    from surrogateshap.cli import main

    try:
        rc = main(list(argv))
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    return rc, capsys.readouterr().err.strip()


@pytest.mark.parametrize("argv, flag, value", [
    (["build-table", "--cpus-per-job", "0"], "--cpus-per-job", "0"),
    (["build-table", "--cpus-per-job", "-2"], "--cpus-per-job", "-2"),
    (["build-table", "--cpus-per-job", "nan"], "--cpus-per-job", "nan"),
    (["build-table", "--gpus-per-job", "-1"], "--gpus-per-job", "-1"),
    (["build-table", "--gpus-per-job", "inf"], "--gpus-per-job", "inf"),
    (["build-table", "--export-every", "0"], "--export-every", "0"),
    (["build-table", "--limit", "-1"], "--limit", "-1"),
    (["build-table", "--first", "-1"], "--first", "-1"),
    (["build-table", "--workers", "0"], "--workers", "0"),
    (["build-table", "--retries", "-1"], "--retries", "-1"),
    (["build-table", "--threads", "0"], "--threads", "0"),
    (["build-table", "--seeds", "0", "-3"], "--seeds", "-3"),
    (["verify-table", "--threads", "0"], "--threads", "0"),
    (["verify-table", "--test-coalitions", "-1"], "--test-coalitions", "-1"),
    (["verify-table", "--rtol", "nan"], "--rtol", "nan"),
    (["verify-table", "--seed", "-1"], "--seed", "-1"),
    (["run", "--budget", "-5"], "--budget", "-5"),
    (["run", "--seed", "-1"], "--seed", "-1"),
])
def test_every_numeric_option_is_checked_before_any_work(no_work, capsys, argv, flag, value):
    rc, err = _cli(capsys, *argv, "--out", str(no_work / "out")) if argv[0] == "build-table" \
        else _cli(capsys, *argv)
    assert rc == 2 and "\n" not in err, err
    assert f"{flag} must be" in err and f"got {value}" in err, err


def test_executor_ray_without_ray_is_one_line(no_work, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # the import fails as if Ray were absent
    rc, err = _cli(capsys, "build-table", "--executor", "ray", "--out", str(no_work / "out"))
    assert rc == 2 and "\n" not in err and "--executor ray needs Ray" in err, err


@pytest.mark.parametrize("command", ["build-table", "verify-table", "table-counts", "scoring-nets", "run"])
def test_unknown_task_is_one_line_on_every_subcommand(no_work, capsys, command):
    rc, err = _cli(capsys, command, "--task", "nosuch")
    assert rc == 2 and "\n" not in err and "unknown task 'nosuch'" in err, err


@pytest.mark.parametrize("option", ["--extra", "--coalitions"])
def test_a_coalitions_file_that_is_missing_or_malformed_is_one_line(no_work, capsys, option):
    bad = no_work / "short.txt"
    bad.write_text("0101\n")
    for path, message in [(no_work / "absent.txt", "No such file"), (bad, "10-character bit strings")]:
        rc, err = _cli(capsys, "build-table", option, str(path), "--out", str(no_work / "out"))
        assert rc == 2 and "\n" not in err and f"{option} {path}: " in err and message in err, err


@pytest.mark.parametrize("content", ["root:x:0:0:root:/root:/bin/bash\nbin:x:1:1\n", "", "{}"])
def test_run_refuses_a_reference_that_is_not_a_table(no_work, capsys, content):
    bad = no_work / "not-a-table.csv"
    bad.write_text(content)
    rc, err = _cli(capsys, "run", "--reference", str(bad))
    assert rc == 2 and "\n" not in err and f"--reference {bad}: not a retraining table" in err, err


@pytest.mark.parametrize("argv, message", [
    (["run", "--estimator", "kernelshap(nosuch=1)"], "--estimator: estimator 'kernelshap(nosuch=1)'"),
    (["run", "--compare", "nope"], "--compare: unknown estimator 'nope'"),
])
def test_estimators_are_checked_by_the_shared_validation(no_work, capsys, argv, message):
    rc, err = _cli(capsys, *argv)
    assert rc == 2 and "\n" not in err and message in err, err


def test_the_checks_name_the_option_and_the_value():
    from surrogateshap.benchmark import options

    assert options.count("--budget", "12", 1) == 12
    assert options.amount("--cpus-per-job", "0.5", 0, strict=True) == 0.5
    assert options.seeds("3") == [0, 1, 2] and options.seeds("4,7") == [4, 7] and options.seeds(None) is None
    assert options.budgets(["32,64", "128"]) == [32, 64, 128] and options.budgets([]) is None
    assert options.names(["a,b(x=1, y=2)", " c "]) == ["a", "b(x=1, y=2)", "c"]
    for call, message in [
        (lambda: options.count("--budget", "-5", 1), "--budget must be a positive integer; got '-5'"),
        (lambda: options.count("--limit", "x", 0), "--limit must be an integer; got 'x'"),
        (lambda: options.count("--first", 2.5, 0), "--first must be an integer; got 2.5"),
        (lambda: options.amount("--rtol", "inf"), "--rtol must be a finite number >= 0; got 'inf'"),
        (lambda: options.seeds(""), "--seeds takes a count N >= 1"),
        (lambda: options.seeds("0"), "--seeds takes a count N >= 1"),
        (lambda: options.seeds("1,-2"), "--seeds takes a count N >= 1"),
        (lambda: options.choices("--game", ["nosuch"], ["known"]), "--game nosuch: unknown; choose from known"),
        (lambda: options.executor("dask"), "--executor dask: unknown; choose from serial, processes, ray"),
    ]:
        with pytest.raises(options.UsageError) as e:
            call()
        assert message in str(e.value) and "\n" not in str(e.value)


def test_a_lost_ray_node_is_one_line_not_a_traceback(monkeypatch, capsys, tmp_path):
    # NodeLostError (the executor's machine went) reached the command line as a traceback
    from surrogateshap import cli
    from surrogateshap.execution import NodeLostError

    def lost(args):
        raise NodeLostError("the local Ray node died; finished coalitions are stored: run again to resume")

    monkeypatch.setattr(cli, "_build_table", lost)
    monkeypatch.setenv("SURROGATESHAP_CACHE", str(tmp_path / "cache"))
    assert cli.main(["build-table", "--task", "digits10", "--out", str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["surrogateshap build-table: stopped: the local Ray node died; finished coalitions are "
                   "stored: run again to resume"]
