"""Hostile programs against the code sandbox, under each isolating layer.

Every program here attacks the host or the harness. Each must score 0, end within its limit, and leave
the host as it was: no process it started still alive (found by a marker in /proc/*/cmdline), sentinel
files unchanged (content, mode and time), nothing new next to them, no connection accepted and no
datagram received by listening sockets (TCP and UDP on 127.0.0.1, an abstract and a path UNIX socket),
a bystander process alive, and the sandbox pool still scoring the next honest program correctly.

The whole battery runs once per layer of the isolation ladder, forced by the code reward's
``isolation`` argument: ``bubblewrap`` and ``landlock`` (what a host without bubblewrap gets). A layer
this host lacks is skipped, except under CI (``$CI`` set), where both must run.

Where an attack could "succeed" by printing something, the test's expected output is exactly what the
program prints when the attack succeeds, so a score of 0 means the attack failed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rewards.code import code_reward, code_reward_details
from rewards.sandbox import SandboxConfig, SandboxUnavailableError, probe_isolation, shutdown_pools

ROOT = Path(__file__).resolve().parent.parent
MARK = f"hostile{uuid.uuid4().hex[:12]}"  # in the command line of every process a hostile program starts
SECRET = f"secret-{uuid.uuid4().hex}"
REAL_HOME = os.path.expanduser("~")  # before the host fixture points $HOME at a bait directory
OPTS = {"timeout_s": 2.0, "workers": 2, "memory_mb": 256}
LAYER_MODES = {"bubblewrap": ("bwrap", "bwrap-root"), "landlock": ("landlock",)}  # what results record


@pytest.fixture(scope="module", params=["bubblewrap", "landlock"])
def opts(request: pytest.FixtureRequest) -> dict:
    """The code reward's options with the isolation layer forced (the battery runs once per layer)."""
    try:
        probe_isolation(SandboxConfig(isolation=request.param))
    except SandboxUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(
                f"CI runs the hostile battery under every layer, and {request.param} fails here: {exc}"
            )
        pytest.skip(f"{request.param} layer unavailable here: {exc}")
    return {**OPTS, "isolation": request.param}


