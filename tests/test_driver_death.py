"""Driver death: a driver killed mid-run by SIGKILL or SIGTERM (what SLURM, Kubernetes and
``timeout`` send) leaves no process of its run behind, and a resumed run completes the
results bit-identical to a serial run, nothing trained or stored twice. A Ray node that
dies stops the run at once, with no coalition recorded as failed.

Drivers are real subprocesses running a small script; their jobs are a fake task's
(synthetic statistics after a short sleep) that also write the worker's pid to a file.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from surrogateshap.execution import ProcessExecutor
from surrogateshap.game import all_coalitions
from surrogateshap.tasks.games import RetrainingGame
from surrogateshap.tasks.reference import build_table

sys.path.insert(0, str(Path(__file__).parent))
from fake_tasks import FakeConfig, FakeTask
from test_execution import lines, ray_only, resume_trains_only_the_rest, store_keys

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
MASKS = all_coalitions(4)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
psutil = pytest.importorskip("psutil")

PID_TASK = '''
import os
from pathlib import Path
from fake_tasks import FakeTask
from surrogateshap.tasks import register_task


class PidTask(FakeTask):
    """FakeTask whose every job first writes its worker's pid to log_dir/pids."""

    name = "fake-exec-pids"

    def retrain_stats(self, masks, seed):
        with open(Path(self.config.log_dir) / "pids", "a") as f:
            f.write(f"{os.getpid()}\\n")
        return super().retrain_stats(masks, seed)


@register_task("fake-exec-pids")
def make(scale="default", config=None, cache_dir=None):
    return PidTask(config, cache_dir)
