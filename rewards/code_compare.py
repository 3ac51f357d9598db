"""Comparing what a program produced with what its tests expect -- always here, in the reward process.

Expected outputs and return values never enter a sandbox, so a program cannot read them, print them
or rig the comparison (``rewards/sandbox_worker.py`` sends back plain data only). Two comparisons:

* :func:`outputs_match` -- program output against a ``stdio`` case's expected output, insensitive to
  runs of spaces, trailing spaces and trailing blank lines (``lines``), or to all whitespace
  (``tokens``); numeric tokens within ``float_tol`` when given.
* :func:`values_match` -- a ``call`` case's returned value against the expected one as JSON sees
  both (:func:`canonical`): ``(1, 2) == [1, 2]``, ``True != 1``, ``2 == 2.0``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any, Literal

from rewards.sandbox_worker import TransferError


def output_lines(text: str) -> list[str]:
    """The lines of a program's output as compared: any newline style, no trailing spaces or blank lines."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _tokens_match(a: list[str], b: list[str], float_tol: float | None) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        if float_tol is None:
            return False
        try:
            fx, fy = float(x), float(y)
        except ValueError:
            return False
        if not math.isclose(fx, fy, rel_tol=float_tol, abs_tol=float_tol):
            return False
    return True


def outputs_match(
    actual: str,
    expected: str,
    *,
    float_tol: float | None = None,
    compare: Literal["lines", "tokens"] = "lines",
) -> bool:
    """Whitespace-insensitive comparison of program output with the expected output.

    ``lines``: same lines, each compared token by token (runs of spaces, trailing spaces and trailing
    blank lines do not matter). ``tokens``: same whitespace-separated tokens, line breaks ignored.
    ``float_tol`` lets numeric tokens differ by that relative or absolute amount.
    """
    if compare == "tokens":
        return _tokens_match(actual.split(), expected.split(), float_tol)
    a, b = output_lines(actual), output_lines(expected)
    return len(a) == len(b) and all(
        _tokens_match(x.split(), y.split(), float_tol) for x, y in zip(a, b, strict=True)
    )


def canonical(value: Any) -> Any:
    """JSON's view of a value: tuples and iterators are lists, set elements are sorted, keys are strings."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, Iterator)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=_sort_key)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else json.dumps(canonical(k)): canonical(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    if isinstance(value, complex):
        return [value.real, value.imag]
    raise TransferError(f"cannot compare a value of type {type(value).__name__}")


def _sort_key(value: Any) -> tuple[str, Any]:
    """Orders set elements of any types (numbers by value; no repr of a huge int)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ("number", value)
    return (type(value).__name__, safe_repr(value))


def safe_repr(value: Any, limit: int = 200) -> str:
    """``repr`` for messages: bounded, and never failing (an int too long for decimal conversion)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _equal(a: Any, b: Any, float_tol: float | None) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        if float_tol is None or (isinstance(a, int) and isinstance(b, int)):
            return a == b
        return math.isclose(a, b, rel_tol=float_tol, abs_tol=float_tol)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y, float_tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k], float_tol) for k in a)
    return type(a) is type(b) and a == b


def values_match(actual: Any, expected: Any, *, float_tol: float | None = None) -> bool:
    """Compare a returned value with the expected one as JSON would see them (``(1, 2) == [1, 2]``,
    ``True != 1``, ``2 == 2.0``); floats within ``float_tol`` when given. Both are plain built-ins."""
    try:
        return _equal(canonical(actual), canonical(expected), float_tol)
    except (TransferError, RecursionError, ValueError, TypeError, OverflowError):
        return False
