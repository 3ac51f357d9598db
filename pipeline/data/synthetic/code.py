"""Code: write a small Python function or stdin/stdout program from a one-sentence description.

Problems come from templates (data below) with drawn parameters; the identity of a problem is its
template and parameters. Test cases are computed by running the reference solution, with inputs that
include the boundary values of the parameters so that off-by-one programs are caught. A flawed row's
response is a single-token mutant of the reference (wrong operator, constant, comparison, call…) that is
proven to fail at least one test. Functions are tested with ``call`` or ``assert`` tests, programs
with ``stdio`` tests (the project's code test format). Trap templates model a teacher with a blind spot:
most of their rows make the same boundary mistake, which imitation learns and only the tests can correct.
"""

from __future__ import annotations

import json
import random
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
    problem_rng,
    subset,
    trap_options,
)
from pipeline.data.synthetic.execution import assert_test, failing_mutant, run_call, run_stdio

NAME = "code"
COLUMNS = ("tests", "entry_point")
FAMILIES = ("expression", "string", "list", "predicate", "stdio")
# The mistakes a teacher makes systematically on a trap template: the boundary of a comparison or a bound.
BOUNDARY_BUGS = ("wrong_comparison", "off_by_one")

Sampler = Callable[[random.Random, Options], Any]


def ints(low: int, high: int) -> Sampler:
    """A parameter drawn from [low, high]."""
    return lambda rng, _: rng.randint(low, high)


def choice(*values: Any) -> Sampler:
    """A parameter drawn from ``values``."""
    return lambda rng, _: rng.choice(values)


def int_pair(low: int, high: int, min_gap: int, max_gap: int) -> Sampler:
    """An increasing pair (a, b): a in [low, high], b - a in [min_gap, max_gap]."""

    def draw(rng: random.Random, _: Options) -> tuple[int, int]:
        a = rng.randint(low, high)
        return (a, a + rng.randint(min_gap, max_gap))

    return draw


# Expression steps: operator -> (how the plan says it, the smallest constant that makes sense).
STEPS = {
    "+": ("add {k}", 1),
    "-": ("subtract {k}", 1),
    "*": ("multiply by {k}", 2),
    "//": ("floor-divide by {k}", 2),
    "%": ("take the remainder after dividing by {k}", 2),
}


def expression(var: str) -> Sampler:
    """An arithmetic expression of ``var``: 1 to ``max_steps`` steps, constants up to ``max_constant``."""

    def draw(rng: random.Random, options: Options) -> str:
        text, last = var, None
        for _ in range(rng.randint(1, options["max_steps"])):
            op = rng.choice(list(STEPS))
            k = rng.randint(STEPS[op][1], max(STEPS[op][1], options["max_constant"]))
            if last in ("+", "-") and op in ("*", "//", "%"):
                text = f"({text})"
            text, last = f"{text} {op} {k}", op
        return text

    return draw


def expression_plan(expr: str, var: str) -> str:
    """'Start from x, add 3, then multiply by 2.' for ``(x + 3) * 2``."""
    tokens = expr.replace("(", "").replace(")", "").split()
    steps = [STEPS[tokens[i]][0].format(k=tokens[i + 1]) for i in range(1, len(tokens), 2)]
    return f"Start from {var}, " + ", then ".join(steps) + "."


@dataclass(frozen=True)
class Template:
    """A problem template: description, reference code and plan, with ``{placeholders}`` for ``params``.

    ``fn`` is the function to write (empty for a stdin/stdout program); ``inputs`` names the input
    generator its test cases use.
    """

    name: str
    family: str
    describe: str
    code: str
    plan: str
    inputs: str
    params: Mapping[str, Sampler]
    fn: str = ""
    arg: str = ""


_CALL = "Write a Python function {fn}({arg}) that returns {what}."
_STDIO = "Write a Python program that reads {what}."

