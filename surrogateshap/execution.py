"""Where retraining and generation jobs run: one seam, three executors.

- ``serial`` (default): in this process, on the live task. Nothing to set up.
- ``processes``: local worker processes (``concurrent.futures``, spawn context), one
  single-worker pool per slot, so a worker that dies is tied to exactly its job.
- ``ray``: Ray tasks on a local instance or an existing cluster (``pip install -e '.[ray]'``).

Executors map picklable jobs and know nothing of what the jobs do; the driver stays the
only writer of the results cache: workers return results, the driver appends them.
(The task jobs and how a worker rebuilds a task are :mod:`surrogateshap.tasks.jobs`.)

Failures: a job that raises or whose worker dies is retried up to ``max_retries``
times (Ray: ``max_retries`` with ``retry_exceptions=True``; Ray alone retries only
system failures by default), then handed back as failed with its error. Callers split
a failed chunk into single coalitions, so one bad coalition never sinks its batch.
A Ray node that dies is no job's failure: the session raises :class:`NodeLostError` at
the first such error, so no job is recorded as failed and a resumed run does them all.

Driver death: workers die with their driver however it ends (SIGKILL included): a
worker process arms a parent-death signal (Linux) and watches its parent's pid (any
platform); a local Ray instance that the executor started is ended by a small watchdog
process when the driver goes. While a session runs, SIGTERM (what SLURM, Kubernetes and
``timeout`` send) ends the driver like Ctrl-C does: the session ends its jobs, finished
results stay stored, and the process exits with status 143 (128 + SIGTERM). A handler
the program or a library installed is left alone: ``ray.init`` installs one that also
unwinds (``sys.exit(15)``).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

__all__ = ["Executor", "SerialExecutor", "ProcessExecutor", "RayExecutor", "Resources", "Outcome",
           "NodeLostError", "get_executor", "EXECUTORS"]

EXECUTORS = ("serial", "processes", "ray")


@dataclass(frozen=True)
class Resources:
    """What one job needs: CPUs, GPUs (fractions allowed on Ray) and memory in bytes."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory: int | None = None

    def __post_init__(self):
        if self.cpus <= 0 or self.gpus < 0 or (self.memory is not None and self.memory <= 0):
            raise ValueError(f"resources must be positive (gpus may be 0): {self}")


@dataclass
class Outcome:
    """A finished job: ``result``, or ``error`` (text) after ``attempts`` tries."""

    tag: Any
    result: Any = None
    error: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


class NodeLostError(RuntimeError):
    """The machine the jobs run on is gone (a Ray node died, Ray was shut down): not a
    job's failure, so the run stops here and no job is recorded as failed."""


def _error_text(e: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(e), e)).strip()


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: sessions end their jobs


def _trap_sigterm():
    """Make SIGTERM unwind the driver while a session runs; the handler to restore, or
    None where nothing was changed (not the main thread, or the program has its own)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, _on_sigterm)
    return signal.SIG_DFL


class Session(ABC):
    """Jobs in flight on one executor: ``submit`` while ``free > 0``, then ``wait``."""

    capacity: int = 1

    def __init__(self):
        self.running = 0

    @property
    def free(self) -> int:
        return self.capacity - self.running

    @abstractmethod
    def submit(self, tag, fn: Callable, args: tuple, retries: int) -> None:
        """Run ``fn(*args)``; on failure retry up to ``retries`` more times."""

    @abstractmethod
    def wait(self) -> list[Outcome]:
        """Block until at least one job finishes (or fails for good); return those."""

    def close(self, cancel: bool = False) -> None:
        pass

    def __enter__(self):
        self._sigterm = _trap_sigterm()
        return self

    def __exit__(self, exc_type, exc, tb):
        if getattr(self, "_sigterm", None) is not None:  # a second SIGTERM now ends at once
            signal.signal(signal.SIGTERM, self._sigterm)
        self.close(cancel=exc_type is not None)


class Executor(ABC):
    """Runs a driver's jobs. ``max_retries``: extra attempts of a failing job."""

    name = ""

    def __init__(self, workers: int | None = None, max_retries: int = 3):
        if workers is not None and int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if int(max_retries) < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.workers = None if workers is None else int(workers)
        self.max_retries = int(max_retries)

    #: whether jobs run in this process (they may then receive live objects)
    in_process = False

    @abstractmethod
    def session(self, resources: Resources = Resources()) -> Session:
        """A context manager in which jobs needing ``resources`` are submitted."""

    def close(self) -> None:
        """Release what the executor keeps between sessions (worker processes)."""

    def map(self, fn: Callable, args_list, resources: Resources = Resources()) -> list:
        """``[fn(*args) for args in args_list]`` on this executor, in order; raises
        RuntimeError naming the first job that failed after its retries."""
        args_list = list(args_list)
        out, todo = [None] * len(args_list), list(enumerate(args_list))
        with self.session(resources) as s:
            while todo or s.running:
                while todo and s.free > 0:
                    i, args = todo.pop(0)
                    s.submit(i, fn, tuple(args), self.max_retries)
                for o in s.wait():
                    if not o.ok:
                        raise RuntimeError(f"job {o.tag} failed after {o.attempts} attempts: {o.error}")
                    out[o.tag] = o.result
        return out

    def __repr__(self):
        return f"{type(self).__name__}(workers={self.workers}, max_retries={self.max_retries})"


