"""The regression gate's verdict on one stage: which benchmarks regressed, and what the policy does.

After every stage the benchmarks of the domains trained by earlier stages are compared with the
checkpoint the stage started from. A benchmark *regresses* when its score drops by more than a
tolerance **and** the drop is significant under a paired test on the prompts both evaluations share
(:mod:`pipeline.gates.compare`): the tolerance ignores drops too small to matter, the p-value ignores
drops that sampling noise explains. The policy then says what a regression does: stop the cascade,
warn and go on, or roll the stage back.

:func:`check_stage` is a pure function over eval records, so the runner, the report and tests call it
the same way; its :class:`GateResult` is what the ledger stores under a stage's ``gate``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, cast

from pipeline.gates.compare import PASS_AT_1, Comparison, compare_records, finite, primary_of, record_score

logger = logging.getLogger(__name__)

POLICIES = ("stop", "warn", "rollback")
"""What a regression does: stop the cascade, record it and go on, or discard the stage's weights."""

Action = Literal["continue", "stop", "warn", "rollback"]
"""What the cascade does after a stage: ``continue`` when it passed, else the policy."""

_EPS = 1e-9  # slack for float comparisons such as 0.62 - 0.60 > 0.02

TEST_LABELS = {"mcnemar_exact": "McNemar", "permutation": "permutation", "unpaired_z": "unpaired z"}


# --------------------------------------------------------------------------------------------------
# The gate
# --------------------------------------------------------------------------------------------------


@dataclass
class BenchmarkCheck:
    """The gate's finding for one benchmark after one stage."""

    name: str
    domain: str | None
    role: str  # "earlier" (domain trained by an earlier stage) | "own" (this stage's domain) | "untrained"
    gated: bool  # its domain was trained by an earlier stage, so a regression counts
    verdict: str  # "pass" | "regressed" | "not_gated" | "missing" | "untested"
    before: float | None
    after: float | None
    delta: float | None
    p_value: float | None
    test: str | None
    n_paired: int
    tolerance: float
    best_so_far: float | None  # best score of this benchmark in any earlier row (base included)
    drop_from_best: float | None  # best_so_far - after, 0 when after is a new best
    improved: bool | None  # own domain only: a significant increase
    ci: list[float] | None = None  # bootstrap interval of the paired mean difference
    note: str = ""
    metric: str | None = None  # the eval record's metric: accuracy and win rate are in points
    primary: str | None = None  # what was compared: None for pass@1, else pass@<k>, majority or genselect

    @property
    def label(self) -> str:
        """The benchmark's name, with the metric compared when it is not pass@1."""
        return self.name if self.primary in (None, PASS_AT_1) else f"{self.name} ({self.primary})"

    def significant(self, alpha: float) -> bool:
        """Whether the change passed the test at ``alpha``."""
        return self.p_value is not None and self.p_value < alpha


