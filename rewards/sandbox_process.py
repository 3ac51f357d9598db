"""One sandbox process: a zygote started under an isolation layer, and the deadline-guarded protocol
to it (``rewards/sandbox_worker.py`` is the other end).

A :class:`SandboxProcess` starts its sandbox (``sandbox_layers.zygote_command``), waits for the zygote's
greeting, sends it one request at a time with the raw frames that travel with it, and reads the answer
and its attachments under a deadline. A sandbox that misses the deadline, dies, or reports anything
suspicious is killed and started again, and every sandbox is replaced after ``programs_per_sandbox``
programs. The pool (``rewards/sandbox.py``) hands each of these to one thread at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import select
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future
from typing import Any

from rewards import sandbox_worker
from rewards.process import PerProcess
from rewards.sandbox_config import SandboxConfig, SandboxStartError
from rewards.sandbox_layers import zygote_command
from rewards.sandbox_worker import frame

# ----------------------------------------------------------------------------------------------------
# Process spawning from one long-lived thread
# ----------------------------------------------------------------------------------------------------


class _Spawner:
    """Starts sandbox processes from a single long-lived thread.

    ``--die-with-parent`` is PR_SET_PDEATHSIG, which fires when the *thread* that forked the process
    exits, not the process: a sandbox started from a short-lived executor thread would be killed when
    that thread ends. Forking from this daemon thread ties sandboxes to the life of the process.
    The thread starts with the first request, so a spawner that loses a race to be this process's
    one (see ``_SPAWNER``) never starts one.
    """

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[list[str], dict[str, Any], Future]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _loop(self) -> None:
        while True:
            argv, kwargs, future = self._requests.get()
            try:
                future.set_result(subprocess.Popen(argv, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="cascade-sandbox-spawner", daemon=True
                )
                self._thread.start()
        future: Future = Future()
        self._requests.put((argv, kwargs, future))
        return future.result()


# One spawner per process: a forked child starts its own thread (the parent's does not exist there).
_SPAWNER: PerProcess[_Spawner] = PerProcess("sandbox spawner")


def _spawner() -> _Spawner:
    return _SPAWNER.get("spawner", _Spawner)


# ----------------------------------------------------------------------------------------------------
# One sandbox process at a time
# ----------------------------------------------------------------------------------------------------


class SandboxProcess:
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
        self.proc = _spawner().popen(
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
