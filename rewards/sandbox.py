"""Run untrusted programs: a pool of isolated sandboxes, each hosting a pre-warmed Python zygote.

Why this shape: a GRPO step scores hundreds of model-written programs. Starting a fresh interpreter per
program costs 10-40 ms before the program does anything, and isolating it costs more; a zygote that has
already imported the usual modules forks a child in about a millisecond. So each pool worker keeps one
long-lived sandbox whose zygote (``rewards/sandbox_worker.py``) forks one child per program, and the
pool runs as many workers as there are CPUs.

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
ptrace it or read its memory. And **this module**: a deadline on every request; a sandbox that misses
it, dies, or reports anything suspicious (processes left behind, SysV IPC objects, an unwipeable
file) is killed and replaced, and every sandbox is replaced after ``programs_per_sandbox`` programs.

Trade-off of the zygote: programs that run one after another in the same worker share a sandbox. They
never run at the same time, and between them every process is killed and the writable places are
wiped, so a program can neither see another's files nor disturb its processes. What can persist
inside one bubblewrap sandbox is state a program plants deliberately outside those (POSIX message
queues, which need ctypes to create; the Landlock layer's filter refuses them); none of it carries
expected outputs, which never enter any sandbox. Setting ``programs_per_sandbox=1`` gives every
program a brand-new sandbox at the cost of a start-up per program (see ``bench/bench_code.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import difflib
import fcntl
import json
import logging
import math
import os
import queue
import select
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rewards import sandbox_worker
from rewards.sandbox_layers import (
    CHOICES,
    PROBE,
    Choice,
    Mode,
    candidates,
    expected_probe,
    resolve_bwrap,
    zygote_command,
)
from rewards.sandbox_worker import frame

logger = logging.getLogger(__name__)

#: Modules the zygote imports once so that programs do not pay for them (the usual competitive
#: programming and HumanEval imports; heavy libraries such as numpy are imported on demand).
DEFAULT_PRELOAD: tuple[str, ...] = (
    "abc",
    "array",
    "bisect",
    "cmath",
    "collections",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "fractions",
    "functools",
    "hashlib",
    "heapq",
    "io",
    "itertools",
    "json",
    "math",
    "numbers",
    "operator",
    "queue",
    "random",
    "re",
    "socket",
    "statistics",
    "string",
    "struct",
    "textwrap",
    "threading",
    "time",
    "traceback",
    "typing",
)

NOBODY = 65534
_GRACE_S = 10.0  # per-request slack on top of the program's wall limit (cleanup, transfer)


class SandboxUnavailableError(RuntimeError):
    """No isolating layer works here, and running without isolation was not asked for by name."""


class SandboxStartError(RuntimeError):
    """A sandbox process did not come up."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one program run (a stdio case, all calls of a call test, or one check)."""

    wall_s: float = 10.0
    cpu_s: float | None = None  # default: the wall limit rounded up
    memory_mb: int = 1024  # address space per process, and resident memory of the whole run
    max_processes: int = 32  # processes and threads the run may create
    file_size_mb: int = 16  # largest file (and captured stdout) a process may write
    open_files: int = 256
    output_bytes: int = 8 << 20  # stdout returned for comparison; more than this fails the case

    def wire(self, mode: str) -> dict[str, Any]:
        """The limits as the zygote of an isolation ``mode`` reads them."""
        cpu = self.cpu_s if self.cpu_s is not None else self.wall_s
        # In a user namespace RLIMIT_NPROC counts the sandbox's own processes: bwrap's init, the zygote
        # and, for isolated asserts, the checker. Outside one it would count every process of the user
        # (the Landlock layer's seccomp filter allows threads only, no processes).
        nproc = self.max_processes + 3 if mode == "bwrap" else 0
        return {
            "wall_s": float(self.wall_s),
            "cpu_s": max(1, math.ceil(cpu)),
            "memory_bytes": int(self.memory_mb) << 20,
            "nproc": nproc,
            "fsize_bytes": int(self.file_size_mb) << 20,
            "nofile": int(self.open_files),
            "output_bytes": min(int(self.output_bytes), int(self.file_size_mb) << 20),
        }


