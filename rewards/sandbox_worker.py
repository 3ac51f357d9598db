"""The inside of the code sandbox: a zygote that forks one child per program, the harnesses that run a
program against its tests, and the value codec both sides of the sandbox share.

This file has two lives. The reward process imports it for :func:`encode_value` / :func:`decode_value`
and the frame helpers. The sandbox runs its *source* with ``python -I -S -c <source> zygote <config>``
(the project is not visible inside the sandbox), so it uses the standard library only and never
imports the project. Run as ``... launch <config>`` it is the privilege-dropping launcher that starts
bubblewrap as an unprivileged user when the reward process runs as root (see ``rewards/sandbox.py``).

Why a zygote: starting an interpreter costs 10-40 ms, forking a warm one costs about a millisecond.
The zygote imports the modules programs commonly use, freezes its heap, then serves requests one at a
time over a length-prefixed JSON protocol on its stdin/stdout. Each program runs in a forked child
with fresh stdio (memfds), its own session and process group, rlimits, and an empty scratch directory;
after every request the zygote kills every process left in the sandbox and wipes the scratch space.

Where a pass is decided (the anti-reward-hacking design):

* ``stdio`` -- the child's stdout *is* the answer. The zygote returns it with the exit status; the
  reward process compares it with the expected output, which never enters the sandbox. A program that
  prints the right answer and then exits early (``sys.exit(0)``, ``os._exit(0)`` after a flush) has
  solved the case; an early exit before the right output is printed has not, and a non-zero exit,
  a signal or a timeout fails the case whatever was printed.
* ``call`` -- the harness calls the function once per case and streams each result, encoded by
  :func:`encode_value`, to a report memfd. Expected values never enter the sandbox: the reward process
  decodes the results into exact built-in types and compares there, so objects whose ``__eq__`` always
  answers True cannot even be transferred, and forged report lines would have to contain the right
  answers. Cases with no result (early exit, crash, timeout) fail.
* ``assert`` (isolated, the default) -- the program and the test run in *two* processes. The solution
  process only serves calls: it executes the program, then answers ``call name(args)`` requests over a
  socketpair with encoded return values. The checker process, forked separately from the pristine
  zygote, executes the test code and calls ``check(candidate)`` where ``candidate`` (and any other
  name the test needs from the program) is a proxy that forwards the call. The checker only ever holds
  exact built-in values decoded from the solution's replies, and writes its verdict to a memfd that was
  created after the solution was forked, so the solution process holds no descriptor for it, and it
  cannot reach the checker's memory or descriptors either (the zygote is non-dumpable, which blocks
  ptrace, ``/proc/<pid>/mem`` and ``/proc/<pid>/fd``). Exit tricks, overridden builtins, patched
  modules, monkeypatched harness code and printed "all tests passed" lines all stay inside the
  solution process, where they decide nothing.
* ``assert`` (in-process, opt-in) -- for tests whose arguments cannot cross a process boundary (e.g.
  callables or custom objects), the program and the test share one process as in the classic HumanEval
  harness. Builtins are restored before the test runs, the candidate's return values are passed
  through the codec (so ``__eq__`` tricks fail), and the verdict must carry a per-run random nonce
  written to a memfd only after ``check`` returned. A program that deliberately introspects the
  harness's own frames or descriptors can forge that verdict; this mode is documented as weaker.

And one invariant for all kinds: nothing derived from the tests ever enters the zygote's own memory,
which every later program inherits when it is forked. Expected values are never sent at all; an
assert test arrives as a raw frame that the zygote moves into a memfd with ``splice(2)`` without
reading it, and the checker's verdict and stderr (which may quote expected values) leave the same way.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import stat
import struct
import sys

# --------------------------------------------------------------------------------------------------
# Framing: 4-byte big-endian length + UTF-8 JSON, used between the reward process and the zygote and
# between the solution and checker processes of an isolated assert run.
# --------------------------------------------------------------------------------------------------

MAX_FRAME = 64 << 20
_HEADER = struct.Struct(">I")


def frame(obj: object) -> bytes:
    """Serialise one message for the wire."""
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    if len(data) > MAX_FRAME:
        raise ValueError(f"message of {len(data)} bytes exceeds the {MAX_FRAME}-byte frame limit")
    return _HEADER.pack(len(data)) + data


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> object | None:
    """Read one message from a blocking descriptor; ``None`` at end of stream."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"incoming frame of {size} bytes exceeds the limit")
    body = _read_exact(fd, size)
    if body is None:
        return None
    return json.loads(body)


def write_frame(fd: int, obj: object) -> None:
    """Write one message to a blocking descriptor."""
    data = memoryview(frame(obj))
    while data:
        data = data[os.write(fd, data) :]


# --------------------------------------------------------------------------------------------------
# Value codec. Values cross the sandbox boundary as JSON with a few tagged forms. Encoding accepts only
# exact built-in types (subclasses are reduced to their built-in value through the base type's own
# methods, so overridden dunders never run) and decoding builds exact built-in types, which is what
# makes comparisons on the trusted side immune to objects with rigged ``__eq__``.
# --------------------------------------------------------------------------------------------------