@dataclass
class Host:
    """Bait on the host side."""

    tmp_dir: Path
    work_dir: Path  # inside the project tree (/work/...)
    home: Path
    listener: socket.socket  # TCP on 127.0.0.1
    udp: socket.socket  # UDP on 127.0.0.1
    abstract: socket.socket  # a UNIX socket in the abstract namespace
    unix: socket.socket  # a UNIX socket bound to a path in tmp_dir
    bystander: subprocess.Popen

    def files(self) -> dict[str, tuple[bytes, int, int]]:
        state = {}
        for directory in (self.tmp_dir, self.work_dir, self.home):
            for path in sorted(directory.rglob("*")):
                info = path.lstat()
                content = path.read_bytes() if path.is_file() else b"<other>"
                state[str(path)] = (content, info.st_mtime_ns, info.st_mode)
        return state

    def fill(self, code: str) -> str:
        return (
            code.replace("TMP_DIR", str(self.tmp_dir))
            .replace("WORK_DIR", str(self.work_dir))
            .replace("HOST_HOME", str(self.home))
            .replace("REAL_HOME", REAL_HOME)
            .replace("UDP_PORT", str(self.udp.getsockname()[1]))
            .replace("PORT", str(self.listener.getsockname()[1]))
            .replace("ABSTRACT", self.abstract.getsockname()[1:].decode())
            .replace("TRAINER_PID", str(os.getpid()))
            .replace("BYSTANDER_PID", str(self.bystander.pid))
            .replace("MARK", MARK)
            .replace("ROOT", str(ROOT))
        )

    def fill_options(self, options: dict) -> dict:
        """Options may name host paths too (e.g. a directory exposed read-only)."""
        sandbox = options.get("sandbox")
        if not sandbox:
            return options
        return {**options, "sandbox": {k: [self.fill(v) for v in vs] for k, vs in sandbox.items()}}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    saved = {k: os.environ.get(k) for k in ("WANDB_API_KEY", "HF_TOKEN", "HOME")}
    tmp_dir = tmp_path_factory.mktemp("host")
    home = tmp_path_factory.mktemp("home")
    work_dir = Path(tempfile.mkdtemp(prefix=".sandbox-sentinel-", dir=ROOT))
    for directory in (tmp_dir, work_dir):
        (directory / "sentinel.txt").write_text("untouched\n")
    (home / "credentials").write_text(SECRET + "\n")
    # Secrets in our environment before any sandbox starts: sandboxes must not see them.
    shutdown_pools()
    os.environ.update(WANDB_API_KEY=SECRET, HF_TOKEN=SECRET, HOME=str(home))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(f"\0cascade-{MARK}")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(tmp_dir / "host.sock"))
    for sock in (listener, abstract, unix):
        sock.listen(16)
    for sock in (listener, udp, abstract, unix):
        sock.setblocking(False)
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        yield Host(tmp_dir, work_dir, home, listener, udp, abstract, unix, bystander)
    finally:
        for sock in (listener, udp, abstract, unix):
            sock.close()
        bystander.kill()
        bystander.wait()
        shutil.rmtree(work_dir, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutdown_pools()


def marked_processes() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if MARK.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def assert_host_untouched(host: Host, before: dict[str, tuple[bytes, int, int]]) -> None:
    # Processes first: a daemon left behind would change the files only later.
    deadline = time.monotonic() + 3
    while marked_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marked_processes() == [], "a process started by the program is still running"
    assert host.files() == before, "files on the host changed"
    for sock in (host.listener, host.abstract, host.unix):
        with pytest.raises(BlockingIOError):
            sock.accept()  # no connection ever reached a listener of the host
    with pytest.raises(BlockingIOError):
        host.udp.recv(64)  # no datagram either
    assert host.bystander.poll() is None, "a host process was killed"
    assert os.environ["WANDB_API_KEY"] == SECRET


HONEST = (
    "```python\na, b = map(int, input().split())\nprint(a + b)\n```",
    {"kind": "stdio", "cases": [{"input": "2 3\n", "output": "5\n"}]},
)


def stdio(expected: str) -> dict:
    return {"kind": "stdio", "cases": [{"input": "1 2\n", "output": expected}]}


CALL = {
    "kind": "call",
    "fn_name": "add",
    "cases": [{"args": [1, 2], "expected": 3}, {"args": [5, 5], "expected": 10}],
}
ASSERT = {
    "kind": "assert",
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(5, 5) == 10\n",
    "entry_point": "add",
}
WRONG_FN = "def add(a, b):\n    return None\n"

HOSTILE = [
    # Fork bomb: forks until the process limit, forever; ends by the wall clock.
    pytest.param(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        stdio("ok"),
        {},
        id="fork-bomb",
    ),
    # Shell fork bomb started through os.system; the program itself returns at once.
    pytest.param(
        "import os\nos.system('f(){ f | f & }; f # MARK')\nimport time\ntime.sleep(5)",
        stdio("ok"),
        {},
        id="shell-fork-bomb",
    ),
    # Memory bomb: allocates until the address-space limit.
    pytest.param("a = []\nwhile True:\n    a.append(bytearray(1 << 24))", stdio("ok"), {}, id="memory-bomb"),
    # Memory bomb spread over children, each under its own address-space limit: the total is capped.
    pytest.param(
        "import os, time\nfor _ in range(6):\n    if os.fork() == 0:\n        break\nblocks = []\nwhile True:\n    blocks.append(b'x' * (1 << 24))\n    time.sleep(0.01)",
        stdio("ok"),
        {},
        id="memory-bomb-children",
    ),
    # Infinite loop.
    pytest.param("while True:\n    pass", stdio("ok"), {}, id="infinite-loop"),
    # Disk bombs: files of the largest size allowed, or empty files, until something stops them.
    *[
        pytest.param(
            f"i = 0\nwhile True:\n    try:\n        open(f'f{{i}}', 'wb'){action}\n    except OSError:\n        pass\n    i += 1",
            stdio("ok"),
            {},
            id=name,
        )
        for name, action in [("disk-bomb", ".write(b'x' * (16 << 20))"), ("file-count-bomb", ".close()")]
    ],
    # Busy processes left behind: a child in its own session (double fork) and a plain background shell.
    pytest.param(
        "import os, subprocess\nsubprocess.Popen(['sh', '-c', 'while :; do :; done # MARK'])\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        os.execv('/bin/sh', ['sh', '-c', 'sleep 1000 # MARK'])\n    os._exit(0)\nprint('bye')",
        stdio("ok"),
        {},
        id="leftover-processes",
    ),
    # A daemon that acts after the program has ended: double fork, new session, then a write to the host.
    pytest.param(
        "import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        os.execv('/bin/sh', ['sh', '-c', 'sleep 1; echo pwned > TMP_DIR/sentinel.txt # MARK'])\n    os._exit(0)\nprint('bye')",
        stdio("ok"),
        {},
        id="daemon",
    ),
    # Writes and deletes outside the sandbox, by the host's own paths; prints PWNED if any worked.
    pytest.param(
        "import os\nhit = False\nfor d in ['TMP_DIR', 'WORK_DIR', 'ROOT']:\n"
        "    for act in (lambda: open(d + '/sentinel.txt', 'w').write('pwned'), lambda: os.remove(d + '/sentinel.txt'),\n"
        "                lambda: open(d + '/new.txt', 'w').write('x'), lambda: os.mkdir(d + '/newdir')):\n"
        "        try:\n            act()\n            hit = True\n        except OSError:\n            pass\n"
        "print('PWNED' if hit else 'safe')",
        stdio("PWNED"),
        {},
        id="write-outside",
    ),
    # Reads our environment: the secret would be the expected output.
    pytest.param(
        "import os\nprint(os.environ.get('WANDB_API_KEY') or os.environ.get('HF_TOKEN'))",
        stdio(SECRET),
        {},
        id="read-env",
    ),
    # Reads the trainer's environment through /proc: its own pid, the sandbox's parent, init.
    pytest.param(
        "import os\nfor pid in (TRAINER_PID, os.getppid(), 1):\n    try:\n        env = open(f'/proc/{pid}/environ', 'rb').read()\n"
        "    except OSError:\n        continue\n    for item in env.split(b'\\0'):\n        if item.startswith(b'WANDB_API_KEY='):\n"
        "            print(item.split(b'=', 1)[1].decode())",
        stdio(SECRET),
        {},
        id="read-trainer-env",
    ),
    # Lists the user's home directory (the real one and the bait) and the project checkout.
    pytest.param(
        "import os\nseen = []\nfor d in ('REAL_HOME', 'HOST_HOME', 'ROOT', os.path.expanduser('~') + '/..'):\n"
        "    try:\n        seen += os.listdir(d)\n    except OSError:\n        pass\n"
        "print('PWNED' if {'credentials', 'pyproject.toml'} & set(seen) else 'safe')",
        stdio("PWNED"),
        {},
        id="list-home-and-project",
    ),
    # Changes the metadata of host files: mode, times, owner.
    pytest.param(
        "import os\nhit = False\nfor act in (lambda p: os.chmod(p, 0o777), lambda p: os.utime(p, (0, 0)), lambda p: os.chown(p, 0, 0)):\n"
        "    try:\n        act('TMP_DIR/sentinel.txt')\n        hit = True\n    except OSError:\n        pass\n"
        "print('PWNED' if hit else 'safe')",
        stdio("PWNED"),
        {},
        id="host-file-metadata",
    ),
    # Truncates a host file it may read (exposed read-only on purpose): by path, and by open(O_TRUNC)
    # without write access, which Landlock only governs from ABI 3 on.
    pytest.param(
        "import os\nhit = False\npath = 'TMP_DIR/sentinel.txt'\n"
        "for act in (lambda: os.truncate(path, 0), lambda: os.close(os.open(path, os.O_RDONLY | os.O_TRUNC)), lambda: open(path, 'r+').write('x')):\n"
        "    try:\n        act()\n        hit = True\n    except OSError:\n        pass\n"
        "print('PWNED' if hit and open(path).read() != 'untouched\\n' else 'safe')",
        stdio("PWNED"),
        {"sandbox": {"extra_ro_binds": ["TMP_DIR"]}},
        id="truncate-readable-file",
    ),
    # Reads a credentials file in our $HOME by its host path.
    pytest.param(
        "print(open('HOST_HOME/credentials').read().strip())", stdio(SECRET), {}, id="read-home-file"
    ),
    # $HOME inside is not ours.
    pytest.param("import os\nprint(os.environ.get('HOME'))", stdio("HOST_HOME"), {}, id="home-variable"),
    # Reads a project file.
    pytest.param(
        "print(open('ROOT/pyproject.toml').read().split()[0])", stdio("[build-system]"), {}, id="read-project"
    ),
    # Connects to a server listening on the host's loopback.
    pytest.param(
        "import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=1)\nprint('CONNECTED')",
        stdio("CONNECTED"),
        {},
        id="network-loopback",
    ),
    # UDP to a host socket on 127.0.0.1 (bubblewrap's own loopback accepts it: the host must not).
    pytest.param(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'MARK', ('127.0.0.1', UDP_PORT))\nprint('bye')",
        stdio("ok"),
        {},
        id="network-udp",
    ),
    # UNIX sockets of the host: one in the abstract namespace, one by path.
    pytest.param(
        "import socket\nhit = []\nfor address in ('\\0ABSTRACT', 'TMP_DIR/host.sock'):\n"
        "    try:\n        socket.socket(socket.AF_UNIX).connect(address)\n        hit.append(address)\n    except OSError:\n        pass\n"
        "print('PWNED' if hit else 'safe')",
        stdio("PWNED"),
        {},
        id="network-unix",
    ),
    # Kills its parent (the zygote in the sandbox, never the host process).
    pytest.param("import os\nos.kill(os.getppid(), 9)", stdio("ok"), {}, id="kill-parent"),
    # Kills the trainer (this test process) and a bystander by pid, then sweeps every pid.
    pytest.param(
        "import os\ntry:\n    top = int(open('/proc/sys/kernel/pid_max').read())\nexcept OSError:\n    top = 1 << 22\n"
        "hit = 0\nfor pid in [TRAINER_PID, BYSTANDER_PID, *range(1, top)]:\n"
        "    if pid != os.getpid():\n        try:\n            os.kill(pid, 9)\n            hit += 1\n        except OSError:\n            pass\n"
        "print('PWNED' if hit else 'safe')",
        stdio("PWNED"),
        {},
        id="kill-trainer-and-sweep",
    ),
    # Debugs its parent.
    pytest.param(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nprint('PWNED' if libc.ptrace(16, os.getppid(), 0, 0) == 0 else 'safe')",
        stdio("PWNED"),
        {},
        id="ptrace-parent",
    ),
    # kill -9 -1: every process it may signal.
    pytest.param("import os\nos.kill(-1, 9)", stdio("ok"), {}, id="kill-all"),
    # The same through a shell.
    pytest.param("import os\nos.system('kill -9 -1')", stdio("ok"), {}, id="shell-kill-all"),
    # Spawns shells that try to tamper with the host and read /etc/shadow.
    pytest.param(
        "import subprocess\nout = subprocess.run(['sh', '-c', 'echo pwned > WORK_DIR/sentinel.txt; rm -f TMP_DIR/sentinel.txt; cat /etc/shadow'], capture_output=True, text=True)\n"
        "print('PWNED' if out.returncode == 0 else 'safe')",
        stdio("PWNED"),
        {},
        id="spawn-shell",
    ),
    # Reads the zygote's memory (where requests arrive) through /proc.
    pytest.param(
        "import os\nopen(f'/proc/{os.getppid()}/mem', 'rb')\nprint('PWNED')",
        stdio("PWNED"),
        {},
        id="parent-memory",
    ),
    # Right output, then a segfault.
    pytest.param(
        "print(3, flush=True)\nimport ctypes\nctypes.string_at(0)", stdio("3"), {}, id="ctypes-segfault"
    ),
    # Early exits with status 0 before the tests run (call and assert kinds): a harness that trusts the
    # exit status would pass them.
    *[
        pytest.param(WRONG_FN + exit_line, tests, {}, id=f"{name}-{kind}")
        for name, exit_line in [
            ("sys-exit", "import sys\nsys.exit(0)"),
            ("exit", "exit()"),
            ("quit", "quit()"),
            ("os-exit", "import os\nos._exit(0)"),
            ("raise-systemexit", "raise SystemExit(0)"),
            ("keyboard-interrupt", "raise KeyboardInterrupt"),
            ("base-exception", "raise BaseException('stop')"),
            ("sigint-self", "import os, signal\nos.kill(os.getpid(), signal.SIGINT)"),
        ]
        for kind, tests in [("call", CALL), ("assert", ASSERT)]
    ],
    # KeyboardInterrupt in the middle of the tests, after a first right answer.
    pytest.param(
        "calls = 0\ndef add(a, b):\n    global calls\n    calls += 1\n    if calls > 1:\n        raise KeyboardInterrupt\n    return a + b",
        CALL,
        {},
        id="keyboard-interrupt-midway-call",
    ),
    pytest.param(
        "calls = 0\ndef add(a, b):\n    global calls\n    calls += 1\n    if calls > 1:\n        import os\n        os._exit(0)\n    return a + b",
        ASSERT,
        {},
        id="exit-midway-assert",
    ),
    # Prints what a passing run prints, then exits.
    *[
        pytest.param(
            WRONG_FN + "print('All tests passed!')\nprint('OK')\nimport sys\nsys.exit(0)",
            tests,
            {},
            id=f"fake-pass-output-{kind}",
        )
        for kind, tests in [("call", CALL), ("assert", ASSERT)]
    ],
    # Overrides builtins used by tests and harnesses.
    *[
        pytest.param(
            "import builtins\nbuiltins.isinstance = lambda *a, **k: True\nbuiltins.len = lambda x: 0\n"
            "builtins.print = lambda *a, **k: None\nbuiltins.AssertionError = type('Never', (Exception,), {})\n"
            + WRONG_FN,
            tests,
            options,
            id=f"override-builtins-{kind}",
        )
        for kind, tests, options in [
            ("call", CALL, {}),
            ("assert", ASSERT, {}),
            ("assert-inprocess", ASSERT, {"assert_mode": "inprocess"}),
        ]
    ],
    # Returns objects that claim to equal anything.
    *[
        pytest.param(
            "class Any:\n    def __eq__(self, other):\n        return True\n    def __ne__(self, other):\n        return False\n"
            "def add(a, b):\n    return Any()",
            tests,
            options,
            id=f"eq-always-true-{kind}",
        )
        for kind, tests, options in [
            ("call", CALL, {}),
            ("assert", ASSERT, {}),
            ("assert-inprocess", ASSERT, {"assert_mode": "inprocess"}),
        ]
    ],
    # The same through subclasses of built-ins, which the codec reduces to their real values.
    *[
        pytest.param(
            f"class Liar({base}):\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Liar({arg})",
            ASSERT,
            {},
            id=f"eq-subclass-{base}",
        )
        for base, arg in [("int", "0"), ("str", "'x'"), ("list", "[]"), ("float", "0.0")]
    ],
    # Monkeypatches the harness in its own process: the call reporter's json and the codec found via gc.
    pytest.param(
        'import gc, json\njson.dumps = lambda *a, **k: \'{"i": 0, "ok": true, "v": 3}\'\n'
        "for f in gc.get_objects():\n    if getattr(f, '__name__', '') in ('encode_value', 'decode_value'):\n        f.__code__ = (lambda v, _depth=0: v).__code__\n"
        + WRONG_FN,
        CALL,
        {},
        id="monkeypatch-harness-call",
    ),
    pytest.param(
        "import gc, json, os\nos.write = lambda fd, data: len(data)\n"
        "for f in gc.get_objects():\n    if getattr(f, '__name__', '') in ('encode_value', 'write_frame', 'read_frame'):\n        f.__code__ = (lambda *a, **k: None).__code__\n"
        + WRONG_FN,
        ASSERT,
        {},
        id="monkeypatch-harness-assert",
    ),
    # Return values built to hurt the reward process that decodes and compares them: a range of 10**18
    # items (must not be expanded outside the sandbox), an int too long for decimal conversion, a list
    # nested 100k deep, an endless iterator.
    *[
        pytest.param(f"import itertools\ndef add(a, b):\n{body}", tests, {}, id=f"{name}-{kind}")
        for name, body in [
            ("huge-range", "    return range(10**18)"),
            ("huge-int", "    return 7 ** 2_000_000"),
            ("deep-nesting", "    x = []\n    for _ in range(100_000):\n        x = [x]\n    return x"),
            ("endless-iterator", "    return itertools.count()"),
        ]
        for kind, tests in [("call", CALL), ("assert", ASSERT)]
    ],
    # A report line nested 100k deep, written straight to the call harness's report descriptor.
    pytest.param(
        "import os\nos.write(3, b'[' * 100_000 + b'\\n')\nos._exit(0)", CALL, {}, id="deep-json-report"
    ),
    # Writes fake verdicts and results to files and to every descriptor it can find.
    *[
        pytest.param(
            'import os\nfake = b\'{"passed": true}\\n{"i": 0, "ok": true, "v": 3}\\nPASS\\n\'\n'
            "for path in ['verdict.json', '/tmp/verdict', '/dev/shm/verdict', 'results.json']:\n    open(path, 'wb').write(fake)\n"
            "for fd in range(3, 256):\n    try:\n        os.write(fd, fake)\n    except OSError:\n        pass\n"
            + WRONG_FN
            + "os._exit(0)",
            tests,
            {},
            id=f"fake-result-files-{kind}",
        )
        for kind, tests in [("call", CALL), ("assert", ASSERT)]
    ],
]


