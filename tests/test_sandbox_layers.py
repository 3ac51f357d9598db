"""The isolation ladder of the code sandbox: which layer a configuration gets, the refusal when none
works, ``isolation: none`` only by name, the isolation recorded with the scores (preflight, results,
CLI), the seccomp filter's decisions (table-driven, both architectures, through a BPF interpreter),
and ordinary programs scoring the same under every layer. The attacks are in test_sandbox_hostile.py.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
import uuid
from pathlib import Path

import pytest

from rewards import build_reward, preflight, sandbox_layers, sandbox_worker
from rewards.__main__ import main as rewards_cli
from rewards.code import code_reward, code_reward_details
from rewards.sandbox import Limits, SandboxConfig, SandboxPool, SandboxUnavailableError, probe_isolation
from tests.conftest import in_forked_child

HONEST = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
ADD = {"kind": "stdio", "cases": [{"input": "2 3\n", "output": "5\n"}]}
OPTS = {"timeout_s": 2.0, "workers": 1}


def missing_bwrap() -> str:
    """A bubblewrap path that does not exist (new each time, so no cached probe answers for it)."""
    return f"/nonexistent/{uuid.uuid4().hex}/bwrap"


def landlock_or_skip() -> None:
    try:
        probe_isolation(SandboxConfig(isolation="landlock"))
    except SandboxUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI tests the Landlock layer, which fails here: {exc}")
        pytest.skip(f"landlock layer unavailable here: {exc}")


# ------------------------------------------------------------------------------------------------
# Choosing a layer
# ------------------------------------------------------------------------------------------------


def test_unknown_isolation_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match=r"auto, bubblewrap, landlock, none.*did you mean 'landlock'"):
        SandboxConfig(isolation="landlok")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sandbox isolation must be one of"):
        code_reward([HONEST], [ADD], isolation="chroot")


def test_auto_uses_landlock_when_bubblewrap_is_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    landlock_or_skip()
    monkeypatch.setenv("CASCADE_SANDBOX_BWRAP", missing_bwrap())
    assert probe_isolation(SandboxConfig()).mode == "landlock"
    details = code_reward_details([HONEST], [ADD], **OPTS)
    assert details[0].score == 1.0 and details[0].isolation == "landlock"


def test_a_named_layer_never_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # Landlock works here, but bubblewrap was asked for by name: refuse rather than use another layer.
    monkeypatch.setenv("CASCADE_SANDBOX_BWRAP", missing_bwrap())
    with pytest.raises(SandboxUnavailableError, match="isolation 'bubblewrap'.*no executable bubblewrap"):
        code_reward([HONEST], [ADD], isolation="bubblewrap", **OPTS)


def test_refuses_when_no_layer_works(monkeypatch: pytest.MonkeyPatch) -> None:
    # No bubblewrap and a kernel without Landlock: every entry point refuses, in one sentence that
    # says why and names the three ways out; nothing runs unisolated.
    monkeypatch.setenv("CASCADE_SANDBOX_BWRAP", missing_bwrap())
    monkeypatch.setattr(sandbox_layers, "landlock_abi", lambda: 0)
    attempts = [
        lambda: SandboxPool(SandboxConfig(workers=1)),
        lambda: code_reward([HONEST], [ADD], **OPTS),
        lambda: preflight("code", {}),
        lambda: build_reward("code", {"timeout_s": 2}),
    ]
    for attempt in attempts:
        with pytest.raises(SandboxUnavailableError) as caught:
            attempt()
        message = str(caught.value)
        assert "no executable bubblewrap" in message and "no Landlock" in message
        assert "install bubblewrap" in message and "user namespaces" in message
        assert "isolation: none" in message and "--arg isolation=none" in message
        assert message.count(". ") == 0 and "\n" not in message  # one sentence


def test_none_runs_only_by_name_and_still_limits(caplog: pytest.LogCaptureFixture) -> None:
    marker = f"marker{uuid.uuid4().hex[:12]}"
    config = SandboxConfig(workers=1, isolation="none", bwrap=missing_bwrap())
    with caplog.at_level(logging.WARNING, logger="rewards.sandbox"):
        pool, second = SandboxPool(config), SandboxPool(config)
    try:
        warnings = [r for r in caplog.records if "isolation 'none' was asked for" in r.getMessage()]
        assert len(warnings) == 1
        assert pool.isolation.mode == "none" and not pool.isolation.isolated
        ok = pool.run({"mode": "stdio", "code": "print(int(input()) * 2)", "stdin": "21\n"}, Limits(wall_s=2))
        assert ok["status"] == "ok" and ok["attachments"]["stdout"] == "42\n"
        # The wall clock and the clean-up of leftover processes still hold.
        started = time.monotonic()
        stuck = pool.run(
            {
                "mode": "stdio",
                "code": f"import subprocess\nsubprocess.Popen(['sh', '-c', 'sleep 1000 # {marker}'])\nwhile True:\n    pass",
                "stdin": "",
            },
            Limits(wall_s=1),
        )
        assert stuck["status"] == "timeout" and time.monotonic() - started < 5
        assert not [p for p in Path("/proc").glob("[0-9]*") if marker.encode() in _cmdline(p)]
        env = pool.run(
            {"mode": "stdio", "code": "import os\nprint(sorted(os.environ))", "stdin": ""}, Limits(wall_s=2)
        )
        assert "WANDB_API_KEY" not in env["attachments"]["stdout"]
    finally:
        pool.close()
        second.close()


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


# ------------------------------------------------------------------------------------------------
# The pool: its size, one per configuration and per process
# ------------------------------------------------------------------------------------------------

DEFAULT_WORKERS = [
    # (environment, CPUs this process may use, sandboxes; an error's text where it is refused)
    pytest.param({}, 2, 4, id="two-per-cpu"),
    pytest.param({"LOCAL_WORLD_SIZE": "2"}, 2, 2, id="shared-by-two-ranks"),
    pytest.param({"LOCAL_WORLD_SIZE": "8"}, 2, 1, id="at-least-one"),
    pytest.param({"LOCAL_WORLD_SIZE": "x"}, 3, 6, id="unreadable-world-size-is-one"),
    pytest.param({"CASCADE_SANDBOX_WORKERS": "3", "LOCAL_WORLD_SIZE": "2"}, 2, 3, id="by-hand-as-is"),
    pytest.param({"CASCADE_SANDBOX_WORKERS": "0"}, 2, "must be at least 1", id="by-hand-zero"),
    pytest.param({"CASCADE_SANDBOX_WORKERS": "two"}, 2, "must be a whole number", id="by-hand-text"),
]


@pytest.mark.parametrize(("env", "cpus", "expected"), DEFAULT_WORKERS)
def test_default_workers(monkeypatch: pytest.MonkeyPatch, env: dict, cpus: int, expected: int | str) -> None:
    from rewards import sandbox

    for name in ("CASCADE_SANDBOX_WORKERS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sandbox, "available_cpus", lambda: cpus)
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=f"CASCADE_SANDBOX_WORKERS {expected}"):
            sandbox.default_workers()
    else:
        assert sandbox.default_workers() == expected


def test_pools_are_per_configuration_and_per_process() -> None:
    """A forked child (a DataLoader worker) starts sandboxes of its own; the parent's keep working."""
    from rewards.sandbox import get_pool

    config = SandboxConfig(workers=1)
    first = get_pool(config)
    assert get_pool(SandboxConfig(workers=1)) is first and get_pool(SandboxConfig(workers=2)) is not first
    request = {"mode": "stdio", "code": "print(int(input()) * 2)", "stdin": "21\n"}

    def doubled(pool: SandboxPool) -> bool:
        response = pool.run(request, Limits(wall_s=10))
        return (response.get("attachments") or {}).get("stdout") == "42\n"

    def in_child() -> bool:  # a new pool, whose sandbox runs a program
        child = get_pool(config)
        ok = child is not first and doubled(child)
        child.close()
        return ok

    assert in_forked_child(in_child)
    assert doubled(first)


