"""Run untrusted programs: a pool of bubblewrap sandboxes, each hosting a pre-warmed Python zygote.

Why this shape: a GRPO step scores hundreds of model-written programs. Starting a fresh interpreter per
program costs 10-40 ms before the program does anything, and isolating it costs more; a zygote that has
already imported the usual modules forks a child in about a millisecond. So each pool worker keeps one
long-lived sandbox whose zygote (``rewards/sandbox_worker.py``) forks one child per program, and the
pool runs as many workers as there are CPUs.

Layers, outermost first, and what each one stops:

1. **Privilege drop** (only when this process is root): the sandbox is started as an unprivileged host
   uid (65534), because the kernel never enforces ``RLIMIT_NPROC`` for uid 0 -- without it a fork bomb
   is bounded only by the host's PID table.
2. **bubblewrap** (``/usr/bin/bwrap``): new user, PID, network, IPC, UTS and cgroup namespaces
   (``--unshare-all``); no network at all (only a down loopback), so nothing on the host -- not even a
   server on 127.0.0.1 -- is reachable; a root made of read-only binds of ``/usr``, the ``/lib*`` links,
   a few ``/etc`` files and the Python installation (``sys.base_prefix``), and nothing else: neither the
   project, ``/work``, ``/root`` nor ``$HOME`` exist inside; ``--clearenv`` with a minimal environment
   (no ``WANDB_API_KEY``, ``HF_TOKEN`` or anything else of ours); the only writable places are a
   size-capped private tmpfs on ``/tmp`` and ``/dev/shm``; ``--disable-userns`` (no nested namespaces),
   ``--new-session`` (no terminal injection) and ``--die-with-parent`` (the sandbox dies with us).
3. **Zygote, per program**: a forked child with its own session and process group, an empty scratch
   directory, stdio on memfds, and rlimits on CPU seconds, address space, processes, file size, open
   files and core dumps. The zygote enforces the wall clock and the program's total resident memory,
   then kills every process left in the sandbox and wipes the scratch space before the next program.
   The zygote is non-dumpable, so programs cannot ptrace it or read its memory.
4. **This module**: a deadline on every request; a sandbox that misses it, dies, or reports anything
   suspicious (processes left behind, SysV IPC objects, an unwipeable file) is killed and replaced,
   and every sandbox is replaced after ``programs_per_sandbox`` programs anyway.

Trade-off of the zygote: programs that run one after another in the same worker share a sandbox. They
never run at the same time, and between them every process is killed and ``/tmp`` and ``/dev/shm``
are wiped, so a program can neither see another's files nor disturb its processes. What can persist
inside one sandbox is state a program plants deliberately outside those (POSIX message queues, which
need ctypes to create); none of it carries expected outputs, which never enter any sandbox. Setting
``programs_per_sandbox=1`` gives every program a brand-new sandbox at the cost of a start-up per
program (see ``bench/bench_code.py``).

Where bubblewrap is missing or fails its self-test (e.g. unprivileged user namespaces are disabled),
the pool falls back to the zygote alone -- rlimits, a scrubbed environment and a private temporary
working directory -- after one warning, or refuses with :class:`SandboxUnavailableError` when
``require_isolation=True``. That fallback does not stop a program from reading or writing files the
user can, or from reaching the network.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import math
import os
import queue
import select
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from rewards import sandbox_worker
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
_WORKER_SOURCE = Path(sandbox_worker.__file__).read_text()
_GRACE_S = 10.0  # per-request slack on top of the program's wall limit (cleanup, transfer)


class SandboxUnavailableError(RuntimeError):
    """Isolation was required but bubblewrap is unavailable or fails its self-test."""


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

    def wire(self, isolation: Isolation) -> dict[str, Any]:
        """The limits as the zygote reads them."""
        cpu = self.cpu_s if self.cpu_s is not None else self.wall_s
        # In a user namespace RLIMIT_NPROC counts the sandbox's own processes: bwrap's init, the zygote
        # and, for isolated asserts, the checker. Outside one it would count every process of the user.
        nproc = self.max_processes + 3 if isolation.mode == "bwrap" else 0
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
    tmpfs_mb: int = 256  # size of the private /tmp
    shm_mb: int = 64  # size of the private /dev/shm
    require_isolation: bool = False
    bwrap: str | None = None  # default: $CASCADE_SANDBOX_BWRAP, else `bwrap` on PATH
    extra_ro_binds: tuple[str, ...] = ()  # more host paths to expose read-only at the same place
    extra_python_paths: tuple[str, ...] = ()  # bound read-only and appended to sys.path inside
    preload: tuple[str, ...] = DEFAULT_PRELOAD
    unprivileged_uid: int = NOBODY
    start_timeout_s: float = 30.0


@dataclass(frozen=True)
class Isolation:
    """What the sandboxes of this process actually provide, as found by the self-test."""

    mode: Literal["bwrap", "bwrap-root", "none"]
    detail: str

    @property
    def isolated(self) -> bool:
        return self.mode != "none"


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
_probes: dict[tuple, Isolation] = {}


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
# Commands
# ----------------------------------------------------------------------------------------------------


def _python_layout(config: SandboxConfig) -> tuple[str, list[str], list[str]]:
    """(interpreter, directories to bind, sys.path additions) for the interpreter of this process.

    A virtualenv's ``bin/python`` is a link into the base installation; the sandbox runs the base
    interpreter with its own site-packages, never the venv (which lives inside the project tree).
    """
    exe = os.path.realpath(sys.executable)
    binds = sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)})
    if not any(exe.startswith(prefix + os.sep) for prefix in binds):
        binds.append(os.path.dirname(exe))
    paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
    site_paths = list(dict.fromkeys([paths["purelib"], paths["platlib"]]))
    site_paths = [p for p in site_paths if os.path.isdir(p)] + list(config.extra_python_paths)
    binds += [os.path.realpath(p) for p in (*config.extra_python_paths, *config.extra_ro_binds)]
    return exe, binds, site_paths


def _system_binds() -> list[str]:
    """bubblewrap arguments for the read-only system view: /usr, the /lib* and /bin links, a few /etc files."""
    args = ["--ro-bind", "/usr", "/usr"]
    for path in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime"):
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


def _bwrap_argv(config: SandboxConfig, bwrap: str, staged: dict[str, str] | None = None) -> list[str]:
    """The full bubblewrap command line that starts one zygote.

    ``staged`` maps bind sources to the paths a privilege-dropping launcher mounted them at.
    """
    exe, binds, site_paths = _python_layout(config)
    uid = str(config.unprivileged_uid)
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
        "--setenv", "HOME", "/tmp",
        "--setenv", "TMPDIR", "/tmp",
        "--setenv", "LANG", "C.UTF-8",
        "--setenv", "LC_ALL", "C.UTF-8",
        "--setenv", "USER", "sandbox",
        "--uid", uid,
        "--gid", uid,
        "--hostname", "sandbox",
    ]  # fmt: skip
    argv += _system_binds()
    for path in binds:
        argv += ["--ro-bind", (staged or {}).get(path, path), path]
    argv += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(config.tmpfs_mb << 20), "--tmpfs", "/tmp",
        "--size", str(config.shm_mb << 20), "--tmpfs", "/dev/shm",
        "--remount-ro", "/dev",
        "--remount-ro", "/",
        "--chdir", "/tmp",
    ]  # fmt: skip
    zygote = {
        "namespaced": True,
        "scratch": "/tmp",
        "wipe": ["/tmp", "/dev/shm"],
        "site_paths": site_paths,
        "preload": _preload(config),
    }
    return [*argv, "--", exe, "-I", "-S", "-c", _WORKER_SOURCE, "zygote", json.dumps(zygote)]


def _preload(config: SandboxConfig) -> list[str]:
    """Modules the zygote imports up front: pointless when a sandbox serves a single program."""
    return list(config.preload) if config.programs_per_sandbox > 1 else []


def _command(config: SandboxConfig, mode: str, scratch: str | None) -> tuple[list[str], str, dict[str, str]]:
    """(argv, cwd, env) that start one zygote in ``mode``."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/"}
    exe, binds, site_paths = _python_layout(config)
    bwrap = resolve_bwrap(config)
    if mode == "bwrap" and os.geteuid() == 0:
        # Root: a launcher (still root) stages the bind sources where the unprivileged uid can reach
        # them, drops to that uid and executes bubblewrap (see sandbox_worker.launch_main).
        staged = {src: f"/tmp/{i}" for i, src in enumerate(binds)}
        launch = {
            "stage": "/tmp",
            "stage_sources": binds,
            "uid": config.unprivileged_uid,
            "gid": config.unprivileged_uid,
            "argv": _bwrap_argv(config, bwrap, staged),
        }
        return [exe, "-I", "-S", "-c", _WORKER_SOURCE, "launch", json.dumps(launch)], "/", env
    if mode in ("bwrap", "bwrap-root"):
        return _bwrap_argv(config, bwrap), "/", env
    assert scratch is not None
    zygote = {
        "namespaced": False,
        "scratch": scratch,
        "wipe": [scratch],
        "site_paths": site_paths,
        "preload": _preload(config),
    }
    env.update(HOME=scratch, TMPDIR=scratch)
    return [exe, "-I", "-S", "-c", _WORKER_SOURCE, "zygote", json.dumps(zygote)], scratch, env


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

    # -------------------------------------------------------------- life cycle
    def start(self) -> None:
        """Start a sandbox and wait until its zygote is ready."""
        self.launch()
        self.handshake()

    def launch(self) -> None:
        """Start a sandbox process without waiting for it (its start-up overlaps other work)."""
        self.stop()
        if self.mode == "none":
            self._scratch = tempfile.mkdtemp(prefix="cascade-sandbox-")
        argv, cwd, env = _command(self.config, self.mode, self._scratch)
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
        self._ready = True

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
# Self-test
# ----------------------------------------------------------------------------------------------------