@pytest.mark.parametrize("code, tests, options", HOSTILE)
def test_hostile_program(host: Host, opts: dict, code: str, tests: dict, options: dict) -> None:
    before = host.files()
    tests = (
        {**tests, "cases": [{**c, "output": host.fill(c["output"])} for c in tests["cases"]]}
        if tests["kind"] == "stdio"
        else tests
    )
    started = time.monotonic()
    details = code_reward_details(
        [f"```python\n{host.fill(code)}\n```"], [tests], **{**opts, **host.fill_options(options)}
    )
    elapsed = time.monotonic() - started
    assert details[0].score == 0.0, details[0]
    assert details[0].isolation in LAYER_MODES[opts["isolation"]], details[0]
    assert elapsed < OPTS["timeout_s"] + 8.0, f"took {elapsed:.1f}s"
    assert_host_untouched(host, before)
    # The pool recovers: the next honest program scores 1.
    assert code_reward([HONEST[0]], [HONEST[1]], **opts) == [1.0]


# What Landlock ABI 1 (Linux 5.13) lacks -- TCP rules, signal and abstract-socket scoping, truncation --
# the seccomp filter must provide on its own: the attacks aimed there, with the ABI pinned to 1.
OLDEST_ABI_ATTACKS = {
    "network-loopback", "network-udp", "network-unix", "kill-parent", "kill-all", "kill-trainer-and-sweep",
    "ptrace-parent", "host-file-metadata", "truncate-readable-file", "write-outside", "read-home-file",
}  # fmt: skip


