"""Comparing two evaluations of one benchmark: prompts paired by id, the test their data supports.

The inputs are eval records as ``evals/<NN>-<stage>.json`` holds them under ``benchmarks`` (headline
``score``/``stderr`` and per-prompt ``samples``); the output is a :class:`Comparison`.

A benchmark is compared on its ``primary`` metric (``pass@1`` unless the record names another):
:func:`metric_view` reads a record as that metric — ``majority``/``genselect`` from each sample's
``selection`` outcome (one 0/1 value per prompt), ``pass@k`` from each sample's ``correct`` list.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.gates.stats import (
    mcnemar_exact,
    paired_bootstrap_ci,
    paired_permutation_test,
    pass_at_k,
    unpaired_z_test,
)

logger = logging.getLogger(__name__)


def finite(value: Any) -> float | None:
    """A float when ``value`` is a finite number, else None (keeps NaN out of JSON)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _sample_score(sample: Mapping[str, Any]) -> float | None:
    """A prompt's score: its ``score`` field, else the mean of ``correct``, else the mean of ``scores``."""
    score = finite(sample.get("score"))
    if score is not None:
        return score
    for key in ("correct", "scores"):
        values = [finite(v) if not isinstance(v, bool) else float(v) for v in sample.get(key) or []]
        values = [v for v in values if v is not None]
        if values:
            return sum(values) / len(values)
    return None


def _unscored(sample: Mapping[str, Any]) -> bool:
    """A prompt none of whose samples the scorer could score (``scores`` all null)."""
    scores = sample.get("scores")
    return isinstance(scores, list) and bool(scores) and all(v is None for v in scores)


def prompt_scores(record: Mapping[str, Any]) -> dict[str, float]:
    """Per-prompt scores of one benchmark's eval record, keyed by sample id (first occurrence wins)."""
    scores: dict[str, float] = {}
    skipped = duplicates = 0
    for sample in record.get("samples") or []:
        sample_id = sample.get("id")
        score = _sample_score(sample)
        if score is None and _unscored(sample):
            continue  # the scorer could not score it: out of the score, so out of the comparison
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


PASS_AT_1 = "pass@1"
SELECTED = ("majority", "genselect")  # metrics that pick one sample per prompt


def primary_of(record: Mapping[str, Any] | None) -> str:
    """The metric a record is gated on: its ``primary``, ``pass@1`` for records without one."""
    return str((record or {}).get("primary") or PASS_AT_1)


def _sample_value(sample: Mapping[str, Any], metric: str) -> float | None:
    """One prompt's value of ``metric``: a selection's 0/1 outcome, or pass@k from its ``correct`` list."""
    if metric in SELECTED:
        outcome = (sample.get("selection") or {}).get(metric)
        correct = outcome.get("correct") if isinstance(outcome, Mapping) else None
        return float(correct) if isinstance(correct, bool) else None
    k = int(metric.removeprefix("pass@")) if metric.startswith("pass@") and metric[5:].isdigit() else 0
    correct = sample.get("correct")
    if k < 1 or not isinstance(correct, list) or len(correct) < k:
        return None
    return pass_at_k(len(correct), sum(bool(c) for c in correct), k)


def metric_view(record: Mapping[str, Any], metric: str | None = None) -> Mapping[str, Any]:
    """``record`` as the gate reads it for ``metric`` (default: the record's primary).

    The record itself when it is on pass@1 and pass@1 is asked (every record before heavy modes);
    otherwise a record of the same shape whose headline and per-prompt ``score`` are the metric's,
    taken from the record's headline (the metric is its primary) or ``modes`` summary, and from each
    sample's outcome (a sample's own ``score`` is always its prompt's pass@1). A record that lacks the
    metric gives a view without score or samples, which the comparison reports as untested.
    """
    primary = primary_of(record)
    metric = metric or primary
    if metric == PASS_AT_1 == primary or record.get("view") == metric:  # already read as the metric
        return record
    mode = dict((record.get("modes") or {}).get(metric) or {})
    if metric == primary:  # the record's headline is the metric's (its samples' ``score`` is pass@1)
        mode.update(score=record.get("score"), stderr=record.get("stderr"))
    samples = []
    if metric == PASS_AT_1:  # each sample record's own score is its prompt's pass@1
        samples = [{"id": s.get("id"), "score": s.get("score")} for s in record.get("samples") or []]
    else:
        for sample in record.get("samples") or []:
            value = _sample_value(sample, metric)
            if value is not None:
                samples.append({"id": sample.get("id"), "score": value})
    view: dict[str, Any] = {key: record.get(key) for key in ("domain", "metric") if key in record}
    view.update(
        primary=metric, view=metric, score=mode.get("score"), stderr=mode.get("stderr"), samples=samples
    )
    if metric in SELECTED:
        view["samples_per_prompt"] = 1
    elif metric == PASS_AT_1 and "samples_per_prompt" in record:
        view["samples_per_prompt"] = record["samples_per_prompt"]
    else:
        view["samples_per_prompt"] = 0  # pass@k values are fractions: the permutation test
    return view


def _one_sample_per_prompt(record: Mapping[str, Any]) -> bool:
    spp = record.get("samples_per_prompt")
    if spp is not None:
        return int(spp) == 1
    return all(len(s.get("correct") or s.get("scores") or [None]) == 1 for s in record.get("samples") or [])


def record_score(record: Mapping[str, Any], metric: str | None = None) -> float | None:
    """The headline score of an eval record for ``metric`` (default: its primary): its ``score``, else
    the mean of its per-prompt scores."""
    record = metric_view(record, metric)
    score = finite(record.get("score"))
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
    metric: str | None = None,
) -> Comparison:
    """Compare two eval records of the same benchmark with the test their data supports.

    Prompts are paired by ``id`` (only ids present in both count). One 0/1 sample per prompt on both
    sides → exact McNemar; otherwise the permutation test on per-prompt scores. Without shared ids
    (or per-sample data) the reported standard errors give an unpaired z-test; without those either,
    the comparison records why no test ran instead of failing. ``confidence=None`` skips the
    bootstrap interval. Both records are read as ``metric`` (default: the later record's primary).
    """
    metric = metric or primary_of(after)
    before, after = metric_view(before, metric), metric_view(after, metric)
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
    se_before, se_after = finite(before.get("stderr")), finite(after.get("stderr"))
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
