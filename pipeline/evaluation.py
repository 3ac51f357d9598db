"""Benchmarks: batched generation sharded over processes, scored by the domain's reward, aggregated.

Prompts are sorted by length and cut into fixed batches *before* sharding; batches go round-robin to
processes and each batch samples with its own seed. So the completions, and therefore the scores, are
the same whether one process or eight evaluate (tested), and a seed fixes them.

Each process loads its own replica of the checkpoint for evaluation (a saved HF checkpoint, so this
also holds after a DeepSpeed ZeRO-3 stage, whose trainer gathered the weights when saving).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.atomic import write_json
from pipeline.config import BenchmarkConfig, Recipe
from pipeline.data.sources import is_prompt, load_rows
from pipeline.distributed import process_state
from pipeline.schema import ConfigError

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Generation


def render_prompts(tokenizer: Any, prompts: Sequence[Any], mode: str, fmt: Any = None) -> list[str]:
    from pipeline.data.formatting import PLAIN, rl_prompt

    return [
        tokenizer.apply_chat_template(
            rl_prompt(p, mode, fmt or PLAIN), tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]


def generate_batch(
    model: Any, tokenizer: Any, texts: list[str], gen: Any, seed: int
) -> tuple[list[list[str]], int]:
    """``gen.n`` completions for each text (one batch), and the number of tokens generated."""
    import torch

    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    sample = gen.temperature > 0
    torch.manual_seed(seed)
    eos = model.generation_config.eos_token_id or tokenizer.eos_token_id
    with torch.inference_mode():
        out = model.generate(
            **enc,
            max_new_tokens=gen.max_new_tokens,
            do_sample=sample,
            temperature=gen.temperature if sample else None,
            top_p=gen.top_p if sample else None,
            top_k=0 if sample else None,
            num_return_sequences=gen.n,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos,
        )
    new = out[:, enc["input_ids"].shape[1] :]
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    tokens, texts_out = 0, []
    for row in new.tolist():
        cut = next((i for i, t in enumerate(row) if t in eos_ids), len(row))
        tokens += cut + (1 if cut < len(row) else 0)
        texts_out.append(
            tokenizer.decode(row[:cut], skip_special_tokens=False).replace(tokenizer.pad_token or "", "")
        )
    grouped = [texts_out[i * gen.n : (i + 1) * gen.n] for i in range(len(texts))]
    return grouped, tokens


# --------------------------------------------------------------------------------------------------
# Scoring


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def _reward_fn(bench: BenchmarkConfig, judges: dict[str, str]) -> Any:
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
) -> list[list[float]]:
    """Scores per prompt per sample, from the benchmark's reward called on all samples at once."""
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
    scores = [float(s) if s is not None else 0.0 for s in raw]
    out, i = [], 0
    for comps in completions:
        out.append(scores[i : i + len(comps)])
        i += len(comps)
    return out


def aggregate(bench: BenchmarkConfig, per_prompt: list[list[float]]) -> dict[str, Any]:
    """score (mean over prompts), stderr, n and pass@k from per-sample scores."""
    thr = bench.scorer.threshold
    if bench.scorer.metric == "accuracy":
        values = [sum(s >= thr for s in ss) / len(ss) for ss in per_prompt]
    else:
        values = [sum(ss) / len(ss) for ss in per_prompt]
    n = len(values)
    mean = sum(values) / n if n else 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    record: dict[str, Any] = {"score": mean, "stderr": math.sqrt(var / n) if n else 0.0, "n": n}
    k_samples = bench.generation.n
    if bench.scorer.metric == "accuracy" and k_samples > 1:
        ks = sorted({1, k_samples, *[2**i for i in range(1, 8) if 2**i < k_samples]})
        record["pass_at_k"] = {
            str(k): sum(pass_at_k(len(ss), sum(s >= thr for s in ss), k) for ss in per_prompt) / n for k in ks
        }
    return record


# --------------------------------------------------------------------------------------------------
# Benchmarks on a checkpoint


def load_benchmark_rows(bench: BenchmarkConfig, seed: int) -> list[dict[str, Any]]:
    rows = load_rows([bench.data], {"prompt": is_prompt}, seed).rows
    # a stable order (by id when there is one) so every process and every run sees the same prompts
    rows = sorted(rows, key=lambda r: str(r.get("id", "")) or json.dumps(r, sort_keys=True, default=str))
    for i, row in enumerate(rows):
        row.setdefault("id", f"{i:06d}")
        row["id"] = str(row["id"])
    return rows


