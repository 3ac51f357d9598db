"""SWE: fix a one-line bug in a small function, given an issue report, by answering with an edit.

A problem is a correct function (a template with drawn constants) and one injected bug (a single-site
mutant that fails the function's tests: wrong operator, off-by-one, wrong constant, wrong comparison or
swapped return). The split unit is the correct function, so every bug of one function lands in the same
split and the fixed code of a test problem is never seen in training. The issue quotes a failing call,
computed by running the buggy code; the golden patch is ``difflib.unified_diff`` of buggy → fixed. The
answer (``edit_format``) is SEARCH/REPLACE blocks of the changed lines, as Agentless and Aider write
them, or a unified diff. A flawed row's edit applies cleanly but edits the wrong line, removes the buggy
line instead of fixing it, or changes it to another wrong value; it is proven not to produce the fixed
code and to fail.
"""

from __future__ import annotations

import difflib
import functools
import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.data.synthetic.base import (
    Option,
    Options,
    Problem,
    Task,
    fraction,
    integer,
    one_of,
    problem_rng,
    subset,
)
from pipeline.data.synthetic.execution import BUG_KINDS, Mutant, mutants, passes, run_call

NAME = "swe"
COLUMNS = ("original_code", "issue", "golden_patch", "fixed_code", "tests", "bug")
FILENAME = "solution.py"
DEFAULT_BUGS = ("wrong_operator", "wrong_comparison", "off_by_one", "wrong_constant", "swapped_return")
MAX_BUGS_PER_FUNCTION = 6
# How an answer edits the code, and what the prompt asks for: SEARCH/REPLACE blocks of the changed lines
# (Agentless, Aider) or a unified diff with context.
EDIT_FORMATS = ("search_replace", "diff")
ASK = {"search_replace": "Answer with SEARCH/REPLACE edits.", "diff": "Answer with a unified diff."}

Sampler = Callable[[random.Random], Any]


def ints(low: int, high: int) -> Sampler:
    """A parameter drawn from [low, high]."""
    return lambda rng: rng.randint(low, high)


def choice(*values: Any) -> Sampler:
    """A parameter drawn from ``values``."""
    return lambda rng: rng.choice(values)


@dataclass(frozen=True)
class Function:
    """A correct function template: ``{fn}`` is its name, other ``{placeholders}`` are ``params``.

    ``doc`` is what the function should do (the issue's first sentence); ``inputs`` names the kind of
    arguments its test cases use.
    """

    name: str
    names: tuple[str, ...]
    code: str
    doc: str
    inputs: str
    params: Mapping[str, Sampler]


