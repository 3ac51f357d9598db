"""Scoring a benchmark's samples and aggregating them into its record: pure functions of the scores.

A scorer returns a score per sample, or None for a sample it cannot score (a checker that cannot run on
this host, a row without what it reads). Up to the benchmark's ``max_unscored`` share, such samples are
left out — of the score, of ``n`` and of the gate's pairing — never counted as wrong; beyond it the
benchmark fails (``UnscoredError``) rather than report a score that the missing samples would bias.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import BenchmarkConfig
from pipeline.gates.stats import pass_at_k
from pipeline.schema import ConfigError
from pipeline.selection.modes import mean_stderr


def benchmark_reward(bench: BenchmarkConfig, judges: dict[str, str]) -> Any:
    """The benchmark's scorer as a reward function; None for a judge (a reward-model stage) not trained yet."""
    from pipeline.models import is_model_ref
    from rewards import build_reward

    args = dict(bench.scorer.args)
    if bench.scorer.reward in ("reward_model", "if_rm"):
        judge = bench.scorer.judge or args.get("model_path")
        if judge in judges:
            args["model_path"] = judges[judge]
        elif judge and is_model_ref(judge):
            args["model_path"] = judge
        else:  # a reward-model stage that has not run yet
            return None
    return build_reward(bench.scorer.reward, args)


class UnscoredError(ConfigError):
    """A benchmark whose scorer could not score enough of its samples: its score would be a silent zero."""


def score_samples(
    bench: BenchmarkConfig, reward: Any, rows: list[dict[str, Any]], completions: list[list[str]]
) -> list[list[float | None]]:
    """Scores per prompt per sample, from the benchmark's reward called on all samples at once; None for a
    sample the scorer could not score (within ``max_unscored``): it is left out of the score, not counted
    as wrong."""
    flat_rows = [row for row, comps in zip(rows, completions, strict=True) for _ in comps]
    flat = [c for comps in completions for c in comps]
    columns: dict[str, list[Any]] = {}
    for key in flat_rows[0] if flat_rows else []:
        columns[key] = [r.get(key) for r in flat_rows]
    columns["prompts"] = columns.pop("prompt", [None] * len(flat))
    raw = reward(flat, **columns)
    unscored = sum(s is None for s in raw)
    if raw and unscored > bench.max_unscored * len(raw):
        raise UnscoredError(
            f"scorer '{bench.scorer.reward}' left {unscored} of {len(raw)} samples unscored (more than "
            f"max_unscored={bench.max_unscored:g}); its rows lack what the scorer reads or its checkers cannot run"
        )
    scores = [float(s) if s is not None else None for s in raw]
    out, i = [], 0
    for comps in completions:
        out.append(scores[i : i + len(comps)])
        i += len(comps)
    return out


def prompt_score(bench: BenchmarkConfig, scores: list[float | None]) -> float | None:
    """One prompt's score from its samples' (accuracy: the share at or above the threshold; otherwise the
    mean), over the scored samples only; None when none was scored."""
    scored = [s for s in scores if s is not None]
    if not scored:
        return None
    if bench.scorer.metric == "accuracy":
        return sum(s >= bench.scorer.threshold for s in scored) / len(scored)
    return sum(scored) / len(scored)


def aggregate(bench: BenchmarkConfig, per_prompt: list[list[float | None]]) -> dict[str, Any]:
    """score (mean over prompts), stderr, n and pass@k from per-sample scores. Unscored samples are left
    out (a prompt none of whose samples was scored leaves ``n``), and ``unscored`` counts them."""
    thr = bench.scorer.threshold
    values = [v for v in (prompt_score(bench, ss) for ss in per_prompt) if v is not None]
    n = len(values)
    mean, stderr = mean_stderr(values)
    record: dict[str, Any] = {"score": mean if n else None, "stderr": stderr if n else None, "n": n}
    unscored = sum(s is None for ss in per_prompt for s in ss)
    if unscored:
        record["unscored"] = unscored
    k_samples = bench.generation.n
    if bench.scorer.metric == "accuracy" and k_samples > 1:
        ks = sorted({1, k_samples, *[2**i for i in range(1, 8) if 2**i < k_samples]})
        scored = [[s for s in ss if s is not None] for ss in per_prompt]
        record["pass_at_k"] = {}
        for k in ks:
            estimates = [pass_at_k(len(ss), sum(s >= thr for s in ss), k) for ss in scored if len(ss) >= k]
            if estimates:
                record["pass_at_k"][str(k)] = sum(estimates) / len(estimates)
    return record
