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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pipeline.atomic import write_json
from pipeline.config import HEAVY_MODES, BenchmarkConfig, GenerationConfig, Recipe
from pipeline.data.sources import is_prompt, load_rows
from pipeline.distributed import process_state
from pipeline.schema import ConfigError
from pipeline.scoring import UnscoredError, aggregate, benchmark_reward, prompt_score, score_samples

log = logging.getLogger(__name__)

T = TypeVar("T")
# GenSelect's calls of tournament level L sample from seed + SELECTION_SEED * (L + 1) + batch index
SELECTION_SEED = 1_000_003


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
    engine: Any, tokenizer: Any, prompts: list[list[int]], gen: Any, seed: int
) -> tuple[list[list[str]], int]:
    """``gen.n`` completions for each prompt (token ids; one batch), and the number of tokens generated."""
    from pipeline.generation import Sampling

    sampling = Sampling(
        gen.max_new_tokens, gen.temperature, gen.top_p if gen.temperature > 0 else 1.0, 0, gen.n
    )
    out = engine.generate(prompts, sampling, seed)
    pad = tokenizer.pad_token or ""
    texts = [
        tokenizer.decode(ids if cut else ids[:-1], skip_special_tokens=False).replace(pad, "")
        for ids, cut in zip(out.ids, out.truncated, strict=True)
    ]
    return [texts[i * gen.n : (i + 1) * gen.n] for i in range(len(prompts))], out.tokens


def generate_sharded(
    engine: Any, tokenizer: Any, prompts: list[list[int]], gen: Any, seed: int, desc: str
) -> tuple[list[list[str]], int, float]:
    """``gen.n`` completions of every prompt, the tokens generated, and the seconds it took.

    Prompts are sorted by length and cut into fixed batches; batch ``b`` samples from ``seed + b`` on
    process ``b mod world size``, and the completions are gathered to every process in prompt order.
    """
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    state = process_state()
    t0 = time.monotonic()
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    bs = gen.batch_size
    batches = [order[i : i + bs] for i in range(0, len(order), bs)]
    results: list[tuple[int, list[str]]] = []
    tokens = 0
    mine = range(state.process_index, len(batches), state.num_processes)
    for b_index in tqdm(mine, desc=desc, disable=None if state.is_main_process else True, leave=False):
        batch = batches[b_index]
        completions, n_tok = generate_batch(
            engine, tokenizer, [prompts[i] for i in batch], gen, seed + b_index
        )
        tokens += n_tok
        results.extend(zip(batch, completions, strict=True))
    parts = gather_object([(results, tokens)]) if state.num_processes > 1 else [(results, tokens)]
    merged = dict(pair for part, _ in parts for pair in part)
    return [merged[i] for i in range(len(prompts))], sum(t for _, t in parts), time.monotonic() - t0


# --------------------------------------------------------------------------------------------------
# Benchmarks on a checkpoint


def load_benchmark_rows(bench: BenchmarkConfig, seed: int) -> list[dict[str, Any]]:
    rows = list(load_rows([bench.data], {"prompt": is_prompt}, seed).rows)
    # a stable order (by id when there is one) so every process and every run sees the same prompts;
    # a row without an id (missing, None or empty) is known by its position, never by the text "None"
    rows = sorted(rows, key=lambda r: _id(r) or json.dumps(r, sort_keys=True, default=str))
    for i, row in enumerate(rows):
        row["id"] = _id(row) or f"{i:06d}"
    return rows


def _id(row: dict[str, Any]) -> str:
    value = row.get("id")
    return "" if value is None else str(value)


