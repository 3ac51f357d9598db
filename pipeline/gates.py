"""The regression gate between cascade stages: paired significance tests on per-prompt scores.

After every stage the benchmarks of the domains trained by earlier stages are compared with the
checkpoint the stage started from. A benchmark *regresses* when its score drops by more than a
tolerance **and** the drop is significant under a paired test on the prompts both evaluations share:
the tolerance ignores drops too small to matter, the p-value ignores drops that sampling noise explains.

Tests, chosen per benchmark:

* exact McNemar on discordant prompts when every prompt has one sample scored 0/1 (greedy accuracy);
* a sign-flip permutation test on per-prompt differences otherwise (n > 1 samples, mean rewards);
* an unpaired z-test on the reported standard errors when the two evaluations share no prompt ids.

Everything here is a pure function over the eval records of ``evals/<NN>-<stage>.json`` (the
``benchmarks`` mapping), so the runner, the report and tests call it the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

POLICIES = ("stop", "warn", "rollback")
"""What a regression does: stop the cascade, record it and go on, or discard the stage's weights."""

EXACT_PERMUTATION_MAX = 16
"""Up to this many non-zero differences the permutation test enumerates all 2**m sign flips."""

_EPS = 1e-9  # slack for float comparisons such as 0.62 - 0.60 > 0.02

TEST_LABELS = {"mcnemar_exact": "McNemar", "permutation": "permutation", "unpaired_z": "unpaired z"}


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


def _binom_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exact in integers for moderate n, in log space beyond."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if n <= 10_000:
        term = total = 1  # C(n, 0)
        for i in range(k):
            term = term * (n - i) // (i + 1)  # C(n, i + 1), exact
            total += term
        return total / (1 << n)
    log_terms = np.array(
        [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k + 1)]
    ) - n * math.log(2.0)
    top = float(log_terms.max())
    return float(math.exp(top) * np.exp(log_terms - top).sum())


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs of a paired 0/1 comparison.

    ``b`` counts prompts correct before and wrong after, ``c`` wrong before and correct after.
    Under no change each discordant prompt is equally likely to go either way, so
    ``p = min(1, 2 * P(Binomial(b + c, 1/2) <= min(b, c)))``; with no discordant pair ``p = 1``.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * _binom_half_cdf(min(b, c), n))