@dataclass(frozen=True)
class SandboxConfig:
    """How sandboxes are built; programs' own limits travel with each request (:class:`Limits`)."""

    workers: int = 0  # 0: default_workers()
    programs_per_sandbox: int = 256  # replace a sandbox after this many programs (1: fresh every time)
    isolation: Choice = "auto"  # auto (bubblewrap, else Landlock), bubblewrap, landlock, or none by name
    tmpfs_mb: int = 256  # size of the private /tmp (bubblewrap); scratch space cap (other layers)
    shm_mb: int = 64  # size of the private /dev/shm
    bwrap: str | None = None  # default: $CASCADE_SANDBOX_BWRAP, else `bwrap` on PATH
    extra_ro_binds: tuple[str, ...] = ()  # more host paths to expose read-only at the same place
    extra_python_paths: tuple[str, ...] = ()  # bound read-only and appended to sys.path inside
    preload: tuple[str, ...] = DEFAULT_PRELOAD
    unprivileged_uid: int = NOBODY
    landlock_abi: int = 0  # 0: the kernel's; N: at most ABI N (same guarantees on older kernels)
    start_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.isolation not in CHOICES:
            close = difflib.get_close_matches(str(self.isolation), list(CHOICES), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(
                f"sandbox isolation must be one of {', '.join(CHOICES)}, got {self.isolation!r}{hint}"
            )


@dataclass(frozen=True)
class Isolation:
    """What the sandboxes of a pool provide, as found by the self-test; recorded with every score."""

    mode: Mode  # bwrap, bwrap-root, landlock, none
    detail: str  # one line for logs, ledgers and reports
    landlock_abi: int = 0

    @property
    def isolated(self) -> bool:
        return self.mode != "none"

    def record(self) -> dict[str, str]:
        """The fields a ledger, an evaluation record or a summary line stores."""
        return {"isolation": self.mode, "isolation_detail": self.detail}


# ----------------------------------------------------------------------------------------------------
# Process spawning from one long-lived thread
# ----------------------------------------------------------------------------------------------------


class _Spawner:
    """Starts sandbox processes from a single long-lived thread.

    ``--die-with-parent`` is PR_SET_PDEATHSIG, which fires when the *thread* that forked the process
    exits, not the process: a sandbox started from a short-lived executor thread would be killed when
    that thread ends. Forking from this daemon thread ties sandboxes to the life of the process.
    """

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[list[str], dict[str, Any], Future]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="cascade-sandbox-spawner", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            argv, kwargs, future = self._requests.get()
            try:
                future.set_result(subprocess.Popen(argv, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        future: Future = Future()
        self._requests.put((argv, kwargs, future))
        return future.result()


_state_lock = threading.Lock()
_spawner: _Spawner | None = None
_pools: dict[tuple[SandboxConfig, str], SandboxPool] = {}
_probes: dict[tuple, Isolation | SandboxUnavailableError] = {}


def _get_spawner() -> _Spawner:
    global _spawner
    with _state_lock:
        if _spawner is None:
            _spawner = _Spawner()
        return _spawner


def _forget_after_fork() -> None:
    """In a forked child the sandboxes and the spawner thread belong to the parent: start afresh."""
    global _spawner, _state_lock
    _state_lock = threading.Lock()
    _spawner = None
    _pools.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


# ----------------------------------------------------------------------------------------------------
# One worker: one sandbox process at a time
# ----------------------------------------------------------------------------------------------------


class _Worker:
    """A zygote sandbox and the deadline-guarded protocol to it; used by one thread at a time."""

    def __init__(self, config: SandboxConfig, mode: str) -> None:
        self.config, self.mode = config, mode
        self.proc: subprocess.Popen | None = None
        self.jobs = 0
        self.starts = 0
        self._scratch: str | None = None
        self._errors: Any = None
        self._buffer = bytearray()
        self._ready = False
        self.hello: dict[str, Any] = {}  # the zygote's greeting (pid, uid, Python, Landlock ABI)

    # -------------------------------------------------------------- life cycle
    def start(self) -> None:
        """Start a sandbox and wait until its zygote is ready."""
        self.launch()
        self.handshake()

    def launch(self) -> None:
        """Start a sandbox process without waiting for it (its start-up overlaps other work)."""
        self.stop()
        if self.mode in ("landlock", "none"):  # no private /tmp: a host directory, wiped and removed
            self._scratch = tempfile.mkdtemp(prefix="cascade-sandbox-")
        argv, cwd, env = zygote_command(self.config, self.mode, self._scratch)
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the sandbox
        self.proc = _get_spawner().popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
        for stream in (self.proc.stdin, self.proc.stdout):
            os.set_blocking(stream.fileno(), False)
            with contextlib.suppress(OSError):  # bigger pipes: fewer wake-ups for large outputs
                fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        self.jobs, self._buffer, self._ready = 0, bytearray(), False
        self.starts += 1

    def handshake(self) -> None:
        """Wait for the launched zygote's greeting; raises SandboxStartError if it never comes."""
        if self._ready:
            return
        hello = self._receive(time.monotonic() + self.config.start_timeout_s) if self.proc else None
        if not isinstance(hello, dict) or hello.get("ready") is not True:
            reason = self.stderr_text() or "no handshake"
            self.stop()
            raise SandboxStartError(f"sandbox ({self.mode}) did not start: {reason.strip()[-2000:]}")
        self._ready, self.hello = True, hello

    def stderr_text(self) -> str:
        if self._errors is None:
            return ""
        try:
            self._errors.seek(0)
            return self._errors.read()[-4000:].decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def stop(self) -> None:
        proc, self.proc, self._ready = self.proc, None, False
        if proc is not None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, 9)  # the launcher/bwrap/zygote session; bwrap's ns dies with it
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if self._errors is not None:
            self._errors.close()
            self._errors = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -------------------------------------------------------------- protocol
    def request(
        self, message: dict[str, Any], timeout_s: float, payload: bytes | None = None
    ) -> dict[str, Any]:
        """Send one request (and its raw ``payload``) and wait for the answer with its attachments.

        A sandbox that dies or misses the deadline is killed and replaced on the next request.
        """
        if not self.alive:
            self.launch()
        try:
            self.handshake()
        except SandboxStartError:
            self.start()  # one more try from scratch; a second failure is the caller's to report
        deadline = time.monotonic() + timeout_s
        data = frame({**message, "test_follows": payload is not None})
        if payload is not None:
            data += sandbox_worker._HEADER.pack(len(payload)) + payload
        if not self._send(data, deadline):
            self.stop()
            return {"status": "sandbox_died", "error": "the sandbox stopped accepting requests"}
        response = self._receive(deadline)
        if isinstance(response, dict):
            attached: dict[str, str] = {}
            for name in response.get("attachments") or []:
                raw = self._receive(deadline, raw=True)
                if raw is None:
                    response = None
                    break
                attached[str(name)] = raw.decode("utf-8", "replace")
            else:
                response["attachments"] = attached
        if not isinstance(response, dict):
            late = time.monotonic() >= deadline
            self.stop()
            if late:
                return {"status": "timeout", "error": "the sandbox missed its deadline and was killed"}
            return {"status": "sandbox_died", "error": "the sandbox died while running the program"}
        self.jobs += 1
        if response.get("suspicious") or self.jobs >= self.config.programs_per_sandbox:
            self.launch()  # retire this sandbox; its replacement starts while the caller goes on
        return response

    def _send(self, payload: bytes, deadline: float) -> bool:
        assert self.proc is not None and self.proc.stdin is not None
        data = memoryview(payload)
        fd = self.proc.stdin.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                return False
            try:
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                continue
            except OSError:
                return False
        return True

    def _receive(self, deadline: float, raw: bool = False) -> Any:
        """One frame from the zygote (parsed, or bytes when ``raw``), or None on end of stream or deadline."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        header = sandbox_worker._HEADER
        need: int | None = None
        while True:
            if need is None and len(self._buffer) >= header.size:
                (need,) = header.unpack(self._buffer[: header.size])
                if need > sandbox_worker.MAX_FRAME:
                    return None
            if need is not None and len(self._buffer) >= header.size + need:
                body = bytes(self._buffer[header.size : header.size + need])
                del self._buffer[: header.size + need]
                if raw:
                    return body
                try:
                    return json.loads(body)
                except ValueError:
                    return None
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                return None
            try:
                chunk = os.read(fd, 8 << 20)
            except BlockingIOError:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            self._buffer += chunk


# ----------------------------------------------------------------------------------------------------
# Self-test and the isolation ladder
# ----------------------------------------------------------------------------------------------------


def _self_test(config: SandboxConfig, mode: str) -> tuple[str | None, int]:
    """Start a sandbox in ``mode`` and check what a program inside sees.

    Returns (None when all is as designed, else what is wrong; the Landlock ABI the zygote reported).
    """
    worker = _Worker(replace(config, preload=()), mode)
    project = str(Path(__file__).resolve().parent.parent)
    message = {
        "op": "run",
        "mode": "stdio",
        "code": PROBE.replace("PROJECT", repr(project)),
        "stdin": "",
        "limits": Limits(wall_s=10).wire(mode),
    }
    try:
        worker.start()
        abi = int(worker.hello.get("landlock_abi") or 0)
        response = worker.request(message, timeout_s=config.start_timeout_s)
    except (SandboxStartError, OSError, ValueError) as exc:
        return str(exc), 0
    finally:
        worker.stop()
    out = str((response.get("attachments") or {}).get("stdout", ""))
    try:
        seen = json.loads(out)
    except ValueError:
        return f"probe program failed: {response.get('status')} {out!r} {response.get('stderr', '')!r}", abi
    wrong = {k: seen.get(k) for k, v in expected_probe(config, mode).items() if seen.get(k) != v}
    return (f"a program inside is not isolated as designed: {wrong}" if wrong else None), abi


def _describe(mode: str, abi: int) -> str:
    """The one-line description recorded with the scores of a pool in ``mode``."""
    if mode == "bwrap":
        return "bubblewrap (user, PID, network, IPC namespaces; read-only root) + rlimits"
    if mode == "bwrap-root":
        return "bubblewrap as root (namespaces; read-only root) + rlimits, no process limit"
    if mode == "landlock":
        # Each guarantee newer ABIs add in the kernel, the seccomp filter also gives; say which ones
        # rest on the filter alone on this kernel.
        alone = [what for since, what in ((4, "TCP"), (6, "signals, abstract sockets")) if abi < since]
        note = f" (seccomp alone for {'; '.join(alone)})" if alone else ""
        return f"Landlock ABI {abi} + seccomp + rlimits{note}"
    return "none, asked for by name: rlimits and a private working directory only"


def _refusal(choice: str, failures: list[str]) -> SandboxUnavailableError:
    reasons = "; ".join(failure if len(failure) < 300 else failure[:297] + "..." for failure in failures)
    return SandboxUnavailableError(
        f"the code sandbox cannot isolate programs with isolation '{choice}' ({reasons}): install "
        "bubblewrap, enable unprivileged user namespaces, or set the code reward's 'isolation: none' "
        "(recipe args; '--arg isolation=none' for python -m rewards score) to run model-written "
        "programs without isolation"
    )


def probe_isolation(config: SandboxConfig | None = None) -> Isolation:
    """The isolation ``config`` gets on this host: the first layer of its ladder that passes its self-test.

    Tested once per process and configuration, then cached. Raises :class:`SandboxUnavailableError`
    (one sentence naming the ways out) when no layer works, unless ``isolation`` is ``"none"``: running
    unisolated is never a fallback, only a choice made by name.
    """
    config = config or SandboxConfig()
    key = (
        config.isolation,
        resolve_bwrap(config),
        config.extra_ro_binds,
        config.extra_python_paths,
        config.unprivileged_uid,
        config.tmpfs_mb,
        config.landlock_abi,
    )
    with _state_lock:
        found = _probes.get(key)
    if found is None:
        found, skipped = _walk_ladder(config)
        with _state_lock:
            first = key not in _probes
            found = _probes.setdefault(key, found)
        if first and isinstance(found, Isolation):
            _log_choice(config, found, skipped)
    if isinstance(found, SandboxUnavailableError):
        raise SandboxUnavailableError(*found.args)
    return found


def _walk_ladder(config: SandboxConfig) -> tuple[Isolation | SandboxUnavailableError, list[str]]:
    """(the first layer that works, or the refusal; why each layer before it was passed over)."""
    if config.isolation == "none":
        return Isolation("none", _describe("none", 0)), []
    failures: list[str] = []
    for layer in CHOICES[config.isolation]:
        modes, why = candidates(config, layer)
        if not modes:
            failures.append(f"{layer}: {why}")
        for mode in modes:
            reason, abi = _self_test(config, mode)
            if reason is None:
                return Isolation(mode, _describe(mode, abi), abi), failures  # type: ignore[arg-type]
            failures.append(f"{mode}: {reason}")
    return _refusal(config.isolation, failures), failures


def _log_choice(config: SandboxConfig, isolation: Isolation, skipped: list[str]) -> None:
    if isolation.mode == "none":
        logger.warning(
            "Code sandbox: isolation 'none' was asked for; model-written programs run with rlimits and a "
            "private working directory only -- they can read and write what this user can and use the network."
        )
    elif isolation.mode == "bwrap-root":
        logger.warning(
            "Code sandbox: could not drop to uid %d before starting bubblewrap; sandboxes run as host root "
            "inside their namespaces, where the kernel does not enforce the process-count limit.",
            config.unprivileged_uid,
        )
    else:
        passed_over = f"; passed over: {'; '.join(skipped)}" if skipped else ""
        logger.info("Code sandbox isolation: %s (%s)%s", isolation.mode, isolation.detail, passed_over)


# ----------------------------------------------------------------------------------------------------
# The pool
# ----------------------------------------------------------------------------------------------------


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


#: Sandboxes per CPU. A program passes between the reward process, the zygote and (for assert tests)
#: the solution and checker processes, which leaves its core idle at every hand-off; a second sandbox
#: per core fills those gaps (bench/bench_code.py: about a quarter more programs/s on 2 cores).
SANDBOXES_PER_CPU = 2


def default_workers() -> int:
    """``$CASCADE_SANDBOX_WORKERS`` if set, else two sandboxes per CPU of this process's share.

    Under torchrun/accelerate every rank of a node scores its own completions, so each takes
    ``2 * CPUs / LOCAL_WORLD_SIZE`` sandboxes rather than all of them.
    """
    value = os.environ.get("CASCADE_SANDBOX_WORKERS")
    if value:
        return max(1, int(value))
    try:
        ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        ranks = 1
    return max(1, SANDBOXES_PER_CPU * available_cpus() // ranks)


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
        self._workers = [_Worker(self.config, self.isolation.mode) for _ in range(self.size)]
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
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
        workers = []
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


def _start_quietly(worker: _Worker) -> None:
    try:
        worker.start()
    except SandboxStartError as exc:
        logger.error("Code sandbox failure: %s", exc)


def get_pool(config: SandboxConfig | None = None) -> SandboxPool:
    """The process-wide pool for ``config`` (created on first use)."""
    config = config or SandboxConfig()
    key = (config, resolve_bwrap(config))
    with _state_lock:
        pool = _pools.get(key)
    if pool is not None:
        return pool
    pool = SandboxPool(config)  # probes outside the lock: the probe itself takes the lock
    with _state_lock:
        existing = _pools.setdefault(key, pool)
    if existing is not pool:
        pool.close()
    else:
        pool.warm(wait=False)
    return existing


def shutdown_pools() -> None:
    """Stop every sandbox of this process (also registered to run at exit)."""
    with _state_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


atexit.register(shutdown_pools)