def resolve_bwrap(config: SandboxConfig) -> str:
    """The bubblewrap executable ``config`` asks for ("" when none is found)."""
    return config.bwrap or os.environ.get("CASCADE_SANDBOX_BWRAP") or shutil.which("bwrap") or ""


def _candidate_modes(config: SandboxConfig) -> list[str]:
    bwrap = resolve_bwrap(config)
    if not bwrap or not os.access(bwrap, os.X_OK):
        return []
    return ["bwrap", "bwrap-root"] if os.geteuid() == 0 else ["bwrap"]


_PROBE = """
import json, os, socket
print(json.dumps({
    "uid": os.getuid(),
    "interfaces": sorted(name for _, name in socket.if_nameindex()),
    "hostname": socket.gethostname(),
    "sees_project": os.path.exists(PROJECT),
    "sees_secrets": any(k in os.environ for k in ("WANDB_API_KEY", "HF_TOKEN")),
}))
"""


def _self_test(config: SandboxConfig, mode: str) -> str | None:
    """Start a sandbox in ``mode`` and check what a program inside sees; None when all is as designed."""
    worker = _Worker(replace(config, preload=()), mode)
    project = str(Path(__file__).resolve().parent.parent)
    message = {
        "op": "run",
        "mode": "stdio",
        "code": _PROBE.replace("PROJECT", repr(project)),
        "stdin": "",
        "limits": Limits(wall_s=10).wire(Isolation(mode, "")),  # type: ignore[arg-type]
    }
    try:
        worker.start()
        response = worker.request(message, timeout_s=config.start_timeout_s)
    except (SandboxStartError, OSError, ValueError) as exc:
        return str(exc)
    finally:
        worker.stop()
    out = str((response.get("attachments") or {}).get("stdout", ""))
    try:
        seen = json.loads(out)
    except ValueError:
        return f"probe program failed: {response.get('status')} {out!r} {response.get('stderr', '')!r}"
    expected = {
        "uid": config.unprivileged_uid,
        "interfaces": ["lo"],
        "hostname": "sandbox",
        "sees_project": False,
        "sees_secrets": False,
    }
    wrong = {k: v for k, v in seen.items() if expected.get(k) != v}
    return f"the sandbox is not isolated as designed: {wrong}" if wrong else None


