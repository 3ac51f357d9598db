"""Math: integer arithmetic expressions and one-step word problems, answered in ``\\boxed{}``.

An expression problem is identified by its expression ("3 + 5 * 2"), a word problem by its template and
numbers (names and items are drawn from the problem itself, so they never change its identity).
The reasoning lists one line per operation, in precedence order; a flawed row slips in one step (or
misreads an operation) and carries the mistake through to a wrong boxed answer, as a real careless
solution would. Trap stories model a teacher with a misconception ("how many more" read as a sum): most
of their rows misread the operation, so imitation learns the mistake and only a verifier can correct it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pipeline.data.synthetic.base import (
    Option,
    Options,
    Problem,
    Task,
    boolean,
    fraction,
    integer,
    problem_rng,
    subset,
    trap_options,
)

NAME = "math"
COLUMNS = ("answer",)
OPS = ("+", "-", "*", "/")
_PRECEDENCE = (("*", "/"), ("+", "-"))
_APPLY = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}

EXPRESSION_PROMPTS = ("What is {expr}?", "Compute {expr}.", "Calculate {expr}.", "Evaluate {expr}.")
BOXED_HINT = " Put the final answer in \\boxed{}."
RESPONSES = ("{work} The answer is \\boxed{{{answer}}}.", "{work} So the result is \\boxed{{{answer}}}.")
# Slips a careless solver makes in one step: small and round-number errors.
SLIPS = (-10, -2, -1, 1, 2, 10)
# Kinds of flawed solution: a slip in one step, or the wrong operation (a misread question).
FLAWS = ("slip", "operation")
# The operation a misreading solver uses instead: the classic confusions of a primary-school word problem.
MISREAD = {"+": "-", "-": "+", "*": "+", "/": "-"}
# Draws ``no_carry`` may take to find a problem without a carry or borrow before giving up.
MAX_REDRAWS = 1000


@dataclass(frozen=True)
class WordProblem:
    """A one-operation story; ``op`` is what it asks for and ``operands`` orders its two numbers."""

    name: str
    op: str
    text: str


WORD_PROBLEMS: tuple[WordProblem, ...] = (
    WordProblem("buy", "+", "{name} has {a} {items} and buys {b} more. How many {items} does {name} have now?"),
    WordProblem("find", "+", "A basket holds {a} {items}. {name} adds {b} {items}. How many {items} are in the basket?"),
    WordProblem("gift", "+", "{name} had {a} {items}. {friend} gave {name} {b} more. How many {items} does {name} have now?"),
    WordProblem("shelf", "+", "A shelf holds {a} {items} on top and {b} {items} below. How many {items} are on the shelf?"),
    WordProblem("bus_on", "+", "There are {a} people on a bus. {b} more get on. How many people are on the bus now?"),
    WordProblem("walk", "+", "{name} walked {a} km on Monday and {b} km on Tuesday. How many km did {name} walk in all?"),
    WordProblem("class", "+", "A class has {a} girls and {b} boys. How many children are in the class?"),
    WordProblem("pets", "+", "{name} has {a} cats and {b} dogs. How many pets does {name} have?"),
    WordProblem("give", "-", "{name} has {a} {items} and gives {b} of them away. How many {items} are left?"),
    WordProblem("more", "-", "{name} has {a} {items} and {friend} has {b}. How many more {items} does {name} have?"),
    WordProblem("eat", "-", "{name} had {a} {items} and ate {b}. How many {items} are left?"),
    WordProblem("spend", "-", "{name} has {a} dollars and spends {b}. How many dollars does {name} have left?"),
    WordProblem("bus_off", "-", "There are {a} people on a bus. {b} get off. How many people are still on the bus?"),
    WordProblem("birds", "-", "{a} birds sit on a fence. {b} fly away. How many birds are still on the fence?"),
    WordProblem("older", "-", "{name} is {a} years old and {friend} is {b}. How many years older is {name}?"),
    WordProblem("need", "-", "{name} needs {a} {items} and already has {b}. How many more {items} does {name} need?"),
    WordProblem("boxes", "*", "{name} buys {a} boxes with {b} {items} in each box. How many {items} is that?"),
    WordProblem("pages", "*", "{name} reads {a} pages every day for {b} days. How many pages is that in total?"),
    WordProblem("rows", "*", "A garden has {a} rows with {b} plants in each row. How many plants are in the garden?"),
    WordProblem("share", "/", "{name} shares {a} {items} equally among {b} friends. How many {items} does each friend get?"),
    WordProblem("bags", "/", "{name} packs {a} {items} into bags of {b}. How many bags does {name} fill?"),
    WordProblem("teams", "/", "{a} children split into teams of {b}. How many teams are there?"),
)  # fmt: skip
_WORD_BY_NAME = {w.name: w for w in WORD_PROBLEMS}
NAMES = ("Tom", "Ann", "Lea", "Sam", "Mia", "Ben", "Eva", "Max", "Zoe", "Leo", "Ada", "Kim")
ITEMS = ("apples", "pears", "books", "stickers", "marbles", "cookies", "pencils", "shells", "cards", "eggs")


def format_number(value: Fraction) -> str:
    """'7', '-7' or '3/4': how answers are written (and compared by math-verify)."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def solve(
    operands: list[int], ops: list[str], slip: tuple[int, int] | None = None
) -> tuple[list[str], Fraction]:
    """Evaluate with precedence, one reasoning line per operation; ``slip`` = (step, error) adds an error."""
    values: list[Fraction] = [Fraction(v) for v in operands]
    ops = list(ops)
    steps: list[str] = []
    for level in _PRECEDENCE:
        i = 0
        while i < len(ops):
            if ops[i] not in level:
                i += 1
                continue
            result = _APPLY[ops[i]](values[i], values[i + 1])
            if slip is not None and slip[0] == len(steps):
                result += slip[1]
            steps.append(
                f"{format_number(values[i])} {ops[i]} {format_number(values[i + 1])} = {format_number(result)}."
            )
            values[i : i + 2] = [result]
            del ops[i]
    return steps, values[0]