@pytest.mark.parametrize("code, tests, options", [p for p in HOSTILE if p.id in OLDEST_ABI_ATTACKS])
def test_oldest_landlock_abi(host: Host, code: str, tests: dict, options: dict) -> None:
    try:
        probe_isolation(SandboxConfig(isolation="landlock", landlock_abi=1))
    except SandboxUnavailableError as exc:
        pytest.skip(f"landlock layer unavailable here: {exc}")
    options = host.fill_options(options)
    sandbox = {**options.get("sandbox", {}), "landlock_abi": 1}
    opts = {**OPTS, "isolation": "landlock", **options, "sandbox": sandbox}
    before = host.files()
    tests = {**tests, "cases": [{**c, "output": host.fill(c["output"])} for c in tests["cases"]]}
    details = code_reward_details([f"```python\n{host.fill(code)}\n```"], [tests], **opts)
    assert details[0].score == 0.0, details[0]
    assert probe_isolation(SandboxConfig(isolation="landlock", landlock_abi=1)).landlock_abi == 1
    assert_host_untouched(host, before)


# ------------------------------------------------------------------------------------------------
# Reading the expected outputs
# ------------------------------------------------------------------------------------------------

TOKEN = f"EXPECTED-{uuid.uuid4().hex}"
SEARCH = (
    "import os, gc, sys\n"
    "def search():\n"
    "    places = [' '.join(sys.argv), str(dict(os.environ))]\n"
    "    try:\n        pids = os.listdir('/proc')\n    except OSError:\n        pids = []\n"
    "    for pid in pids:\n"
    "        for name in ('cmdline', 'environ'):\n"
    "            try:\n                places.append(open(f'/proc/{pid}/{name}', 'rb').read().decode('latin-1'))\n"
    "            except OSError:\n                pass\n"
    "    for top in ('/tmp', '/dev/shm', os.getcwd()):\n"
    "        for d, _, files in os.walk(top):\n"
    "            for f in files:\n"
    "                try:\n                    places.append(open(os.path.join(d, f), 'rb').read().decode('latin-1'))\n"
    "                except OSError:\n                    pass\n"
    "    for fd in range(64):\n"
    "        try:\n            places.append(os.pread(fd, 1 << 20, 0).decode('latin-1'))\n"
    "        except OSError:\n            pass\n"
    "    places += [o for o in gc.get_objects() if isinstance(o, str)]\n"
    "    for obj in gc.get_objects():\n"
    "        if isinstance(obj, dict):\n            places += [v for v in obj.values() if isinstance(v, str)]\n"
    "        code = getattr(obj, '__code__', None)\n"
    "        if code is not None:\n            places += [c for c in code.co_consts if isinstance(c, str)]\n"
    "    import ctypes\n"
    "    try:\n        maps = open('/proc/self/maps').read().splitlines()\n    except OSError:\n        maps = []  # the Landlock layer grants no /proc\n"
    "    for line in maps:\n"
    "        fields = line.split()\n"
    "        lo, hi = (int(x, 16) for x in fields[0].split('-'))\n"
    "        anonymous = len(fields) < 6 or fields[5] in ('[heap]', '[stack]')\n"
    "        if 'r' in fields[1] and anonymous and hi - lo < 1 << 28:\n"
    "            places.append(ctypes.string_at(lo, hi - lo).decode('latin-1'))\n"
    "    for text in places:\n"
    "        i = text.find('EXPECTED-' + '')\n"
    "        while i >= 0:\n"
    "            candidate = text[i:i + 41]\n"
    "            if candidate != 'EXPECTED-' + '' and all(c in '0123456789abcdef' for c in candidate[9:]) and len(candidate) == 41:\n"
    "                return candidate\n"
    "            i = text.find('EXPECTED-', i + 1)\n"
    "    return 'nothing'\n"
)