def run_benchmark(
    name: str, bench: BenchmarkConfig, model: Any, tokenizer: Any, seed: int, judges: dict[str, str]
) -> dict[str, Any]:
    from accelerate.utils import broadcast_object_list, gather_object
    from tqdm.auto import tqdm

    state = process_state()
    t0 = time.monotonic()
    reward = _reward_fn(bench, judges)
    if reward is None:
        log.info("benchmark %s skipped: its judge %s has not been trained yet", name, bench.scorer.judge)
        return {"domain": bench.domain, "skipped": f"judge '{bench.scorer.judge}' not trained yet"}
    rows = load_benchmark_rows(bench, seed)
    texts = render_prompts(tokenizer, [r["prompt"] for r in rows], bench.prompt_mode, bench.prompt.format())
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(rows)), key=lambda i: (lengths[i], i))
    bs = bench.generation.batch_size
    batches = [order[i : i + bs] for i in range(0, len(order), bs)]
    mine = batches[state.process_index :: state.num_processes]
    results: list[tuple[int, list[str]]] = []
    tokens = 0
    bar = tqdm(mine, desc=f"eval {name}", disable=None if state.is_main_process else True, leave=False)
    for b_index, batch in zip(
        range(state.process_index, len(batches), state.num_processes), bar, strict=True
    ):
        completions, n_tok = generate_batch(
            model, tokenizer, [texts[i] for i in batch], bench.generation, seed + b_index
        )
        tokens += n_tok
        results.extend(zip(batch, completions, strict=True))
    # gather completions (not scores): scoring runs once, on every process alike, over the full list
    gathered = gather_object([results]) if state.num_processes > 1 else [results]
    merged = dict(pair for part in gathered for pair in part)
    all_tokens = gather_object([tokens]) if state.num_processes > 1 else [tokens]
    completions = [merged[i] for i in range(len(rows))]
    # score once, on the main process (sandboxes and reward models are not multiplied by the world size)
    per_prompt, error = None, None
    if state.is_main_process:
        try:
            per_prompt = score_samples(bench, reward, rows, completions)
        except UnscoredError as exc:  # every process must learn it, or the others wait in the broadcast
            error = f"benchmark '{name}': {exc}"
    if state.num_processes > 1:
        per_prompt, error = broadcast_object_list([per_prompt, error])
    if error:
        raise UnscoredError(error)
    record = {"domain": bench.domain, **aggregate(bench, per_prompt)}
    thr = bench.scorer.threshold
    record.update(
        samples_per_prompt=bench.generation.n,
        threshold=thr,
        metric=bench.scorer.metric,
        wall_s=round(time.monotonic() - t0, 2),
        tokens=int(sum(all_tokens)),
        samples=[
            {
                "id": row["id"],
                "prompt": row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1]["content"],
                "completions": comps,
                "scores": [round(s, 4) for s in ss],
                "correct": [s >= thr for s in ss],
                "score": (sum(s >= thr for s in ss) / len(ss))
                if bench.scorer.metric == "accuracy"
                else sum(ss) / len(ss),
            }
            for row, comps, ss in zip(rows, completions, per_prompt, strict=True)
        ],
    )
    log.info(
        "benchmark %-14s %.3f ± %.3f (n=%d, %.1fs, %d tokens)",
        name, record["score"], record["stderr"], record["n"], record["wall_s"], record["tokens"],
    )  # fmt: skip
    return record


def resolve_checkpoint(recipe: Recipe, ref: str) -> str:
    """A checkpoint argument: a stage of the recipe's run (its final checkpoint, as the ledger records
    it), ``base`` (the run's builtin starting model), or a path / hub id."""
    from pipeline.models import checkpoint_exists, is_model_ref
    from pipeline.rundir import BASE, RunDir
    from pipeline.schema import ConfigError

    if not ref:
        raise ConfigError("argument 'checkpoint' is required (a path, a hub id, or a stage name of the run)")
    if ref in recipe.stages:
        path = stage_judges(recipe).get(ref)
        if path is None:
            raise ConfigError(
                f"stage '{ref}' of run '{recipe.run.name}' has no final checkpoint in {recipe.run_dir}"
            )
        return path
    base = RunDir(recipe.run_dir).base_model
    if ref == BASE and checkpoint_exists(base):
        return str(base)
    if is_model_ref(ref):
        return ref
    raise ConfigError(f"argument 'checkpoint' names '{ref}', which is no stage, existing path or hub id")


def stage_judges(recipe: Recipe) -> dict[str, str]:
    """Final checkpoints of the recipe's stages that its run's ledger records, by stage name (judges)."""
    from pipeline.ledger import stage_checkpoints

    return {name: path for name, path in stage_checkpoints(recipe.run_dir).items() if name in recipe.stages}


def evaluate_checkpoint(
    recipe: Recipe,
    checkpoint: str,
    names: list[str],
    *,
    out_file: Path | None,
    stage: str,
    index: int,
    judges: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run benchmarks ``names`` on ``checkpoint``; write ``out_file`` (main process) and return the record."""
    import torch

    from pipeline.models import load_causal_lm, load_tokenizer

    state = process_state()
    t0 = time.monotonic()
    tokenizer = load_tokenizer(checkpoint)
    tokenizer.padding_side = "left"
    model = load_causal_lm(checkpoint, recipe.run.precision, device=state.device).eval()
    benchmarks = {}
    for name in names:
        benchmarks[name] = run_benchmark(
            name, recipe.benchmarks[name], model, tokenizer, recipe.eval.seed, judges or {}
        )
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    record = {
        "stage": stage,
        "index": index,
        "checkpoint": str(checkpoint),
        "wall_s": round(time.monotonic() - t0, 2),
        "benchmarks": {n: b for n, b in benchmarks.items() if "skipped" not in b},
        "skipped": {n: b["skipped"] for n, b in benchmarks.items() if "skipped" in b},
    }
    if out_file is not None and state.is_main_process:
        write_json(out_file, record)
    state.wait_for_everyone()
    return record
