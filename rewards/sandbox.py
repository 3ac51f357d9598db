"""Run untrusted programs: a pool of isolated sandboxes, each hosting a pre-warmed Python zygote.

Why this shape: a GRPO step scores hundreds of model-written programs. Starting a fresh interpreter per
program costs 10-40 ms before the program does anything, and isolating it costs more; a zygote that has
already imported the usual modules forks a child in about a millisecond. So each pool worker keeps one
long-lived sandbox whose zygote (``rewards/sandbox_worker.py``) forks one child per program, and the
pool runs two workers per CPU of this process's share (:func:`default_workers`).

Isolation is a ladder (``rewards/sandbox_layers.py``), probed once per process and configuration with
a self-test, strongest layer first:

1. **bubblewrap** (``isolation: bubblewrap``): the zygote runs in new user, PID, network, IPC, UTS and
   cgroup namespaces with no network, a root of read-only binds (``/usr``, the ``/lib*`` links, a few
   ``/etc`` files, the Python installation -- not the project, ``/work``, ``/root`` or ``$HOME``), a
   cleared environment, size-capped private ``/tmp`` and ``/dev/shm``, no nested namespaces, a new
   session, and death with its parent. When this process is root, a launcher first drops to an
   unprivileged uid (65534), because the kernel never enforces ``RLIMIT_NPROC`` for uid 0.
2. **Landlock** (``isolation: landlock``; no privileges, no namespaces): the zygote runs on the host
   with a scrubbed environment, and every child confines itself before the program starts -- a
   Landlock domain (read the runtime, write only the scratch directory, no TCP, signals and abstract
   sockets only within the domain) and a seccomp filter (no sockets, no new processes, signals to
   itself only, no ptrace, no file metadata changes, no host IPC); capabilities dropped when root.
3. **none**: rlimits, a scrubbed environment and a private working directory. Only when a recipe or
   the CLI asks for it by name (``isolation: none``); ``auto`` (the default) tries 1 then 2 and
   otherwise refuses with :class:`SandboxUnavailableError`, one sentence naming the ways out.

Then, whatever the layer: the **zygote, per program** -- a forked child with its own session and
process group, an empty scratch directory, stdio on memfds, and rlimits on CPU seconds, address space,
processes, file size, open files and core dumps; the zygote enforces the wall clock, the run's total
resident memory (in a namespace) or its scratch space (outside one), then kills every process left
and wipes the scratch space before the next program. The zygote is non-dumpable, so programs cannot
ptrace it or read its memory. And **the caller's side** (``sandbox_process``): a deadline on every
request; a sandbox that misses it, dies, or reports anything suspicious (processes left behind, SysV
IPC objects, an unwipeable file) is killed and replaced, and every sandbox is replaced after
``programs_per_sandbox`` programs.

Trade-off of the zygote: programs that run one after another in the same worker share a sandbox. They
never run at the same time, and between them every process is killed and the writable places are
wiped, so a program can neither see another's files nor disturb its processes. What can persist
inside one bubblewrap sandbox is state a program plants deliberately outside those (POSIX message
queues, which need ctypes to create; the Landlock layer's filter refuses them); none of it carries
expected outputs, which never enter any sandbox. Setting ``programs_per_sandbox=1`` gives every
program a brand-new sandbox at the cost of a start-up per program (see ``bench/bench_code.py``).

The parts: ``sandbox_config`` (what is asked for: :class:`SandboxConfig`, :class:`Limits`, the errors),
``sandbox_layers`` (each layer's command line and what its self-test expects), ``sandbox_probe`` (the
ladder and its self-tests: :func:`probe_isolation`), ``sandbox_process`` (one sandbox and the protocol to
it), ``sandbox_worker`` (what runs inside), and this module: the pool every caller uses
(:func:`get_pool`), one per configuration and per process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from rewards import sandbox_worker
from rewards.process import SANDBOX_WORKERS, PerProcess, available_cpus, cpu_share
from rewards.sandbox_config import (
    DEFAULT_PRELOAD,
    NOBODY,
    Limits,
    SandboxConfig,
    SandboxStartError,
    SandboxUnavailableError,
)
from rewards.sandbox_layers import resolve_bwrap
from rewards.sandbox_probe import Isolation, probe_isolation
from rewards.sandbox_process import SandboxProcess

__all__ = [
    "DEFAULT_PRELOAD",
    "NOBODY",
    "SANDBOXES_PER_CPU",
    "Isolation",
    "Limits",
    "SandboxConfig",
    "SandboxPool",
    "SandboxStartError",
    "SandboxUnavailableError",
    "available_cpus",
    "default_workers",
    "get_pool",
    "probe_isolation",
    "shutdown_pools",
]

logger = logging.getLogger(__name__)

_GRACE_S = 10.0  # per-request slack on top of the program's wall limit (cleanup, transfer)


#: Sandboxes per CPU. A program passes between the reward process, the zygote and (for assert tests)
#: the solution and checker processes, which leaves its core idle at every hand-off; a second sandbox
#: per core fills those gaps (bench/bench_code.py: about a quarter more programs/s on 2 cores).
SANDBOXES_PER_CPU = 2


def default_workers() -> int:
    """``$CASCADE_SANDBOX_WORKERS`` if set, else two sandboxes per CPU of this process's share.

    Under torchrun/accelerate every rank of a node scores its own completions, so each takes
    ``2 * CPUs / LOCAL_WORLD_SIZE`` sandboxes rather than all of them.
    """
    return cpu_share(SANDBOX_WORKERS, cpus=SANDBOXES_PER_CPU * available_cpus())


@dataclass
class SandboxPool:
    """A bounded set of sandbox workers shared by every thread of the process.

    :meth:`run` blocks until a worker is free, so at most ``size`` programs run at once whatever the
    number of calling threads. It never raises because of what a program does; the answer's
    ``status`` says what happened (``ok``, ``runtime_error``, ``timeout``, ``memory_limit``,
    ``killed``, ``sandbox_died``, ``sandbox_error``, ``internal_error``).
    """

    config: SandboxConfig = field(default_factory=SandboxConfig)
    isolation: Isolation = field(init=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.isolation = probe_isolation(self.config)  # raises SandboxUnavailableError
        self.size = self.config.workers or default_workers()
        self._workers = [SandboxProcess(self.config, self.isolation.mode) for _ in range(self.size)]
        self._idle: queue.SimpleQueue[SandboxProcess] = queue.SimpleQueue()
        for worker in self._workers:
            self._idle.put(worker)
        self._closed = False

    def run(self, request: dict[str, Any], limits: Limits, payload: bytes | None = None) -> dict[str, Any]:
        """Run one request (see ``sandbox_worker``) under ``limits``; thread-safe.

        ``payload`` (an assert test's code) travels as a raw frame that the zygote splices into a
        memfd without reading it, and the answer's ``attachments`` (verdict, checker output) come
        back the same way.
        """
        if self._closed:
            return {"status": "sandbox_error", "error": "the sandbox pool is closed"}
        message = {**request, "op": "run", "limits": limits.wire(self.isolation.mode)}
        worker = self._idle.get()
        try:
            return worker.request(message, timeout_s=float(limits.wall_s) + _GRACE_S, payload=payload)
        except (SandboxStartError, OSError, ValueError) as exc:
            worker.stop()
            logger.error("Code sandbox failure: %s", exc)
            return {"status": "sandbox_error", "error": str(exc)}
        finally:
            self._idle.put(worker)

    def warm(self, wait: bool = True) -> None:
        """Start every idle worker's sandbox now, in parallel, instead of on first use.

        With ``wait=False`` this happens in the background; requests arriving meanwhile wait for a
        worker as usual.
        """
        if not wait:
            threading.Thread(target=self.warm, name="cascade-sandbox-warm", daemon=True).start()
            return
        workers: list[SandboxProcess] = []
        with contextlib.suppress(queue.Empty):
            while len(workers) < self.size:
                workers.append(self._idle.get_nowait())
        try:
            threads = [threading.Thread(target=_start_quietly, args=(w,)) for w in workers if not w.alive]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            for worker in workers:
                self._idle.put(worker)

    def stats(self) -> dict[str, int]:
        """Sandbox starts and programs run so far (for benchmarks and logs)."""
        return {"workers": self.size, "starts": sum(w.starts for w in self._workers)}

    def cpu_seconds(self) -> float:
        """CPU time of the live sandboxes' processes so far, with what they reaped (for benchmarks).

        Every process under a worker's sandbox counts, bubblewrap's namespaced ones included (they
        are the host's processes too); a sandbox already replaced no longer does.
        """
        roots = {w.proc.pid for w in self._workers if w.proc is not None}
        parents: dict[int, int] = {}
        times: dict[int, float] = {}
        tick = os.sysconf("SC_CLK_TCK")
        for pid, fields in sandbox_worker.process_stats():
            parents[pid] = int(fields[1])
            times[pid] = sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
        total = 0.0
        for pid, seconds in times.items():
            ancestor = pid
            while ancestor > 1 and ancestor not in roots:
                ancestor = parents.get(ancestor, 0)
            if ancestor in roots:
                total += seconds
        return total

    def close(self) -> None:
        self._closed = True
        for worker in self._workers:
            worker.stop()


def _start_quietly(worker: SandboxProcess) -> None:
    try:
        worker.start()
    except SandboxStartError as exc:
        logger.error("Code sandbox failure: %s", exc)


# One pool per configuration (and bubblewrap executable) and per process: a forked child builds its
# own instead of writing to its parent's sandboxes; pools stop at interpreter exit.
_POOLS: PerProcess[SandboxPool] = PerProcess("sandbox pool", close=SandboxPool.close)


def get_pool(config: SandboxConfig | None = None) -> SandboxPool:
    """The process-wide pool for ``config`` (created on first use; its sandboxes start in the background)."""
    config = config or SandboxConfig()
    created: list[SandboxPool] = []

    def create() -> SandboxPool:
        created.append(SandboxPool(config))  # probes the isolation first: may raise SandboxUnavailableError
        return created[0]

    pool = _POOLS.get((config, resolve_bwrap(config)), create)
    if created and created[0] is pool:  # this call made the pool that is kept (not a racing thread)
        pool.warm(wait=False)
    return pool


def shutdown_pools() -> None:
    """Stop every sandbox of this process (also done at interpreter exit)."""
    _POOLS.close_all()