FUNCTIONS: tuple[Function, ...] = (
    Function("clamp", ("clamp", "limit", "bound"),
             "def {fn}(x):\n    if x < {lo}:\n        return {lo}\n    if x > {hi}:\n        return {hi}\n    return x\n",
             "{fn}(x) should keep x between {lo} and {hi}.", "int", {"lo": ints(-5, 5), "hi": ints(8, 20)}),
    Function("count_above", ("count_above", "num_over", "tally"),
             "def {fn}(xs):\n    count = 0\n    for x in xs:\n        if x > {k}:\n            count += 1\n    return count\n",
             "{fn}(xs) should count the numbers in xs greater than {k}.", "ints", {"k": ints(0, 12)}),
    Function("sum_to", ("sum_to", "series", "accumulate"),
             "def {fn}(n):\n    total = 0\n    for i in range(1, n + 1):\n        total += i * {k}\n    return total\n",
             "{fn}(n) should return {k} times the sum of 1 to n.", "small_int", {"k": ints(1, 6)}),
    Function("grade", ("grade", "verdict", "check_score"),
             'def {fn}(score):\n    if score >= {a}:\n        return "pass"\n    return "fail"\n',
             '{fn}(score) should return "pass" for a score of {a} or more and "fail" otherwise.', "score", {"a": ints(40, 80)}),
    Function("price", ("price", "order_cost", "total_cost"),
             "def {fn}(quantity):\n    cost = quantity * {unit}\n    if quantity >= {bulk}:\n        cost = cost - {discount}\n    return cost\n",
             "{fn}(quantity) should charge {unit} per item and take {discount} off orders of {bulk} or more.", "quantity",
             {"unit": ints(2, 9), "bulk": ints(5, 10), "discount": ints(1, 5)}),
    Function("weather", ("describe", "classify", "label_temp"),
             'def {fn}(temp):\n    if temp < {cold}:\n        return "cold"\n    if temp > {hot}:\n        return "hot"\n    return "mild"\n',
             '{fn}(temp) should say "cold" below {cold}, "hot" above {hot} and "mild" otherwise.', "int",
             {"cold": ints(0, 12), "hot": ints(20, 30)}),
    Function("fizz", ("fizz", "label", "shout"),
             'def {fn}(n):\n    if n % {k} == 0:\n        return "{word}"\n    return str(n)\n',
             '{fn}(n) should return "{word}" for multiples of {k} and the number as text otherwise.', "int",
             {"k": ints(2, 9), "word": choice("fizz", "buzz", "bang", "pop")}),
    Function("argmax", ("argmax", "best_index", "top_index"),
             "def {fn}(xs):\n    best = 0\n    for i in range(1, len(xs)):\n        if xs[i] > xs[best]:\n            best = i\n    return best\n",
             "{fn}(xs) should return the index of the first largest number in xs.", "ints", {}),
    Function("find", ("find", "index_of", "locate"),
             "def {fn}(xs, target):\n    for i in range(len(xs)):\n        if xs[i] == target:\n            return i\n    return -1\n",
             "{fn}(xs, target) should return the first index of target in xs, or -1.", "search", {}),
    Function("countdown", ("countdown", "steps_down", "descend"),
             "def {fn}(n):\n    out = []\n    for i in range(n, 0, -{step}):\n        out.append(i)\n    return out\n",
             "{fn}(n) should list n, n - {step} and so on while the numbers stay above 0.", "small_int", {"step": ints(1, 3)}),
    Function("discount", ("discount", "sale_price", "reduce"),
             "def {fn}(price):\n    if price > {limit}:\n        return price - price * {pct} // 100\n    return price\n",
             "{fn}(price) should take {pct} percent off prices above {limit}.", "price", {"limit": ints(20, 60), "pct": choice(10, 20, 25, 50)}),
    Function("shipping", ("shipping", "postage", "delivery_fee"),
             "def {fn}(weight):\n    cost = {base}\n    if weight > {free}:\n        cost += (weight - {free}) * {rate}\n    return cost\n",
             "{fn}(weight) should cost {base} plus {rate} for every unit of weight above {free}.", "quantity",
             {"base": ints(2, 9), "free": ints(2, 8), "rate": ints(2, 5)}),
)  # fmt: skip
_FUNCTION_BY_NAME = {f.name: f for f in FUNCTIONS}


def _arguments(kind: str, rng: random.Random, count: int, params: Mapping[str, Any]) -> list[list[Any]]:
    """``count`` argument lists of ``kind``; parameter values and their neighbours come first."""
    bounds = [v for v in params.values() if type(v) is int]
    if kind in ("int", "score", "price", "quantity"):
        low, high = {"int": (-10, 40), "score": (0, 100), "price": (1, 120), "quantity": (0, 15)}[kind]
        edges = list(dict.fromkeys(b + d for b in bounds for d in (-1, 0, 1)))
        rng.shuffle(edges)
        chosen = edges[: count - 2]
        chosen += rng.sample([v for v in range(low, high + 1) if v not in chosen], count - len(chosen))
        return [[v] for v in chosen]
    if kind == "small_int":
        return [[v] for v in rng.sample(range(0, 10), count)]
    if kind == "ints":
        top = max([15, *[b + 3 for b in bounds]])
        return [[[rng.randint(-2, top) for _ in range(rng.randint(1, 6))]] for _ in range(count)]
    if kind == "search":
        cases = []
        for i in range(count):
            xs = [rng.randint(0, 9) for _ in range(rng.randint(1, 6))]
            target = rng.choice(xs) if i % 3 else rng.randint(10, 12)  # every third target is absent
            cases.append([xs, target])
        return cases
    raise ValueError(f"unknown argument kind {kind!r}")


def make_patch(before: str, after: str) -> str:
    """The unified diff of ``solution.py`` from ``before`` to ``after`` (git's a/ b/ prefixes)."""
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            f"a/{FILENAME}",
            f"b/{FILENAME}",
        )
    )


