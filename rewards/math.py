r"""Math reward: 1.0 when the completion's final answer equals the reference answer, else 0.0.

The final answer is found by :mod:`rewards.math_answer` (the last ``\boxed{…}`` after ``</think>``, else
the configured fallbacks: an ``Answer: …`` line, a ``#### …`` line, the last number). Equivalence is
math-verify's (fractions, decimals to 6 places, percentages, sets, intervals, matrices, units,
``\text{}``, symbolic expressions).

Why a process pool: sympy can run for hours on some answers (``(x+y+1)^{999}`` against ``x^2+1``),
and math-verify's own time limit uses ``signal.alarm``, which only works on the main thread.
Verification therefore runs with math-verify's timeouts off, inside worker processes (``rewards.pool``)
that are killed at a hard deadline. Obvious blow-ups are refused before they reach sympy, and a fast
path settles exact matches and plain numbers without leaving the calling process. Every call reports
to ``rewards.stats`` under ``"math"``.
"""

from __future__ import annotations

import functools
import logging
import re
import time
import warnings
from collections.abc import Sequence
from fractions import Fraction
from math import inf, log10
from typing import Any

from rewards import stats
from rewards.common import column, final_answer
from rewards.math_answer import DEFAULT_FALLBACKS, FALLBACKS, extract_answer, gold_answer
from rewards.pool import Outcome, shared_pool
from rewards.process import REWARD_WORKERS, cpu_share

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_BATCH_TIMEOUT_S = 120.0
MAX_ANSWER_CHARS = 1000  # longer "answers" are not answers; they are also what makes sympy slow
WORKER_MEMORY_MB = 2048
MAX_WORKERS = 4  # by default: each worker is an interpreter with sympy loaded; most answers never reach one
_TOLERANCE = Fraction(1, 100_000)  # math-verify compares decimals rounded to 6 places

# -- normalisation ---------------------------------------------------------------------------------

_SHORT_UNITS = {"cm", "mm", "km", "m", "kg", "g", "mg", "s", "ms", "h", "hr", "hrs", "min", "ft", "in"}
_SHORT_UNITS |= {"yd", "mi", "lb", "lbs", "oz", "ml", "l", "mph", "kph"}
_MATH_WORDS = {"pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "mod", "and", "or"}
_NUMBER = r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:/\d+)?"
_THOUSANDS = re.compile(r"^(-?)(\d{1,3}(?:(?:,|\s)\d{3})+)(\.\d+)?(?=$|\s*(?:\\%|%|\\text|\\mbox|[A-Za-z]))")
_PERCENT = re.compile(r"\s*(?:\\%|%|\\text\{\s*(?:percent|pct)\s*\}|percent|pct)$")
_PLAIN_FRACTION = re.compile(r"^(-?)\\frac\{(\d+)\}\{(\d+)\}$|^(-?)\\frac(\d)(\d)$")