'''

DRIVER = """
import sys, threading
from fake_tasks import FakeConfig
from pid_task import PidTask
from surrogateshap.execution import get_executor
from surrogateshap.tasks.reference import build_table

task = PidTask(FakeConfig(**{cfg!r}), cache_dir={cache!r})
run = lambda: build_table(task, "all", [0], out_dir={out!r}, progress=False,
                          executor=get_executor({executor!r}, workers=2))
if {in_thread!r}:  # the pool is made by a helper thread, which stays alive
    t = threading.Thread(target=run); t.start(); t.join()
else:
    run()
"""

CFG = {"models_per_batch": 1, "sleep": 0.25}


@pytest.fixture(scope="module")
def pid_task(tmp_path_factory):
    """The module of PidTask, importable here and by every worker."""
    where = tmp_path_factory.mktemp("pid_task")
    (where / "pid_task.py").write_text(PID_TASK)
    sys.path.insert(0, str(where))
    import pid_task

    yield where, pid_task.PidTask
    sys.path.remove(str(where))


def _driver(tmp_path, where, executor, in_thread=False):
    code = textwrap.dedent(DRIVER).format(
        cfg={"log_dir": str(tmp_path / "log"), **CFG}, cache=str(tmp_path / "cache"),
        out=str(tmp_path / "ref"), executor=executor, in_thread=in_thread)
    env = dict(os.environ)  # the workers (Ray's too) import the fake tasks and this checkout
    env["PYTHONPATH"] = os.pathsep.join([str(where), str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
    with open(tmp_path / "driver.out", "wb") as out:  # a file: the workers inherit it, a pipe would not close
        return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, start_new_session=True,
                                stdout=out, stderr=subprocess.STDOUT)


def _alive(procs) -> list:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def _wait_until(tmp_path, proc, ready, timeout=90.0):
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the driver made no progress:\n{(tmp_path / 'driver.out').read_text()}")
        time.sleep(0.05)


def _run_and_kill(tmp_path, proc, sig, ready):
    """Once ``ready()`` holds, send ``sig`` to the driver alone (not its group); return
    (its exit status, its output, the processes of its run still alive 10 s later)."""
    _wait_until(tmp_path, proc, ready)
    run = psutil.Process(proc.pid).children(recursive=True)  # its workers, Ray's processes
    pids = {int(p) for p in lines(tmp_path / "log" / "pids")}  # and whoever ran a job
    run += [psutil.Process(p) for p in pids if psutil.pid_exists(p) and p not in {q.pid for q in run}]
    os.kill(proc.pid, sig)
    status = proc.wait(timeout=60)
    t0 = time.monotonic()
    while _alive(run) and time.monotonic() - t0 < 10:
        time.sleep(0.1)
    left = _alive(run)
    for p in left:  # never leave them on the machine, whatever the test says
        try:
            p.kill()
        except psutil.Error:
            pass
    return status, (tmp_path / "driver.out").read_text(), left


def _resumed_is_complete_and_bit_identical(tmp_path, task):
    """Resume serially: only what the killed run did not store is trained, every coalition
    is stored once, and the utilities equal a serial run's from scratch, bit for bit."""
    done = store_keys(task)
    assert len(done) == len(set(done)) and len(done) < 15
    assert not RetrainingGame(task, "neg_fid", progress=False).failures()  # nothing marked failed
    resume_trains_only_the_rest(tmp_path, task)
    serial_task = FakeTask(FakeConfig(**{**CFG, "sleep": 0.0}), cache_dir=tmp_path / "serial")
    serial_table = build_table(serial_task, "all", [0], out_dir=tmp_path / "serial-ref", progress=False)
    cols = ["coalition", "seed", *task.utilities]

    def rows(folder):  # the table as written (utilities rounded as the file keeps them)
        frame = pd.read_csv(folder / "retraining_table.csv", comment="#", dtype={"coalition": str})
        return frame[cols].sort_values("coalition").values.tolist()

    assert len(serial_table.frame) == 16 and rows(tmp_path / "ref") == rows(tmp_path / "serial-ref")
    # the stored records, at full precision (a table row is rounded; the killed run may have
    # written one, e.g. the empty coalition's, that the resumed build then serves)
    stored = MASKS[MASKS.any(axis=1)]
    serial = RetrainingGame(serial_task, "neg_fid", progress=False, reference=False).records(stored)
    resumed = RetrainingGame(task, "neg_fid", progress=False, allow_train=False, reference=False).records(stored)
    for a, b in zip(serial, resumed):
        assert {u: a[u] for u in task.utilities} == {u: b[u] for u in task.utilities}


def _start(tmp_path, pid_task, executor, in_thread=False):
    """(the task, its driver, whether it is mid-run: two workers have run jobs and two
    coalitions are stored)."""
    where, PidTask = pid_task
    (tmp_path / "log").mkdir()
    task = PidTask(FakeConfig(log_dir=str(tmp_path / "log"), **CFG), cache_dir=tmp_path / "cache")
    proc = _driver(tmp_path, where, executor, in_thread)
    ready = lambda: len(set(lines(tmp_path / "log" / "pids"))) >= 2 and len(
        store_keys(task) if (task.cache_dir / task.config_id()).exists() else []) >= 2
    return task, proc, ready


def _check_driver_death(tmp_path, pid_task, executor, sig, in_thread=False):
    task, proc, ready = _start(tmp_path, pid_task, executor, in_thread)
    status, output, left = _run_and_kill(tmp_path, proc, sig, ready)
    assert not left, f"alive 10 s after the driver's {sig.name}: {[p.pid for p in left]}"
    if sig == signal.SIGTERM and executor == "processes":  # a clean exit: the session ended its jobs
        assert status == 128 + signal.SIGTERM, output
    # (a Ray driver keeps the SIGTERM handler of ray.init: sys.exit(15), which unwinds too)
    _resumed_is_complete_and_bit_identical(tmp_path, task)


@pytest.mark.parametrize("sig, in_thread", [(signal.SIGKILL, False), (signal.SIGTERM, False),
                                            (signal.SIGKILL, True)],
                         ids=["SIGKILL", "SIGTERM", "SIGKILL-pool-of-a-thread"])
def test_processes_driver_killed_leaves_no_worker_and_resumes(tmp_path, pid_task, sig, in_thread):
    # in a thread: no parent-death signal (see below), the workers' watchdog alone
    _check_driver_death(tmp_path, pid_task, "processes", sig, in_thread)


@pytest.mark.parametrize("sig", [pytest.param(s, marks=ray_only, id=s.name) for s in (signal.SIGKILL, signal.SIGTERM)])
def test_ray_driver_killed_leaves_no_process_and_resumes(tmp_path, pid_task, sig):
    # a local instance the executor started: Ray's agents outlived a SIGKILLed driver by a minute
    _check_driver_death(tmp_path, pid_task, "ray", sig)


@ray_only[0]
@ray_only[1]
def test_ray_node_death_stops_the_run_at_once_and_fails_no_coalition(tmp_path, pid_task):
    # it went on marking about two coalitions a second as failed (LocalRayletDiedError)
    task, proc, ready = _start(tmp_path, pid_task, "ray")
    _wait_until(tmp_path, proc, ready)
    run = psutil.Process(proc.pid).children(recursive=True)
    try:
        next(p for p in run if p.name() == "raylet").kill()
        status = proc.wait(timeout=60)
        output = (tmp_path / "driver.out").read_text()
        assert status == 1 and "NodeLostError: the Ray node running the jobs is gone" in output, output
    finally:
        proc.kill()
        for p in _alive(run):
            p.kill()
    _resumed_is_complete_and_bit_identical(tmp_path, task)  # no coalition marked failed


def _parent_death_signal() -> int:
    """This process's parent-death signal (0: none), read with prctl(PR_GET_PDEATHSIG)."""
    sig = ctypes.c_int(-1)
    ctypes.CDLL(None, use_errno=True).prctl(2, ctypes.byref(sig), 0, 0, 0)
    return sig.value


@linux_only
def test_worker_has_a_parent_death_signal_but_not_when_a_passing_thread_made_it():
    ex = ProcessExecutor(workers=1)
    try:
        assert ex.map(_parent_death_signal, [()]) == [signal.SIGKILL]
    finally:
        ex.close()
    # the signal fires when the *thread* that forked exits: a worker made by a thread
    # that then ends must survive it (the watchdog alone ties it to the driver)
    ex, got = ProcessExecutor(workers=1), []
    try:
        t = threading.Thread(target=lambda: got.extend(ex.map(os.getpid, [()])))
        t.start()
        t.join()
        assert got and ex.map(os.getpid, [()]) == got  # the same worker, alive
        assert ex.map(_parent_death_signal, [()]) == [0]
    finally:
        ex.close()


def test_sigterm_unwinds_the_driver_only_while_a_session_runs():
    from surrogateshap.execution import SerialExecutor

    def mine(signum, frame):  # a program's own handler is left alone
        pass

    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # ray.init, in this process, sets one
    try:
        with SerialExecutor().session():
            handler = signal.getsignal(signal.SIGTERM)  # called, not raised: never kills pytest
            assert callable(handler)
            with pytest.raises(SystemExit) as stop:
                handler(signal.SIGTERM, None)
            assert stop.value.code == 128 + signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
        signal.signal(signal.SIGTERM, mine)
        with SerialExecutor().session():
            assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