# ------------------------------------------------------------------------------------------------
# The isolation recorded with the scores
# ------------------------------------------------------------------------------------------------


def test_preflight_tells_the_isolation_the_scores_get() -> None:
    facts = preflight("code", {"timeout_s": 2})
    assert set(facts) == {"isolation", "isolation_detail"} and facts["isolation"] in (
        "bwrap",
        "bwrap-root",
        "landlock",
    )
    assert code_reward_details([HONEST], [ADD], timeout_s=2)[0].isolation == facts["isolation"]
    assert build_reward("code").facts == facts  # type: ignore[attr-defined]
    assert preflight("math") == {}
    with pytest.raises(ValueError, match="assert_mode"):
        preflight("code", {"assert_mode": "inproces"})


@pytest.mark.parametrize(
    "abi, named, not_named",
    [
        (1, ["TCP", "signals, abstract sockets"], []),  # Linux 5.13
        (4, ["signals, abstract sockets"], ["TCP"]),  # Linux 6.7: TCP rules
        (6, [], ["TCP", "signals", "seccomp alone"]),  # Linux 6.12: scoped signals and sockets
    ],
)
def test_landlock_detail_says_what_rests_on_seccomp_alone(
    abi: int, named: list[str], not_named: list[str]
) -> None:
    landlock_or_skip()
    if sandbox_layers.landlock_abi() < abi:
        pytest.skip(f"the kernel's Landlock ABI is below {abi}")
    isolation = probe_isolation(SandboxConfig(isolation="landlock", landlock_abi=abi))
    assert isolation.landlock_abi == abi and isolation.detail.startswith(f"Landlock ABI {abi} + seccomp")
    assert all(word in isolation.detail for word in named) and not any(
        w in isolation.detail for w in not_named
    )


