"""The child harnesses: what a forked child of the zygote does with one program and its tests.

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

import contextlib
import json
import os
import sys

from rewards.sandbox_wire import TransferError, decode_value, encode_value, read_frame, write_frame

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


def child_stdio(code: str, hard_exit) -> None:  # type: ignore[no-untyped-def]
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


def child_call(code: str, fn_name: str, cases: list, report_fd: int, hard_exit) -> None:  # type: ignore[no-untyped-def]
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


def child_serve(code: str, sock_fd: int, hard_exit) -> None:  # type: ignore[no-untyped-def]
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


def child_check(test_fd: int, entry_point: str, sock_fd: int, verdict_fd: int, hard_exit) -> None:  # type: ignore[no-untyped-def]
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


def child_inprocess_assert(
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