_TAG = "__t"
_MAX_DEPTH = 200
_MAX_ITEMS = 1_000_000
_BIG_INT_BITS = 8000  # beyond this, ints travel as hex (decimal conversion is capped by CPython)
_MAX_HEX_DIGITS = 100_000  # the largest int accepted when decoding (400k bits)


class TransferError(TypeError):
    """A value that cannot cross the sandbox boundary."""


def encode_value(value: object, _depth: int = 0) -> object:
    """A JSON-compatible form of ``value`` built from exact built-in types only."""
    if _depth > _MAX_DEPTH:
        raise TransferError("value nested too deeply (or cyclic)")
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        return {_TAG: "int", "v": hex(value)} if value.bit_length() > _BIG_INT_BITS else value
    if t is float:
        return value if math.isfinite(value) else {_TAG: "float", "v": repr(value)}
    if t is list:
        return [encode_value(v, _depth + 1) for v in value]
    if t is tuple:
        return {_TAG: "tuple", "v": [encode_value(v, _depth + 1) for v in value]}
    if t is dict:
        if all(type(k) is str for k in value) and _TAG not in value:
            return {k: encode_value(v, _depth + 1) for k, v in value.items()}
        return {
            _TAG: "dict",
            "v": [[encode_value(k, _depth + 1), encode_value(v, _depth + 1)] for k, v in value.items()],
        }
    if t is set or t is frozenset:
        return {_TAG: t.__name__, "v": [encode_value(v, _depth + 1) for v in value]}
    if t is bytes or t is bytearray:
        return {_TAG: "bytes", "v": base64.b64encode(bytes(value)).decode()}
    if t is complex:
        return {_TAG: "complex", "v": [encode_value(value.real), encode_value(value.imag)]}
    if t is range:  # materialised like an iterator, so the receiving side never expands a huge range
        if len(value) > _MAX_ITEMS:
            raise TransferError("range too long to transfer")
        return list(value)
    # Subclasses of built-ins: take the built-in value through the base type's own slot.
    for base, convert in _BASE_CONVERTERS:
        if isinstance(value, base):
            return encode_value(convert(value), _depth + 1)
    # Iterators and generators are materialised (a test may well call list() on them), within limits.
    if hasattr(t, "__next__") and hasattr(t, "__iter__"):
        items = []
        for item in value:  # type: ignore[attr-defined]
            items.append(encode_value(item, _depth + 1))
            if len(items) > _MAX_ITEMS:
                raise TransferError("iterator yields too many items")
        return {_TAG: "iter", "v": items}
    # numpy scalars and arrays: their plain-Python form (whatever it returns is re-checked).
    if t.__module__.split(".")[0] == "numpy" and hasattr(value, "tolist"):
        return encode_value(value.tolist(), _depth + 1)
    raise TransferError(f"cannot transfer a value of type {t.__module__}.{t.__qualname__}")


_BASE_CONVERTERS = (
    (bool, bool.__bool__),
    (int, int.__int__),
    (float, float.__float__),
    (str, str.__str__),
    (bytes, bytes),
    (list, lambda v: list(list.__iter__(v))),
    (tuple, lambda v: tuple(tuple.__iter__(v))),
    (dict, lambda v: dict(dict.items(v))),
    (frozenset, lambda v: frozenset(frozenset.__iter__(v))),
    (set, lambda v: set(set.__iter__(v))),
)