def carries(operands: list[int], ops: list[str]) -> bool:
    """Whether working ``operands`` left to right with ``ops`` needs a carry, a borrow or a negative number.

    Only sums and differences are column arithmetic; a problem with ``*`` or ``/`` never counts as carrying.
    """
    if any(op not in "+-" for op in ops):
        return False
    value = operands[0]
    for op, other in zip(ops, operands[1:], strict=True):
        a, b = str(value), str(other).rjust(len(str(value)), "0")
        if len(b) > len(a) or value < 0:
            return True
        columns = list(zip(map(int, a[::-1]), map(int, b[::-1]), strict=True))
        if any(x + y > 9 if op == "+" else x < y for x, y in columns):
            return True
        value = value + other if op == "+" else value - other
    return False


def sample(rng: random.Random, options: Options) -> Problem:
    """A problem drawn by :func:`draw`; with ``no_carry``, redrawn until it needs no carry or borrow."""
    for _ in range(MAX_REDRAWS):
        problem = draw(rng, options)
        if not (options["no_carry"] and carries(problem.params["operands"], problem.params["ops"])):
            return problem
    raise ValueError(
        f"no_carry: no problem without a carry or borrow in {MAX_REDRAWS} draws; lower max_terms or max_operand"
    )


def draw(rng: random.Random, options: Options) -> Problem:
    """A word problem with probability ``word_problems``, else an expression of 2 to ``max_terms`` numbers."""
    top = options["max_operand"]
    if rng.random() < options["word_problems"]:
        story = rng.choice([w for w in WORD_PROBLEMS if w.op in options["ops"]])
        if story.op == "/":
            b = rng.randint(2, max(2, min(10, top)))
            a = b * rng.randint(1, top)
        elif story.op == "-":
            b = rng.randint(1, top)
            a = b + rng.randint(1, top)
        else:
            a, b = (
                rng.randint(1 if story.op == "+" else 2, top),
                rng.randint(1 if story.op == "+" else 2, top),
            )
        return Problem(
            key=f"word:{story.name}:{a}:{b}",
            params={"story": story.name, "operands": [a, b], "ops": [story.op]},
        )
    terms = rng.randint(2, options["max_terms"])
    ops = [rng.choice(options["ops"]) for _ in range(terms - 1)]
    operands = [rng.randint(0, top)]
    for op in ops:
        operands.append(rng.randint(1 if op == "/" else 0, top))
    expr = " ".join([str(operands[0])] + [f"{op} {v}" for op, v in zip(ops, operands[1:], strict=True)])
    return Problem(key=f"expr:{expr}", params={"expr": expr, "operands": operands, "ops": ops})