def _occurrences(lines: list[str], needle: list[str]) -> int:
    """How many times the run of lines ``needle`` occurs in ``lines``."""
    return sum(lines[i : i + len(needle)] == needle for i in range(len(lines) - len(needle) + 1))


def make_search_replace(before: str, after: str) -> str:
    """SEARCH/REPLACE blocks (Aider and Agentless style, each after the file's path) from ``before`` to ``after``.

    Each block holds only the changed lines; a SEARCH side that occurs more than once in ``before`` is
    widened with the lines above it until it is unique, and a pure insertion is anchored on the line above.
    """
    old, new = before.splitlines(), after.splitlines()
    blocks = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if i1 == i2 == 0:  # insertion at the top: anchor on the first line, kept below the new ones
            search, replace = old[:1], new[j1:j2] + old[:1]
        else:
            start = i1 - 1 if i1 == i2 else i1  # an insertion is anchored on the line above
            while start > 0 and _occurrences(old, old[start:i2]) > 1:
                start -= 1
            search, replace = old[start:i2], old[start:i1] + new[j1:j2]
        blocks.append(
            f"{FILENAME}\n<<<<<<< SEARCH\n"
            + "".join(f"{line}\n" for line in search)
            + "=======\n"
            + "".join(f"{line}\n" for line in replace)
            + ">>>>>>> REPLACE\n"
        )
    return "".join(blocks)


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def apply_patch(original: str, patch: str) -> str:
    """``original`` with the unified diff ``patch`` applied; ValueError if a hunk does not match."""
    source = original.splitlines(keepends=True)
    result: list[str] = []
    position = 0  # lines of ``source`` consumed so far
    lines = patch.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        match = _HUNK.match(lines[i])
        i += 1
        if match is None:
            continue
        start = int(match.group(1)) - (0 if match.group(2) == "0" else 1)
        if start < position:
            raise ValueError("hunks overlap or are out of order")
        result += source[position:start]
        position = start
        while i < len(lines) and lines[i][:1] in (" ", "-", "+", "\\"):
            tag, text = lines[i][:1], lines[i][1:]
            i += 1
            if tag == "\\":
                continue
            if tag in (" ", "-"):
                if position >= len(source) or source[position].rstrip("\n") != text.rstrip("\n"):
                    raise ValueError(f"hunk does not match line {position + 1} of the original")
                position += 1
                if tag == " ":
                    result.append(text)
            else:
                result.append(text)
    return "".join(result + source[position:])


def _call(fn: str, args: list[Any]) -> str:
    return f"{fn}({', '.join(map(repr, args))})"


def _issue(doc: str, fn: str, code: str, cases: list[dict[str, Any]]) -> str:
    """The bug report: what the function should do and one call that shows it does not."""
    for case in cases:
        try:
            actual = run_call(code, fn, case["args"])
        except Exception as exc:  # the buggy code may crash; the report says so
            return f"{doc} But {_call(fn, case['args'])} raises {type(exc).__name__}."
        if actual != case["expected"]:
            return f"{doc} But {_call(fn, case['args'])} returns {actual!r} instead of {case['expected']!r}."
    raise ValueError("the buggy code passes every case")


def _explain(before: str, after: str) -> str:
    """The reasoning for a patch: which lines change into what."""
    old, new = before.splitlines(), after.splitlines()
    notes = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new).get_opcodes():
        if tag == "replace":
            notes += [
                f"Line {i1 + k + 1} `{a.strip()}` should be `{b.strip()}`."
                for k, (a, b) in enumerate(zip(old[i1:i2], new[j1:j2], strict=False))
            ]
        elif tag == "delete":
            notes += [f"Line {i1 + k + 1} `{a.strip()}` should be removed." for k, a in enumerate(old[i1:i2])]
        elif tag == "insert":
            notes += [f"Add `{b.strip()}` after line {i1}." for b in new[j1:j2]]
    return " ".join(notes)


def _bad_fixes(original: str, fixed: str, bug: Mutant, rng: random.Random) -> list[str]:
    """Candidate wrong versions a flawed patch produces: another line edited, the bad line deleted, or
    the bad line changed to another wrong value."""
    lines = original.splitlines(keepends=True)
    elsewhere = [m.code for m in mutants(original, rng) if not set(m.lines) & set(bug.lines)]
    deleted = ["".join(line for n, line in enumerate(lines, 1) if n != bug.lines[0])]
    others = [m.code for m in mutants(fixed, rng) if m.lines == bug.lines and m.code != original]
    candidates = elsewhere[:2] + deleted + others[:2]
    rng.shuffle(candidates)
    return candidates