def decode_value(data: object, _depth: int = 0) -> object:
    """The Python value of an encoded form; raises ``TransferError`` on anything malformed."""
    if _depth > _MAX_DEPTH:
        raise TransferError("encoded value nested too deeply")
    t = type(data)
    if data is None or t is bool or t is str or t is int or t is float:
        return data
    if t is list:
        return [decode_value(v, _depth + 1) for v in data]
    if t is not dict:
        raise TransferError(f"malformed encoded value of type {t.__name__}")
    tag = data.get(_TAG)
    if tag is None:
        return {k: decode_value(v, _depth + 1) for k, v in data.items()}
    v = data.get("v")
    try:
        if tag == "int":
            if len(v) > _MAX_HEX_DIGITS:
                raise TransferError("integer too large")
            return int(v, 16)
        if tag == "float":
            return float(v)
        if tag == "tuple":
            return tuple(decode_value(x, _depth + 1) for x in v)
        if tag == "iter":
            return iter([decode_value(x, _depth + 1) for x in v])
        if tag == "dict":
            return {decode_value(k, _depth + 1): decode_value(x, _depth + 1) for k, x in v}
        if tag == "set":
            return {decode_value(x, _depth + 1) for x in v}
        if tag == "frozenset":
            return frozenset(decode_value(x, _depth + 1) for x in v)
        if tag == "bytes":
            return base64.b64decode(v)
        if tag == "complex":
            return complex(decode_value(v[0], _depth + 1), decode_value(v[1], _depth + 1))
    except TransferError:
        raise
    except Exception as exc:  # malformed payload from an untrusted peer
        raise TransferError(f"malformed encoded {tag}: {exc}") from None
    raise TransferError(f"unknown encoded tag {tag!r}")


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
        header = _read_exact(self.req_fd, _HEADER.size)
        if header is None:
            raise EOFError("request stream ended inside a frame")
        (remaining,) = _HEADER.unpack(header)
        fd = os.memfd_create("test", os.MFD_CLOEXEC)
        while remaining:
            moved = os.splice(self.req_fd, fd, remaining)
            if moved <= 0:
                raise EOFError("request stream ended inside a frame")
            remaining -= moved
        return fd

    def _splice_out(self, fd: int, limit: int) -> None:
        size = min(os.fstat(fd).st_size, limit, MAX_FRAME)
        os.write(self.resp_fd, _HEADER.pack(size))
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
        pid = self._spawn(lambda: _child_stdio(code, self._exit), limits, [stdin, out, err], job_dir)
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
            lambda: _child_call(code, fn_name, cases, 3, self._exit),
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
            lambda: _child_serve(code, 3, self._exit), limits, [null, sol_out, sol_err, sol_fd], job_dir
        )
        sol_sock.close()
        # Created only now, after the solution was forked: the solution never holds this descriptor.
        verdict, chk_err = self._memfd("verdict"), self._memfd("stderr")
        entry_point = req["entry_point"]
        chk_fd = chk_sock.fileno()
        checker = self._spawn(
            lambda: _child_check(5, entry_point, 3, 4, self._exit),
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
            lambda: _child_inprocess_assert(code, 4, entry_point, 3, nonce, snapshot, self._exit),
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
# Child harnesses. Each runs in a forked child and ends with the captured os._exit; user code can raise
# anything, rebind os._exit or exit early: none of it returns into the zygote.
# --------------------------------------------------------------------------------------------------


def _fresh_module(name: str) -> dict:
    """A new module namespace for the program, installed as ``sys.modules[name]``."""
    import builtins
    import types

    module = types.ModuleType(name)
    module.__dict__.update({"__builtins__": builtins, "__file__": "solution.py"})
    sys.modules[name] = module
    return module.__dict__


def _exit_code(exc: SystemExit) -> int:
    """What CPython's exit status would be for an uncaught SystemExit."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        sys.stderr.write(f"{code}\n")
    return 1


def _finish_like_python() -> None:
    """Join non-daemon threads and run atexit handlers, as interpreter shutdown does."""
    import atexit
    import threading

    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()


def _describe_exception(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:
        text = "exception (unprintable)"
    return text[:2000]


def _child_stdio(code: str, hard_exit) -> None:  # type: ignore[no-untyped-def]
    import traceback

    namespace = _fresh_module("__main__")
    status = 0
    try:
        exec(compile(code, "solution.py", "exec"), namespace)
    except SystemExit as exc:
        status = _exit_code(exc)
    except BaseException:
        traceback.print_exc()
        status = 1
    try:
        _finish_like_python()
    except SystemExit as exc:
        status = status or _exit_code(exc)
    except BaseException:
        traceback.print_exc()
        status = status or 1
    for stream in (sys.stdout, sys.__stdout__, sys.stderr, sys.__stderr__):
        try:
            if stream is None or getattr(stream, "closed", False):
                continue
            stream.flush()
        except BaseException:
            status = status or 120  # CPython's status when flushing stdout fails at exit
    hard_exit(status)


def _resolve(namespace: dict, fn_name: str):  # type: ignore[no-untyped-def]
    fn = namespace.get(fn_name)
    if callable(fn) and not isinstance(fn, type):
        return fn
    solution = namespace.get("Solution")  # LeetCode style: class Solution with the method
    if isinstance(solution, type) and hasattr(solution, fn_name):
        return getattr(solution(), fn_name)
    if callable(fn):
        return fn
    raise NameError(f"no function named {fn_name!r} in the program")


def _child_call(code: str, fn_name: str, cases: list, report_fd: int, hard_exit) -> None:  # type: ignore[no-untyped-def]
    def report(record: dict) -> None:
        data = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(report_fd, view) :]

    namespace = _fresh_module("solution")
    try:
        exec(compile(code, "solution.py", "exec"), namespace)
    except BaseException as exc:
        report({"fatal": _describe_exception(exc)})
        hard_exit(1)
    for index, case in enumerate(cases):
        try:
            fn = _resolve(namespace, fn_name)
            value = fn(*case.get("args", []), **case.get("kwargs", {}))
            record = {"i": index, "ok": True, "v": encode_value(value)}
        except BaseException as exc:  # SystemExit and KeyboardInterrupt fail the case, nothing more
            record = {"i": index, "ok": False, "error": _describe_exception(exc)}
        try:
            report(record)
        except BaseException:
            hard_exit(1)
    hard_exit(0)


def _child_serve(code: str, sock_fd: int, hard_exit) -> None:  # type: ignore[no-untyped-def]
    """Solution side of an isolated assert run: execute the program, then answer calls."""
    namespace = _fresh_module("solution")
    try:
        exec(compile(code, "solution.py", "exec"), namespace)
    except BaseException as exc:
        write_frame(sock_fd, {"fatal": _describe_exception(exc)})
        hard_exit(1)
    write_frame(sock_fd, {"ready": True})
    while True:
        message = read_frame(sock_fd)
        if not isinstance(message, dict):
            hard_exit(0)
        if message.get("op") == "names":
            described = {}
            for name in message.get("names", []):
                if name not in namespace:
                    continue
                value = namespace[name]
                if isinstance(value, type(sys)):
                    described[name] = {"kind": "module", "module": value.__name__}
                elif callable(value):
                    described[name] = {"kind": "callable"}
                else:
                    try:
                        described[name] = {"kind": "value", "v": encode_value(value)}
                    except BaseException:
                        continue
            write_frame(sock_fd, {"names": described})
            continue
        try:
            fn = namespace[message["name"]]
            args = [decode_value(a) for a in message.get("args", [])]
            kwargs = {k: decode_value(v) for k, v in message.get("kwargs", {}).items()}
            reply = {"ok": True, "v": encode_value(fn(*args, **kwargs))}
        except BaseException as exc:
            reply = {"ok": False, "etype": type(exc).__name__, "msg": _describe_exception(exc)}
        try:
            write_frame(sock_fd, reply)
        except BaseException:
            hard_exit(1)


class _LoadError(Exception):
    """The program itself failed before the test could start."""


class _Unsupported(Exception):
    """The test passes a value that cannot be sent to the solution process."""


def _global_names(code) -> set:  # type: ignore[no-untyped-def]
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _global_names(const)
    return names


def _read_fd(fd: int) -> str:
    return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")


def _child_check(test_fd: int, entry_point: str, sock_fd: int, verdict_fd: int, hard_exit) -> None:  # type: ignore[no-untyped-def]
    """Checker side of an isolated assert run: the test's code, with proxies for the program's names."""
    import builtins
    import importlib
    import traceback

    def rpc(message: dict) -> dict:
        write_frame(sock_fd, message)
        reply = read_frame(sock_fd)
        if not isinstance(reply, dict):
            raise RuntimeError("the solution process stopped answering")
        return reply

    class Remote:
        """Calls a function of the program in the solution process; only plain values come back."""

        def __init__(self, name: str) -> None:
            self.__name__ = self.__qualname__ = name

        def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            try:
                payload = {
                    "op": "call",
                    "name": self.__name__,
                    "args": [encode_value(a) for a in args],
                    "kwargs": {k: encode_value(v) for k, v in kwargs.items()},
                }
            except TransferError as exc:
                raise _Unsupported(str(exc)) from None
            reply = rpc(payload)
            if reply.get("ok") is True:
                return decode_value(reply.get("v"))
            etype = getattr(builtins, str(reply.get("etype")), None)
            message = str(reply.get("msg", ""))[:2000]
            if isinstance(etype, type) and issubclass(etype, Exception):
                try:
                    raise etype(message)
                except TypeError:  # an exception class with a different constructor
                    pass
            raise RuntimeError(message)

    verdict: dict = {"passed": False}
    try:
        hello = read_frame(sock_fd)
        if not isinstance(hello, dict) or hello.get("ready") is not True:
            fatal = hello.get("fatal") if isinstance(hello, dict) else "it exited before it finished loading"
            verdict = {"passed": False, "load_error": True, "error": f"the program failed to load: {fatal}"}
            raise _LoadError
        compiled = compile(_read_fd(test_fd), "test.py", "exec")
        wanted = sorted((_global_names(compiled) - set(dir(builtins))) | {entry_point})
        described = rpc({"op": "names", "names": wanted}).get("names", {})
        namespace: dict = {"__name__": "__check__", "__builtins__": builtins}
        for name, info in described.items() if isinstance(described, dict) else []:
            if name not in wanted or not isinstance(info, dict):
                continue
            kind = info.get("kind")
            if kind == "callable":
                namespace[name] = Remote(name)
            elif kind == "value":
                namespace[name] = decode_value(info.get("v"))
            elif kind == "module" and info.get("module") in sys.stdlib_module_names:
                namespace[name] = importlib.import_module(info["module"])
        exec(compiled, namespace)
        check = namespace.get("check")
        if not callable(check):
            raise RuntimeError("the test defines no check(candidate) function")
        if entry_point not in described:
            raise NameError(f"the program defines no {entry_point!r}")
        check(Remote(entry_point))
        verdict = {"passed": True}
    except _LoadError:
        pass
    except _Unsupported as exc:
        verdict = {"passed": False, "unsupported": str(exc), "error": f"unsupported argument: {exc}"}
    except BaseException as exc:
        lines = traceback.format_exception(exc)
        verdict = {"passed": False, "error": "".join(lines[-3:])[-2000:]}
    data = json.dumps(verdict).encode()
    os.write(verdict_fd, data)
    hard_exit(0)


def _child_inprocess_assert(
    code: str, test_fd: int, entry_point: str, verdict_fd: int, nonce: str, snapshot: dict, hard_exit
) -> None:  # type: ignore[no-untyped-def]
    """HumanEval-style run in one process, with the guards described in the module docstring."""
    import builtins
    import traceback

    try:
        namespace = _fresh_module("solution")
        exec(compile(code, "solution.py", "exec"), namespace)
        builtins.__dict__.clear()
        builtins.__dict__.update(snapshot)
        namespace["__builtins__"] = builtins
        exec(compile(_read_fd(test_fd), "test.py", "exec"), namespace)
        candidate = namespace[entry_point]

        def guarded(*args, **kwargs):  # type: ignore[no-untyped-def]
            return decode_value(encode_value(candidate(*args, **kwargs)))

        guarded.__name__ = entry_point
        namespace["check"](guarded)
        message = "PASS " + nonce
    except BaseException as exc:
        message = "FAIL " + "".join(traceback.format_exception(exc)[-3:])[-2000:]
    os.write(verdict_fd, message.encode())
    hard_exit(0)


# --------------------------------------------------------------------------------------------------
# The Landlock layer: confinement without namespaces. Every child the zygote forks confines itself
# before the program's first instruction: capabilities dropped (when running as root), no new
# privileges, a Landlock domain (files, TCP, abstract UNIX sockets, signals) and a seccomp filter
# (everything Landlock does not cover). Used where bubblewrap cannot run (no unprivileged user
# namespaces, the usual case on HPC and GPU nodes); nothing here needs a privilege.
#
# Written with ctypes rather than the PyPI packages ``landlock`` / ``pyseccomp``: this file runs with
# ``python -I -S`` and the base interpreter's own site-packages, so it can import nothing outside the
# standard library, and pyseccomp also needs the libseccomp shared library, which a node without root
# may lack. The whole interface is three Landlock system calls and one prctl with a BPF program.
# --------------------------------------------------------------------------------------------------

_NR_LANDLOCK_CREATE_RULESET, _NR_LANDLOCK_ADD_RULE, _NR_LANDLOCK_RESTRICT_SELF = 444, 445, 446  # all arches
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1

# Filesystem access rights, by the ABI version that introduced them.
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ABI1 = (
    1 << 13
) - 1  # execute, write/read file, read dir, remove dir/file, make char/dir/reg/sock/fifo/block/sym
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
_FS_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_NET_TCP = 0b11  # bind, connect (ABI 4): handled with no rule, so neither is allowed
_SCOPE_ALL = 0b11  # abstract UNIX sockets, signals (ABI 6): only within the child's own domain

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 28, 47, 4
_SECBIT_NOROOT_LOCKED = 0x3  # SECBIT_NOROOT and its lock: execve grants root no capabilities


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 when Landlock is not built in or not enabled."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(_NR_LANDLOCK_CREATE_RULESET, None, 0, _LANDLOCK_CREATE_RULESET_VERSION)
    return max(0, int(version))


def landlock_rights(abi: int) -> int:
    """Every filesystem right the kernel's ABI knows: all of them are denied unless a rule grants them."""
    rights = _FS_ABI1
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


# Seccomp. A classic BPF program sees the architecture, the system call number and the six argument
# registers (not memory they point to). Offsets into ``struct seccomp_data``; an argument's low 32 bits
# are at 16 + 8 * i on the little-endian architectures supported here.
_SECCOMP_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}  # AUDIT_ARCH_*
_X32_SYSCALL_BIT = 0x40000000  # x86_64's x32 ABI: same AUDIT_ARCH, other numbers; refused whole
_OFF_NR, _OFF_ARCH = 0, 4
_ALLOW, _KILL_PROCESS = 0x7FFF0000, 0x80000000
_EPERM, _ENOSYS = 0x00050000 | 1, 0x00050000 | 38  # SECCOMP_RET_ERRNO | errno
_FIRST_UNKNOWN_NR = 463  # calls added after Linux 6.12 answer ENOSYS until someone reviews them