# --- serial ------------------------------------------------------------------------
class SerialExecutor(Executor):
    """In this process, one job at a time, on the live task."""

    name = "serial"
    in_process = True

    def session(self, resources: Resources = Resources()) -> Session:
        return _SerialSession()


class _SerialSession(Session):
    def __init__(self):
        super().__init__()
        self._queue = []

    def submit(self, tag, fn, args, retries):
        self._queue.append((tag, fn, args, retries))
        self.running += 1

    def wait(self):
        if not self._queue:
            return []
        tag, fn, args, retries = self._queue.pop(0)
        self.running -= 1
        for attempt in range(1, retries + 2):
            try:
                return [Outcome(tag, fn(*args), attempts=attempt)]
            except Exception as e:  # noqa: BLE001 - recorded; KeyboardInterrupt still stops
                error = _error_text(e)
        return [Outcome(tag, error=error, attempts=retries + 1)]


# --- local processes -----------------------------------------------------------------
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _init_worker(cpus: float, driver: int, pdeathsig: bool):
    # before torch is imported in this fresh (spawned) interpreter
    n = str(max(1, int(cpus)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = n
    _die_with(driver, pdeathsig)


def _die_with(driver: int, pdeathsig: bool, every: float = 0.5):
    """End this worker when ``driver`` (its parent) ends, even by SIGKILL: nobody would
    record its results. Linux: the kernel's parent-death signal, armed only when the
    driver's main thread started the worker (it fires when the *thread* that forked
    exits); everywhere: a thread that polls the parent's pid."""
    if pdeathsig and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the watchdog alone
    if os.getppid() != driver:  # the driver died before the signal was armed
        os._exit(1)

    def watch():
        while os.getppid() == driver:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="driver-watchdog", daemon=True).start()


class ProcessExecutor(Executor):
    """Local worker processes (spawn). ``workers`` defaults to os.cpu_count() // cpus.

    The workers outlive a session (a game's one call), so later calls skip the start-up
    (a fresh interpreter, torch, the rebuilt task); ``close()`` ends them."""

    name = "processes"

    def __init__(self, workers: int | None = None, max_retries: int = 3):
        super().__init__(workers, max_retries)
        self._pools: dict[tuple, cf.ProcessPoolExecutor] = {}  # (slot, cpus) -> 1-worker pool

    def session(self, resources: Resources = Resources()) -> Session:
        n = self.workers or max(1, (os.cpu_count() or 1) // max(1, int(resources.cpus)))
        return _ProcessSession(self, n, resources)

    def _pool(self, slot: int, cpus: float) -> cf.ProcessPoolExecutor:
        key = (slot, cpus)
        if key not in self._pools:
            # The worker is spawned by this thread, in the pool's first submit (right after
            # this; no max_tasks_per_child, so never by the pool's manager thread).
            main = threading.current_thread() is threading.main_thread()
            self._pools[key] = cf.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                initargs=(cpus, os.getpid(), main))
        return self._pools[key]

    def _drop(self, slot: int, cpus: float, kill: bool = False):
        pool = self._pools.pop((slot, cpus), None)
        if pool is not None:
            if kill:  # do not wait for a training nobody will record
                for p in list((getattr(pool, "_processes", None) or {}).values()):
                    p.terminate()
            pool.shutdown(wait=not kill, cancel_futures=kill)

    def close(self):
        """End the worker processes."""
        for slot, cpus in list(self._pools):
            self._drop(slot, cpus)

    def __getstate__(self):  # an executor travels without its workers
        return {**self.__dict__, "_pools": {}}


class _ProcessSession(Session):
    def __init__(self, ex: ProcessExecutor, n: int, resources: Resources):
        super().__init__()
        self.capacity = n
        self._ex, self._cpus = ex, resources.cpus
        self._jobs: dict[cf.Future, tuple] = {}  # future -> (slot, tag, fn, args, retries, attempt)

    def _start(self, slot, tag, fn, args, retries, attempt):
        fut = self._ex._pool(slot, self._cpus).submit(fn, *args)
        self._jobs[fut] = (slot, tag, fn, args, retries, attempt)

    def submit(self, tag, fn, args, retries):
        busy = {job[0] for job in self._jobs.values()}
        slot = next(i for i in range(self.capacity) if i not in busy)
        self._start(slot, tag, fn, args, retries, 1)
        self.running += 1

    def wait(self):
        if not self._jobs:
            return []
        done, _ = cf.wait(list(self._jobs), return_when=cf.FIRST_COMPLETED)
        out = []
        for fut in done:
            slot, tag, fn, args, retries, attempt = self._jobs.pop(fut)
            exc = fut.exception()
            if exc is None:
                out.append(Outcome(tag, fut.result(), attempts=attempt))
                self.running -= 1
                continue
            if isinstance(exc, BrokenProcessPool):  # the worker died: only this job was on it
                self._ex._drop(slot, self._cpus)
                error = f"worker process died ({exc})"
            else:
                error = _error_text(exc)
            if attempt <= retries:
                self._start(slot, tag, fn, args, retries, attempt + 1)
            else:
                out.append(Outcome(tag, error=error, attempts=attempt))
                self.running -= 1
        return out

    def close(self, cancel=False):
        if cancel:  # an interrupted driver: end the workers still training
            for slot, *_ in list(self._jobs.values()):
                self._ex._drop(slot, self._cpus, kill=True)
        self._jobs.clear()


# --- Ray -------------------------------------------------------------------------------
def _ray():
    try:
        import ray
    except ImportError as e:
        raise ImportError("the 'ray' executor needs Ray: pip install -e '.[ray]' "
                          "(or pip install 'ray==2.*')") from e
    return ray


def _call(fn, args):
    return fn(*args)


_RAY_CALL = None  # ray.remote(_call), made once
_RAY_CORE: list = []  # the raylet and GCS of the local instance this process started
_RAY_WATCHDOG = None  # and its watchdog (held open: its stdin closes when this process ends)
# errors that say a node (or Ray itself) is gone, not that a job failed
_NODE_ERRORS = ("LocalRayletDiedError", "NodeDiedError", "RaySystemError", "ObjectLostError")


def _start_ray_watchdog(roots):
    """Tie a local Ray instance (its processes ``roots``, psutil.Process) to this driver.

    Ray kills its direct children with the driver (a parent-death signal), but not what
    its raylet starts: its dashboard and runtime-env agents see the raylet die, then
    hang about a minute trying to report it to the dead GCS (Ray 2.60). The watchdog, a
    process of its own session (a signal to the driver's group spares it), keeps a list
    of the instance's processes and kills what is left of it when the driver ends (its
    stdin, a pipe held by the driver, closes) or the instance shuts down."""
    global _RAY_WATCHDOG
    import psutil  # Ray ships it

    def name(p):
        try:
            return p.name()
        except psutil.Error:
            return ""

    _RAY_CORE[:] = [p for p in roots if name(p) in ("raylet", "gcs_server")]
    site = os.path.dirname(os.path.dirname(psutil.__file__))
    _RAY_WATCHDOG = subprocess.Popen(
        [sys.executable, "-I", os.path.abspath(__file__), "ray-watchdog", site, *(str(p.pid) for p in roots)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def _ray_watchdog(site: str, pids: list[int], every: float = 0.5):
    """The watchdog's body (see _start_ray_watchdog): ``python -I execution.py`` (-I: the
    package's folder is not on sys.path, so no module of it shadows the standard library)."""
    sys.path.insert(0, site)
    import psutil

    def alive(p):
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    roots = []
    for pid in pids:
        try:
            roots.append(psutil.Process(pid))
        except psutil.Error:
            pass
    driver_gone = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), driver_gone.set()), daemon=True).start()
    known = {}
    while True:
        running = [r for r in roots if alive(r)]
        for r in running:
            try:
                known.update((c.pid, c) for c in r.children(recursive=True) if c.pid not in known)
            except psutil.Error:
                pass
        if not running or driver_gone.wait(every):
            break
    for p in [*roots, *known.values()]:
        try:
            p.kill()  # psutil checks that the pid was not reused
        except psutil.Error:
            pass


