"""Running generated reference programs in-process, and mutating them into plausible wrong programs.

Only code this package writes itself runs here (reference solutions and their mutants) so that expected
outputs come from actually running the reference, and so that every flawed row is proven to fail its
tests. Model output is never run here; that is the sandboxed code reward's job.

Tests follow the project's code test format (docs/rewards.md): ``stdio`` cases feed ``input`` and
compare printed output, ``call`` cases call ``fn_name(*args)`` and compare with ``expected``, and an
``assert`` test defines ``check(candidate)``.
"""

from __future__ import annotations

import builtins
import copy
import io
import json
import keyword
import random
import tokenize
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class _Stdin:
    """``input()`` over a fixed text; EOFError at the end, like the real one."""

    def __init__(self, text: str):
        self._lines = iter(text.splitlines())

    def __call__(self, prompt: str = "") -> str:
        try:
            return next(self._lines)
        except StopIteration:
            raise EOFError("EOF when reading a line") from None


class _Stdout:
    """``print()`` into a buffer, honouring ``sep`` and ``end``."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def __call__(self, *values: Any, sep: str | None = " ", end: str | None = "\n", **_: Any) -> None:
        sep = " " if sep is None else sep
        end = "\n" if end is None else end
        self.parts.append(sep.join(map(str, values)) + end)


def _namespace(**overrides: Any) -> dict[str, Any]:
    # Overriding ``input``/``print`` in the globals (not in sys) keeps runs thread-safe.
    return {"__name__": "__main__", "__builtins__": builtins, **overrides}


def run_stdio(code: str, stdin: str) -> str:
    """What the program ``code`` prints when its ``input()`` reads ``stdin``."""
    out = _Stdout()
    exec(compile(code, "<solution>", "exec"), _namespace(input=_Stdin(stdin), print=out))
    return "".join(out.parts)


def run_call(code: str, fn_name: str, args: Sequence[Any]) -> Any:
    """The value ``fn_name(*args)`` returns once ``code`` is defined (arguments are copied first)."""
    namespace = _namespace()
    exec(compile(code, "<solution>", "exec"), namespace)
    return namespace[fn_name](*copy.deepcopy(list(args)))


def _normalise_output(text: str) -> list[str]:
    """Printed lines without trailing blanks or trailing empty lines (a lenient, common comparison)."""
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _as_json(value: Any) -> Any:
    """``value`` as it looks after a JSON round trip (tuples become lists), or a sentinel if impossible."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return _UNSERIALISABLE


_UNSERIALISABLE = object()


def passes(code: str, tests: Mapping[str, Any] | str) -> bool:
    """Whether ``code`` passes every case of ``tests``; any exception counts as a failure.

    The comparison is lenient (trailing blanks in printed output, tuples vs lists) so that a program
    reported as failing here fails under any stricter comparison too.
    """
    spec = json.loads(tests) if isinstance(tests, str) else tests
    if spec["kind"] not in ("stdio", "call", "assert"):
        raise ValueError(f"unknown test kind {spec['kind']!r}")
    try:
        program = compile(code, "<solution>", "exec")
        if spec["kind"] == "stdio":
            for case in spec["cases"]:
                out = _Stdout()
                exec(program, _namespace(input=_Stdin(case["input"]), print=out))
                if _normalise_output("".join(out.parts)) != _normalise_output(case["output"]):
                    return False
            return True
        namespace = _namespace()
        exec(program, namespace)
        if spec["kind"] == "call":
            fn = namespace[spec["fn_name"]]
            return all(
                _as_json(fn(*copy.deepcopy(case["args"]))) == case["expected"] for case in spec["cases"]
            )
        checker = _namespace()
        exec(compile(spec["test"], "<test>", "exec"), checker)
        checker["check"](namespace[spec["entry_point"]])
        return True
    except Exception:  # a wrong program may fail in any way at all
        return False