def test_score_cli_prints_and_writes_the_isolation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landlock_or_skip()
    rows = [{"completion": HONEST, "tests": ADD}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    argv = ["score", "--reward", "code", "--input", str(tmp_path / "in.jsonl"), "--output", str(out)]
    assert rewards_cli([*argv, "--arg", "isolation=landlock", "--arg", "workers=1"]) == 0
    assert "isolation=landlock (Landlock ABI" in capsys.readouterr().out
    row = json.loads(out.read_text())
    assert row["score"] == 1.0 and row["isolation"] == "landlock"


def test_score_cli_refuses_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASCADE_SANDBOX_BWRAP", missing_bwrap())
    monkeypatch.setattr(sandbox_layers, "landlock_abi", lambda: 0)
    (tmp_path / "in.jsonl").write_text(json.dumps({"completion": HONEST, "tests": ADD}) + "\n")
    argv = [
        "score",
        "--reward",
        "code",
        "--input",
        str(tmp_path / "in.jsonl"),
        "--output",
        str(tmp_path / "o"),
    ]
    assert rewards_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: reward 'code' cannot run here: ") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    # Named, it runs (with its one warning).
    assert rewards_cli([*argv, "--arg", "isolation=none"]) == 0
    assert json.loads((tmp_path / "o").read_text())["isolation"] == "none"


# ------------------------------------------------------------------------------------------------
# Ordinary programs do not notice the layer
# ------------------------------------------------------------------------------------------------

ORDINARY = [
    # Files in the working directory, a subdirectory, renames across directories, tempfile.
    "import os, tempfile\nopen('a.txt', 'w').write('x' * 10)\nos.makedirs('d/e')\nos.rename('a.txt', 'd/e/b.txt')\n"
    "with tempfile.TemporaryDirectory() as t:\n    open(os.path.join(t, 'f'), 'w').write('1')\nprint(open('d/e/b.txt').read() == 'x' * 10)",
    # Threads, a thread pool, a pipe between them.
    "import threading, multiprocessing\nfrom concurrent.futures import ThreadPoolExecutor\na, b = multiprocessing.Pipe()\n"
    "t = threading.Thread(target=lambda: a.send(7))\nt.start()\nt.join()\nwith ThreadPoolExecutor(4) as ex:\n    s = sum(ex.map(abs, range(100)))\n"
    "print(b.recv() == 7 and s == 4950)",
    # Signals to itself, its own limits and scheduling, the clock and the time zone, random bytes.
    "import os, signal, resource, time, datetime\ngot = []\nsignal.signal(signal.SIGUSR1, lambda *a: got.append(1))\n"
    "os.kill(os.getpid(), signal.SIGUSR1)\nsignal.raise_signal(signal.SIGUSR1)\nresource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
    "os.sched_setaffinity(0, os.sched_getaffinity(0))\ntime.localtime()\ndatetime.datetime.now()\nprint(got == [1, 1] and len(os.urandom(8)) == 8)",
    # Standard-library modules the zygote did not preload, deep recursion, big integers, /dev/null.
    "import sys, fractions, sqlite3, xml.dom.minidom, zlib\nsys.setrecursionlimit(10000)\nf = lambda n: n and 1 + f(n - 1)\n"
    "open('/dev/null', 'w').write('x')\nprint(f(5000) == 5000 and len(str(3 ** 10000)) > 4000 and zlib.decompress(zlib.compress(b'a')) == b'a')",
]


PRIVILEGES = (
    # No capability left (effective, permitted, inheritable) and no way to gain one: no_new_privs.
    "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nheader = (ctypes.c_uint32 * 2)(0x20080522, 0)\n"
    "data = (ctypes.c_uint32 * 6)()\nlibc.capget(header, data)\nprint(list(data) == [0] * 6 and libc.prctl(39, 0, 0, 0, 0) == 1)"
)


@pytest.mark.parametrize("layer", ["bubblewrap", "landlock"])
def test_ordinary_programs_pass_under_every_layer(layer: str) -> None:
    # ... and run without privileges (the last program).
    try:
        probe_isolation(SandboxConfig(isolation=layer))  # type: ignore[arg-type]
    except SandboxUnavailableError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    programs = [*ORDINARY, PRIVILEGES]
    tests = [{"kind": "stdio", "cases": [{"input": "", "output": "True\n"}]}] * len(programs)
    details = code_reward_details(
        [f"```python\n{code}\n```" for code in programs], tests, isolation=layer, timeout_s=10, workers=2
    )
    assert [d.score for d in details] == [1.0] * len(programs), [d.error for d in details if d.score != 1.0]


# ------------------------------------------------------------------------------------------------
# The seccomp filter, decision by decision (a classic-BPF interpreter runs it on system calls)
# ------------------------------------------------------------------------------------------------

ALLOW, KILL, EPERM, ENOSYS = 0x7FFF0000, 0x80000000, 0x00050001, 0x00050026
X86_64, AARCH64, I386 = 0xC000003E, 0xC00000B7, 0x40000003
PID = 4242
CLONE_THREAD_FLAGS = 0x3D0F00  # what glibc's pthread_create passes: VM, FS, FILES, SIGHAND, THREAD, ...
O_RDONLY, O_WRONLY, O_CREAT, O_TRUNC, O_CLOEXEC = 0, 1, 0o100, 0o1000, 0o2000000


def run_filter(program: bytes, arch: int, nr: int, *args: int) -> int:
    """What the kernel would answer: run the BPF program on one seccomp_data."""
    data = struct.pack(
        "=iIQ6Q", nr, arch, 0, *(a & 0xFFFFFFFFFFFFFFFF for a in (*args, 0, 0, 0, 0, 0, 0)[:6])
    )
    code = [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]
    pc = acc = 0
    while True:
        op, jt, jf, k = code[pc]
        pc += 1
        if op == 0x20:  # ld [k]
            acc = struct.unpack_from("=I", data, k)[0]
        elif op == 0x54:  # and #k
            acc &= k
        elif op == 0x05:  # ja
            pc += k
        elif op in (0x15, 0x35, 0x45):  # jeq, jge, jset
            taken = acc == k if op == 0x15 else acc >= k if op == 0x35 else bool(acc & k)
            pc += jt if taken else jf
        elif op == 0x06:  # ret
            return k
        else:
            raise AssertionError(f"unknown BPF opcode {op:#x}")


FILTER_CASES = [
    # (architecture, system call number, arguments, answer) -- x86_64 numbers first.
    pytest.param("x86_64", 39, (), ALLOW, id="getpid"),
    pytest.param("x86_64", 0, (3, 0, 10), ALLOW, id="read"),
    pytest.param("x86_64", 57, (), EPERM, id="fork"),
    pytest.param("x86_64", 58, (), EPERM, id="vfork"),
    pytest.param("x86_64", 56, (CLONE_THREAD_FLAGS,), ALLOW, id="clone-thread"),
    pytest.param("x86_64", 56, (17,), EPERM, id="clone-process"),  # SIGCHLD: a fork
    pytest.param("x86_64", 56, (CLONE_THREAD_FLAGS | 0x10000000,), EPERM, id="clone-thread-newuser"),
    pytest.param("x86_64", 435, (), ENOSYS, id="clone3-falls-back"),
    pytest.param("x86_64", 41, (2, 1, 0), EPERM, id="socket-tcp"),
    pytest.param("x86_64", 41, (1, 1, 0), EPERM, id="socket-unix"),
    pytest.param("x86_64", 53, (1, 1 | 0o2000000, 0), ALLOW, id="socketpair-unix-stream-cloexec"),
    pytest.param("x86_64", 53, (1, 2, 0), EPERM, id="socketpair-unix-dgram"),
    pytest.param("x86_64", 53, (2, 1, 0), EPERM, id="socketpair-inet"),
    pytest.param("x86_64", 62, (PID, 9), ALLOW, id="kill-self"),
    pytest.param("x86_64", 62, (0, 9), ALLOW, id="kill-own-group"),
    pytest.param("x86_64", 62, (-PID, 9), ALLOW, id="kill-own-group-by-id"),
    pytest.param("x86_64", 62, (PID | 0xDEAD00000000, 9), ALLOW, id="kill-self-upper-bits-ignored"),
    pytest.param("x86_64", 62, (-1, 9), EPERM, id="kill-everyone"),
    pytest.param("x86_64", 62, (PID + 1, 9), EPERM, id="kill-other"),
    pytest.param("x86_64", 62, (1, 9), EPERM, id="kill-init"),
    pytest.param("x86_64", 234, (PID, PID + 3, 10), ALLOW, id="tgkill-own-thread"),
    pytest.param("x86_64", 234, (PID - 1, PID - 1, 10), EPERM, id="tgkill-other"),
    pytest.param("x86_64", 200, (PID, 9), EPERM, id="tkill"),
    pytest.param("x86_64", 302, (0, 7, 0, 0), ALLOW, id="prlimit-self"),
    pytest.param("x86_64", 302, (PID - 1, 7, 0, 0), EPERM, id="prlimit-other"),
    pytest.param("x86_64", 203, (PID - 1, 8, 0), EPERM, id="setaffinity-other"),
    pytest.param("x86_64", 141, (0, 0, 19), EPERM, id="setpriority"),
    pytest.param("x86_64", 257, (-100, 0, O_RDONLY | O_CLOEXEC), ALLOW, id="openat-read"),
    pytest.param("x86_64", 257, (-100, 0, O_WRONLY | O_CREAT | O_TRUNC), ALLOW, id="openat-write-truncate"),
    pytest.param("x86_64", 257, (-100, 0, O_RDONLY | O_TRUNC), EPERM, id="openat-read-truncate"),
    pytest.param("x86_64", 2, (0, O_RDONLY | O_TRUNC), EPERM, id="open-read-truncate"),
    pytest.param("x86_64", 2, (0, O_RDONLY), ALLOW, id="open-read"),
    pytest.param("x86_64", 437, (), ENOSYS, id="openat2-falls-back"),
    pytest.param("x86_64", 101, (16, 1), EPERM, id="ptrace"),
    pytest.param("x86_64", 425, (8, 0), EPERM, id="io_uring"),
    pytest.param("x86_64", 272, (0x10000000,), EPERM, id="unshare"),
    pytest.param("x86_64", 90, (0, 0o777), EPERM, id="chmod"),
    pytest.param("x86_64", 452, (), EPERM, id="fchmodat2"),
    pytest.param("x86_64", 29, (0, 4096, 0o1600), EPERM, id="shmget"),
    pytest.param("x86_64", 319, (), EPERM, id="memfd_create"),
    pytest.param("x86_64", 444, (0, 0, 1), ALLOW, id="landlock-may-restrict-further"),
    pytest.param("x86_64", 462, (), ALLOW, id="mseal"),
    pytest.param("x86_64", 463, (), ENOSYS, id="unreviewed-new-call"),
    pytest.param("x86_64", 0x40000000 | 39, (), KILL, id="x32-abi"),
    pytest.param("i386", 20, (), KILL, id="i386-abi"),
    # aarch64: other numbers for the same decisions.
    pytest.param("aarch64", 172, (), ALLOW, id="arm-getpid"),
    pytest.param("aarch64", 220, (17,), EPERM, id="arm-clone-process"),
    pytest.param("aarch64", 220, (CLONE_THREAD_FLAGS,), ALLOW, id="arm-clone-thread"),
    pytest.param("aarch64", 198, (2, 2, 0), EPERM, id="arm-socket-udp"),
    pytest.param("aarch64", 199, (1, 1, 0), ALLOW, id="arm-socketpair"),
    pytest.param("aarch64", 129, (PID + 1, 9), EPERM, id="arm-kill-other"),
    pytest.param("aarch64", 129, (PID, 9), ALLOW, id="arm-kill-self"),
    pytest.param("aarch64", 56, (-100, 0, O_RDONLY | O_TRUNC), EPERM, id="arm-openat-read-truncate"),
    pytest.param("aarch64", 56, (-100, 0, O_RDONLY), ALLOW, id="arm-openat-read"),
    pytest.param("aarch64", 117, (16, 1), EPERM, id="arm-ptrace"),
    pytest.param("aarch64", 57, (3,), ALLOW, id="arm-57-is-close"),  # x86_64's fork number is close here
    pytest.param("x86_64-on-arm", 39, (), KILL, id="arm-filter-other-arch"),
]


@pytest.mark.parametrize("arch, nr, args, answer", FILTER_CASES)
def test_seccomp_filter_decisions(arch: str, nr: int, args: tuple[int, ...], answer: int) -> None:
    audit = {"x86_64": X86_64, "i386": I386, "aarch64": AARCH64, "x86_64-on-arm": X86_64}[arch]
    filter_arch = "aarch64" if arch.startswith("aarch64") or arch.endswith("on-arm") else "x86_64"
    program = sandbox_worker.seccomp_filter(filter_arch, PID)
    assert run_filter(program, audit, nr, *args) == answer


def test_every_denied_call_has_a_number() -> None:
    # A name missing from the table would silently not be filtered.
    for names in sandbox_worker._DENIED.values():
        for name in names:
            x86, arm = sandbox_worker._NR[name]
            assert x86 is not None or arm is not None, name
    for arch in ("x86_64", "aarch64"):
        program = sandbox_worker.seccomp_filter(arch, PID)
        assert len(program) % 8 == 0 and len(program) // 8 < 4096  # the kernel's BPF_MAXINSNS


def test_the_sandbox_program_fits_one_command_line_argument() -> None:
    # the worker's source is one argument (python -I -S -c SOURCE); Linux caps one argv string at 32 pages
    # (MAX_ARG_STRLEN, 128 KiB), past which starting a sandbox fails with E2BIG
    assert len(sandbox_layers.WORKER_SOURCE.encode()) < 128 * 1024