def sample(rng: random.Random, options: Options) -> Problem:
    """A function template with drawn constants (the split unit) and the index of one of its bugs."""
    function = rng.choice(FUNCTIONS)
    params = {name: draw(rng) for name, draw in sorted(function.params.items())}
    group = f"{function.name}:" + ";".join(f"{k}={v}" for k, v in sorted(params.items()))
    bug = rng.randrange(MAX_BUGS_PER_FUNCTION)
    return Problem(
        key=f"{group}#{bug}", group=group, params={"function": function.name, "bug": bug, **params}
    )


@dataclass(frozen=True)
class _Prepared:
    """What every bug of one function shares: its name, fixed code, tests and failing mutants."""

    fn: str
    fixed: str
    tests: dict[str, Any]
    bugs: tuple[Mutant, ...]


@functools.lru_cache(maxsize=4096)
def _prepare(
    group: str, function: str, params: tuple[tuple[str, Any], ...], num_cases: int, kinds: tuple[str, ...]
) -> _Prepared:
    """The shared part of a function's problems (cached: a function has up to MAX_BUGS_PER_FUNCTION)."""
    template = _FUNCTION_BY_NAME[function]
    rng = problem_rng(NAME, group)
    fn = rng.choice(template.names)
    fixed = template.code.format(fn=fn, **dict(params))
    args = _arguments(template.inputs, rng, num_cases, dict(params))
    tests = {
        "kind": "call",
        "fn_name": fn,
        "cases": [{"args": a, "expected": run_call(fixed, fn, a)} for a in args],
    }
    tests = json.loads(json.dumps(tests))  # compare as the JSON column will be read back
    bugs = tuple(m for m in mutants(fixed, rng) if m.kind in kinds and not passes(m.code, tests))
    return _Prepared(fn, fixed, tests, bugs)


def render(problem: Problem, flawed: bool, options: Options) -> dict[str, Any] | None:
    """Issue, buggy code, golden patch; the response is the golden patch or (flawed) a wrong one."""
    function = _FUNCTION_BY_NAME[problem.params["function"]]
    params = {k: v for k, v in problem.params.items() if k not in ("function", "bug")}
    shared = _prepare(
        problem.group, function.name, tuple(sorted(params.items())), options["num_cases"], options["bugs"]
    )
    if problem.params["bug"] >= len(shared.bugs):
        return None
    fn, fixed, tests, bug = shared.fn, shared.fixed, shared.tests, shared.bugs[problem.params["bug"]]
    original = bug.code
    golden = make_patch(original, fixed)
    rng = problem_rng(NAME, problem.key)
    wrong = next(
        (c for c in _bad_fixes(original, fixed, bug, rng) if c != fixed and not passes(c, tests)),
        None,
    )
    if wrong is None:
        return None
    target = wrong if flawed else fixed
    if options["edit_format"] == "search_replace":
        response = make_search_replace(original, target)
    else:
        response = f"```diff\n{make_patch(original, target)}```"
    issue = _issue(function.doc.format(fn=fn, **params), fn, original, tests["cases"])
    return {
        "prompt": f"Fix the bug in {FILENAME}.\nIssue: {issue}\n\n```python\n{original}```\n{ASK[options['edit_format']]}",
        "reasoning": _explain(original, target),
        "response": response,
        "original_code": original,
        "issue": issue,
        "golden_patch": golden,
        "fixed_code": fixed,
        "tests": json.dumps(tests),
        "bug": bug.kind,
    }


TASK = Task(
    name=NAME,
    columns=COLUMNS,
    options={
        "flaw_rate": Option(0.3, fraction, "share of rows whose patch applies but does not fix the bug"),
        "bugs": Option(DEFAULT_BUGS, subset(BUG_KINDS), "kinds of bugs to inject"),
        "num_cases": Option(6, integer(3, 10), "test cases per function"),
        "edit_format": Option(
            "search_replace", one_of(*EDIT_FORMATS), "how answers edit the code: 'search_replace' or 'diff'"
        ),
    },
    sample=sample,
    render=render,
    widen="add bug kinds",
    description="fix a one-line bug in a small function by answering with SEARCH/REPLACE edits or a diff",
)