TEMPLATES: tuple[Template, ...] = (
    # expression: f(x) = a short arithmetic expression
    Template("expression", "expression", "{expr}", "return {expr}", "{plan}", "int", {"expr": expression("x")}, "f", "x"),
    # string: one-argument string functions
    Template("reverse", "string", "s reversed", "return s[::-1]", "Slice s with step -1.", "word", {}, "reverse", "s"),
    Template("repeat", "string", "s repeated {k} times", "return s * {k}", "Multiply the string by {k}.", "word", {"k": ints(2, 5)}, "repeat", "s"),
    Template("first", "string", "the first {k} characters of s", "return s[:{k}]", "Slice s up to index {k}.", "word", {"k": ints(1, 5)}, "first", "s"),
    Template("last", "string", "the last {k} characters of s", "return s[-{k}:]", "Slice the last {k} characters.", "word", {"k": ints(1, 5)}, "last", "s"),
    Template("append", "string", "s followed by '{c}'", 'return s + "{c}"', "Concatenate s and '{c}'.", "word", {"c": choice(*"abcdefghijklmnopqrstuvwxyz!?")}, "append", "s"),
    Template("prepend", "string", "'{c}' followed by s", 'return "{c}" + s', "Concatenate '{c}' and s.", "word", {"c": choice(*"abcdefghijklmnopqrstuvwxyz#@")}, "prepend", "s"),
    Template("count", "string", "the number of times '{c}' appears in s", 'return s.count("{c}")', "Count '{c}' with str.count.", "word", {"c": choice(*"aeiounrst")}, "count", "s"),
    Template("upper", "string", "s in upper case", "return s.upper()", "Use str.upper.", "word", {}, "shout", "s"),
    Template("replace", "string", "s with every '{c}' replaced by '{d}'", 'return s.replace("{c}", "{d}")', "Use str.replace.", "word", {"c": choice(*"aeiou"), "d": choice(*"xyz*_")}, "swap", "s"),
    Template("starts", "string", "True if s starts with '{c}' and False otherwise", 'return s.startswith("{c}")', "Use str.startswith.", "word", {"c": choice(*"abcdefgst")}, "starts", "s"),
    Template("length", "string", "the length of s plus {k}", "return len(s) + {k}", "Add {k} to len(s).", "word", {"k": ints(1, 9)}, "size", "s"),
    # list: functions of a list of integers
    Template("sum", "list", "the sum of the numbers in xs", "return sum(xs)", "Use sum.", "ints", {}, "total", "xs"),
    Template("sum_times", "list", "the sum of xs multiplied by {k}", "return sum(xs) * {k}", "Sum xs, then multiply by {k}.", "ints", {"k": ints(2, 9)}, "scaled_total", "xs"),
    Template("count_above", "list", "how many numbers in xs are greater than {k}", "return len([x for x in xs if x > {k}])", "Keep the numbers above {k} and count them.", "ints", {"k": ints(0, 15)}, "count_above", "xs"),
    Template("max_plus", "list", "the largest number in xs plus {k}", "return max(xs) + {k}", "Take max(xs) and add {k}.", "ints", {"k": ints(1, 9)}, "top", "xs"),
    Template("min", "list", "the smallest number in xs", "return min(xs)", "Use min.", "ints", {}, "smallest", "xs"),
    Template("scale", "list", "a list of every number in xs multiplied by {k}", "return [x * {k} for x in xs]", "Multiply each number by {k}.", "ints", {"k": ints(2, 9)}, "scale", "xs"),
    Template("evens", "list", "a list of the even numbers in xs", "return [x for x in xs if x % 2 == 0]", "Keep numbers with remainder 0 modulo 2.", "ints", {}, "evens", "xs"),
    Template("sum_above", "list", "the sum of the numbers in xs that are greater than {k}", "return sum(x for x in xs if x > {k})", "Add up the numbers above {k}.", "ints", {"k": ints(0, 15)}, "sum_above", "xs"),
    # predicate: True/False functions of an integer
    Template("divisible", "predicate", "True if n is divisible by {k} and False otherwise", "return n % {k} == 0", "Check that n % {k} is 0.", "int", {"k": ints(2, 9)}, "divisible", "n"),
    Template("greater", "predicate", "True if n is greater than {k} and False otherwise", "return n > {k}", "Compare n with {k}.", "int", {"k": ints(-5, 20)}, "above", "n"),
    Template("between", "predicate", "True if n is between {ab[0]} and {ab[1]} inclusive", "return {ab[0]} <= n <= {ab[1]}", "Chain the two comparisons.", "int", {"ab": int_pair(-5, 15, 1, 10)}, "between", "n"),
    Template("even", "predicate", "True if n is even and False otherwise", "return n % 2 == 0", "Check that n % 2 is 0.", "int", {}, "is_even", "n"),
    Template("odd", "predicate", "True if n is odd and False otherwise", "return n % 2 == 1", "Check that n % 2 is 1.", "int", {}, "is_odd", "n"),
    # stdio: whole programs reading input() and printing
    Template("two_ints", "stdio", "two integers from one line and prints their {op[0]}", "a, b = map(int, input().split())\nprint({op[1]})", "Split the line, convert to int, print the {op[0]}.", "two_ints", {"op": choice(("sum", "a + b"), ("difference a - b", "a - b"), ("product", "a * b"), ("maximum", "max(a, b)"))}),
    Template("int_expr", "stdio", "an integer n and prints {expr}", "n = int(input())\nprint({expr})", "Read n. {plan}", "int_line", {"expr": expression("n")}),
    Template("repeat_word", "stdio", "a word and prints it {k} times separated by spaces", 'w = input().strip()\nprint(" ".join([w] * {k}))', "Join {k} copies with spaces.", "word_line", {"k": ints(2, 5)}),
    Template("line_stat", "stdio", "integers from one line and prints their {fn[0]}", "xs = list(map(int, input().split()))\nprint({fn[1]}(xs))", "Parse the numbers and apply {fn[1]}.", "ints_line", {"fn": choice(("sum", "sum"), ("maximum", "max"), ("minimum", "min"))}),
    Template("count_up", "stdio", "an integer n and prints the numbers 1 to n on one line separated by spaces", 'n = int(input())\nprint(" ".join(str(i) for i in range(1, n + 1)))', "Join the numbers of range(1, n + 1).", "small_int_line", {}),
)  # fmt: skip
_BY_NAME = {t.name: t for t in TEMPLATES}