SNOOP = [
    # stdio: the expected output is a token the program can only print by finding it somewhere.
    pytest.param(
        SEARCH + "print(search())",
        {"kind": "stdio", "cases": [{"input": "", "output": TOKEN}]},
        {},
        id="stdio",
    ),
    # call: the expected return value is the token.
    pytest.param(
        SEARCH + "def f():\n    return search()",
        {"kind": "call", "fn_name": "f", "cases": [{"args": [], "expected": TOKEN}]},
        {},
        id="call",
    ),
    # assert (isolated): the token is in the test code, which never enters the solution process.
    pytest.param(
        SEARCH + "def f():\n    return search()",
        {
            "kind": "assert",
            "test": f"def check(candidate):\n    assert candidate() == '{TOKEN}', 'expected {TOKEN}'\n",
            "entry_point": "f",
        },
        {},
        id="assert",
    ),
]


@pytest.mark.parametrize("code, tests, options", SNOOP)
def test_cannot_read_expected_values(host: Host, opts: dict, code: str, tests: dict, options: dict) -> None:
    # One sandbox, used first by a program that fails the same test (so the test, its expected value
    # and the checker's failure message have all passed through this sandbox), then by the snooper,
    # which searches files, /proc, its environment, its descriptors, its objects and (where /proc is
    # readable) its whole memory.
    opts = {**opts, "workers": 1, "memory_mb": 1024, **options}
    decoy = "def f():\n    return 'wrong'\n" if tests["kind"] != "stdio" else "print('wrong')"
    assert code_reward([f"```python\n{decoy}\n```"], [tests], **opts) == [0.0]
    details = code_reward_details([f"```python\n{code}\n```"], [tests], **opts)
    assert details[0].score == 0.0, details[0]
    assert details[0].cases[0].status == "wrong_answer", details[0]  # it ran to the end and found nothing