# System call numbers (x86_64, aarch64); None where the architecture lacks the call.
_NR: dict[str, tuple[int | None, int | None]] = {
    "open": (2, None), "clone": (56, 220), "fork": (57, None), "vfork": (58, None), "kill": (62, 129),
    "socket": (41, 198), "socketpair": (53, 199), "truncate": (76, 45), "chmod": (90, None),
    "fchmod": (91, 52), "chown": (92, None), "fchown": (93, 55), "lchown": (94, None), "syslog": (103, 116),
    "ptrace": (101, 117), "rt_sigqueueinfo": (129, 138), "utime": (132, None), "mknod": (133, None),
    "setpriority": (141, 140), "sched_setparam": (142, 118), "sched_setscheduler": (144, 119),
    "vhangup": (153, 58), "pivot_root": (155, 41), "adjtimex": (159, 171), "chroot": (161, 51),
    "acct": (163, 89), "settimeofday": (164, 170), "mount": (165, 40), "umount2": (166, 39),
    "swapon": (167, 224), "swapoff": (168, 225), "reboot": (169, 142), "sethostname": (170, 161),
    "setdomainname": (171, 162), "iopl": (172, None), "ioperm": (173, None), "init_module": (175, 105),
    "delete_module": (176, 106), "quotactl": (179, 60), "setxattr": (188, 5), "lsetxattr": (189, 6),
    "fsetxattr": (190, 7), "removexattr": (197, 14), "lremovexattr": (198, 15), "fremovexattr": (199, 16),
    "tkill": (200, 130), "sched_setaffinity": (203, 122), "lookup_dcookie": (212, 18),
    "clock_settime": (227, 112), "tgkill": (234, 131), "utimes": (235, None), "mq_open": (240, 180),
    "mq_unlink": (241, 181), "mq_timedsend": (242, 182), "mq_timedreceive": (243, 183),
    "mq_notify": (244, 184), "mq_getsetattr": (245, 185), "kexec_load": (246, 104), "add_key": (248, 217),
    "request_key": (249, 218), "keyctl": (250, 219), "ioprio_set": (251, 30), "inotify_init": (253, None),
    "inotify_add_watch": (254, 27), "migrate_pages": (256, 238), "openat": (257, 56), "mknodat": (259, 33),
    "fchownat": (260, 54), "futimesat": (261, None), "fchmodat": (268, 53), "unshare": (272, 97),
    "move_pages": (279, 239), "utimensat": (280, 88), "inotify_init1": (294, 26),
    "rt_tgsigqueueinfo": (297, 240), "perf_event_open": (298, 241), "fanotify_init": (300, 262),
    "fanotify_mark": (301, 263), "prlimit64": (302, 261), "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265), "clock_adjtime": (305, 266), "setns": (308, 268),
    "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "kcmp": (312, 272),
    "finit_module": (313, 273), "sched_setattr": (314, 274), "memfd_create": (319, 279),
    "kexec_file_load": (320, 294), "bpf": (321, 280), "userfaultfd": (323, 282),
    "shmget": (29, 194), "shmat": (30, 196), "shmctl": (31, 195), "semget": (64, 190), "semop": (65, 193),
    "semctl": (66, 191), "msgget": (68, 186), "msgsnd": (69, 189), "msgrcv": (70, 188),
    "msgctl": (71, 187), "semtimedop": (220, 192),
    # Numbers shared by every architecture from here on.
    "pidfd_send_signal": (424, 424), "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427), "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430),
    "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433), "pidfd_open": (434, 434),
    "clone3": (435, 435), "openat2": (437, 437), "pidfd_getfd": (438, 438), "process_madvise": (440, 440),
    "mount_setattr": (442, 442), "quotactl_fd": (443, 443), "memfd_secret": (447, 447),
    "process_mrelease": (448, 448), "fchmodat2": (452, 452), "lsm_set_self_attr": (460, 460),
}  # fmt: skip