WORDS = (
    "apple", "banana", "cat", "dog", "river", "stone", "tree", "sun", "moon", "book", "data", "code",
    "level", "noon", "python", "table", "green", "hello", "world", "star", "train", "ocean", "a", "",
)  # fmt: skip
FUNCTION_NAMES = ("f", "g", "h", "compute", "transform")


def _int_params(params: Mapping[str, Any]) -> list[int]:
    """The integer parameters of a problem (tuples unpacked): the boundaries its tests must probe."""
    values = []
    for value in params.values():
        values += [item for item in (value if isinstance(value, tuple) else (value,)) if type(item) is int]
    return values


def _inputs(kind: str, rng: random.Random, count: int, params: Mapping[str, Any]) -> list[Any]:
    """``count`` distinct inputs of ``kind``; for integers, parameters and their neighbours come first."""
    bounds = _int_params(params)
    if kind == "int":
        edges = list(dict.fromkeys(b + d for b in bounds for d in (-1, 0, 1)))
        rng.shuffle(edges)
        chosen = edges[: count - 1]
        others = [v for v in range(-10, 31) if v not in chosen]
        return chosen + rng.sample(others, count - len(chosen))
    if kind == "word":
        return rng.sample(WORDS, count)
    if kind == "ints":
        top = max([20, *[b + 2 for b in bounds]])
        lists = [[rng.randint(-3, top) for _ in range(rng.randint(1, 6))] for _ in range(count)]
        for xs in lists if bounds else ():  # a parameter or its neighbour in every list: boundaries tested
            xs.insert(rng.randint(0, len(xs)), rng.choice(bounds) + rng.choice((-1, 0, 0, 1)))
        return lists
    if kind == "two_ints":
        return [f"{rng.randint(-20, 50)} {rng.randint(-20, 50)}\n" for _ in range(count)]
    if kind == "int_line":
        return [f"{v}\n" for v in rng.sample(range(-10, 51), count)]
    if kind == "small_int_line":
        return [f"{v}\n" for v in rng.sample(range(1, 10), count)]
    if kind == "word_line":
        return [f"{w}\n" for w in rng.sample([w for w in WORDS if w], count)]
    if kind == "ints_line":
        return [
            " ".join(str(rng.randint(-9, 30)) for _ in range(rng.randint(1, 6))) + "\n" for _ in range(count)
        ]
    raise ValueError(f"unknown input kind {kind!r}")


