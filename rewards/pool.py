"""A small pool of worker processes with a hard per-task deadline, for rewards that can hang.

Why not ``concurrent.futures.ProcessPoolExecutor``: a task that runs past its deadline there cannot
be stopped, and one stuck task blocks its worker for good. Here a worker that overruns is killed
(its whole process group, SIGKILL) and replaced in the background, and the task is reported as a
timeout. Verification code is also free to use ``signal.alarm`` or unbounded recursion: it runs in
another interpreter, so the caller's threads and signal handlers are never involved.

Workers are fresh interpreters started with ``subprocess`` (``python -c …``), never forked from the
caller: the caller may hold threads, CUDA contexts or locks that a fork would copy in a broken state.
This is the "spawn" start method minus multiprocessing's re-import of the caller's ``__main__``,
so a training script without an ``if __name__ == "__main__"`` guard, a notebook or ``python -c``
cannot be re-executed in a worker. Tasks and results travel pickled over two pipes per worker
(``multiprocessing.connection.Connection`` framing), so a task is any picklable module-level
function and its arguments.

Thread safety: any number of threads may call ``map`` on the same pool; each call checks out idle
workers (blocking only while it holds none), so callers never deadlock and a batch uses every worker
that is free. ``shared_pool(name, …)`` gives one lazily created pool per name and per process: a
forked child builds its own instead of touching its parent's workers, and pools are shut down at
interpreter exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Literal

from rewards.process import PerProcess

logger = logging.getLogger(__name__)

_WORKER_CODE = "from rewards.pool import _worker_main; _worker_main()"


@dataclass(frozen=True)
class Outcome:
    """What became of one task: its return value, its error text, or a timeout."""

    status: Literal["ok", "error", "timeout"]
    value: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class _Worker:
    """One worker process and the two pipe ends the parent keeps."""

    def __init__(self, pool: WorkerPool):
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        env = dict(os.environ)
        # The worker must import the same code as the caller, wherever it came from.
        paths = [p or os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env.setdefault("OMP_NUM_THREADS", "1")
        env["CASCADE_POOL_CONFIG"] = repr(
            (task_r, result_w, pool.memory_limit_mb, tuple(pool.preload), pool.initializer)
        )
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CODE],
                stdin=subprocess.DEVNULL,
                pass_fds=(task_r, result_w),
                env=env,
                start_new_session=True,  # own process group: a kill reaches its children; no terminal SIGINT
            )
        finally:
            os.close(task_r)
            os.close(result_w)
        self.tasks = Connection(task_w, readable=False)
        self.results = Connection(result_r, writable=False)
        self.ready = False
        self.started = time.monotonic()
        self.done = 0

    def kill(self) -> None:
        """Stop the worker now (with any processes it started) and release its pipes."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.close()

    def close(self) -> None:
        for conn in (self.tasks, self.results):
            with contextlib.suppress(OSError):
                conn.close()


