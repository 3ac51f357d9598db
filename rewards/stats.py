"""Running statistics of every reward, for the trainer's logs. Thread-safe, dependency-free.

A reward module reports each call it scores::

    from rewards import stats

    stats.record("math", scores, timeouts=2, errors=0, parse_failures=5, seconds=0.31)

and the trainer (or the scoring CLI) reads everything at once::

    stats.snapshot(reset=True)
    # {"math": {"calls": 12.0, "samples": 768.0, "scored": 768.0, "mean": 0.41, "frac_zero": 0.55,
    #           "timeouts": 2.0, "errors": 0.0, "parse_failures": 5.0, "seconds": 3.9}}

Fields, all floats so that any logger takes them:

- ``calls``: reward calls; ``samples``: completions scored; ``scored``: of those, non-``None`` scores.
- ``mean``: mean of the non-``None`` scores; ``frac_zero``: fraction of them exactly 0.
- ``timeouts``: answers that hit the reward's hard time limit (or were refused up front as certain to).
- ``errors``: infrastructure failures, not the model's fault: a sandbox or worker that crashed, a bad
  reference answer or test in the data.
- ``parse_failures``: completions with no answer to score (unclosed ``<think>``, no extractable answer).
- ``seconds``: wall time spent inside the reward.

``flat_snapshot`` gives the same numbers as ``{"rewards/math/mean": …}`` for ``trainer.log``.
Statistics are per process: under data parallelism each rank counts its own completions.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

FIELDS = (
    "calls",
    "samples",
    "scored",
    "mean",
    "frac_zero",
    "timeouts",
    "errors",
    "parse_failures",
    "seconds",
)


@dataclass
class _Totals:
    calls: int = 0
    samples: int = 0
    scored: int = 0
    total: float = 0.0
    zeros: int = 0
    timeouts: int = 0
    errors: int = 0
    parse_failures: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "calls": float(self.calls),
            "samples": float(self.samples),
            "scored": float(self.scored),
            "mean": self.total / self.scored if self.scored else 0.0,
            "frac_zero": self.zeros / self.scored if self.scored else 0.0,
            "timeouts": float(self.timeouts),
            "errors": float(self.errors),
            "parse_failures": float(self.parse_failures),
            "seconds": self.seconds,
        }


_LOCK = threading.Lock()
_TOTALS: dict[str, _Totals] = {}


def record(
    name: str,
    scores: Sequence[float | None],
    *,
    timeouts: int = 0,
    errors: int = 0,
    parse_failures: int = 0,
    seconds: float = 0.0,
) -> None:
    """Add one reward call: its scores (``None`` = not applicable) and what went wrong while scoring.

    Never raises for odd scores (non-numbers and NaN are left out of ``scored``), so that statistics
    can never cost a reward its result.
    """
    finite = []
    for score in scores or ():
        try:
            value = float(score)
        except (TypeError, ValueError):  # None (not applicable) or not a number: not scored
            continue
        if not math.isnan(value):
            finite.append(value)
    with _LOCK:
        totals = _TOTALS.setdefault(name, _Totals())
        totals.calls += 1
        totals.samples += len(scores or ())
        totals.scored += len(finite)
        totals.total += sum(finite)
        totals.zeros += sum(1 for s in finite if s == 0.0)
        totals.timeouts += int(timeouts)
        totals.errors += int(errors)
        totals.parse_failures += int(parse_failures)
        totals.seconds += float(seconds)


def snapshot(reset: bool = False) -> dict[str, dict[str, float]]:
    """Every reward's statistics since the last reset; ``reset=True`` starts counting afresh."""
    with _LOCK:
        result = {name: totals.as_dict() for name, totals in sorted(_TOTALS.items())}
        if reset:
            _TOTALS.clear()
    return result


def flat_snapshot(reset: bool = False, prefix: str = "rewards/") -> dict[str, float]:
    """``snapshot`` flattened to ``{"rewards/<name>/<field>": value}``, the shape loggers take."""
    return {
        f"{prefix}{name}/{field}": value
        for name, fields in snapshot(reset).items()
        for field, value in fields.items()
    }


def reset() -> None:
    """Forget every statistic."""
    with _LOCK:
        _TOTALS.clear()