class Prepared:
    """A benchmark's rows and their prompts as token ids, before any generation."""

    def __init__(self, bench: BenchmarkConfig, tokenizer: Any, seed: int):
        self.rows = load_benchmark_rows(bench, seed)
        texts = render_prompts(
            tokenizer, [r["prompt"] for r in self.rows], bench.prompt_mode, bench.prompt.format()
        )
        self.prompts = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

    def longest(self, gen: Any) -> tuple[int, int]:
        """(rows, tokens) of the largest generation call: a full batch of the longest prompts."""
        width = max((len(p) for p in self.prompts), default=0)
        return min(gen.batch_size, len(self.prompts)) * gen.n, width + gen.max_new_tokens

    def selection_longest(self, bench: BenchmarkConfig, tokenizer: Any) -> tuple[int, int] | None:
        """(rows, tokens) of the largest GenSelect call (an estimate: k candidates of full length)."""
        from pipeline.selection.genselect import selection_prompt

        if "genselect" not in bench.selection or not self.prompts:
            return None
        cfg, gen = bench.genselect, bench.generation
        k = min(cfg.k, gen.n)
        # the prompt without candidates, plus room for the chat template's own tokens
        frame = len(tokenizer(selection_prompt("", [""] * k, cfg.template))["input_ids"]) + 32
        width = max(len(p) for p in self.prompts) + frame + k * gen.max_new_tokens
        rows = min(gen.batch_size, len(self.prompts) * -(-gen.n // k) * cfg.rounds)
        return rows, width + cfg.max_new_tokens


def _on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run once, on the main process (sandboxes and verifier pools are not multiplied by the
    world size), its result broadcast to every process; so is an UnscoredError, or the others would
    wait in the broadcast."""
    from accelerate.utils import broadcast_object_list

    state = process_state()
    result, error = None, None
    if state.is_main_process:
        try:
            result = fn()
        except UnscoredError as exc:
            error = str(exc)
    if state.num_processes > 1:
        result, error = broadcast_object_list([result, error])
    if error:
        raise UnscoredError(error)
    return result  # type: ignore[return-value]


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _prompt_text(row: dict[str, Any]) -> str:
    return row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1]["content"]


def run_benchmark(
    name: str,
    bench: BenchmarkConfig,
    engine: Any,
    tokenizer: Any,
    seed: int,
    judges: dict[str, str],
    prepared: Prepared | None = None,
) -> dict[str, Any]:
    from pipeline.selection.grouping import group_answers

    t0 = time.monotonic()
    reward = benchmark_reward(bench, judges)
    if reward is None:
        log.info("benchmark %s skipped: its judge %s has not been trained yet", name, bench.scorer.judge)
        return {"domain": bench.domain, "skipped": f"judge '{bench.scorer.judge}' not trained yet"}
    prepared = prepared or Prepared(bench, tokenizer, seed)
    rows, prompts = prepared.rows, prepared.prompts
    completions, tokens, gen_seconds = generate_sharded(
        engine, tokenizer, prompts, bench.generation, seed, f"eval {name}"
    )

    def score_and_group() -> tuple[list[list[float]], Any]:
        try:
            per_prompt = score_samples(bench, reward, rows, completions)
        except UnscoredError as exc:
            raise UnscoredError(f"benchmark '{name}': {exc}") from None
        grouping = None
        if any(mode in HEAVY_MODES for mode in bench.selection):
            scorer = bench.scorer
            grouping = group_answers(
                scorer.reward, scorer.args, rows, completions, bench.majority.code_inputs
            )
        return per_prompt, grouping

    # completions are gathered to every process; scoring and grouping run once, on the main process
    per_prompt, grouping = _on_main(score_and_group)
    # what the reward found about this host (the code sandbox's isolation) is kept with the scores
    record = {"domain": bench.domain, **aggregate(bench, per_prompt), **getattr(reward, "facts", {})}
    thr = bench.scorer.threshold
    record.update(
        samples_per_prompt=bench.generation.n,
        threshold=thr,
        metric=bench.scorer.metric,
        wall_s=0.0,
        tokens=int(tokens),
        samples=[
            {
                "id": row["id"],
                "prompt": _prompt_text(row),
                "completions": comps,
                "scores": [None if s is None else round(s, 4) for s in ss],
                "correct": [None if s is None else s >= thr for s in ss],
                "score": prompt_score(bench, ss),
            }
            for row, comps, ss in zip(rows, completions, per_prompt, strict=True)
        ],
    )
    if bench.selection or bench.primary != "pass@1":
        _select(name, bench, engine, tokenizer, seed, record, grouping, gen_seconds)
    record["wall_s"] = round(time.monotonic() - t0, 2)
    modes = "".join(f", {mode} {m['score']:.3f}" for mode, m in (record.get("modes") or {}).items())
    log.info(
        "benchmark %-14s %s ± %s (n=%d, %.1fs, %d tokens%s)",
        name, _number(record["score"]), _number(record["stderr"]), record["n"], record["wall_s"], record["tokens"], modes,
    )  # fmt: skip
    return record


def _select(
    name: str,
    bench: BenchmarkConfig,
    engine: Any,
    tokenizer: Any,
    seed: int,
    record: dict[str, Any],
    grouping: Any,
    gen_seconds: float,
) -> None:
    """Add the heavy modes to a benchmark's record: ``modes``, each sample's ``selection`` and
    ``classes``, and the ``primary`` metric's score as the record's headline (docs/evaluation.md)."""
    from pipeline.data.formatting import PromptFormat
    from pipeline.gates.compare import metric_view
    from pipeline.selection.genselect import run_genselect
    from pipeline.selection.modes import Generated, heavy_record, summary

    samples = record["samples"]
    selected = cost = None
    if "genselect" in bench.selection:
        cfg, gen = bench.genselect, bench.generation
        temperature = gen.temperature if cfg.temperature is None else cfg.temperature
        sel_gen = GenerationConfig(
            max_new_tokens=cfg.max_new_tokens,
            temperature=temperature,
            top_p=gen.top_p,
            n=1,
            batch_size=gen.batch_size,
        )
        system = PromptFormat(bench.prompt.system)  # the benchmark's system prompt, not its problem template

        def generate(texts: list[str], level: int) -> tuple[list[str], int, int]:
            rendered = render_prompts(tokenizer, texts, bench.prompt_mode, system)
            ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in rendered]
            level_seed = seed + SELECTION_SEED * (level + 1)
            out, n_tok, _ = generate_sharded(
                engine, tokenizer, ids, sel_gen, level_seed, f"genselect {name} {level}"
            )
            return [answers[0] for answers in out], n_tok, sum(map(len, ids))

        selected, cost = run_genselect(
            [s["prompt"] for s in samples], [s["completions"] for s in samples], grouping.classes,
            [s["id"] for s in samples], generate, k=cfg.k, rounds=cfg.rounds, seed=seed,
            max_summary_chars=cfg.max_summary_chars, template=cfg.template,
        )  # fmt: skip
    unscored = sum(c is None for s in samples for c in s["correct"])
    if unscored:
        log.warning(
            "benchmark %s: %d unscored samples count as incorrect where its selection modes pick them",
            name, unscored,
        )  # fmt: skip
    correct = [s["correct"] for s in samples]
    generated = Generated(record["tokens"], gen_seconds)
    modes, per_prompt, skipped = heavy_record(bench.selection, correct, generated, grouping, selected, cost)
    for sample, fields in zip(samples, per_prompt, strict=True):
        sample.update(fields)
    record["modes"] = modes
    if skipped:
        record["skipped_modes"] = skipped
        for mode, why in skipped.items():
            log.warning("benchmark %s: %s skipped: %s", name, mode, why)
    view = metric_view(record, bench.primary)["samples"]
    values = [s["score"] for s in view if s["score"] is not None]  # unscored prompts have none
    if values:
        primary = modes.setdefault(bench.primary, summary(values))
        record.update(primary=bench.primary, score=primary["score"], stderr=primary["stderr"])
    else:  # no score rather than a silent zero: the gate reports the benchmark as untested
        log.warning("benchmark %s: its primary metric %s has no value; it has no score", name, bench.primary)
        record.update(primary=bench.primary, score=None, stderr=None)
    if cost is not None:  # every token the benchmark generated; its modes say which mode spent them
        record["tokens"] += cost.tokens


def resolve_checkpoint(recipe: Recipe, ref: str) -> str:
    """A checkpoint argument: a stage of the recipe's run (its final checkpoint, as the ledger records
    it), ``base`` (the run's starting model: built or converted into ``runs/<name>/base`` as the cascade
    does, if no run has yet), or a path / hub id."""
    from pipeline.models import is_model_ref, starting_model
    from pipeline.rundir import BASE, RunDir

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
    if ref == BASE:  # built or converted once; an existing base/ is returned as it is
        return starting_model(recipe.model, base, recipe.run.seed)
    if is_model_ref(ref):
        return ref
    raise ConfigError(f"argument 'checkpoint' names '{ref}', which is no stage, existing path or hub id")


def _engine(recipe: Recipe, model: Any, tokenizer: Any, checkpoint: str) -> Any:
    """The recipe's generation engine over an evaluation replica (``generation.engine``)."""
    from pipeline.generation import end_tokens, make_engine, resolve

    name = resolve(recipe.generation.engine, model.device.type)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    options = recipe.generation.engine_options(name)
    return make_engine(name, model, end_tokens(model, tokenizer), pad, path=checkpoint, **options)


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
    tokenizer = load_tokenizer(checkpoint, recipe.model)
    tokenizer.padding_side = "left"
    model = load_causal_lm(checkpoint, recipe.run.precision, device=state.device, model=recipe.model).eval()
    engine = _engine(recipe, model, tokenizer, checkpoint)
    prepared = {name: Prepared(recipe.benchmarks[name], tokenizer, recipe.eval.seed) for name in names}
    if hasattr(engine, "reserve") and prepared:  # one cache (and compilation) for every benchmark
        shapes = [p.longest(recipe.benchmarks[n].generation) for n, p in prepared.items()]
        shapes += [
            s for n, p in prepared.items() if (s := p.selection_longest(recipe.benchmarks[n], tokenizer))
        ]
        engine.reserve(max(r for r, _ in shapes), max(t for _, t in shapes))
    benchmarks = {}
    for name in names:
        benchmarks[name] = run_benchmark(
            name, recipe.benchmarks[name], engine, tokenizer, recipe.eval.seed, judges or {}, prepared[name]
        )
    engine.release()
    del model, engine
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
