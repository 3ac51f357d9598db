"""Hostile programs against the code sandbox.

Every program here attacks the host or the harness. Each must score 0, end within its limit, and leave
the host as it was: sentinel files unchanged, nothing new next to them, no process it started still
alive (found by a marker in /proc/*/cmdline), no connection accepted by a listening socket, a bystander
process alive, and the sandbox pool still scoring the next honest program correctly.

Where an attack could "succeed" by printing something, the test's expected output is exactly what the
program prints when the attack succeeds, so a score of 0 means the attack failed.
"""

from __future__ import annotations

import logging
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
from rewards.sandbox import (
    Limits,
    SandboxConfig,
    SandboxPool,
    SandboxUnavailableError,
    probe_isolation,
    shutdown_pools,
)

ROOT = Path(__file__).resolve().parent.parent
MARK = f"hostile{uuid.uuid4().hex[:12]}"  # in the command line of every process a hostile program starts
SECRET = f"secret-{uuid.uuid4().hex}"
OPTS = {"timeout_s": 2.0, "workers": 2, "memory_mb": 256}

# Everything but the fallback tests at the end needs a working bubblewrap sandbox.
needs_bwrap = pytest.mark.skipif(not probe_isolation().isolated, reason="bubblewrap sandbox unavailable here")


@dataclass
class Host:
    """Bait on the host side."""

    tmp_dir: Path
    work_dir: Path  # inside the project tree (/work/...)
    home: Path
    port: int
    listener: socket.socket
    bystander: subprocess.Popen

    def files(self) -> dict[str, tuple[bytes, int]]:
        state = {}
        for directory in (self.tmp_dir, self.work_dir, self.home):
            for path in sorted(directory.rglob("*")):
                state[str(path)] = (
                    path.read_bytes() if path.is_file() else b"<dir>",
                    path.stat().st_mtime_ns,
                )
        return state

    def fill(self, code: str) -> str:
        return (
            code.replace("TMP_DIR", str(self.tmp_dir))
            .replace("WORK_DIR", str(self.work_dir))
            .replace("HOST_HOME", str(self.home))
            .replace("PORT", str(self.port))
            .replace("MARK", MARK)
            .replace("ROOT", str(ROOT))
        )


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
    listener.listen(16)
    listener.setblocking(False)
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        yield Host(tmp_dir, work_dir, home, listener.getsockname()[1], listener, bystander)
    finally:
        listener.close()
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