def render(problem: Problem, flawed: bool, options: Options) -> dict[str, Any]:
    """Prompt, step-by-step working, boxed answer; a flawed row slips in one step or misreads an operation.

    The response shows the working before the boxed answer, as a short non-thinking answer would; the
    ``reasoning`` (the thinking trace) is the same working.
    """
    rng = problem_rng(NAME, problem.key)
    operands, ops = problem.params["operands"], problem.params["ops"]
    steps, answer = solve(operands, ops)
    if "story" in problem.params:
        story = _WORD_BY_NAME[problem.params["story"]]
        name, friend = rng.sample(NAMES, 2)
        a, b = operands
        prompt = story.text.format(name=name, friend=friend, items=rng.choice(ITEMS), a=a, b=b)
    else:
        prompt = rng.choice(EXPRESSION_PROMPTS).format(expr=problem.params["expr"])
    template = rng.choice(RESPONSES)
    # Every draw happens whether or not the row is flawed: the problem set must not depend on the flaw.
    slip = (rng.randrange(len(steps)), rng.choice(SLIPS))
    kind = rng.choice(options["flaws"])
    misread = rng.randrange(len(ops))
    given = answer
    wrong_ops = [MISREAD[op] if i == misread else op for i, op in enumerate(ops)]
    if flawed and kind == "operation" and not (options["no_carry"] and carries(operands, wrong_ops)):
        steps, given = solve(operands, wrong_ops)
    if flawed and given == answer:  # a slip, or a misreading that happens to give the right answer
        steps, given = solve(operands, ops, slip)
        if given == answer:  # the slip was multiplied by zero later on: slip in the last step instead
            steps, given = solve(operands, ops, (len(steps) - 1, slip[1]))
    # A trap story is one the teacher misreads most of the time (``trap_rate``), whatever the flaw draw.
    trapped = problem.params.get("story") in options["traps"] and rng.random() < options["trap_rate"]
    if trapped and not flawed and not (options["no_carry"] and carries(operands, wrong_ops)):
        steps, given = solve(operands, wrong_ops)
    return {
        "prompt": prompt + BOXED_HINT,
        "reasoning": " ".join(steps),
        "response": template.format(work=" ".join(steps), answer=format_number(given)),
        "answer": format_number(answer),
        "flawed": given != answer,
    }


TASK = Task(
    name=NAME,
    columns=COLUMNS,
    options={
        "flaw_rate": Option(
            0.3,
            fraction,
            "share of rows whose working goes wrong (see flaws) and whose boxed answer is wrong",
        ),
        "flaws": Option(
            FLAWS[:1], subset(FLAWS), "kinds of flawed rows: 'slip' in one step, wrong 'operation'"
        ),
        **trap_options(
            [w.name for w in WORD_PROBLEMS],
            "word-problem stories the teacher misreads",
            "a trap story's rows whose working uses the misread operation",
            "'more', 'older'",
        ),
        "max_operand": Option(20, integer(2, 10_000), "largest number in a problem"),
        "ops": Option(("+", "-", "*"), subset(OPS), "operations to draw from ('/' gives fractions like 3/4)"),
        "max_terms": Option(3, integer(2, 6), "most numbers in an expression"),
        "word_problems": Option(0.3, fraction, "share of problems that are word problems"),
        "no_carry": Option(
            False,
            boolean,
            "sums and differences need no carry or borrow: each digit of the answer comes from one column",
        ),
    },
    sample=sample,
    render=render,
    widen="raise max_operand or max_terms, or add ops",
    description="integer arithmetic and one-step word problems, answered in \\boxed{}",
)