def probe_isolation(config: SandboxConfig | None = None) -> Isolation:
    """Which isolation works on this host (tested once per process and configuration, then cached).

    Logs one warning when programs will run without bubblewrap, or with bubblewrap as root.
    """
    config = config or SandboxConfig()
    key = (resolve_bwrap(config), config.extra_ro_binds, config.extra_python_paths, config.unprivileged_uid)
    with _state_lock:
        if key in _probes:
            return _probes[key]
    failures = []
    result: Isolation | None = None
    for mode in _candidate_modes(config):
        reason = _self_test(config, mode)
        if reason is None:
            result = Isolation(mode, "bubblewrap sandbox" + (" as root" if mode == "bwrap-root" else ""))  # type: ignore[arg-type]
            break
        failures.append(f"{mode}: {reason}")
    if result is None:
        why = (
            "; ".join(failures)
            if failures
            else f"no executable bubblewrap ({resolve_bwrap(config) or 'bwrap on PATH'})"
        )
        result = Isolation("none", why)
    with _state_lock:
        if key not in _probes:
            _probes[key] = result
            if result.mode == "none":
                logger.warning(
                    "Code sandbox: bubblewrap is unavailable (%s); untrusted programs will run with rlimits, "
                    "a scrubbed environment and a private working directory only -- no filesystem or "
                    "network isolation. Pass require_isolation=True to refuse instead.",
                    why,
                )
            elif result.mode == "bwrap-root":
                logger.warning(
                    "Code sandbox: could not drop to uid %d before starting bubblewrap (%s); sandboxes run "
                    "as host root, where the kernel does not enforce the process-count limit.",
                    config.unprivileged_uid,
                    failures[0] if failures else "",
                )
        return _probes[key]


# ----------------------------------------------------------------------------------------------------
# The pool
# ----------------------------------------------------------------------------------------------------


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """``$CASCADE_SANDBOX_WORKERS`` if set, else this process's share of the CPUs.

    Under torchrun/accelerate every rank of a node scores its own completions, so each takes
    ``CPUs / LOCAL_WORLD_SIZE`` sandboxes rather than all of them.
    """
    value = os.environ.get("CASCADE_SANDBOX_WORKERS")
    if value:
        return max(1, int(value))
    try:
        ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        ranks = 1
    return max(1, available_cpus() // ranks)


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
        self.isolation = probe_isolation(self.config)
        if self.config.require_isolation and not self.isolation.isolated:
            raise SandboxUnavailableError(
                f"the code sandbox requires bubblewrap isolation, which is unavailable: {self.isolation.detail}"
            )
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
        message = {**request, "op": "run", "limits": limits.wire(self.isolation)}
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