def assert_test(fn_name: str, cases: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``assert`` form of ``call`` cases: ``def check(candidate)`` with one assert per case."""
    lines = ["def check(candidate):"]
    lines += [
        f"    assert candidate({', '.join(map(repr, case['args']))}) == {case['expected']!r}"
        for case in cases
    ]
    return {"kind": "assert", "test": "\n".join(lines) + "\n", "entry_point": fn_name}


# --- mutation -------------------------------------------------------------------------------------------

# Single-token edits that keep a program plausible. Each maps a token to its replacement and a bug kind.
OPERATOR_SWAPS: dict[str, tuple[str, str]] = {
    "+": ("-", "wrong_operator"),
    "-": ("+", "wrong_operator"),
    "*": ("+", "wrong_operator"),
    "//": ("%", "wrong_operator"),
    "%": ("//", "wrong_operator"),
    "+=": ("-=", "wrong_operator"),
    "-=": ("+=", "wrong_operator"),
    "*=": ("+=", "wrong_operator"),
    ">": (">=", "wrong_comparison"),
    ">=": (">", "wrong_comparison"),
    "<": ("<=", "wrong_comparison"),
    "<=": ("<", "wrong_comparison"),
    "==": ("!=", "wrong_comparison"),
    "!=": ("==", "wrong_comparison"),
}
NAME_SWAPS: dict[str, tuple[str, str]] = {
    "max": ("min", "wrong_call"),
    "min": ("max", "wrong_call"),
    "upper": ("lower", "wrong_call"),
    "lower": ("upper", "wrong_call"),
    "startswith": ("endswith", "wrong_call"),
    "endswith": ("startswith", "wrong_call"),
    "sum": ("len", "wrong_call"),
    "and": ("or", "wrong_operator"),
    "or": ("and", "wrong_operator"),
    "True": ("False", "wrong_constant"),
    "False": ("True", "wrong_constant"),
}
# A number on a line with one of these is a bound or an index: changing it by one is an off-by-one bug.
_BOUND_MARKERS = ("range(", "<", ">", "[", "len(")

BUG_KINDS = (
    "wrong_operator",
    "wrong_comparison",
    "off_by_one",
    "wrong_constant",
    "wrong_call",
    "swapped_return",
)


@dataclass(frozen=True)
class Mutant:
    """``code`` with one bug: its kind and the 1-based line it is on (two lines for a swapped return)."""

    code: str
    kind: str
    lines: tuple[int, ...]


def _replace(lines: list[str], start: tuple[int, int], end: tuple[int, int], text: str) -> str:
    (row, col), (_, end_col) = start, end
    edited = list(lines)
    edited[row - 1] = edited[row - 1][:col] + text + edited[row - 1][end_col:]
    return "".join(edited)


def mutants(code: str, rng: random.Random) -> list[Mutant]:
    """Every single-site mutant of ``code`` (signature lines untouched), in an order drawn from ``rng``."""
    lines = code.splitlines(keepends=True)
    found: list[Mutant] = []
    previous = None
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        row = token.start[0]
        before, previous = previous, token
        if row > len(lines) or lines[row - 1].lstrip().startswith("def "):
            continue
        swap = None
        if token.type == tokenize.OP:
            if token.string == "-" and _unary(before):
                continue  # "-1" → "+1" is no bug anyone writes; the number itself may still change
            swap = OPERATOR_SWAPS.get(token.string)
        elif token.type == tokenize.NAME:
            swap = NAME_SWAPS.get(token.string)
        elif token.type == tokenize.NUMBER and token.string.isdigit():
            value = int(token.string)
            if any(marker in lines[row - 1] for marker in _BOUND_MARKERS):
                swap = (str(value + rng.choice((-1, 1)) if value > 1 else value + 1), "off_by_one")
            else:
                swap = (str(value + rng.choice((-2, -1, 1, 2)) if value > 2 else value + 1), "wrong_constant")
        if swap is not None:
            found.append(Mutant(_replace(lines, token.start, token.end, swap[0]), swap[1], (row,)))
    found += _swapped_returns(lines)
    rng.shuffle(found)
    return found


def _unary(before: tokenize.TokenInfo | None) -> bool:
    """Whether a "-" after the token ``before`` is a sign rather than a subtraction."""
    if before is None:
        return True
    if before.type == tokenize.OP:
        return before.string not in (")", "]", "}")
    return before.type == tokenize.NAME and keyword.iskeyword(before.string)


def _swapped_returns(lines: list[str]) -> list[Mutant]:
    """Mutants exchanging the values of two ``return`` statements that return different things."""
    returns = [
        (i, line.split("return ", 1)) for i, line in enumerate(lines) if line.lstrip().startswith("return ")
    ]
    found = []
    for a in range(len(returns)):
        for b in range(a + 1, len(returns)):
            (i, (head_i, value_i)), (j, (head_j, value_j)) = returns[a], returns[b]
            if value_i.strip() == value_j.strip():
                continue
            edited = list(lines)
            edited[i] = f"{head_i}return {value_j.strip()}\n"
            edited[j] = f"{head_j}return {value_i.strip()}\n"
            found.append(Mutant("".join(edited), "swapped_return", (i + 1, j + 1)))
    return found


def failing_mutant(
    code: str, tests: Mapping[str, Any] | str, rng: random.Random, kinds: Sequence[str] = BUG_KINDS
) -> Mutant | None:
    """The first mutant of ``code`` (in ``rng`` order, of one of ``kinds``) that fails ``tests``."""
    for mutant in mutants(code, rng):
        if mutant.kind in kinds and mutant.code != code and not passes(mutant.code, tests):
            return mutant
    return None