def _paired_arrays(before: Sequence[float], after: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(before, dtype=float)
    y = np.asarray(after, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"paired scores need two flat sequences of equal length, got {x.shape} and {y.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired scores must be finite numbers")
    return x, y


def paired_permutation_test(
    before: Sequence[float],
    after: Sequence[float],
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
    exact_max: int = EXACT_PERMUTATION_MAX,
) -> float:
    """Two-sided sign-flip permutation p-value for the mean of per-prompt differences ``after - before``.

    Under no change the sign of each prompt's difference is arbitrary, so the observed
    ``|sum(d)|`` is compared with its distribution over random sign flips. Zero differences add
    nothing to any resample and are dropped; with ``m <= exact_max`` remaining differences all
    ``2**m`` flips are enumerated (exact p), otherwise ``n_resamples`` random flips give the
    add-one Monte Carlo estimate ``(hits + 1) / (n_resamples + 1)``, deterministic for a seed.
    """
    x, y = _paired_arrays(before, after)
    d = y - x
    d = d[np.abs(d) > 1e-12]
    m = int(d.size)
    if m == 0:
        return 1.0
    observed = abs(float(d.sum()))
    slack = 1e-9 * float(np.abs(d).sum())  # sums of the same terms in another order may differ by ulps
    if m <= exact_max:
        bits = (np.arange(2**m)[:, None] >> np.arange(m)) & 1
        stats = np.abs((1 - 2 * bits) @ d)
        return float(np.count_nonzero(stats >= observed - slack) / stats.size)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    rng = np.random.default_rng(seed)
    batch = max(1, min(n_resamples, 4_000_000 // m))  # bounds memory to a few tens of MB
    hits = done = 0
    while done < n_resamples:
        size = min(batch, n_resamples - done)
        signs = rng.integers(0, 2, size=(size, m), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ d) >= observed - slack))
        done += size
    return (hits + 1) / (n_resamples + 1)


def paired_bootstrap_ci(
    before: Sequence[float],
    after: Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean per-prompt difference ``after - before``.

    Prompts are resampled with replacement as pairs, which keeps the correlation between the two
    evaluations; the interval is for reporting the size of a change, the gate decides with p-values.
    """
    x, y = _paired_arrays(before, after)
    if x.size == 0:
        raise ValueError("a bootstrap interval needs at least one paired prompt")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    d = y - x
    n = int(d.size)
    rng = np.random.default_rng(seed)
    batch = max(1, min(n_resamples, 4_000_000 // n))
    means: list[np.ndarray] = []
    done = 0
    while done < n_resamples:
        size = min(batch, n_resamples - done)
        means.append(d[rng.integers(0, n, size=(size, n))].mean(axis=1))
        done += size
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.concatenate(means), [tail, 1.0 - tail])
    return float(low), float(high)


def unpaired_z_test(delta: float, stderr_before: float, stderr_after: float) -> float | None:
    """Two-sided normal p-value of a score difference from independent standard errors (None if both 0)."""
    scale = math.hypot(stderr_before, stderr_after)
    if not scale > 0.0:
        return None
    return math.erfc(abs(delta) / scale / math.sqrt(2.0))


# --------------------------------------------------------------------------------------------------
# Comparing two evaluations of one benchmark
# --------------------------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    """A float when ``value`` is a finite number, else None (keeps NaN out of JSON)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _sample_score(sample: Mapping[str, Any]) -> float | None:
    """A prompt's score: its ``score`` field, else the mean of ``correct``, else the mean of ``scores``."""
    score = _finite(sample.get("score"))
    if score is not None:
        return score
    for key in ("correct", "scores"):
        values = [_finite(v) if not isinstance(v, bool) else float(v) for v in sample.get(key) or []]
        values = [v for v in values if v is not None]
        if values:
            return sum(values) / len(values)
    return None


def prompt_scores(record: Mapping[str, Any]) -> dict[str, float]:
    """Per-prompt scores of one benchmark's eval record, keyed by sample id (first occurrence wins)."""
    scores: dict[str, float] = {}
    skipped = duplicates = 0
    for sample in record.get("samples") or []:
        sample_id = sample.get("id")
        score = _sample_score(sample)
        if sample_id is None or score is None:
            skipped += 1
        elif str(sample_id) in scores:
            duplicates += 1
        else:
            scores[str(sample_id)] = score
    if skipped or duplicates:
        logger.warning(
            "eval record: ignored %d samples without id or score and %d duplicate ids", skipped, duplicates
        )
    return scores


def _one_sample_per_prompt(record: Mapping[str, Any]) -> bool:
    spp = record.get("samples_per_prompt")
    if spp is not None:
        return int(spp) == 1
    return all(len(s.get("correct") or s.get("scores") or [None]) == 1 for s in record.get("samples") or [])


def record_score(record: Mapping[str, Any]) -> float | None:
    """The headline score of an eval record (its ``score``, else the mean of its per-prompt scores)."""
    score = _finite(record.get("score"))
    if score is None:
        per_prompt = prompt_scores(record)
        if per_prompt:
            score = sum(per_prompt.values()) / len(per_prompt)
    return score


@dataclass(frozen=True)
class Comparison:
    """The change of one benchmark between two evaluations and how significant it is."""

    before: float | None
    after: float | None
    delta: float | None  # after - before, headline scores
    p_value: float | None  # None: no test could run (see note)
    test: str | None  # "mcnemar_exact" | "permutation" | "unpaired_z"
    n_paired: int  # prompts present in both evaluations
    ci: tuple[float, float] | None  # bootstrap interval of the paired mean difference
    note: str = ""


def compare_records(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float | None = 0.95,
) -> Comparison:
    """Compare two eval records of the same benchmark with the test their data supports.

    Prompts are paired by ``id`` (only ids present in both count). One 0/1 sample per prompt on both
    sides → exact McNemar; otherwise the permutation test on per-prompt scores. Without shared ids
    (or per-sample data) the reported standard errors give an unpaired z-test; without those either,
    the comparison records why no test ran instead of failing. ``confidence=None`` skips the
    bootstrap interval.
    """
    score_before, score_after = record_score(before), record_score(after)
    delta = None if score_before is None or score_after is None else score_after - score_before
    per_before, per_after = prompt_scores(before), prompt_scores(after)
    shared = [sample_id for sample_id in per_after if sample_id in per_before]
    if shared:
        x = np.array([per_before[i] for i in shared])
        y = np.array([per_after[i] for i in shared])
        note = ""
        if len(shared) < max(len(per_before), len(per_after)):
            note = f"paired on the {len(shared)} prompts both evaluations share"
            logger.info("%s (of %d before, %d after)", note, len(per_before), len(per_after))
        binary = bool(np.isin(x, (0.0, 1.0)).all() and np.isin(y, (0.0, 1.0)).all())
        if binary and _one_sample_per_prompt(before) and _one_sample_per_prompt(after):
            b = int(np.count_nonzero((x == 1.0) & (y == 0.0)))
            c = int(np.count_nonzero((x == 0.0) & (y == 1.0)))
            test, p_value = "mcnemar_exact", mcnemar_exact(b, c)
        else:
            test = "permutation"
            p_value = paired_permutation_test(x, y, n_resamples=n_resamples, seed=seed)
        ci = None
        if confidence is not None and len(shared) >= 2:
            ci = paired_bootstrap_ci(x, y, confidence=confidence, n_resamples=n_resamples, seed=seed)
        if delta is None:
            delta = float(y.mean() - x.mean())
        return Comparison(score_before, score_after, delta, p_value, test, len(shared), ci, note)

    reason = "no shared prompt ids" if per_before and per_after else "no per-prompt samples"
    se_before, se_after = _finite(before.get("stderr")), _finite(after.get("stderr"))
    if delta is not None and se_before is not None and se_after is not None:
        p_value = unpaired_z_test(delta, se_before, se_after)
        if p_value is not None:
            note = f"{reason}: unpaired z-test on the reported standard errors"
            return Comparison(score_before, score_after, delta, p_value, "unpaired_z", 0, None, note)
    note = f"{reason} and no standard errors: not tested"
    return Comparison(score_before, score_after, delta, None, None, 0, None, note)


def latest_records(evals: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Merge eval files (oldest first) into benchmark → its latest record.

    The ``before`` of a gate is the latest record of each benchmark on the chain of accepted
    checkpoints: a benchmark that the previous stage did not re-run is compared with its last run.
    Accepts whole eval files (with a ``benchmarks`` key) or bare ``benchmarks`` mappings.
    """
    merged: dict[str, dict[str, Any]] = {}
    for evaluation in evals:
        merged.update(evaluation.get("benchmarks", evaluation))
    return merged


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

    def significant(self, alpha: float) -> bool:
        """Whether the change passed the test at ``alpha``."""
        return self.p_value is not None and self.p_value < alpha


@dataclass
class GateResult:
    """The gate's verdict on one stage: per-benchmark findings, overall verdict and the action taken."""

    stage: str
    stage_domain: str | None
    verdict: str  # "pass" | "regressed"
    action: str  # "continue" | "stop" | "warn" | "rollback"
    policy: str
    tolerance: float
    alpha: float
    trained_domains: list[str]
    own_domain_improved: bool | None  # None: the stage has no domain or no testable own benchmark
    benchmarks: dict[str, BenchmarkCheck] = field(default_factory=dict)
    version: int = 1

    @property
    def regressions(self) -> list[BenchmarkCheck]:
        return [check for check in self.benchmarks.values() if check.verdict == "regressed"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (the ledger's ``gate`` field)."""
        return asdict(self)

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
                f"{c.name} by {_amount(-(c.delta or 0.0), c)} ({_value(c.before)} → {_value(c.after)}, "
                f"{TEST_LABELS.get(c.test or '', c.test)} {format_p_value(c.p_value)} < {self.alpha:g}, "
                f"tolerance {_amount(c.tolerance, c)})"
                for c in self.regressions
            )
            sentences.append(f"stage {self.stage} regressed {items}")
            sentences.append(_ACTION_TEXT.get(self.action, f"action {self.action}"))
        elif any(c.verdict == "pass" for c in gated):
            passed = [c for c in gated if c.verdict == "pass"]
            items = ", ".join(f"{c.name} {_change(c)}" for c in passed)
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
            changes = ", ".join(f"{c.name} {_change(c)}" for c in own)
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


def _history_score(row: Mapping[str, Any], name: str) -> float | None:
    value = row.get(name)
    return _finite(value.get("score")) if isinstance(value, Mapping) else _finite(value)


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
        earlier = [s for s in (_history_score(row, name) for row in history) if s is not None]

        from_history = False
        if record_before is None and record_after is not None:
            # Not re-run since an older row: compare with that row's score and standard error.
            latest = next(
                (row[name] for row in reversed(history) if _history_score(row, name) is not None), None
            )
            if latest is not None:
                record_before = latest if isinstance(latest, Mapping) else {"score": latest}
                from_history = True
        if record_after is None:
            comparison = Comparison(record_score(record_before or {}), None, None, None, None, 0, None, "")
        elif record_before is None:
            comparison = Comparison(None, record_score(record_after), None, None, None, 0, None, "")
        else:
            comparison = compare_records(record_before, record_after, n_resamples=n_resamples, seed=seed)

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
        )

    own_results = [c.improved for c in checks.values() if c.role == "own" and c.improved is not None]
    own_domain_improved = any(own_results) if own_results else None
    regressed = any(c.verdict == "regressed" for c in checks.values())
    result = GateResult(
        stage=stage,
        stage_domain=stage_domain,
        verdict="regressed" if regressed else "pass",
        action=policy if regressed else "continue",
        policy=policy,
        tolerance=float(tolerance),
        alpha=float(alpha),
        trained_domains=sorted(trained_domains),
        own_domain_improved=own_domain_improved,
        benchmarks=checks,
    )
    logger.debug("%s", result.summary())  # the caller decides how loudly to report the verdict
    return result