def sample(rng: random.Random, options: Options) -> Problem:
    """A template of an enabled family, with its parameters drawn."""
    family = rng.choice(options["families"])
    template = rng.choice([t for t in TEMPLATES if t.family == family])
    params = {name: draw(rng, options) for name, draw in sorted(template.params.items())}
    key = f"{template.name}:" + ";".join(f"{k}={v}" for k, v in sorted(params.items()))
    return Problem(key=key, params={"template": template.name, **params})


def render(problem: Problem, flawed: bool, options: Options) -> dict[str, Any] | None:
    """The row: description prompt, plan, fenced reference (or failing mutant), and tests from the reference."""
    rng = problem_rng(NAME, problem.key)
    template = _BY_NAME[problem.params["template"]]
    params = {k: v for k, v in problem.params.items() if k != "template"}
    if "expr" in params:
        params["plan"] = expression_plan(params["expr"], "n" if template.family == "stdio" else "x")
    fn = rng.choice(FUNCTION_NAMES) if template.name == "expression" else template.fn
    what = template.describe.format(**params)
    plan = template.plan.format(**params)
    inputs = _inputs(template.inputs, rng, options["num_cases"], params)
    if template.fn:
        code = f"def {fn}({template.arg}):\n    {template.code.format(**params)}\n"
        prompt = _CALL.format(fn=fn, arg=template.arg, what=what)
        cases = [{"args": [value], "expected": run_call(code, fn, [value])} for value in inputs]
        if rng.random() < options["assert_fraction"]:
            tests: dict[str, Any] = assert_test(fn, cases)
        else:
            tests = {"kind": "call", "fn_name": fn, "cases": cases}
    else:
        code = template.code.format(**params) + "\n"
        prompt = _STDIO.format(what=what)
        tests = {
            "kind": "stdio",
            "cases": [{"input": text, "output": run_stdio(code, text)} for text in inputs],
        }
    # Render the flaw for every problem, so that a problem without a failing mutant is skipped whether
    # or not this row was to be flawed (the problem set must not depend on the flaw draw).
    mutant = failing_mutant(code, tests, rng)
    if mutant is None:
        return None
    answer = mutant.code if flawed else code
    # A trap template is one the teacher gets wrong most of the time (``trap_rate``), the same way each
    # time where it can: a wrong comparison (``>=`` for ``>``), else a bound off by one, else any mutant.
    if template.name in options["traps"] and rng.random() < options["trap_rate"] and not flawed:
        candidates = (
            failing_mutant(code, tests, problem_rng(NAME, template.name), [kind]) for kind in BOUNDARY_BUGS
        )
        answer = next((m for m in candidates if m is not None), mutant).code
    return {
        "prompt": prompt,
        "reasoning": plan,
        "response": f"```python\n{answer}```",
        "tests": json.dumps(tests),
        "entry_point": fn,
        "flawed": answer != code,
    }


TASK = Task(
    name=NAME,
    columns=COLUMNS,
    options={
        "flaw_rate": Option(0.3, fraction, "share of rows whose response is a mutant that fails its tests"),
        "families": Option(FAMILIES, subset(FAMILIES), "problem families to draw from"),
        **trap_options(
            [t.name for t in TEMPLATES],
            "templates the teacher gets wrong",
            "a trap template's rows whose answer has the boundary mistake",
            "'greater', 'count_above'",
        ),
        "max_steps": Option(2, integer(1, 4), "most arithmetic steps in an expression problem"),
        "max_constant": Option(9, integer(2, 99), "largest constant in an expression problem"),
        "num_cases": Option(4, integer(2, 8), "test cases per problem"),
        "assert_fraction": Option(0.25, fraction, "share of function problems tested by an assert test"),
    },
    sample=sample,
    render=render,
    widen="add families, or raise max_steps or max_constant",
    description="write a Python function or stdin/stdout program from a one-sentence description",
)