CONTROLS = [
    # The token in the program's own stdin: anything sent into the sandbox is findable ...
    pytest.param(
        SEARCH + "print(search())",
        {"kind": "stdio", "cases": [{"input": TOKEN, "output": TOKEN}]},
        {},
        id="stdin",
    ),
    # ... and so is the test of an in-process assert run (why that mode is opt-in and documented weaker).
    pytest.param(
        SEARCH + "def f():\n    return search()",
        {
            "kind": "assert",
            "test": f"def check(candidate):\n    assert candidate() == '{TOKEN}'\n",
            "entry_point": "f",
        },
        {"assert_mode": "inprocess"},
        id="inprocess-assert",
    ),
]


@pytest.mark.parametrize("code, tests, options", CONTROLS)
def test_snooper_finds_what_is_reachable(
    host: Host, opts: dict, code: str, tests: dict, options: dict
) -> None:
    # Positive controls for the test above: the same search succeeds where the value is reachable.
    assert code_reward([f"```python\n{code}\n```"], [tests], **{**opts, "memory_mb": 1024, **options}) == [
        1.0
    ]


# ------------------------------------------------------------------------------------------------
# Isolation between programs of one sandbox
# ------------------------------------------------------------------------------------------------


CROSS_PROGRAM = [
    # Files left in every writable place (no process left behind, so the sandbox is reused as is).
    pytest.param(
        "import os\nfor d in ('/tmp', '/dev/shm', os.getcwd(), os.environ['HOME']):\n    try:\n        open(os.path.join(d, 'planted'), 'w').write('x')\n    except OSError:\n        pass",
        "import os\nfound = [root for top in ('/tmp', '/dev/shm', os.path.dirname(os.getcwd())) for root, _, files in os.walk(top) if 'planted' in files]\nprint(found or 'clean')",
        id="files",
    ),
    # A background process (the sandbox is then replaced as suspicious, or the process is killed).
    pytest.param(
        "import subprocess\nsubprocess.Popen(['sh', '-c', 'sleep 1000 # MARK'])",
        "import os\ntry:\n    pids = os.listdir('/proc')\nexcept OSError:\n    pids = []  # the Landlock layer grants no /proc (and allows no processes)\n"
        "procs = [p for p in pids if p.isdigit() and b'MARK' in open(f'/proc/{p}/cmdline', 'rb').read()]\nprint(procs or 'clean')",
        id="processes",
    ),
    # Interpreter state: every program starts from the zygote's pristine copy.
    pytest.param(
        "import math, sys, builtins\nmath.pi = 3\nsys.setrecursionlimit(50)\nbuiltins.len = None",
        "import math, sys\nprint('clean' if math.pi > 3.14 and sys.getrecursionlimit() > 50 and len('ab') == 2 else 'dirty')",
        id="interpreter-state",
    ),
]


@pytest.mark.parametrize("plant, look", CROSS_PROGRAM)
def test_programs_of_one_sandbox_do_not_share_state(host: Host, opts: dict, plant: str, look: str) -> None:
    # One worker: both programs run in the same sandbox, one after the other.
    opts = {**opts, "workers": 1}
    tests = {"kind": "stdio", "cases": [{"input": "", "output": "planted"}]}
    code_reward([f"```python\n{host.fill(plant)}\nprint('planted')\n```"], [tests], **opts)
    clean = {"kind": "stdio", "cases": [{"input": "", "output": "clean"}]}
    details = code_reward_details([f"```python\n{host.fill(look)}\n```"], [clean], **opts)
    assert details[0].score == 1.0, details[0]