def normalize(answer: str) -> tuple[str, bool]:
    r"""(LaTeX body, is-percentage) of an answer: math delimiters, spacing macros, ``\dfrac``,
    thousands separators, trailing full stops and trailing unit words removed."""
    s = answer.strip()
    s = re.sub(r"\\?\$", "", s)  # math delimiters and currency signs
    s = s.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    s = re.sub(r"\\(?:left|right|displaystyle|textstyle)(?![A-Za-z])", "", s)
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = s.replace("{,}", ",").replace("\\!", "")
    s = re.sub(r"\\[,;: ]|~", " ", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = s.rstrip(" .;").strip()
    percent = bool(_PERCENT.search(s))
    if percent:
        s = _PERCENT.sub("", s).strip()
    match = _THOUSANDS.match(s)
    if match:
        s = match.group(1) + re.sub(r"[,\s]", "", match.group(2)) + (match.group(3) or "") + s[match.end() :]
    words = re.fullmatch(rf"({_NUMBER})\s+([A-Za-z]+(?:\s+[A-Za-z]+)*)", s)
    if words and all(
        (len(w) >= 3 and w.lower() not in _MATH_WORDS) or w in _SHORT_UNITS for w in words.group(2).split()
    ):
        s = words.group(1)  # "5 apples", "12 cm": the number is the answer
    return s, percent


def _fast_key(body: str, percent: bool) -> str:
    """A spelling-insensitive key: equal keys are certainly equal answers."""
    key = re.sub(r"\s*([^\w\s\\])\s*", r"\1", body)
    whole_text = re.fullmatch(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", key)
    if whole_text:
        key = whole_text.group(1).strip()
    return key + ("%" if percent else "")


def _as_fraction(body: str) -> Fraction | None:
    """The exact value of a plain number (integer, decimal, a/b or \\frac{a}{b}), else None."""
    if re.fullmatch(_NUMBER, body):
        try:
            return Fraction(body)
        except (ValueError, ZeroDivisionError):
            return None
    match = _PLAIN_FRACTION.match(body)
    if match:
        sign, num, den = (
            (match.group(1), match.group(2), match.group(3)) if match.group(2) else match.groups()[3:]
        )
        if int(den) != 0:
            return Fraction(int(num), int(den)) * (-1 if sign else 1)
    return None


_POWER_CHAIN = re.compile(r"\d+(?:\.\d+)?(?:\s*\^\s*[{(]?\s*\d+(?:\.\d+)?)+")
_HUGE_FACTORIAL = re.compile(r"\d{5,}\s*!|[)}]\s*!")
MAX_POWER_DIGITS = 100_000  # 10^{100000} is already a 100 001-digit number


def _power_digits(numbers: list[float]) -> float:
    """Decimal digits of the tower ``a^b^c…`` (right-associative), infinite when even its exponent is huge."""
    for i, base in enumerate(numbers[:-1]):
        if base <= 1:  # 0^x and 1^x are at most 1 whatever x is: the levels above do not matter
            numbers = [*numbers[:i], 1.0]
            break
    value = numbers[-1]
    for level, base in enumerate(reversed(numbers[:-1]), start=1):
        digits = value * log10(base)
        if level == len(numbers) - 1:
            return digits
        if digits > 7:  # an exponent above 10^7 makes the next level astronomically large
            return inf
        value = base**value
    return log10(max(value, 1.0))


def too_expensive(body: str) -> bool:
    """Answers that would make sympy compute astronomically large numbers (``9^{9^9}``, ``(10^8)!``).

    Numeric powers are estimated before anything is computed: ``2^{2^{3}}`` or ``2^{2023}`` pass,
    ``9^{9^9}`` (a 370-million-digit number) does not.
    """
    s = body.replace("**", "^")
    for chain in _POWER_CHAIN.finditer(s):
        numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", chain.group(0))]
        if _power_digits(numbers) > MAX_POWER_DIGITS:
            return True
    for match in _HUGE_FACTORIAL.finditer(s):
        if match.group(0)[0].isdigit():
            return True
        # a factorial of a bracketed expression: refuse it when the bracket holds a power or factorial
        opener = "(" if match.group(0)[0] == ")" else "{"
        inner = s[max(0, s.rfind(opener, 0, match.start())) : match.start()]
        if "^" in inner or "!" in inner:
            return True
    return False


def _to_latex(body: str, percent: bool) -> str:
    # math-verify reads a percentage only when the percent sign follows the math environment
    return f"${body}$" + ("\\%" if percent else "")


# -- verification (runs in the worker processes) ---------------------------------------------------


@functools.lru_cache(maxsize=1)
def _math_verify() -> Any:
    import math_verify
    import math_verify.grader
    import math_verify.parser
    from sympy.utilities.exceptions import SymPyDeprecationWarning

    # Odd answers ("(1, 2)\\%") make latex2sympy build deprecated sympy objects; the warnings say
    # nothing about the answer. (sympy installs its own "once" filter at import, hence after it.)
    warnings.filterwarnings("ignore", category=SymPyDeprecationWarning)

    # Our pool enforces the time limit; silence math-verify's "timeout disabled" warning.
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)
    return math_verify


@functools.lru_cache(maxsize=4096)
def _parse(latex: str) -> tuple[Any, ...]:
    mv = _math_verify()
    return tuple(mv.parse(latex, [mv.LatexExtractionConfig()], parsing_timeout=None))


def verify_answer(golds: tuple[str, ...], pred: str) -> bool:
    """Whether ``pred`` equals any of ``golds`` (LaTeX strings from ``_to_latex``) according to math-verify.

    No time limit of its own: call it through the pool (``math_reward`` does).
    """
    mv = _math_verify()
    target = list(_parse(pred))
    if not target:
        return False
    return any(
        mv.verify(list(gold_parsed), target, timeout_seconds=None)
        for gold_parsed in map(_parse, golds)
        if gold_parsed
    )


_WARM_UP = [
    ("\\frac{1}{2}", "0.5"),
    ("(x+1)^2", "x^2+2x+1"),
    ("(-2, \\infty)", "[-2, \\infty)"),
    ("\\{1, 2\\}", "2, 1"),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}"),
    ("x \\geq 2", "2 \\leq x"),
    ("y = 2x + 1", "y = 1 + 2x"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\text{Monday}", "Monday"),
]


def _warm_up() -> None:
    """Load sympy's lazily imported machinery (sets, intervals, matrices, relations, simplify) in a new
    worker before it takes a timed task: a first comparison of each kind costs up to a few tenths of a
    second, which must not count against an answer's time limit."""
    for gold, pred in _WARM_UP:
        verify_answer((_to_latex(gold, False),), _to_latex(pred, False))
    verify_answer((_to_latex("50", True),), _to_latex("0.5", False))
    _parse.cache_clear()


def _pool(size: int):
    return shared_pool(
        "math",
        size=size,
        preload=("math_verify",),
        initializer="rewards.math:_warm_up",
        memory_limit_mb=WORKER_MEMORY_MB,
        max_tasks_per_worker=20_000,  # a long-lived worker parses faster (antlr caches its DFA)
    )


# -- the reward ------------------------------------------------------------------------------------


def _fallbacks(value: Any) -> tuple[str, ...]:
    if value is None or value == "" or value == "none":
        return ()
    if isinstance(value, str):
        names = tuple(n.strip() for n in value.split(","))
    elif isinstance(value, (list, tuple)):
        names = tuple(value)
    else:
        raise ValueError(f"math fallbacks must be a list of names or a comma-separated string, got {value!r}")
    unknown = [n for n in names if n not in FALLBACKS]
    if unknown:
        raise ValueError(f"unknown math fallback(s) {unknown}; choose from {list(FALLBACKS)}")
    return names


def _gold_latex(gold: Any) -> tuple[list[str], list[tuple[str, bool]]]:
    """(fast keys, (body, percent)) of every acceptable reference answer of one row."""
    alternatives = gold if isinstance(gold, (list, tuple)) else [gold]
    keys, bodies = [], []
    for alt in alternatives:
        text = gold_answer(alt)
        if text is None:
            continue
        body, percent = normalize(text)
        if body:
            keys.append(_fast_key(body, percent))
            bodies.append((body, percent))
    return keys, bodies


def _fast_verdict(pred: tuple[str, bool], golds: list[tuple[str, bool]]) -> float | None:
    """1.0 or 0.0 when plain numbers or identical spellings settle it, None when sympy must decide."""
    body, percent = pred
    value = None if percent else _as_fraction(body)
    undecided = False
    for gold_body, gold_percent in golds:
        gold_value = None if gold_percent else _as_fraction(gold_body)
        if value is None or gold_value is None:
            undecided = True
            continue
        if value == gold_value:
            return 1.0
        both_integers = value.denominator == 1 and gold_value.denominator == 1
        if not both_integers and abs(value - gold_value) <= _TOLERANCE:
            undecided = True  # within math-verify's 6-decimal rounding: let it decide
    return None if undecided else 0.0


def math_reward(
    completions: Sequence[Any],
    answer: Sequence[Any] | Any,
    *,
    fallbacks: Sequence[str] | str = DEFAULT_FALLBACKS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    batch_timeout_s: float | None = DEFAULT_BATCH_TIMEOUT_S,
    **kwargs: Any,
) -> list[float]:
    r"""1.0 if the final answer (last \boxed{}, else fallbacks) equals ``answer`` per math-verify, else 0.0.

    Args:
        completions: strings or chat-message lists.
        answer: the reference answer of each completion (a column; a scalar is broadcast). An item may
            be a bare answer, a solution with ``\boxed{}`` or ``####``, or a list of acceptable answers.
        fallbacks: where to look when there is no box, in order: ``"answer_line"``, ``"hash"``,
            ``"last_number"``; ``()`` accepts boxed answers only.
        timeout_s: hard wall-clock limit per answer; an answer that exceeds it scores 0 (a timeout).
        batch_timeout_s: answers not yet verified this long after the call started score 0 and count
            as timeouts (``None``: no limit), so a batch of pathological answers cannot stall a step.
    """
    started = time.perf_counter()
    if isinstance(completions, (str, dict)):
        completions = [completions]
    completions = list(completions or [])
    n = len(completions)
    order = _fallbacks(fallbacks)
    golds = column(answer, n)
    scores = [0.0] * n
    timeouts = errors = parse_failures = 0
    jobs: dict[tuple[tuple[str, ...], str], list[int]] = {}
    for i, (completion, gold) in enumerate(zip(completions, golds, strict=True)):
        try:
            gold_keys, gold_bodies = _gold_latex(gold)
            if not gold_bodies:
                errors += 1  # the dataset row has no usable reference answer
                continue
            text = final_answer(completion)
            extracted = extract_answer(text, order) if text is not None else None
            if extracted is None or len(extracted) > MAX_ANSWER_CHARS:
                parse_failures += 1
                continue
            body, percent = normalize(extracted)
            if not body:
                parse_failures += 1
                continue
            if _fast_key(body, percent) in gold_keys:
                scores[i] = 1.0
                continue
            verdict = _fast_verdict((body, percent), gold_bodies)
            if verdict is not None:
                scores[i] = verdict
                continue
            if too_expensive(body):
                timeouts += 1  # refused up front: it would only have hit the time limit
                continue
            key = (tuple(_to_latex(b, p) for b, p in gold_bodies), _to_latex(body, percent))
            jobs.setdefault(key, []).append(i)
        except Exception:
            logger.debug("math_reward could not prepare completion %d", i, exc_info=True)
            errors += 1
    if jobs:
        pairs = list(jobs)
        # a bad $CASCADE_REWARD_WORKERS raises here: it is the caller's setting, not a completion to score
        workers = cpu_share(REWARD_WORKERS, cap=MAX_WORKERS)
        try:
            budget = (
                None
                if batch_timeout_s is None
                else max(0.0, float(batch_timeout_s) - (time.perf_counter() - started))
            )
            outcomes = _pool(workers).map(verify_answer, pairs, timeout_s=float(timeout_s), budget_s=budget)
        except Exception as exc:
            logger.warning("math verification pool failed: %s", exc)
            outcomes = [Outcome("error", error=str(exc))] * len(pairs)
        first_error = ""
        for pair, outcome in zip(pairs, outcomes, strict=True):
            indices = jobs[pair]
            if outcome.status == "ok":
                for i in indices:
                    scores[i] = 1.0 if outcome.value else 0.0
            elif outcome.status == "timeout":
                timeouts += len(indices)
            else:
                errors += len(indices)
                first_error = first_error or outcome.error
        if first_error:
            logger.warning("math verification failed for some answers: %s", first_error)
    stats.record(
        "math",
        scores,
        timeouts=timeouts,
        errors=errors,
        parse_failures=parse_failures,
        seconds=time.perf_counter() - started,
    )
    return scores
