"""The inside of the code sandbox: a zygote that forks one child per program, and the launcher.

The sandbox runs this module and the three it uses (``sandbox_wire``, ``sandbox_harness``,
``sandbox_confine``) from their *source*: ``python -I -S -c <bootstrap>`` compiles each under its
module name (``rewards.sandbox_layers.WORKER_SOURCE``), since the project is not visible inside the
sandbox. So these modules use the standard library only and import nothing else of the project. With
the role ``launch`` it is the privilege-dropping launcher that starts bubblewrap as an unprivileged user
when the reward process runs as root (see ``rewards/sandbox.py``).

Why a zygote: starting an interpreter costs 10-40 ms, forking a warm one costs about a millisecond.
The zygote imports the modules programs commonly use, freezes its heap, then serves requests one at a
time over a length-prefixed JSON protocol on its stdin/stdout. Each program runs in a forked child
with fresh stdio (memfds), its own session and process group, rlimits, and an empty scratch directory;
after every request the zygote kills every process left in the sandbox and wipes the scratch space.

Where a pass is decided, and why expected values never enter the sandbox: ``rewards/sandbox_harness.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys

from rewards.sandbox_confine import Confinement
from rewards.sandbox_harness import child_call, child_check, child_inprocess_assert, child_serve, child_stdio
from rewards.sandbox_wire import HEADER, MAX_FRAME, read_exact, read_frame, write_frame

# --------------------------------------------------------------------------------------------------
# Zygote. Everything below runs inside the sandbox only.
# --------------------------------------------------------------------------------------------------

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
_SIGNAL_NAMES = {
    6: "SIGABRT",
    9: "SIGKILL",
    11: "SIGSEGV",
    15: "SIGTERM",
    24: "SIGXCPU",
    25: "SIGXFSZ",
    7: "SIGBUS",
    8: "SIGFPE",
    4: "SIGILL",
}


class _Zygote:
    """The request loop and the per-request process management."""

    def __init__(self, config: dict) -> None:
        import builtins
        import ctypes
        import io
        import signal
        import site

        self.cfg = config
        self.namespaced = bool(config.get("namespaced"))
        self.scratch = config["scratch"]
        self.wipe_dirs = [d for d in config.get("wipe", []) if os.path.isdir(d)]
        # Without namespaces the scratch directory lives on the host's disk: its use is polled.
        self.scratch_bytes = int(config.get("scratch_bytes") or 0)
        # Every program's working directory. It is emptied between programs rather than replaced:
        # removing a directory costs milliseconds on a journaling disk (the scratch space of the
        # layers without a private tmpfs).
        self.job_dir = os.path.join(self.scratch, "job")
        os.environ["HOME"] = os.environ["TMPDIR"] = self.job_dir  # set here once, inherited by each child
        # The Landlock layer: built here (a kernel without it stops the zygote, with the reason on
        # stderr), entered by every child.
        self.confinement = Confinement(config["confine"]) if config.get("confine") else None
        self.req_fd = os.dup(0)
        self.resp_fd = os.dup(1)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        self._io, self._signal, self._builtins = io, signal, builtins
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._exit = os._exit  # captured before any user code can rebind os._exit
        if hasattr(sys, "set_int_max_str_digits"):
            sys.set_int_max_str_digits(0)
        for path in config.get("site_paths", []):
            if path not in sys.path:
                sys.path.append(path)
        site.setquit()  # `exit()` / `quit()` exist in a normal interpreter; -S skipped them
        # Non-dumpable: no process of the sandbox may ptrace this one or its children, or read their
        # memory and descriptors through /proc. Subreaper: orphans of a program come back to us.
        self._libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        self._libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        if not self.namespaced:  # in bubblewrap, --die-with-parent does this for the whole sandbox
            self._libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() == 1:
                self._exit(1)
        for name in config.get("preload", []):
            with contextlib.suppress(Exception):  # a module this interpreter lacks is not preloaded
                __import__(name)
        import atexit
        import gc

        self._atexit = atexit
        self._builtins_snapshot = dict(builtins.__dict__)
        gc.collect()
        gc.freeze()  # keep the warm heap shared copy-on-write with every child

    # ---------------------------------------------------------------- request loop
    def serve(self) -> None:
        write_frame(
            self.resp_fd,
            {
                "ready": True,
                "pid": os.getpid(),
                "uid": os.getuid(),
                "python": sys.version.split()[0],
                "landlock_abi": self.confinement.abi if self.confinement else 0,
            },
        )
        while True:
            request = read_frame(self.req_fd)
            if request is None:
                return
            attachments: list[tuple[str, int, int]] = []
            try:
                # An assert test arrives as a raw frame right after its request. It goes from the pipe
                # into a memfd with splice(2) and never through this process's memory, which every
                # later program inherits when it is forked (see the module docstring).
                test_fd = self._splice_in() if request.get("test_follows") else None
                try:
                    response = self.handle(request, test_fd, attachments)
                finally:
                    if test_fd is not None:
                        os.close(test_fd)
            except Exception as exc:
                import traceback

                response = {"status": "internal_error", "error": "".join(traceback.format_exception(exc))}
            response.update(self.cleanup())
            response["attachments"] = [name for name, _, _ in attachments]
            write_frame(self.resp_fd, response)
            # Program output and checker output go back with splice(2): no copy through this process
            # (fast for big outputs, and checker output may quote expected values).
            for _, fd, limit in attachments:
                self._splice_out(fd, limit)
                os.close(fd)

    def _splice_in(self) -> int:
        header = read_exact(self.req_fd, HEADER.size)
        if header is None:
            raise EOFError("request stream ended inside a frame")
        (remaining,) = HEADER.unpack(header)
        fd = os.memfd_create("test", os.MFD_CLOEXEC)
        while remaining:
            moved = os.splice(self.req_fd, fd, remaining)
            if moved <= 0:
                raise EOFError("request stream ended inside a frame")
            remaining -= moved
        return fd

    def _splice_out(self, fd: int, limit: int) -> None:
        size = min(os.fstat(fd).st_size, limit, MAX_FRAME)
        os.write(self.resp_fd, HEADER.pack(size))
        offset = 0
        while offset < size:
            moved = os.splice(fd, self.resp_fd, size - offset, offset_src=offset)
            if moved <= 0:
                raise OSError("could not pass an attachment on")
            offset += moved

    def handle(self, req: dict, test_fd: int | None, attachments: list[tuple[str, int, int]]) -> dict:
        op = req.get("op")
        if op == "ping":
            return {"status": "ok"}
        if op != "run":
            return {"status": "internal_error", "error": f"unknown op {op!r}"}
        limits = req["limits"]
        job_dir = self.job_dir
        with contextlib.suppress(FileExistsError):  # kept empty between programs (see cleanup)
            os.mkdir(job_dir, 0o700)
        mode = req["mode"]
        if mode == "stdio":
            return self._run_stdio(req, limits, job_dir, attachments)
        if mode == "call":
            return self._run_call(req, limits, job_dir)
        if mode == "assert" and test_fd is not None:
            if req.get("isolated", True):
                return self._run_assert_isolated(req, test_fd, limits, job_dir, attachments)
            return self._run_assert_inprocess(req, test_fd, limits, job_dir, attachments)
        return {"status": "internal_error", "error": f"unknown mode {mode!r}"}

    # ---------------------------------------------------------------- modes
    def _run_stdio(
        self, req: dict, limits: dict, job_dir: str, attachments: list[tuple[str, int, int]]
    ) -> dict:
        stdin = self._memfd("stdin", req.get("stdin", "").encode("utf-8", "surrogateescape"))
        out, err = self._memfd("stdout"), self._memfd("stderr")
        code = req["code"]
        pid = self._spawn(lambda: child_stdio(code, self._exit), limits, [stdin, out, err], job_dir)
        status = self._wait([pid], pid, limits, job_dir)
        result = self._describe(status, limits)
        result["stdout_truncated"] = os.fstat(out).st_size > limits["output_bytes"]
        result["stderr"] = self._read_tail(err)
        for fd in (stdin, err):
            os.close(fd)
        attachments.append(("stdout", out, limits["output_bytes"]))
        return result

    def _run_call(self, req: dict, limits: dict, job_dir: str) -> dict:
        null = os.open(os.devnull, os.O_RDONLY)
        out, err, report = self._memfd("stdout"), self._memfd("stderr"), self._memfd("report")
        code, fn_name, cases = req["code"], req["fn_name"], req["cases"]
        pid = self._spawn(
            lambda: child_call(code, fn_name, cases, 3, self._exit),
            limits,
            [null, out, err, report],
            job_dir,
        )
        status = self._wait([pid], pid, limits, job_dir)
        result = self._describe(status, limits)
        raw, _ = self._read_memfd(report, limits["fsize_bytes"])
        result["records"] = raw
        result["stdout"], result["stdout_truncated"] = self._read_memfd(out, 4096)
        result["stderr"] = self._read_tail(err)
        for fd in (null, out, err, report):
            os.close(fd)
        return result

    def _run_assert_isolated(
        self, req: dict, test_fd: int, limits: dict, job_dir: str, attachments: list[tuple[str, int, int]]
    ) -> dict:
        import socket

        null, null_out = os.open(os.devnull, os.O_RDONLY), os.open(os.devnull, os.O_WRONLY)
        sol_sock, chk_sock = socket.socketpair()
        sol_out, sol_err = self._memfd("stdout"), self._memfd("stderr")
        code = req["code"]
        sol_fd = sol_sock.fileno()
        solution = self._spawn(
            lambda: child_serve(code, 3, self._exit), limits, [null, sol_out, sol_err, sol_fd], job_dir
        )
        sol_sock.close()
        # Created only now, after the solution was forked: the solution never holds this descriptor.
        verdict, chk_err = self._memfd("verdict"), self._memfd("stderr")
        entry_point = req["entry_point"]
        chk_fd = chk_sock.fileno()
        checker = self._spawn(
            lambda: child_check(5, entry_point, 3, 4, self._exit),
            limits,
            [null, null_out, chk_err, chk_fd, verdict, test_fd],
            job_dir,
        )
        chk_sock.close()
        status = self._wait([solution, checker], checker, limits, job_dir)
        result = self._describe(status, limits)
        # A solution stopped by its CPU limit (a loop while loading or inside a call) ends the checker's
        # wait with end of stream, and the checker exits normally: the run timed out all the same.
        solution_end = status["statuses"][solution]
        if (
            result["status"] == "ok"
            and os.WIFSIGNALED(solution_end)
            and _SIGNAL_NAMES.get(os.WTERMSIG(solution_end)) == "SIGXCPU"
        ):
            result.update(status="timeout", signal="SIGXCPU")
        result["stdout"], result["stdout_truncated"] = self._read_memfd(sol_out, 4096)
        result["stderr"] = self._read_tail(sol_err)
        for fd in (null, null_out, sol_out, sol_err):
            os.close(fd)
        # The verdict and the checker's stderr may quote expected values: the reward process reads them.
        attachments += [("verdict", verdict, 1 << 20), ("checker_stderr", self._tail_fd(chk_err), 4096)]
        return result

    def _run_assert_inprocess(
        self, req: dict, test_fd: int, limits: dict, job_dir: str, attachments: list[tuple[str, int, int]]
    ) -> dict:
        null = os.open(os.devnull, os.O_RDONLY)
        out, err, verdict = self._memfd("stdout"), self._memfd("stderr"), self._memfd("verdict")
        code, entry_point, nonce = req["code"], req["entry_point"], req["nonce"]
        snapshot = self._builtins_snapshot
        pid = self._spawn(
            lambda: child_inprocess_assert(code, 4, entry_point, 3, nonce, snapshot, self._exit),
            limits,
            [null, out, err, verdict, test_fd],
            job_dir,
        )
        status = self._wait([pid], pid, limits, job_dir)
        result = self._describe(status, limits)
        result["stdout"], result["stdout_truncated"] = self._read_memfd(out, 4096)
        for fd in (null, out):
            os.close(fd)
        attachments += [("verdict", verdict, 1 << 20), ("stderr", self._tail_fd(err), 4096)]
        return result

    def _tail_fd(self, fd: int, limit: int = 4096) -> int:
        """A memfd holding the last ``limit`` bytes of ``fd`` (which is closed), copied in the kernel."""
        size = os.fstat(fd).st_size
        if size <= limit:
            return fd
        tail = self._memfd("tail")
        os.copy_file_range(fd, tail, limit, size - limit, 0)
        os.close(fd)
        return tail

    # ---------------------------------------------------------------- processes
    def _memfd(self, name: str, content: bytes = b"") -> int:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        if content:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def _read_memfd(self, fd: int, limit: int) -> tuple[str, bool]:
        size = os.fstat(fd).st_size
        data = os.pread(fd, min(size, limit), 0) if size else b""
        return data.decode("utf-8", "replace"), size > limit

    def _read_tail(self, fd: int, limit: int = 4096) -> str:
        size = os.fstat(fd).st_size
        start = max(0, size - limit)
        return os.pread(fd, size - start, start).decode("utf-8", "replace") if size else ""

    def _spawn(self, target, limits: dict, fds: list[int], job_dir: str) -> int:
        """Fork a child running ``target`` with ``fds`` as its descriptors 0..n-1 and nothing else."""
        import fcntl
        import resource

        pid = os.fork()
        if pid:
            return pid
        try:  # child: never returns into the zygote's code
            os.setsid()  # own session and process group: killable as a unit, no controlling tty
            if self.confinement is not None:
                self.confinement.enter()  # before anything else: the ruleset's descriptor goes below
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in fds]
            for target_fd, fd in enumerate(high):
                os.dup2(fd, target_fd)
            os.closerange(len(fds), 1 << 20)
            self._libc.prctl(PR_SET_PDEATHSIG, self._signal.SIGKILL, 0, 0, 0)
            os.chdir(job_dir)
            cpu = int(limits["cpu_s"])
            memory = int(limits["memory_bytes"])
            settings = [
                (resource.RLIMIT_CPU, (cpu, cpu + 1)),
                (resource.RLIMIT_AS, (memory, memory)),
                (resource.RLIMIT_FSIZE, (limits["fsize_bytes"], limits["fsize_bytes"])),
                (resource.RLIMIT_NOFILE, (limits["nofile"], limits["nofile"])),
                (resource.RLIMIT_CORE, (0, 0)),
            ]
            if limits.get("nproc"):
                settings.append((resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"])))
            for which, value in settings:
                resource.setrlimit(which, value)
            self._reset_interpreter()
            if self.confinement is not None:
                self.confinement.seal()
            target()
        except BaseException:
            try:
                import traceback

                os.write(2, traceback.format_exc().encode()[-4000:])
            finally:
                self._exit(125)
        self._exit(125)
        return 0  # unreachable

    def _reset_interpreter(self) -> None:
        """Give the child the interpreter state a fresh ``python`` would have."""
        io = self._io
        sys.stdin = sys.__stdin__ = io.open(0, "r", encoding="utf-8", errors="surrogateescape", closefd=False)
        sys.stdout = sys.__stdout__ = io.open(
            1, "w", encoding="utf-8", errors="surrogateescape", closefd=False
        )
        sys.stderr = sys.__stderr__ = io.open(
            2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
        )
        sys.argv = ["solution.py"]
        self._atexit._clear()
        # The zygote's own module stays out of the program's reach by name.
        sys.modules["__main__"] = type(sys)("__main__")

    def _wait(self, pids: list[int], main: int, limits: dict, job_dir: str) -> dict:
        """Wait for ``main`` to exit, enforcing the wall clock, the job's total memory and, outside a
        namespace (where the scratch directory is on the host's disk), its scratch space."""
        import select
        import time

        start = time.monotonic()
        deadline = start + float(limits["wall_s"])
        memory_cap = int(limits["memory_bytes"])
        poller = select.poll()
        pidfd = os.pidfd_open(main)
        poller.register(pidfd, select.POLLIN)
        verdict = None
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    verdict = "timeout"
                    break
                if poller.poll(min(remaining, 0.025) * 1000):
                    break
                if self.namespaced and self._job_rss() > memory_cap:
                    verdict = "memory"
                    break
                if self.scratch_bytes and _tree_usage(job_dir, self.scratch_bytes) > self.scratch_bytes:
                    verdict = "scratch"
                    break
        finally:
            poller.unregister(pidfd)
            os.close(pidfd)
        for pid in pids:  # stop the whole job (both processes of an isolated assert run)
            self._killpg(pid)
        statuses = {pid: os.waitpid(pid, 0)[1] for pid in pids}
        return {
            "raw": statuses[main],
            "statuses": statuses,
            "verdict": verdict,
            "wall_s": round(time.monotonic() - start, 4),
        }

    def _describe(self, status: dict, limits: dict) -> dict:
        raw = status["raw"]
        result: dict = {"wall_s": status["wall_s"], "exit_code": None, "signal": None}
        if os.WIFEXITED(raw):
            result["exit_code"] = os.WEXITSTATUS(raw)
        elif os.WIFSIGNALED(raw):
            result["signal"] = _SIGNAL_NAMES.get(os.WTERMSIG(raw), str(os.WTERMSIG(raw)))
        if status["verdict"] == "timeout":
            result["status"] = "timeout"
        elif status["verdict"] == "memory":
            result["status"] = "memory_limit"
        elif status["verdict"] == "scratch":
            result["status"] = "output_limit"
        elif result["signal"] == "SIGXCPU":
            result["status"] = "timeout"
        elif result["signal"] is not None:
            result["status"] = "killed"
        elif result["exit_code"] != 0:
            result["status"] = "runtime_error"
        else:
            result["status"] = "ok"
        return result

    def _killpg(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            os.killpg(pid, self._signal.SIGKILL)

    # ---------------------------------------------------------------- cleanup between programs
    def _job_pids(self) -> list[int]:
        """Every process of the sandbox except its init and the zygote (namespaced mode only)."""
        me = os.getpid()
        return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]

    def _job_rss(self) -> int:
        page = os.sysconf("SC_PAGE_SIZE")
        total = 0
        for pid in self._job_pids():
            try:
                with open(f"/proc/{pid}/statm", "rb") as f:
                    total += int(f.read().split()[1]) * page
            except (OSError, IndexError, ValueError):
                continue
        return total

    def _children(self) -> list[int]:
        """Direct children of the zygote (orphans are re-parented here: we are a subreaper)."""
        kids: list[int] = []
        me = os.getpid()
        try:
            for tid in os.listdir(f"/proc/{me}/task"):
                with open(f"/proc/{me}/task/{tid}/children") as f:
                    kids.extend(int(x) for x in f.read().split())
            return kids
        except OSError:
            pass
        return [pid for pid, fields in process_stats() if int(fields[1]) == me]

    def cleanup(self) -> dict:
        """Kill every process the program left behind and wipe the scratch space."""
        import errno
        import time

        leftovers = 0
        give_up = time.monotonic() + 5.0
        while time.monotonic() < give_up:
            if self.namespaced:
                # kill(-1) reaches every process of the sandbox's PID namespace except its init and us.
                alive = self._job_pids()
                try:
                    os.kill(-1, self._signal.SIGKILL)
                except OSError as exc:
                    if exc.errno != errno.ESRCH:
                        raise
            else:
                alive = self._children()
                for pid in alive:
                    with contextlib.suppress(OSError):
                        os.kill(pid, self._signal.SIGKILL)
            leftovers += len(alive)
            while time.monotonic() < give_up:  # reap everything that died
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    time.sleep(0.001)
            if not (self._job_pids() if self.namespaced else self._children()):
                break
        else:
            leftovers += 1  # something would not die: never reuse this sandbox
        suspicious = leftovers > 0
        for directory in self.wipe_dirs:
            for entry in os.listdir(directory):
                path = os.path.join(directory, entry)
                try:
                    if path == self.job_dir and stat.S_ISDIR(os.lstat(path).st_mode):
                        os.chmod(path, 0o700)  # a program may have taken its own permissions away
                        for inner in os.listdir(path):
                            _remove(os.path.join(path, inner))
                    else:
                        _remove(path)
                except OSError:
                    suspicious = True
        if self.namespaced and _sysv_ipc_in_use():
            suspicious = True  # SysV IPC objects outlive processes; a fresh sandbox drops them
        return {"leftovers": leftovers, "suspicious": suspicious}


def process_stats():  # type: ignore[no-untyped-def]
    """(pid, the fields of /proc/<pid>/stat after the command name) of every process one can see."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                yield int(entry), f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue


def _remove(path: str) -> None:
    """Remove a file, a link (never what it points to) or a whole directory a program left."""
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, onerror=_force_remove)
    else:
        os.unlink(path)


_ENTRY_BYTES = 64 << 10  # what one file or directory counts for at least, whatever its size


def _tree_usage(top: str, limit: int) -> int:
    """Disk used under ``top``; stops counting past ``limit``. Every entry counts for at least 64 KiB,
    which caps the number of files too (4096 in 256 MiB) and keeps this walk short."""
    used = 0
    stack = [top]
    while stack and used <= limit:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    used += max(info.st_blocks * 512, _ENTRY_BYTES)
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(entry.path)
        except OSError:
            continue
    return used


def _force_remove(func, path, _exc) -> None:  # type: ignore[no-untyped-def]
    """rmtree error hook: a program may have removed write/search permission from its own files."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
    except OSError:
        pass
    func(path)


def _sysv_ipc_in_use() -> bool:
    for kind in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                if len(f.read().splitlines()) > 1:
                    return True
        except OSError:
            continue
    return False


# --------------------------------------------------------------------------------------------------
# Launcher: run as root, drop to an unprivileged uid before starting bubblewrap.
# --------------------------------------------------------------------------------------------------


def launch_main(config: dict) -> None:
    """Start bubblewrap as ``config['uid']`` with the bind sources made reachable for that uid.

    RLIMIT_NPROC is not enforced for processes of host uid 0, so a sandbox started by root could fork
    without bound. This launcher (still root) opens every bind source, makes a private mount namespace,
    mounts a small tmpfs over /tmp there and bind-mounts each source under it (so the unprivileged uid
    can reach e.g. a Python under /root), then drops to the unprivileged uid and executes bubblewrap,
    whose bind sources were rewritten to those staging paths. Nothing changes outside the launcher's
    own mount namespace.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    clone_newns, ms_rec, ms_private, ms_bind = 0x00020000, 0x4000, 1 << 18, 4096

    def check(rc: int, what: str) -> None:
        if rc != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    stage_root = config["stage"]
    sources = config["stage_sources"]
    check(libc.unshare(clone_newns), "unshare(CLONE_NEWNS)")
    check(libc.mount(b"none", b"/", None, ms_rec | ms_private, None), "make / private")
    # Opened in the new mount namespace (a bind source must belong to it), before the staging tmpfs
    # hides anything that lives under the staging root.
    fds = [os.open(src, os.O_PATH | os.O_CLOEXEC) for src in sources]
    check(libc.mount(b"tmpfs", stage_root.encode(), b"tmpfs", 0, b"mode=0755,size=1m"), "mount staging tmpfs")
    for index, (fd, src) in enumerate(zip(fds, sources, strict=True)):
        target = os.path.join(stage_root, str(index))
        if os.path.isdir(src):
            os.mkdir(target, 0o755)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        check(
            libc.mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None, ms_bind | ms_rec, None), "bind"
        )
        os.close(fd)
    os.setgroups([])
    os.setgid(config["gid"])
    os.setuid(config["uid"])
    argv = config["argv"]
    os.execv(argv[0], argv)


def main(argv: list[str]) -> None:
    role, config = argv[1], json.loads(argv[2])
    if role == "launch":
        launch_main(config)
    elif role == "zygote":
        _Zygote(config).serve()
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv)