# Calls refused with EPERM, by what they would give a program.
_DENIED: dict[str, tuple[str, ...]] = {
    "new processes (threads are allowed, see clone)": ("fork", "vfork"),
    "sockets of any family: TCP, UDP, raw, netlink, and UNIX sockets by path or abstract name": ("socket",),
    "other processes: debugging, memory, handles, scheduling": (
        "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "process_madvise", "process_mrelease",
        "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "tkill", "setpriority", "ioprio_set",
        "migrate_pages", "move_pages",
    ),
    "kernel interfaces with a history of exploits; io_uring would also open sockets behind this filter": (
        "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
        "io_uring_setup", "io_uring_enter", "io_uring_register", "lsm_set_self_attr",
    ),
    "mounts and namespaces": (
        "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "open_tree", "move_mount",
        "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    ),
    "the machine: modules, reboot, swap, clocks, names, I/O ports, accounting, kernel log": (
        "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
        "swapon", "swapoff", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
        "sethostname", "setdomainname", "iopl", "ioperm", "vhangup", "acct", "quotactl", "quotactl_fd",
        "syslog", "lookup_dcookie",
    ),
    "file metadata Landlock does not govern (modes, owners, extended attributes, times), truncation "
    "by path, device nodes, file handles and watches on files outside the sandbox": (
        "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
        "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
        "utime", "utimes", "futimesat", "utimensat", "truncate", "mknod", "mknodat",
        "name_to_handle_at", "open_by_handle_at", "fanotify_init", "fanotify_mark",
        "inotify_init", "inotify_init1", "inotify_add_watch",
    ),
    "IPC objects shared with the whole host (SysV, POSIX message queues) and memory files, which "
    "escape the file-size and scratch-space limits": (
        "shmget", "shmat", "shmctl", "semget", "semop", "semctl", "semtimedop", "msgget", "msgsnd",
        "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",
        "mq_getsetattr", "memfd_create", "memfd_secret",
    ),
}  # fmt: skip
# Their arguments live in memory a filter cannot read; ENOSYS makes libc fall back to the older call.
_NOT_IMPLEMENTED = ("clone3", "openat2")
# Calls whose first argument is a process: allowed for the caller itself only (0, its pid, its group).
_SELF_ONLY = (
    "kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sched_setaffinity", "sched_setparam",
    "sched_setscheduler", "sched_setattr", "prlimit64",
)  # fmt: skip
_CLONE_THREAD = 0x00010000
_CLONE_NEW_NAMESPACES = 0x00020000 | 0x00000080 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000  # fmt: skip
_AF_UNIX, _SOCK_STREAM, _SOCK_TYPE_MASK = 1, 1, 0xF
_O_ACCMODE, _O_TRUNC = 0o3, 0o1000


class _Bpf:
    """A classic-BPF assembler with named forward jumps: enough to write a seccomp filter legibly."""

    _LOAD, _JEQ, _JGE, _JSET, _JA, _AND, _RET = 0x20, 0x15, 0x35, 0x45, 0x05, 0x54, 0x06

    def __init__(self) -> None:
        self.code: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def load(self, offset: int) -> None:
        """A = the 32-bit word of seccomp_data at ``offset``."""
        self.code.append((self._LOAD, None, None, offset))

    def load_arg(self, index: int) -> None:
        """A = the low 32 bits of argument ``index`` (int arguments: the upper half is undefined)."""
        self.load(16 + 8 * index)

    def mask(self, k: int) -> None:
        self.code.append((self._AND, None, None, k))

    def jump_if(self, k: int, then: str | None, otherwise: str | None = None, test: str = "eq") -> None:
        """Go to label ``then`` if A == k (``test="ge"``: A >= k; ``"set"``: A & k), else ``otherwise``;
        ``None`` falls through to the next instruction."""
        op = {"eq": self._JEQ, "ge": self._JGE, "set": self._JSET}[test]
        self.code.append((op, then, otherwise, k))

    def goto(self, label: str) -> None:
        self.code.append((self._JA, None, None, label))  # type: ignore[arg-type]

    def dispatch(self, cases: list[tuple[int, str]], otherwise: str) -> None:
        """Go to the label paired with A's value in ``cases``, else to ``otherwise``: a binary search
        (a few comparisons per call instead of one per case, both when the kernel runs the filter and
        when it pre-computes which calls are always allowed)."""
        cases = sorted(cases)
        if len(cases) <= 4:
            for value, label in cases:
                self.jump_if(value, label)
            self.goto(otherwise)
            return
        middle = len(cases) // 2
        upper = f"upper-{len(self.code)}"
        self.jump_if(cases[middle][0], upper, None, test="ge")
        self.dispatch(cases[:middle], otherwise)
        self.label(upper)
        self.dispatch(cases[middle:], otherwise)

    def ret(self, action: int) -> None:
        self.code.append((self._RET, None, None, action))

    def _offset(self, label: object, index: int, limit: int) -> int:
        """Instructions to skip from ``index`` to reach ``label`` (jumps only go forward)."""
        if label is None:
            return 0
        distance = self.labels[str(label)] - index - 1
        if not 0 <= distance <= limit:
            raise ValueError(f"BPF jump to {label!r} out of range")
        return distance

    def assemble(self) -> bytes:
        out = bytearray()
        for index, (op, then, otherwise, k) in enumerate(self.code):
            if op == self._JA:
                out += struct.pack("=HBBI", op, 0, 0, self._offset(k, index, 0xFFFF))
            else:
                jt, jf = self._offset(then, index, 0xFF), self._offset(otherwise, index, 0xFF)
                out += struct.pack("=HBBI", op, jt, jf, k & 0xFFFFFFFF)
        return bytes(out)


def seccomp_filter(arch: str, pid: int) -> bytes:
    """The BPF program for a child whose pid is ``pid`` on ``arch`` (``os.uname().machine``)."""
    audit_arch = _SECCOMP_ARCH[arch]
    column = 0 if arch == "x86_64" else 1

    targets = {name: "deny" for names in _DENIED.values() for name in names}
    targets.update({name: "enosys" for name in _NOT_IMPLEMENTED})
    targets.update({name: "self_only" for name in _SELF_ONLY})
    targets.update(clone="clone", socketpair="socketpair", openat="openat", open="open")
    cases = [(_NR[name][column], label) for name, label in targets.items() if _NR[name][column] is not None]

    bpf = _Bpf()
    bpf.load(_OFF_ARCH)
    bpf.jump_if(audit_arch, None, "kill")  # another ABI (i386 on x86_64): its numbers mean other calls
    bpf.load(_OFF_NR)
    if arch == "x86_64":
        bpf.jump_if(_X32_SYSCALL_BIT, "kill", None, test="ge")
    bpf.dispatch(cases, "other")  # type: ignore[arg-type]
    bpf.label("other")
    bpf.jump_if(_FIRST_UNKNOWN_NR, "enosys", None, test="ge")
    bpf.ret(_ALLOW)

    # clone: threads only (CLONE_THREAD), and no new namespaces with them.
    bpf.label("clone")
    bpf.load_arg(0)
    bpf.jump_if(_CLONE_THREAD, None, "deny", test="set")
    bpf.jump_if(_CLONE_NEW_NAMESPACES, "deny", "allow", test="set")
    # socketpair: a connected pair of UNIX stream sockets (multiprocessing.Pipe), nothing that can
    # address a socket outside.
    bpf.label("socketpair")
    bpf.load_arg(0)
    bpf.jump_if(_AF_UNIX, None, "deny")
    bpf.load_arg(1)
    bpf.mask(_SOCK_TYPE_MASK)
    bpf.jump_if(_SOCK_STREAM, "allow", "deny")
    # Signals and scheduling: the caller itself (0), its pid, or its process group (-pid after setsid).
    bpf.label("self_only")
    bpf.load_arg(0)
    bpf.jump_if(0, "allow")
    bpf.jump_if(pid, "allow")
    bpf.jump_if(-pid & 0xFFFFFFFF, "allow", "deny")
    # open with O_TRUNC but read-only truncates a file the program may only read (before Landlock ABI 3).
    if arch == "x86_64":
        bpf.label("open")
        bpf.load_arg(1)
        bpf.goto("check_trunc")
    bpf.label("openat")
    bpf.load_arg(2)
    bpf.label("check_trunc")
    bpf.jump_if(_O_TRUNC, None, "allow", test="set")
    bpf.jump_if(_O_ACCMODE, "allow", "deny", test="set")

    bpf.label("allow")
    bpf.ret(_ALLOW)
    bpf.label("deny")
    bpf.ret(_EPERM)
    bpf.label("enosys")
    bpf.ret(_ENOSYS)
    bpf.label("kill")
    bpf.ret(_KILL_PROCESS)
    return bpf.assemble()


class Confinement:
    """The Landlock ruleset of a zygote's children, built once, and the steps each child takes."""

    def __init__(self, spec: dict) -> None:
        import ctypes

        self._ctypes = ctypes
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self.arch = os.uname().machine
        if self.arch not in _SECCOMP_ARCH:
            raise OSError(f"no seccomp filter is written for the {self.arch} architecture")
        kernel_abi = landlock_abi()
        if kernel_abi < 1:
            raise OSError("the kernel has no Landlock (Linux >= 5.13 with landlock in the lsm= list)")
        self.abi = max(1, min(kernel_abi, int(spec.get("abi") or kernel_abi)))
        if self._libc.prctl(21, 0, 0, 0, 0) < 0:  # PR_GET_SECCOMP: fails without CONFIG_SECCOMP
            raise OSError("the kernel has no seccomp")
        self.root = os.geteuid() == 0
        self.last_cap = 0
        if self.root:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                self.last_cap = int(f.read())
        self.ruleset = self._ruleset(spec)
        # The seccomp filter of two children differs only in their pid: build it here once, in a
        # buffer each child patches (building it takes longer than the child's whole set-up).
        first, second = seccomp_filter(self.arch, 0x10000001), seccomp_filter(self.arch, 0x10000002)
        self._pid_slots = [
            (offset, 1 if struct.unpack_from("=I", first, offset)[0] == 0x10000001 else -1)
            for offset in range(4, len(first), 8)
            if first[offset : offset + 4] != second[offset : offset + 4]
        ]
        self._filter = ctypes.create_string_buffer(first, len(first))

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        self._fprog = SockFprog(len(first) // 8, ctypes.addressof(self._filter))

    def _call(self, *args: object) -> int:
        result = self._libc.syscall(*args)
        if result < 0:
            err = self._ctypes.get_errno()
            raise OSError(err, f"system call {args[0]}: {os.strerror(err)}")
        return int(result)

    def _ruleset(self, spec: dict) -> int:
        """A Landlock ruleset: read access to ``read``, everything in ``write``, read/write ``devices``."""
        rights = landlock_rights(self.abi)
        fields = [rights, _NET_TCP if self.abi >= 4 else 0, _SCOPE_ALL if self.abi >= 6 else 0]
        size = 8 if self.abi < 4 else 16 if self.abi < 6 else 24  # the struct as the kernel's ABI knows it
        attr = self._ctypes.create_string_buffer(struct.pack("=QQQ", *fields)[:size], size)
        fd = self._call(_NR_LANDLOCK_CREATE_RULESET, attr, size, 0)
        read_only = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
        rules = [(p, read_only) for p in spec.get("read", [])]
        rules += [(p, rights) for p in spec.get("write", [])]
        rules += [(p, _FS_READ_FILE | _FS_WRITE_FILE) for p in spec.get("devices", [])]
        for path, allowed in rules:
            try:
                parent = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a path this host lacks
            try:
                if not stat.S_ISDIR(os.fstat(parent).st_mode):
                    allowed &= _FS_FILE_ONLY
                rule = self._ctypes.create_string_buffer(struct.pack("=Qi", allowed & rights, parent), 12)
                self._call(_NR_LANDLOCK_ADD_RULE, fd, _LANDLOCK_RULE_PATH_BENEATH, rule, 0)
            finally:
                os.close(parent)
        # Far above the descriptors a child rearranges (see _Zygote._spawn), so none overwrites it.
        high = fcntl_dup(fd, 1000)
        os.close(fd)
        return high

    def enter(self) -> None:
        """In a freshly forked child: drop privileges, then enter the Landlock domain (irreversibly)."""
        libc = self._libc
        self._drop_capabilities()
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(self._ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        self._call(_NR_LANDLOCK_RESTRICT_SELF, self.ruleset, 0)
        os.close(self.ruleset)

    def seal(self) -> None:
        """Install the seccomp filter (this child's pid patched in): the last step before the program."""
        pid = os.getpid()
        for offset, sign in self._pid_slots:
            struct.pack_into("=I", self._filter, offset, (sign * pid) & 0xFFFFFFFF)
        if self._libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, self._ctypes.byref(self._fprog), 0, 0) != 0:
            raise OSError(self._ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")

    def _drop_capabilities(self) -> None:
        """No capabilities, for good: not even executing a program gives them back.

        Root keeps its uid (the Python installation may be readable by root only) but loses every
        capability; without them uid 0 is an ordinary user that happens to own root's files, and
        Landlock keeps it away from those. ``no_new_privs`` (set next) already stops execve from
        granting capabilities; where root may (``CAP_SETPCAP``), ``SECBIT_NOROOT`` and an empty
        bounding set say so twice. Any other user normally has none to drop.
        """
        ctypes, libc = self._ctypes, self._libc
        if self.root and libc.prctl(PR_SET_SECUREBITS, _SECBIT_NOROOT_LOCKED, 0, 0, 0) == 0:
            for cap in range(self.last_cap + 1):
                libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
        data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (two 32-bit halves): none
        if libc.capset(header, data) != 0:
            raise OSError(ctypes.get_errno(), "capset")


def fcntl_dup(fd: int, lowest: int) -> int:
    """A close-on-exec duplicate of ``fd`` numbered ``lowest`` or above."""
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)


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