class RayExecutor(Executor):
    """Ray tasks. ``address``: None starts a local instance (unless Ray is already
    initialised in this process), "auto" or "HOST:PORT" joins a running cluster.
    ``workers`` caps the jobs in flight (default: what the cluster's CPUs/GPUs hold)."""

    name = "ray"

    def __init__(self, workers: int | None = None, max_retries: int = 3, address: str | None = None,
                 init_kwargs: dict | None = None):
        super().__init__(workers, max_retries)
        self.address = address
        self.init_kwargs = dict(init_kwargs or {})

    def _init(self):
        ray = _ray()
        if not ray.is_initialized():
            import psutil  # Ray ships it

            kwargs = {"include_dashboard": False, **self.init_kwargs}
            before = {p.pid for p in psutil.Process().children()}
            ray.init(address=self.address, **kwargs)
            started = [p for p in psutil.Process().children() if p.pid not in before]
            if started:  # a local instance: it dies with this driver
                _start_ray_watchdog(started)
        return ray

    def session(self, resources: Resources = Resources()) -> Session:
        ray = self._init()
        n = self.workers
        if n is None:
            total = ray.cluster_resources()
            fits = [total.get("CPU", 1) // resources.cpus]
            if resources.gpus:
                fits.append(total.get("GPU", 0) // resources.gpus)
            n = max(1, int(min(fits)))
        return _RaySession(ray, n, resources)


def _local_node_gone() -> bool:
    """Whether the raylet or GCS of the local instance this process started has died."""
    import psutil

    def dead(p):
        try:
            return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            return True

    return any(dead(p) for p in _RAY_CORE)


def _raise_if_node_lost(ray, e: BaseException):
    """Raise NodeLostError if ``e`` means that Ray or one of its nodes is gone. A crashed
    worker on a live node stays the job's failure (it may be the job's own fault)."""
    node_errors = tuple(getattr(ray.exceptions, n) for n in _NODE_ERRORS if hasattr(ray.exceptions, n))
    lost = not ray.is_initialized() or isinstance(e, node_errors)
    if not lost and isinstance(e, ray.exceptions.WorkerCrashedError):
        lost = _local_node_gone()
    if lost:
        first = (str(e).strip().splitlines() or [""])[0]
        raise _node_lost_error(f"{type(e).__name__}: {first}") from e


def _node_lost_error(why: str) -> NodeLostError:
    return NodeLostError(f"the Ray node running the jobs is gone ({why}); stopped at this first "
                         "node-level error: no job was recorded as failed, so running again (once Ray "
                         "is back) resumes with those not finished")


@contextlib.contextmanager
def _raise_node_lost(ray):
    try:
        yield
    except ray.exceptions.RayError as e:
        _raise_if_node_lost(ray, e)
        raise


class _RaySession(Session):
    def __init__(self, ray, n, resources: Resources):
        super().__init__()
        self.capacity = n
        self._ray = ray
        self._opts = {"num_cpus": resources.cpus, "num_gpus": resources.gpus}
        if resources.memory:
            self._opts["memory"] = resources.memory
        global _RAY_CALL
        if _RAY_CALL is None:
            _RAY_CALL = ray.remote(_call)
        self._refs: dict = {}  # ref -> (tag, retries)

    def submit(self, tag, fn, args, retries):
        # retry_exceptions: Ray retries only system failures (a dead worker) by default
        remote = _RAY_CALL.options(**self._opts, max_retries=retries, retry_exceptions=True)
        with _raise_node_lost(self._ray):
            ref = remote.remote(fn, args)
        self._refs[ref] = (tag, retries)
        self.running += 1

    def wait(self):
        ray = self._ray
        if not self._refs:
            return []
        while True:  # Ray may take many seconds to report the death of the local node
            with _raise_node_lost(ray):
                done, _ = ray.wait(list(self._refs), num_returns=1, timeout=1.0)
            if done:
                break
            if _local_node_gone():
                raise _node_lost_error("the local instance's raylet or GCS process exited")
        out = []
        for ref in done:  # one
            tag, retries = self._refs.pop(ref)
            self.running -= 1
            try:
                out.append(Outcome(tag, ray.get(ref)))
            except ray.exceptions.RayTaskError as e:  # the job raised (Ray retried it)
                cause = e.cause if getattr(e, "cause", None) is not None else e
                out.append(Outcome(tag, error=_error_text(cause), attempts=retries + 1))
            except ray.exceptions.RayError as e:  # the worker or its node died
                _raise_if_node_lost(ray, e)
                out.append(Outcome(tag, error=f"{type(e).__name__}: {str(e).splitlines()[0]}",
                                   attempts=retries + 1))
        return out

    def close(self, cancel=False):
        if cancel:
            for ref in self._refs:
                with contextlib.suppress(Exception):  # Ray or the node may be gone already
                    self._ray.cancel(ref, force=True)
        self._refs.clear()


def get_executor(executor=None, workers: int | None = None, max_retries: int = 3,
                 address: str | None = None) -> Executor:
    """An Executor from a name (``serial``, ``processes``, ``ray``), or the one given."""
    if isinstance(executor, Executor):
        return executor
    name = executor or "serial"
    if name == "serial":
        return SerialExecutor(workers, max_retries)
    if name == "processes":
        return ProcessExecutor(workers, max_retries)
    if name == "ray":
        return RayExecutor(workers, max_retries, address=address)
    raise ValueError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")


if __name__ == "__main__" and sys.argv[1:2] == ["ray-watchdog"]:
    _ray_watchdog(sys.argv[2], [int(p) for p in sys.argv[3:]])
