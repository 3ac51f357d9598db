"""Every mode's per-prompt outcome and summary, as the eval record keeps them.

A mode turns a prompt's n samples into one value per prompt: ``pass@1`` the share of correct samples,
``pass@<n>`` (the oracle) whether any sample is correct, ``majority`` and ``genselect`` whether the
sample they pick is correct. The summary of a mode is the mean over prompts with its standard error,
and what the mode cost on top of generating the samples (tokens, seconds, selection calls). The
per-prompt outcomes go into each sample record, where the gate pairs them by prompt id.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.selection.genselect import OK, Cost, Selected
from pipeline.selection.grouping import Grouping, majority_pick


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean over prompts and its standard error (sample standard deviation / sqrt(n))."""
    n = len(values)
    mean = sum(values) / n if n else 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n) if n else 0.0


def summary(values: Sequence[float], **cost: Any) -> dict[str, Any]:
    mean, stderr = mean_stderr(values)
    return {"score": mean, "stderr": stderr, "n": len(values), **cost}


@dataclass(frozen=True)
class Generated:
    """What generating the n samples cost (the cost every mode starts from)."""

    tokens: int
    seconds: float


def heavy_record(
    modes: Sequence[str],
    correct: Sequence[Sequence[bool | None]],
    generated: Generated,
    grouping: Grouping | None,
    selected: Sequence[Selected] | None,
    cost: Cost | None,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """(modes, per-prompt sample fields, skipped modes with why) for the modes a benchmark lists.

    ``modes`` always holds ``pass@1`` and the oracle ``pass@<n>``; ``majority`` when listed and the
    answers could be grouped for at least one prompt; ``genselect`` when listed. ``None`` marks a sample
    the scorer could not score: pass@1 leaves it out, as the plain score does; a pick must be judged, so
    a picked unscored sample counts as wrong.
    """
    n = max((len(c) for c in correct), default=0)
    scored = [[bool(x) for x in c if x is not None] for c in correct]
    out = {
        "pass@1": summary([sum(c) / len(c) for c in scored if c], tokens=generated.tokens, seconds=round(generated.seconds, 2)),
        f"pass@{n}": summary([float(any(c)) for c in correct]),
    }  # fmt: skip
    per_prompt: list[dict[str, Any]] = [{} for _ in correct]
    skipped: dict[str, str] = {}
    if grouping is not None:
        for fields, classes in zip(per_prompt, grouping.classes, strict=True):
            fields["classes"] = list(classes)
    if "majority" in modes and grouping is not None:
        if any(grouping.grouped):
            picks = [majority_pick(c) for c in grouping.classes]
            values = []
            for fields, pick, ok in zip(per_prompt, picks, correct, strict=True):
                chosen = pick if pick is not None else 0  # no sample has an answer: the first one stands
                values.append(float(bool(ok[chosen])))
                fields.setdefault("selection", {})["majority"] = {"pick": chosen, "correct": bool(ok[chosen])}
            out["majority"] = summary(
                values,
                seconds=round(grouping.seconds, 2),
                no_answer=sum(p is None for p in picks),
                ungrouped=sum(not g for g in grouping.grouped),
            )
        else:
            skipped["majority"] = "no prompt's tests carry inputs to run the programs on (assert tests)"
    if "genselect" in modes and selected is not None and cost is not None:
        values = []
        for fields, sel, ok in zip(per_prompt, selected, correct, strict=True):
            values.append(float(bool(ok[sel.pick])))
            fields.setdefault("selection", {})["genselect"] = {
                "pick": sel.pick,
                "correct": bool(ok[sel.pick]),
                "fallbacks": sel.fallbacks,
                "judgments": [j.to_json() for j in sel.judgments],
            }
        outcomes: dict[str, int] = {}
        for sel in selected:
            for j in sel.judgments:
                if j.outcome != OK:
                    outcomes[j.outcome] = outcomes.get(j.outcome, 0) + 1
        out["genselect"] = summary(
            values,
            tokens=cost.tokens,
            prompt_tokens=cost.prompt_tokens,
            seconds=round(cost.seconds, 2),
            calls=cost.calls,
            fallbacks=sum(sel.fallbacks for sel in selected),
            fallback_outcomes=outcomes,
        )
    return out, per_prompt, skipped