class WorkerPool:
    """A fixed number of worker processes that run picklable functions under a hard deadline.

    Args:
        size: number of worker processes.
        name: used in log messages.
        preload: modules every worker imports before it reports ready (start-up time is never
            charged to a task's deadline).
        initializer: optional ``"module:function"`` a worker calls once after ``preload`` (a warm-up).
        memory_limit_mb: address-space limit of each worker (``RLIMIT_AS``); ``None`` for none.
        max_tasks_per_worker: a worker is replaced after this many tasks, bounding cache growth.
        start_timeout_s: a worker that is not ready after this long is replaced.
    """

    def __init__(
        self,
        size: int,
        *,
        name: str = "pool",
        preload: Sequence[str] = (),
        initializer: str | None = None,
        memory_limit_mb: int | None = None,
        max_tasks_per_worker: int | None = 2000,
        start_timeout_s: float = 120.0,
    ):
        if size < 1:
            raise ValueError(f"a worker pool needs at least one worker, got size={size}")
        self.size, self.name = size, name
        self.preload, self.initializer = tuple(preload), initializer
        self.memory_limit_mb, self.max_tasks_per_worker = memory_limit_mb, max_tasks_per_worker
        self.start_timeout_s = start_timeout_s
        self.pid = os.getpid()
        self._cond = threading.Condition()
        self._idle: deque[_Worker] = deque(_Worker(self) for _ in range(size))
        self._all: set[_Worker] = set(self._idle)
        self._closed = False

    # -- checkout -------------------------------------------------------------------------------

    def _acquire(self, block: bool, until: float | None = None) -> _Worker | None:
        """An idle worker; waits for one only if ``block`` (and only until ``until``, a monotonic time)."""
        with self._cond:
            while not self._idle:
                if self._closed:
                    raise RuntimeError(f"worker pool '{self.name}' is shut down")
                remaining = None if until is None else until - time.monotonic()
                if not block or (remaining is not None and remaining <= 0):
                    return None
                self._cond.wait(timeout=remaining)
            if self._closed:
                raise RuntimeError(f"worker pool '{self.name}' is shut down")
            return self._idle.popleft()

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            if self._closed:
                worker.kill()
                return
            self._idle.append(worker)
            self._cond.notify()

    def _replace(self, worker: _Worker) -> _Worker:
        """Kill ``worker`` and start a fresh one in its place (still checked out by the caller)."""
        worker.kill()
        fresh = _Worker(self)
        with self._cond:
            self._all.discard(worker)
            self._all.add(fresh)
        return fresh

    # -- running tasks --------------------------------------------------------------------------

    def map(
        self,
        fn: Callable[..., Any],
        arg_tuples: Sequence[tuple[Any, ...]],
        timeout_s: float,
        budget_s: float | None = None,
    ) -> list[Outcome]:
        """Run ``fn(*args)`` for every tuple in parallel; each call gets at most ``timeout_s`` seconds.

        ``budget_s`` bounds the whole call: tasks not started within it are reported as timeouts
        (tasks already running still get their own ``timeout_s``), so a batch full of slow inputs
        cannot stall the caller for ``len(arg_tuples) * timeout_s / size`` seconds.

        Never raises for a task's own failure: it becomes an ``Outcome`` with status ``"error"``
        (an exception, or the worker dying, e.g. out of memory) or ``"timeout"``.
        """
        stop_at = None if budget_s is None else time.monotonic() + budget_s
        n = len(arg_tuples)
        outcomes: list[Outcome | None] = [None] * n
        pending: deque[int] = deque(range(n))
        mine: list[_Worker] = []
        running: dict[_Worker, tuple[int, float]] = {}
        start_failures = 0
        try:
            while pending or running:
                if pending and stop_at is not None and time.monotonic() >= stop_at:
                    for index in pending:
                        outcomes[index] = Outcome(
                            "timeout", error=f"not started within the {budget_s:g}s budget"
                        )
                    pending.clear()
                    continue
                # Check out more idle workers while there is work for them; block only with none held.
                while pending and len(mine) < min(self.size, len(pending) + len(running)):
                    worker = self._acquire(block=not mine, until=stop_at)
                    if worker is None:
                        break
                    mine.append(worker)
                if not mine:  # the budget ran out while every worker was busy elsewhere
                    continue
                # Give every ready, free worker a task.
                now = time.monotonic()
                for i, worker in enumerate(mine):
                    if not pending:
                        break
                    if worker.ready and worker not in running:
                        index = pending.popleft()
                        try:
                            worker.tasks.send((fn, arg_tuples[index]))
                        except (OSError, EOFError):
                            mine[i] = self._replace(worker)
                            outcomes[index] = Outcome("error", error="worker exited before taking the task")
                            continue
                        except Exception as exc:  # the task itself does not pickle
                            outcomes[index] = Outcome("error", error=f"{type(exc).__name__}: {exc}")
                            continue
                        running[worker] = (index, now + timeout_s)
                # Free workers this call no longer needs, so other threads can use them.
                if not pending:
                    for worker in [w for w in mine if w.ready and w not in running]:
                        mine.remove(worker)
                        self._release(worker)
                if not pending and not running:
                    break
                waiting = [w for w in mine if w in running or not w.ready]
                if not waiting:  # every held worker is free again (a task failed to pickle): dispatch more
                    continue
                deadlines = [d for _, d in running.values()]
                deadlines += [w.started + self.start_timeout_s for w in mine if not w.ready]
                if pending and stop_at is not None:
                    deadlines.append(stop_at)
                ready = wait(
                    [w.results for w in waiting], timeout=max(0.0, min(deadlines) - time.monotonic())
                )
                by_conn = {w.results: w for w in waiting}
                for conn in ready:
                    worker = by_conn[conn]
                    slot = mine.index(worker)
                    try:
                        kind, payload = conn.recv()
                    except (EOFError, OSError) as exc:
                        kind, payload = (
                            "died",
                            f"worker exited ({type(exc).__name__}, code {worker.proc.poll()})",
                        )
                    if not worker.ready:
                        if kind == "ready":
                            worker.ready = True
                            continue
                        start_failures += 1
                        logger.warning("%s worker failed to start: %s", self.name, payload)
                        mine[slot] = self._replace(worker)
                        continue
                    index, _ = running.pop(worker)
                    if kind == "ok":
                        outcomes[index] = Outcome("ok", value=payload)
                    elif kind == "error":
                        outcomes[index] = Outcome("error", error=str(payload))
                    else:
                        outcomes[index] = Outcome("error", error=str(payload))
                        mine[slot] = self._replace(worker)
                        continue
                    worker.done += 1
                    if self.max_tasks_per_worker and worker.done >= self.max_tasks_per_worker:
                        mine[slot] = self._replace(worker)
                # Kill what overran: a task past its deadline, a worker that never became ready.
                now = time.monotonic()
                for slot, worker in enumerate(mine):
                    if worker in running and running[worker][1] <= now:
                        index, _ = running.pop(worker)
                        outcomes[index] = Outcome("timeout", error=f"no result within {timeout_s:g}s")
                        mine[slot] = self._replace(worker)
                    elif not worker.ready and worker.started + self.start_timeout_s <= now:
                        start_failures += 1
                        logger.warning("%s worker not ready after %.0fs", self.name, self.start_timeout_s)
                        mine[slot] = self._replace(worker)
                if start_failures > 2 * self.size and not running:
                    for index in pending:
                        outcomes[index] = Outcome("error", error="workers repeatedly failed to start")
                    pending.clear()
        finally:
            for worker in mine:
                if worker in running:  # interrupted mid-task: the worker's state is unknown
                    worker = self._replace(worker)
                self._release(worker)
        return [o if o is not None else Outcome("error", error="not run") for o in outcomes]

    def shutdown(self) -> None:
        """Stop every worker; further ``map`` calls raise. Safe to call twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            workers, self._all = list(self._all), set()
            self._idle.clear()
            self._cond.notify_all()
        if os.getpid() != self.pid:  # a forked copy: the workers belong to the parent
            return
        for worker in workers:
            worker.close()  # EOF on its task pipe: a worker between tasks exits on its own
        deadline = time.monotonic() + 2.0
        for worker in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            if worker.proc.poll() is None:
                worker.kill()


# -- one pool per name and per process -------------------------------------------------------------

_POOLS: PerProcess[WorkerPool] = PerProcess("worker pool", close=WorkerPool.shutdown)


def shared_pool(name: str, **config: Any) -> WorkerPool:
    """The process-wide pool called ``name``, created on first use with ``WorkerPool(**config)``.

    Later calls return the same pool whatever ``config`` they pass, so a module defines its pool's
    configuration in one place. A forked child gets a pool of its own; pools stop at interpreter exit.
    """
    return _POOLS.get(name, lambda: WorkerPool(name=name, **config))


def shutdown_pools() -> None:
    """Stop every shared pool of this process (also done at interpreter exit)."""
    _POOLS.close_all()


# -- the worker side -------------------------------------------------------------------------------


def _exit_with_parent() -> None:
    """Exit this worker as soon as its parent is gone, even in the middle of a task.

    Between tasks the closed task pipe already ends the worker; this covers a task that is still
    computing. (``PR_SET_PDEATHSIG`` is not used: it fires when the *thread* that started the worker
    exits, and workers are started from whichever thread needed one.)
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker_main() -> None:
    """Entry point of a worker process: set limits, import, report ready, then serve tasks until EOF."""
    import ast
    import importlib

    task_fd, result_fd, memory_limit_mb, preload, initializer = ast.literal_eval(
        os.environ.pop("CASCADE_POOL_CONFIG")
    )
    _exit_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a worker stops
    tasks, results = Connection(task_fd, writable=False), Connection(result_fd, readable=False)
    # Nothing a task prints may reach the caller's stdout (a CLI may be writing results there).
    os.dup2(2, 1)
    try:
        if memory_limit_mb:
            import resource

            limit = int(memory_limit_mb) << 20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        for module in preload:
            importlib.import_module(module)
        if initializer:
            module, _, attr = initializer.partition(":")
            getattr(importlib.import_module(module), attr)()
    except BaseException as exc:
        with contextlib.suppress(OSError):
            results.send(("died", f"start-up failed: {type(exc).__name__}: {exc}"))
        return
    try:
        results.send(("ready", os.getpid()))
    except OSError:  # the pool was shut down while this worker started
        return
    while True:
        try:
            fn, args = tasks.recv()
        except (EOFError, OSError):
            return
        except BaseException as exc:  # the task could not be unpickled (e.g. its module is missing)
            reply: tuple[str, Any] = ("error", f"{type(exc).__name__}: {exc}")
        else:
            try:
                reply = ("ok", fn(*args))
            except BaseException as exc:
                reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            results.send(reply)
        except (BrokenPipeError, OSError):
            return
        except Exception as exc:  # the result does not pickle
            results.send(("error", f"result not picklable: {type(exc).__name__}: {exc}"))