@dataclass
class GateResult:
    """The gate's verdict on one stage: per-benchmark findings, overall verdict and the action taken."""

    stage: str
    stage_domain: str | None
    verdict: str  # "pass" | "regressed"
    action: Action
    policy: str
    tolerance: float
    alpha: float
    trained_domains: list[str]
    own_domain_improved: bool | None  # None: the stage has no domain or no testable own benchmark
    benchmarks: dict[str, BenchmarkCheck] = field(default_factory=dict)
    version: int = 1
    message: str = ""  # summary() when the verdict was taken, for readers of the ledger

    @property
    def regressions(self) -> list[BenchmarkCheck]:
        return [check for check in self.benchmarks.values() if check.verdict == "regressed"]

    @property
    def keeps_weights(self) -> bool:
        """Whether the next stage starts from this stage's weights (it passed, or the policy is warn)."""
        return self.action in ("continue", "warn")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (the ledger's ``gate`` field); a check's ``primary`` only when it is not pass@1,
        so that ledgers of gates without heavy metrics keep their layout."""
        data = asdict(self)
        for check in data["benchmarks"].values():
            if check.get("primary") is None:
                del check["primary"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        """Rebuild from :meth:`to_dict` output; unknown keys (from newer versions) are ignored."""
        known = {f.name for f in fields(BenchmarkCheck)}
        checks = {
            name: BenchmarkCheck(**{k: v for k, v in check.items() if k in known})
            for name, check in (data.get("benchmarks") or {}).items()
        }
        top = {f.name for f in fields(cls)} - {"benchmarks"}
        return cls(**{k: v for k, v in data.items() if k in top}, benchmarks=checks)

    def summary(self) -> str:
        """One paragraph for logs and the exit message."""
        sentences: list[str] = []
        gated = [c for c in self.benchmarks.values() if c.gated]
        if self.regressions:
            items = "; ".join(
                f"{c.label} by {_amount(-(c.delta or 0.0), c)} ({_value(c.before)} → {_value(c.after)}, "
                f"{TEST_LABELS.get(c.test or '', c.test)} {format_p_value(c.p_value)} < {self.alpha:g}, "
                f"tolerance {_amount(c.tolerance, c)})"
                for c in self.regressions
            )
            sentences.append(f"stage {self.stage} regressed {items}")
            sentences.append(_ACTION_TEXT.get(self.action, f"action {self.action}"))
        elif any(c.verdict == "pass" for c in gated):
            passed = [c for c in gated if c.verdict == "pass"]
            items = ", ".join(f"{c.label} {_change(c)}" for c in passed)
            sentences.append(
                f"stage {self.stage} passed the gate (tolerance {_amount(self.tolerance)}, alpha "
                f"{self.alpha:g}): no regression on {len(passed)} benchmark(s) of earlier domains ({items})"
            )
        elif gated:
            sentences.append(f"stage {self.stage} passed: none of its gated benchmarks could be tested")
        else:
            sentences.append(f"stage {self.stage} passed: no benchmark of an earlier-trained domain to gate")
        own = [c for c in self.benchmarks.values() if c.role == "own" and c.delta is not None]
        if self.own_domain_improved is not None:
            changes = ", ".join(f"{c.label} {_change(c)}" for c in own)
            status = "improved" if self.own_domain_improved else "did not improve significantly"
            sentences.append(f"own domain {self.stage_domain} {status} ({changes})")
        untested = [c for c in gated if c.verdict in ("untested", "missing")]
        if untested:
            sentences.append(
                "not checked: " + "; ".join(f"{c.name} ({c.note or c.verdict})" for c in untested)
            )
        drifted = [
            c
            for c in gated
            if c.verdict == "pass" and c.drop_from_best is not None and c.drop_from_best > c.tolerance + _EPS
        ]
        if drifted:
            sentences.append(
                "below their best so far by more than the tolerance: "
                + ", ".join(f"{c.name} ({_value(c.best_so_far)} → {_value(c.after)})" for c in drifted)
            )
        return ". ".join(s[0].upper() + s[1:] for s in sentences) + "."


_ACTION_TEXT = {
    "continue": "the cascade continues",
    "stop": "policy stop: the cascade stops here and keeps this checkpoint for inspection",
    "warn": "policy warn: the regression is recorded and the cascade goes on",
    "rollback": "policy rollback: this stage's weights are discarded and the next stage starts "
    "from the last checkpoint that passed",
}


# Metrics whose scores are fractions in [0, 1], reported in points.
FRACTION_METRICS = ("accuracy", "win_rate")


def _is_fraction(*values: float | None) -> bool:
    return all(v is None or -_EPS <= v <= 1.0 + _EPS for v in values)


def _amount(x: float, check: BenchmarkCheck | None = None) -> str:
    """A difference in points (x100) for fractions (accuracy, win rate), raw for other metrics (e.g.
    reward-model scores); a check from an older ledger, without its metric, goes by its values' range."""
    if check is None or (
        check.metric in FRACTION_METRICS if check.metric else _is_fraction(check.before, check.after)
    ):
        return f"{100.0 * x:.1f} points"
    return f"{x:.3g}"


def _value(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def format_p_value(p: float | None) -> str:
    """``p=0.0312``, ``p=0.00049`` or ``p=n/a`` for messages and tables."""
    if p is None:
        return "p=n/a"
    return f"p={p:.3g}" if p >= 0.01 else f"p={p:.2g}"


def _change(check: BenchmarkCheck) -> str:
    delta = check.delta or 0.0
    sign = "+" if delta >= 0 else "−"
    return f"{sign}{_amount(abs(delta), check)}, {format_p_value(check.p_value)}"


def _history_score(row: Mapping[str, Any], name: str, metric: str) -> float | None:
    """A benchmark's score in an earlier row, read as ``metric`` (a bare number is a pass@1 score)."""
    value = row.get(name)
    if isinstance(value, Mapping):
        return record_score(value, metric)
    return finite(value) if metric == PASS_AT_1 else None


def check_stage(
    stage: str,
    stage_domain: str | None,
    trained_domains: set[str],
    before: Mapping[str, Mapping[str, Any]],
    after: Mapping[str, Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    *,
    policy: str,
    tolerance: float,
    alpha: float,
    benchmark_tolerance: Mapping[str, float] | None = None,
    benchmark_domains: Mapping[str, str],
    seed: int = 0,
    n_resamples: int = 10_000,
) -> GateResult:
    """Gate one stage: did it regress any benchmark of a domain trained by an earlier stage?

    ``before``/``after`` map benchmark names to eval records (the eval file's ``benchmarks``);
    ``before`` holds, per benchmark, its latest record on the chain of accepted checkpoints
    (see :func:`latest_records`). ``history`` lists the score rows of all earlier rows, base first
    (``{bench: {"score": …}}`` or ``{bench: score}``); a benchmark absent from ``before`` is compared
    with its latest row there (unpaired, from the standard errors). ``trained_domains`` are the
    domains of the stages *before* this one. A regression is a drop larger than the tolerance
    (``benchmark_tolerance`` overrides it per benchmark) that is significant at ``alpha``.
    """
    if policy not in POLICIES:
        raise ValueError(f"gate policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"gate alpha must lie in (0, 1), got {alpha}")
    if tolerance < 0.0:
        raise ValueError(f"gate tolerance must be non-negative, got {tolerance}")
    overrides = dict(benchmark_tolerance or {})
    checks: dict[str, BenchmarkCheck] = {}
    for name in list(after) + [n for n in before if n not in after]:
        record_after, record_before = after.get(name), before.get(name)
        domain = benchmark_domains.get(name) or (record_after or record_before or {}).get("domain")
        gated = domain is not None and domain in trained_domains
        role = "own" if domain is not None and domain == stage_domain else "earlier" if gated else "untrained"
        bench_tolerance = float(overrides.get(name, tolerance))
        metric = primary_of(record_after or record_before)  # heavy metrics are gated only when primary
        earlier = [s for s in (_history_score(row, name, metric) for row in history) if s is not None]

        from_history = False
        if record_before is None and record_after is not None:
            # Not re-run since an older row: compare with that row's score and standard error.
            latest = next(
                (row[name] for row in reversed(history) if _history_score(row, name, metric) is not None),
                None,
            )
            if latest is not None:
                record_before = latest if isinstance(latest, Mapping) else {"score": latest}
                from_history = True
        if record_after is None:
            comparison = Comparison(
                record_score(record_before or {}, metric), None, None, None, None, 0, None, ""
            )
        elif record_before is None:
            comparison = Comparison(None, record_score(record_after, metric), None, None, None, 0, None, "")
        else:
            comparison = compare_records(
                record_before, record_after, n_resamples=n_resamples, seed=seed, metric=metric
            )

        best = max([*earlier, *([comparison.before] if comparison.before is not None else [])], default=None)
        drop = None
        if best is not None and comparison.after is not None:
            drop = max(0.0, best - comparison.after)
        significant = comparison.p_value is not None and comparison.p_value < alpha
        improved = None
        if role == "own" and comparison.delta is not None and comparison.p_value is not None:
            improved = comparison.delta > 0.0 and significant

        note = comparison.note
        if from_history:
            note = (
                f"compared with its latest earlier score; {note}"
                if note
                else "compared with its latest earlier score"
            )
        if not gated:
            verdict = "not_gated"
        elif record_after is None:
            verdict, note = "missing", "not in this stage's evaluation"
        elif comparison.before is None:
            verdict, note = "untested", "no earlier score to compare with"
        elif comparison.p_value is None:
            verdict = "untested"
        elif comparison.delta is not None and -comparison.delta > bench_tolerance + _EPS and significant:
            verdict = "regressed"
        else:
            verdict = "pass"

        checks[name] = BenchmarkCheck(
            name=name,
            domain=domain,
            role=role,
            gated=gated,
            verdict=verdict,
            before=comparison.before,
            after=comparison.after,
            delta=comparison.delta,
            p_value=comparison.p_value,
            test=comparison.test,
            n_paired=comparison.n_paired,
            tolerance=bench_tolerance,
            best_so_far=best,
            drop_from_best=drop,
            improved=improved,
            ci=list(comparison.ci) if comparison.ci is not None else None,
            note=note,
            metric=(record_after or record_before or {}).get("metric"),
            primary=metric if metric != PASS_AT_1 else None,
        )

    own_results = [c.improved for c in checks.values() if c.role == "own" and c.improved is not None]
    own_domain_improved = any(own_results) if own_results else None
    regressed = any(c.verdict == "regressed" for c in checks.values())
    result = GateResult(
        stage=stage,
        stage_domain=stage_domain,
        verdict="regressed" if regressed else "pass",
        action=cast(Action, policy) if regressed else "continue",  # policy: one of POLICIES, checked above
        policy=policy,
        tolerance=float(tolerance),
        alpha=float(alpha),
        trained_domains=sorted(trained_domains),
        own_domain_improved=own_domain_improved,
        benchmarks=checks,
    )
    result.message = result.summary()
    logger.debug("%s", result.message)  # the caller decides how loudly to report the verdict
    return result