def assert_host_untouched(host: Host, before: dict[str, tuple[bytes, int]]) -> None:
    assert host.files() == before, "files on the host changed"
    with pytest.raises(BlockingIOError):
        host.listener.accept()  # no connection ever reached the host's loopback listener
    deadline = time.monotonic() + 3
    while marked_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marked_processes() == [], "a process started by the program is still running"
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
    # Busy processes left behind: a child in its own session (double fork) and a plain background shell.
    pytest.param(
        "import os, subprocess\nsubprocess.Popen(['sh', '-c', 'while :; do :; done # MARK'])\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        os.execv('/bin/sh', ['sh', '-c', 'sleep 1000 # MARK'])\n    os._exit(0)\nprint('bye')",
        stdio("ok"),
        {},
        id="leftover-processes",
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
    # Kills its parent (the zygote in the sandbox, never the host process).
    pytest.param("import os\nos.kill(os.getppid(), 9)", stdio("ok"), {}, id="kill-parent"),
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


@needs_bwrap
@pytest.mark.parametrize("code, tests, options", HOSTILE)
def test_hostile_program(host: Host, code: str, tests: dict, options: dict) -> None:
    before = host.files()
    tests = (
        {**tests, "cases": [{**c, "output": host.fill(c["output"])} for c in tests["cases"]]}
        if tests["kind"] == "stdio"
        else tests
    )
    started = time.monotonic()
    details = code_reward_details([f"```python\n{host.fill(code)}\n```"], [tests], **{**OPTS, **options})
    elapsed = time.monotonic() - started
    assert details[0].score == 0.0, details[0]
    assert elapsed < OPTS["timeout_s"] + 8.0, f"took {elapsed:.1f}s"
    assert_host_untouched(host, before)
    # The pool recovers: the next honest program scores 1.
    assert code_reward([HONEST[0]], [HONEST[1]], **OPTS) == [1.0]


# ------------------------------------------------------------------------------------------------
# Reading the expected outputs
# ------------------------------------------------------------------------------------------------

TOKEN = f"EXPECTED-{uuid.uuid4().hex}"
SEARCH = (
    "import os, gc, sys\n"
    "def search():\n"
    "    places = [' '.join(sys.argv), str(dict(os.environ))]\n"
    "    for pid in os.listdir('/proc'):\n"
    "        for name in ('cmdline', 'environ'):\n"
    "            try:\n                places.append(open(f'/proc/{pid}/{name}', 'rb').read().decode('latin-1'))\n"
    "            except OSError:\n                pass\n"
    "    for top in ('/tmp', '/dev/shm', os.getcwd()):\n"
    "        for d, _, files in os.walk(top):\n"
    "            for f in files:\n"
    "                try:\n                    places.append(open(os.path.join(d, f), 'rb').read().decode('latin-1'))\n"
    "                except OSError:\n                    pass\n"
    "    places += [o for o in gc.get_objects() if isinstance(o, str)]\n"
    "    for obj in gc.get_objects():\n"
    "        if isinstance(obj, dict):\n            places += [v for v in obj.values() if isinstance(v, str)]\n"
    "    import ctypes\n"
    "    with open('/proc/self/maps') as maps:\n"
    "        for line in maps:\n"
    "            fields = line.split()\n"
    "            lo, hi = (int(x, 16) for x in fields[0].split('-'))\n"
    "            anonymous = len(fields) < 6 or fields[5] in ('[heap]', '[stack]')\n"
    "            if 'r' in fields[1] and anonymous and hi - lo < 1 << 28:\n"
    "                places.append(ctypes.string_at(lo, hi - lo).decode('latin-1'))\n"
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


@needs_bwrap
@pytest.mark.parametrize("code, tests, options", SNOOP)
def test_cannot_read_expected_values(host: Host, code: str, tests: dict, options: dict) -> None:
    # One sandbox, used first by a program that fails the same test (so the test, its expected value
    # and the checker's failure message have all passed through this sandbox), then by the snooper,
    # which searches files, /proc, its environment, its objects and its whole memory.
    opts = {**OPTS, "workers": 1, "memory_mb": 1024, **options}
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


@needs_bwrap
@pytest.mark.parametrize("code, tests, options", CONTROLS)
def test_snooper_finds_what_is_reachable(host: Host, code: str, tests: dict, options: dict) -> None:
    # Positive controls for the test above: the same search succeeds where the value is reachable.
    assert code_reward([f"```python\n{code}\n```"], [tests], **{**OPTS, "memory_mb": 1024, **options}) == [
        1.0
    ]


# ------------------------------------------------------------------------------------------------
# Isolation between programs of one sandbox
# ------------------------------------------------------------------------------------------------


CROSS_PROGRAM = [
    # Files left in every writable place (no process left behind, so the sandbox is reused as is).
    pytest.param(
        "import os\nfor d in ('/tmp', '/dev/shm', os.getcwd(), os.environ['HOME']):\n    open(os.path.join(d, 'planted'), 'w').write('x')",
        "import os\nfound = [root for top in ('/tmp', '/dev/shm') for root, _, files in os.walk(top) if 'planted' in files]\nprint(found or 'clean')",
        id="files",
    ),
    # A background process (the sandbox is then replaced as suspicious, or the process is killed).
    pytest.param(
        "import subprocess\nsubprocess.Popen(['sh', '-c', 'sleep 1000 # MARK'])",
        "import os\nprocs = [p for p in os.listdir('/proc') if p.isdigit() and b'MARK' in open(f'/proc/{p}/cmdline', 'rb').read()]\nprint(procs or 'clean')",
        id="processes",
    ),
    # Interpreter state: every program starts from the zygote's pristine copy.
    pytest.param(
        "import math, sys, builtins\nmath.pi = 3\nsys.setrecursionlimit(50)\nbuiltins.len = None",
        "import math, sys\nprint('clean' if math.pi > 3.14 and sys.getrecursionlimit() > 50 and len('ab') == 2 else 'dirty')",
        id="interpreter-state",
    ),
]


@needs_bwrap
@pytest.mark.parametrize("plant, look", CROSS_PROGRAM)
def test_programs_of_one_sandbox_do_not_share_state(host: Host, plant: str, look: str) -> None:
    # One worker: both programs run in the same sandbox, one after the other.
    opts = {**OPTS, "workers": 1}
    tests = {"kind": "stdio", "cases": [{"input": "", "output": "planted"}]}
    code_reward([f"```python\n{host.fill(plant)}\nprint('planted')\n```"], [tests], **opts)
    clean = {"kind": "stdio", "cases": [{"input": "", "output": "clean"}]}
    details = code_reward_details([f"```python\n{host.fill(look)}\n```"], [clean], **opts)
    assert details[0].score == 1.0, details[0]


# ------------------------------------------------------------------------------------------------
# Without bubblewrap
# ------------------------------------------------------------------------------------------------


def test_fallback_warns_once_and_still_limits(caplog: pytest.LogCaptureFixture) -> None:
    config = SandboxConfig(workers=1, bwrap=f"/nonexistent/{uuid.uuid4().hex}/bwrap")
    with caplog.at_level(logging.WARNING, logger="rewards.sandbox"):
        first, second = SandboxPool(config), SandboxPool(config)
    try:
        warnings = [r for r in caplog.records if "bubblewrap is unavailable" in r.getMessage()]
        assert len(warnings) == 1
        assert first.isolation.mode == "none" and not first.isolation.isolated
        ok = first.run(
            {"mode": "stdio", "code": "print(int(input()) * 2)", "stdin": "21\n"}, Limits(wall_s=2)
        )
        assert ok["status"] == "ok" and ok["attachments"]["stdout"] == "42\n"
        # The wall clock and the clean-up of leftover processes still hold.
        started = time.monotonic()
        stuck = first.run(
            {
                "mode": "stdio",
                "code": f"import subprocess\nsubprocess.Popen(['sh', '-c', 'sleep 1000 # {MARK}'])\nwhile True:\n    pass",
                "stdin": "",
            },
            Limits(wall_s=1),
        )
        assert stuck["status"] == "timeout" and time.monotonic() - started < 5
        assert marked_processes() == []
        env = first.run(
            {"mode": "stdio", "code": "import os\nprint(sorted(os.environ))", "stdin": ""}, Limits(wall_s=2)
        )
        assert "WANDB_API_KEY" not in env["attachments"]["stdout"]
    finally:
        first.close()
        second.close()


def test_require_isolation_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = f"/nonexistent/{uuid.uuid4().hex}/bwrap"
    with pytest.raises(SandboxUnavailableError):
        SandboxPool(SandboxConfig(workers=1, bwrap=missing, require_isolation=True))
    # Through the reward: a configuration error a user must see, not a silent 0 for every completion.
    monkeypatch.setenv("CASCADE_SANDBOX_BWRAP", missing)
    with pytest.raises(SandboxUnavailableError):
        code_reward([HONEST[0]], [HONEST[1]], require_isolation=True, workers=1)
