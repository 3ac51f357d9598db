"""The code reward: extraction, comparison, test format, scoring through the sandbox, and its contract
(never raises, bounded time, picklable, thread-safe, async, concurrent)."""

from __future__ import annotations

import asyncio
import json
import pickle
import threading
import time

import pytest

from rewards import build_reward
from rewards.code import (
    code_reward,
    code_reward_async,
    code_reward_details,
    extract_code,
    outputs_match,
    parse_tests,
    values_match,
)

# Small limits keep the file fast; two workers match the CI machine.
OPTS = {"timeout_s": 2.0, "workers": 2}


def py(code: str, prose: str = "Here is my solution.") -> str:
    """A completion whose answer holds ``code`` in a python fence."""
    return f"{prose}\n```python\n{code}\n```\n"


STDIO_ADD = {
    "kind": "stdio",
    "cases": [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4\n", "output": "6\n"}],
}
CALL_ADD = {
    "kind": "call",
    "fn_name": "add",
    "cases": [{"args": [1, 2], "expected": 3}, {"args": [10, -4], "expected": 6}],
}
ASSERT_ADD = {
    "kind": "assert",
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(10, -4) == 6\n",
    "entry_point": "add",
}
STDIO_OK = "a, b = map(int, input().split())\nprint(a + b)"
FN_OK = "def add(a, b):\n    return a + b"
FN_WRONG = "def add(a, b):\n    return a - b"
FN_HALF = "def add(a, b):\n    return 3"


# ------------------------------------------------------------------------------------------------
# Program extraction (no sandbox)
# ------------------------------------------------------------------------------------------------

EXTRACT_CASES = [
    # One python fence: its body.
    ("text\n```python\nprint(1)\n```\nmore", "print(1)\n"),
    # Two python fences: the last one wins (the earlier one is a draft).
    ("```python\nprint('draft')\n```\nfixed:\n```python\nprint('final')\n```", "print('final')\n"),
    # ```py and ```python3 are python fences too; the language tag is case-insensitive.
    ("```py\nx = 1\n```", "x = 1\n"),
    ("```Python3\nx = 2\n```", "x = 2\n"),
    # A python fence beats a later bare fence (e.g. a sample output block after the code).
    ("```python\nprint(3)\n```\nOutput:\n```\n3\n```", "print(3)\n"),
    # With no python fence, the last bare fence is the program.
    ("```\nprint(4)\n```", "print(4)\n"),
    # No fence at all: the whole answer is the program.
    ("print(5)", "print(5)"),
    # Only fences of other languages: there is no python program.
    ("```cpp\nint main() {}\n```", ""),
    # A python fence left open at the end (a truncated answer) still yields its code.
    ("```python\nprint(6)\n", "print(6)\n"),
    # Indented fences (inside a list item) are recognised.
    ("1. code:\n   ```python\n   print(7)\n   ```", "   print(7)\n"),
    # A fence with extra info after the language.
    ("```python title=sol.py\nprint(8)\n```", "print(8)\n"),
]


@pytest.mark.parametrize("answer, expected", EXTRACT_CASES)
def test_extract_code(answer: str, expected: str) -> None:
    assert extract_code(answer) == expected


# ------------------------------------------------------------------------------------------------
# Output and value comparison (no sandbox)
# ------------------------------------------------------------------------------------------------

OUTPUT_CASES = [
    # Identical output.
    ("3\n", "3\n", {}, True),
    # Trailing spaces, runs of spaces and trailing blank lines do not matter.
    ("1  2 \n3\n\n\n", "1 2\n3", {}, True),
    # Windows line endings are normalised.
    ("1\r\n2\r\n", "1\n2\n", {}, True),
    # A different token fails.
    ("1 2\n", "1 3\n", {}, False),
    # Line structure matters in the default "lines" mode ...
    ("1 2\n", "1\n2\n", {}, False),
    # ... and not in "tokens" mode.
    ("1 2\n", "1\n2\n", {"compare": "tokens"}, True),
    # A missing line fails.
    ("1\n", "1\n2\n", {}, False),
    # Numbers are compared as text unless a tolerance is given.
    ("0.3333333\n", "0.333333333\n", {}, False),
    ("0.3333333\n", "0.333333333\n", {"float_tol": 1e-6}, True),
    # The tolerance does not excuse a real difference, nor turn words into numbers.
    ("0.34\n", "0.333333333\n", {"float_tol": 1e-6}, False),
    ("abc\n", "abd\n", {"float_tol": 1e-6}, False),
    # Empty expected output matches empty output.
    ("", "\n", {}, True),
]


@pytest.mark.parametrize("actual, expected, kwargs, match", OUTPUT_CASES)
def test_outputs_match(actual: str, expected: str, kwargs: dict, match: bool) -> None:
    assert outputs_match(actual, expected, **kwargs) is match


VALUE_CASES = [
    # Plain equality.
    (3, 3, {}, True),
    # A tuple equals the JSON list of its items (results are compared as JSON sees them).
    ((1, [2, 3]), [1, [2, 3]], {}, True),
    # True is not 1 (JSON tells them apart).
    (True, 1, {}, False),
    # An int equals the same float.
    (2, 2.0, {}, True),
    # Floats are exact by default, within float_tol when given.
    (0.1 + 0.2, 0.3, {}, False),
    (0.1 + 0.2, 0.3, {"float_tol": 1e-9}, True),
    # Dict keys compare as JSON strings ({1: 2} serialises as {"1": 2}).
    ({1: "a"}, {"1": "a"}, {}, True),
    # A set equals its sorted list.
    ({3, 1, 2}, [1, 2, 3], {}, True),
    # Different lengths fail.
    ([1, 2], [1, 2, 3], {}, False),
    # None only equals None.
    (None, 0, {}, False),
]


@pytest.mark.parametrize("actual, expected, kwargs, match", VALUE_CASES)
def test_values_match(actual: object, expected: object, kwargs: dict, match: bool) -> None:
    assert values_match(actual, expected, **kwargs) is match


# ------------------------------------------------------------------------------------------------
# Test format
# ------------------------------------------------------------------------------------------------

MALFORMED_TESTS = [
    # Not a dict at all.
    None,
    42,
    ["stdio"],
    # A JSON string that does not parse.
    "{not json",
    # Unknown or missing kind.
    {"kind": "unit"},
    {"cases": [{"input": "", "output": ""}]},
    # No cases: would pass any program, so it is rejected.
    {"kind": "stdio", "cases": []},
    {"kind": "call", "fn_name": "f", "cases": []},
    # A stdio case without its output.
    {"kind": "stdio", "cases": [{"input": "1"}]},
    # A call test whose function name is not an identifier.
    {"kind": "call", "fn_name": "1f", "cases": [{"args": [], "expected": 1}]},
    # A call case without expected value.
    {"kind": "call", "fn_name": "f", "cases": [{"args": [1]}]},
    # Args that are neither a list nor a dict.
    {"kind": "call", "fn_name": "f", "cases": [{"args": 5, "expected": 1}]},
    # An assert test without check() or without entry point.
    {"kind": "assert", "test": "assert True", "entry_point": "f"},
    {"kind": "assert", "test": "def check(c): pass"},
]


@pytest.mark.parametrize("item", MALFORMED_TESTS)
def test_malformed_tests_raise_in_parser_and_score_zero(item: object) -> None:
    with pytest.raises(ValueError):
        parse_tests(item)
    # The reward never raises: a completion whose tests are malformed scores 0.
    details = code_reward_details([py(FN_OK)], [item], **OPTS)
    assert details[0].score == 0.0 and details[0].status == "bad_tests"


PARSE_CASES = [
    # A JSON string is parsed like the dict it encodes.
    (json.dumps(CALL_ADD), "call", 2),
    # stdio inputs and outputs given as lists of lines.
    ({"kind": "stdio", "cases": [{"input": ["1 2", "3 4"], "output": ["3", "7"]}]}, "stdio", 1),
    # call args as a dict are keyword arguments.
    ({"kind": "call", "fn_name": "f", "cases": [{"args": {"x": 1}, "expected": 1}]}, "call", 1),
    # An assert test is a single case.
    (ASSERT_ADD, "assert", 1),
]


@pytest.mark.parametrize("item, kind, total", PARSE_CASES)
def test_parse_tests(item: object, kind: str, total: int) -> None:
    spec = parse_tests(item)
    assert spec.kind == kind and spec.total == total


def test_parse_tests_joins_lines() -> None:
    spec = parse_tests({"kind": "stdio", "cases": [{"input": ["1 2", "3 4"], "output": ["3", "7"]}]})
    assert spec.cases[0] == {"input": "1 2\n3 4\n", "output": "3\n7\n"}


# ------------------------------------------------------------------------------------------------
# Scoring through the sandbox
# ------------------------------------------------------------------------------------------------

HELPER_TEST = {
    "kind": "assert",
    # HumanEval/32 style: the test calls a helper the program defines and a module the program imported.
    "test": "def check(candidate):\n    assert poly([1, 2], 3) == 7\n    assert math.isclose(candidate(4.0), 2.0)\n",
    "entry_point": "root",
}
HELPER_PROGRAM = "import math\ndef poly(xs, x):\n    return sum(c * x**i for i, c in enumerate(xs))\ndef root(x):\n    return math.sqrt(x)"
RAISES_TEST = {
    "kind": "assert",
    "test": (
        "def check(candidate):\n    try:\n        candidate(-1)\n    except ValueError:\n        pass\n"
        "    else:\n        raise AssertionError('expected ValueError')\n    assert candidate(2) == 4\n"
    ),
    "entry_point": "sq",
}
SQ_RAISES = "def sq(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x * x"

REWARD_CASES = [
    # stdio: right output on every case.
    pytest.param(py(STDIO_OK), STDIO_ADD, {}, 1.0, id="stdio-pass"),
    # stdio: right on the first case only; all-or-nothing scores 0.
    pytest.param(py("input()\nprint(3)"), STDIO_ADD, {}, 0.0, id="stdio-fail"),
    # stdio: partial credit is the fraction of cases passed.
    pytest.param(py("input()\nprint(3)"), STDIO_ADD, {"partial_credit": True}, 0.5, id="stdio-partial"),
    # stdio: extra spaces and blank lines are not errors.
    pytest.param(
        py("a, b = map(int, input().split())\nprint(' ', a + b, ' ')\nprint()"),
        STDIO_ADD,
        {},
        1.0,
        id="stdio-spacing",
    ),
    # stdio: all of stdin read at once.
    pytest.param(
        py("import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)"),
        STDIO_ADD,
        {},
        1.0,
        id="stdio-read-all",
    ),
    # stdio: printing the answer and then sys.exit(0) is a genuine solve.
    pytest.param(
        py(STDIO_OK + "\nimport sys\nsys.exit(0)\nprint('junk')"),
        STDIO_ADD,
        {},
        1.0,
        id="stdio-exit-after-answer",
    ),
    # stdio: exit() (the site builtin) after the answer is a genuine solve too.
    pytest.param(py(STDIO_OK + "\nexit()"), STDIO_ADD, {}, 1.0, id="stdio-builtin-exit"),
    # stdio: a non-zero exit status fails even with the right output.
    pytest.param(py(STDIO_OK + "\nimport sys\nsys.exit(3)"), STDIO_ADD, {}, 0.0, id="stdio-nonzero-exit"),
    # stdio: an exception after the right output fails.
    pytest.param(
        py(STDIO_OK + "\nraise RuntimeError('late')"), STDIO_ADD, {}, 0.0, id="stdio-late-exception"
    ),
    # stdio: a non-daemon thread is joined like at interpreter exit (the recursion-limit idiom).
    pytest.param(
        py(
            "import threading\ndef main():\n    a, b = map(int, input().split())\n    print(a + b)\nthreading.Thread(target=main).start()"
        ),
        STDIO_ADD,
        {},
        1.0,
        id="stdio-thread",
    ),
    # stdio: a float answer within float_tol passes, and fails without it.
    pytest.param(
        py("print(1/3)"),
        {"kind": "stdio", "cases": [{"input": "", "output": "0.333333"}]},
        {"float_tol": 1e-5},
        1.0,
        id="stdio-float-tol",
    ),
    pytest.param(
        py("print(1/3)"),
        {"kind": "stdio", "cases": [{"input": "", "output": "0.333333"}]},
        {},
        0.0,
        id="stdio-float-exact",
    ),
    # stdio: a syntax error fails.
    pytest.param(py("print(1 +"), STDIO_ADD, {}, 0.0, id="stdio-syntax-error"),
    # call: the function returns the right values.
    pytest.param(py(FN_OK), CALL_ADD, {}, 1.0, id="call-pass"),
    # call: wrong values.
    pytest.param(py(FN_WRONG), CALL_ADD, {}, 0.0, id="call-fail"),
    # call: partial credit.
    pytest.param(py(FN_HALF), CALL_ADD, {"partial_credit": True}, 0.5, id="call-partial"),
    # call: the function is missing.
    pytest.param(py("def other(a, b):\n    return a + b"), CALL_ADD, {}, 0.0, id="call-missing-function"),
    # call: a tuple result equals the expected JSON list.
    pytest.param(
        py("def pair(a):\n    return (a, a)"),
        {"kind": "call", "fn_name": "pair", "cases": [{"args": [1], "expected": [1, 1]}]},
        {},
        1.0,
        id="call-tuple-as-list",
    ),
    # call: True is not the expected 1.
    pytest.param(
        py("def one():\n    return True"),
        {"kind": "call", "fn_name": "one", "cases": [{"args": [], "expected": 1}]},
        {},
        0.0,
        id="call-bool-is-not-int",
    ),
    # call: LeetCode style, a method of class Solution.
    pytest.param(
        py("class Solution:\n    def add(self, a, b):\n        return a + b"),
        CALL_ADD,
        {},
        1.0,
        id="call-solution-class",
    ),
    # call: keyword arguments.
    pytest.param(
        py(FN_OK),
        {"kind": "call", "fn_name": "add", "cases": [{"args": {"a": 2, "b": 5}, "expected": 7}]},
        {},
        1.0,
        id="call-kwargs",
    ),
    # call: arguments are fresh for every case, so mutating them does not leak between cases.
    pytest.param(
        py("def push(xs):\n    xs.append(0)\n    return len(xs)"),
        {
            "kind": "call",
            "fn_name": "push",
            "cases": [{"args": [[1]], "expected": 2}, {"args": [[1]], "expected": 2}],
        },
        {},
        1.0,
        id="call-fresh-args",
    ),
    # call: the program's __main__ block does not run (it would block on input()).
    pytest.param(
        py(FN_OK + "\nif __name__ == '__main__':\n    print(add(*map(int, input().split())))"),
        CALL_ADD,
        {},
        1.0,
        id="call-main-guard",
    ),
    # call: a float result within float_tol.
    pytest.param(
        py("def third():\n    return 1/3"),
        {"kind": "call", "fn_name": "third", "cases": [{"args": [], "expected": 0.333333}]},
        {"float_tol": 1e-5},
        1.0,
        id="call-float-tol",
    ),
    # assert: the check passes.
    pytest.param(py(FN_OK), ASSERT_ADD, {}, 1.0, id="assert-pass"),
    # assert: the check fails.
    pytest.param(py(FN_WRONG), ASSERT_ADD, {}, 0.0, id="assert-fail"),
    # assert: the test uses a helper and a module from the program (isolated mode proxies them).
    pytest.param(py(HELPER_PROGRAM), HELPER_TEST, {}, 1.0, id="assert-helper-and-module"),
    # assert: an exception raised by the candidate reaches the test as the same built-in type.
    pytest.param(py(SQ_RAISES), RAISES_TEST, {}, 1.0, id="assert-expected-exception"),
    # assert, in-process mode: passes and fails like the isolated mode.
    pytest.param(py(FN_OK), ASSERT_ADD, {"assert_mode": "inprocess"}, 1.0, id="assert-inprocess-pass"),
    pytest.param(py(FN_WRONG), ASSERT_ADD, {"assert_mode": "inprocess"}, 0.0, id="assert-inprocess-fail"),
    # assert: a test that passes a lambda cannot run isolated (0, with a warning) but runs in-process.
    pytest.param(
        py("def apply(f, x):\n    return f(x)"),
        {
            "kind": "assert",
            "test": "def check(c):\n    assert c(lambda v: v + 1, 1) == 2\n",
            "entry_point": "apply",
        },
        {},
        0.0,
        id="assert-unsupported-isolated",
    ),
    pytest.param(
        py("def apply(f, x):\n    return f(x)"),
        {
            "kind": "assert",
            "test": "def check(c):\n    assert c(lambda v: v + 1, 1) == 2\n",
            "entry_point": "apply",
        },
        {"assert_mode": "inprocess"},
        1.0,
        id="assert-callable-arg-inprocess",
    ),
    # Think handling: the answer after </think> is scored, the reasoning is ignored.
    pytest.param(
        "<think>try ```python\nprint(0)\n```</think>" + py(STDIO_OK), STDIO_ADD, {}, 1.0, id="think-closed"
    ),
    # Think handling: thinking never closed scores 0 even with a correct program inside.
    pytest.param("<think>" + py(STDIO_OK), STDIO_ADD, {}, 0.0, id="think-unclosed"),
    # Fences: the last python block wins over an earlier wrong one ...
    pytest.param(py(FN_WRONG) + "Fixed:\n" + py(FN_OK), CALL_ADD, {}, 1.0, id="fence-last-wins"),
    # ... and an earlier right one is not used when the last is wrong.
    pytest.param(py(FN_OK) + "Actually:\n" + py(FN_WRONG), CALL_ADD, {}, 0.0, id="fence-last-wrong"),
    # Fences: no fence at all, the whole answer runs.
    pytest.param(FN_OK, CALL_ADD, {}, 1.0, id="fence-none"),
    # Fences: prose without a program scores 0.
    pytest.param("I would add the numbers.", CALL_ADD, {}, 0.0, id="fence-prose-only"),
    # Tests given as a JSON string.
    pytest.param(py(FN_OK), json.dumps(CALL_ADD), {}, 1.0, id="json-string-tests"),
    # A chat-message completion: the last assistant message is the answer.
    pytest.param([{"role": "assistant", "content": py(FN_OK)}], CALL_ADD, {}, 1.0, id="chat-messages"),
]


@pytest.mark.parametrize("completion, tests, options, expected", REWARD_CASES)
def test_code_reward(completion: object, tests: object, options: dict, expected: float) -> None:
    assert code_reward([completion], [tests], **{**OPTS, **options}) == [pytest.approx(expected)]


def test_details_report_cases() -> None:
    details = code_reward_details(
        [py(FN_HALF), py("while True: pass")],
        [CALL_ADD, CALL_ADD],
        partial_credit=True,
        timeout_s=1.0,
        workers=2,
    )
    half, stuck = details
    assert (
        [c.status for c in half.cases] == ["passed", "wrong_answer"] and half.passed == 1 and half.total == 2
    )
    assert half.isolation in ("bwrap", "bwrap-root", "landlock") and "wrong_answer" in half.error
    assert {c.status for c in stuck.cases} == {"timeout"} and stuck.score == 0.0
    assert json.loads(json.dumps(half.to_dict()))["cases"][1]["status"] == "wrong_answer"


def test_bad_completions_score_zero() -> None:
    # None, a number and a dict without content are answers without a program; a too-short tests
    # column leaves the last completion without tests. None of it raises.
    completions = [None, 7, {"role": "assistant"}, py(FN_OK), py(FN_OK)]
    scores = code_reward(completions, [CALL_ADD, CALL_ADD, CALL_ADD, CALL_ADD], **OPTS)
    assert scores == [0.0, 0.0, 0.0, 1.0, 0.0]


def test_extra_columns_are_ignored() -> None:
    # TRL passes every dataset column and trainer state as keyword arguments.
    scores = code_reward(
        [py(FN_OK)], tests=[CALL_ADD], prompts=["p"], completion_ids=[[1]], trainer_state=None, **OPTS
    )
    assert scores == [1.0]


INVALID_OPTIONS = [
    # A misspelled mode.
    {"assert_mode": "sideways"},
    {"stdio_compare": "chars"},
    # Limits that cannot be honoured.
    {"timeout_s": 0},
    {"memory_mb": -1},
    {"float_tol": -0.1},
    # An unknown sandbox field (e.g. a typo in a recipe).
    {"sandbox": {"programs_per_sandbx": 1}},
]


@pytest.mark.parametrize("options", INVALID_OPTIONS)
def test_invalid_option_raises(options: dict) -> None:
    # A configuration mistake fails the first call with one sentence, instead of scoring every
    # completion 0 for a whole run (bad completions and tests items still score 0).
    with pytest.raises(ValueError, match="code reward"):
        code_reward([py(FN_OK)], [CALL_ADD], **{**OPTS, **options})


def test_sandbox_options_from_a_recipe() -> None:
    # A recipe passes sandbox fields as a plain dict (lists from YAML included).
    options = {**OPTS, "sandbox": {"programs_per_sandbox": 1, "preload": ["math"], "workers": 1}}
    assert code_reward([py(FN_OK)], [CALL_ADD], **options) == [1.0]


# ------------------------------------------------------------------------------------------------
# Time and output bounds
# ------------------------------------------------------------------------------------------------

TIMEOUT_CASES = [
    # An infinite loop in a stdio program.
    ("while True:\n    pass", STDIO_ADD),
    # An infinite loop inside the called function.
    ("def add(a, b):\n    while True:\n        pass", CALL_ADD),
    # An infinite loop at import time of an assert program, and inside the function its test calls
    # (the solution process hits its CPU limit while the checker waits on it).
    ("while True:\n    pass", ASSERT_ADD),
    ("def add(a, b):\n    while True:\n        pass", ASSERT_ADD),
    # Sleeping (no CPU use) is caught by the wall clock, not only the CPU limit.
    ("import time\ntime.sleep(60)", STDIO_ADD),
]


@pytest.mark.parametrize("code, tests", TIMEOUT_CASES)
def test_timeouts(code: str, tests: dict) -> None:
    started = time.monotonic()
    details = code_reward_details([py(code)], [tests], timeout_s=1.0, workers=2)
    assert details[0].score == 0.0 and details[0].cases[0].status == "timeout"
    assert time.monotonic() - started < 6.0


OUTPUT_FLOOD_CASES = [
    # An endless stream of lines.
    "while True:\n    print('x' * 1000)",
    # One huge write.
    "import sys\nsys.stdout.write('y' * (200 << 20))",
    # A huge stderr stream.
    "import sys\nwhile True:\n    sys.stderr.write('z' * 100000)",
]


@pytest.mark.parametrize("code", OUTPUT_FLOOD_CASES)
def test_huge_output_is_capped(code: str) -> None:
    started = time.monotonic()
    details = code_reward_details([py(code)], [STDIO_ADD], timeout_s=2.0, workers=2)
    assert details[0].score == 0.0
    assert details[0].cases[0].status in ("output_limit", "runtime_error", "timeout", "memory_limit")
    assert len(details[0].cases[0].detail) <= 500
    assert time.monotonic() - started < 8.0


# ------------------------------------------------------------------------------------------------
# Contract: picklable, thread-safe, async, concurrent
# ------------------------------------------------------------------------------------------------


def test_picklable() -> None:
    for fn in (
        code_reward,
        code_reward_details,
        code_reward_async,
        build_reward("code", {"partial_credit": True}),
    ):
        clone = pickle.loads(pickle.dumps(fn))
        assert getattr(clone, "__name__", None) == getattr(fn, "__name__", None)
    bound = pickle.loads(pickle.dumps(build_reward("code", {"partial_credit": True, **OPTS})))
    assert bound([py(FN_HALF)], tests=[CALL_ADD]) == [0.5]


def test_call_from_worker_thread() -> None:
    results: list[list[float]] = []
    thread = threading.Thread(
        target=lambda: results.append(code_reward([py(FN_OK), py(FN_WRONG)], [CALL_ADD] * 2, **OPTS))
    )
    thread.start()
    thread.join(timeout=60)
    assert results == [[1.0, 0.0]]


def test_concurrent_callers_share_the_pool() -> None:
    # Four threads score at once; every answer is right for its own call.
    outputs: dict[int, list[float]] = {}

    def score(k: int) -> None:
        outputs[k] = code_reward(
            [py(f"def add(a, b):\n    return a + b + {k}")],
            [{**CALL_ADD, "cases": [{"args": [1, 1], "expected": 2 + k}]}],
            **OPTS,
        )

    threads = [threading.Thread(target=score, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outputs == {k: [1.0] for k in range(4)}


def test_async_entry_point() -> None:
    async def main() -> list[list[float]]:
        return await asyncio.gather(
            code_reward_async([py(FN_OK)], [CALL_ADD], **OPTS),
            code_reward_async([py(FN_WRONG)], [CALL_ADD], **OPTS),
        )

    assert asyncio.run(main()) == [[1.0], [0.0]]


def test_batch_runs_in_parallel() -> None:
    # 16 programs that each sleep 0.25 s need at least 4 s one after another; four sandboxes run
    # them four at a time. Distinct programs, so no deduplication helps.
    completions = [py(f"import time\ntime.sleep(0.25)\nprint({k})") for k in range(16)]
    tests = [{"kind": "stdio", "cases": [{"input": "", "output": f"{k}\n"}]} for k in range(16)]
    code_reward(completions[:4], tests[:4], timeout_s=5.0, workers=4)  # start the four sandboxes
    started = time.monotonic()
    scores = code_reward(completions, tests, timeout_s=5.0, workers=4)
    elapsed = time.monotonic() - started
    assert scores == [1.0] * 16
    assert elapsed < 0.6 * 16 * 0.25, f"batch took {elapsed:.2f}s, serial would take at least 4s"


def test_identical_completions_run_once() -> None:
    # GRPO groups often repeat an answer; each distinct (program, tests) pair runs once.
    details = code_reward_details([py(FN_OK)] * 3 + [py(FN_WRONG)], [CALL_ADD] * 4, **OPTS)
    assert [d.score for d in details] == [1.0, 1.0, 1.0, 0.0]
    assert details[0] is details[1] is details[2]


@pytest.mark.parametrize(
    "code",
    [
        "while True:\n    pass",  # the loop runs while the program loads
        "def add(a, b):\n    while True:\n        pass",  # the loop runs inside the call the test makes
    ],
)
def test_assert_solution_stopped_by_its_cpu_limit_is_a_timeout(code: str) -> None:
    """A wall clock well above the CPU limit: the solution dies of SIGXCPU while the checker still waits."""
    from rewards.sandbox import Limits, SandboxConfig, SandboxPool

    pool = SandboxPool(SandboxConfig(workers=1))
    try:
        started = time.monotonic()
        response = pool.run(
            {"mode": "assert", "code": code, "entry_point": "add", "isolated": True},
            Limits(wall_s=20, cpu_s=1),
            payload=ASSERT_ADD["test"].encode(),
        )
        assert response["status"] == "timeout" and response.get("signal") == "SIGXCPU", response
        assert time.monotonic() - started < 10
    finally:
        pool.close()


def test_distinct_programs_run_once_and_fan_out() -> None:
    from types import SimpleNamespace

    from rewards.code_run import DistinctPrograms

    batch, calls = DistinctPrograms(), []
    tests = parse_tests({"kind": "stdio", "cases": [{"input": "", "output": "1"}]})
    for index, program in enumerate(["a", "b", "a", "a"]):
        batch.add(index, program, program, tests)

    def run(program: str, _tests: object) -> str:
        calls.append(program)
        return program.upper()

    assert sorted(batch.run(run, SimpleNamespace(size=2), "test")) == [(0, "A"), (1, "B"), (2, "A"), (3, "A")]
    assert sorted(calls) == ["a", "b"]
    assert list(DistinctPrograms().run(run, SimpleNamespace(size=2), "test")) == []
