"""The length curriculum: a stage's phases, each one trainer run from the previous phase's weights.

A phase has its own generation length, temperature, overlong filtering and truncated-answer score, and
keeps its trainer checkpoints under ``phases/<k>-<name>/``. Its record (``phase.json``) is written
after its weights, so a phase with a record is complete: a killed stage resumes the phase it was in,
and finished phases are skipped.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.stages.base import (
    MetricsCallbackFactory,
    StageContext,
    latest_checkpoint,
    make_config,
    save_trained,
    train_summary,
    trainer_kwargs,
)
from pipeline.stages.grpo.config import Config
from pipeline.stages.grpo.rewards import build_rewards, reward_labels

log = logging.getLogger(__name__)

PHASE_FILE = "phase.json"


@dataclass
class Phase:
    """A resolved phase: its settings and where its files live."""

    index: int
    name: str
    steps: int  # <= 0: the stage's train.max_steps / epochs decide
    max_completion_length: int
    temperature: float
    mask_truncated_completions: bool
    truncated_reward: float | None
    dir: Path
    checkpoints: Path
    out: Path

    def record(self, status: str, summary: dict[str, Any] | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.name,
            "steps": self.steps,
            "max_completion_length": self.max_completion_length,
            "status": status,
        }
        if summary:
            keys = ("steps", "reward_mean", "accuracy", "zero_std_fraction", "train_wall_s")
            entry["summary"] = {k: summary.get(k) for k in keys if summary.get(k) is not None}
        return entry


def resolve_phases(ctx: StageContext[Config]) -> list[Phase]:
    """The stage's phases with inherited settings; without ``phases``, one phase of the stage's own."""
    cfg = ctx.config
    if not cfg.phases:
        return [
            Phase(
                index=0,
                name="train",
                steps=cfg.train.max_steps,
                max_completion_length=cfg.max_completion_length,
                temperature=cfg.temperature,
                mask_truncated_completions=cfg.mask_truncated_completions,
                truncated_reward=cfg.truncated_reward,
                dir=ctx.stage_dir,
                checkpoints=ctx.checkpoints_dir,
                out=ctx.final_dir,
            )
        ]
    phases = []
    for k, p in enumerate(cfg.phases):
        pdir = ctx.stage_dir / "phases" / f"{k + 1}-{p.name}"
        masked = p.mask_truncated_completions
        phases.append(
            Phase(
                index=k,
                name=p.name,
                steps=p.steps,
                max_completion_length=p.max_completion_length or cfg.max_completion_length,
                temperature=p.temperature or cfg.temperature,
                mask_truncated_completions=cfg.mask_truncated_completions if masked is None else masked,
                truncated_reward=cfg.truncated_reward if p.truncated_reward is None else p.truncated_reward,
                dir=pdir,
                checkpoints=pdir / "checkpoints",
                out=ctx.final_dir if k == len(cfg.phases) - 1 else pdir / "final",
            )
        )
    return phases


def finished_phase(phase: Phase) -> dict[str, Any] | None:
    """The record of a phase that completed (its weights saved), or None."""
    from pipeline.models import checkpoint_exists

    try:
        data = json.loads((phase.dir / PHASE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("status") == "done" and checkpoint_exists(phase.out) else None


def fresh_start(ctx: StageContext[Config]) -> None:
    """Forget trainer checkpoints and finished phases of an earlier attempt with another config."""
    for path in (ctx.stage_dir / "phases", ctx.checkpoints_dir, ctx.stage_dir / PHASE_FILE):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def grpo_args(ctx: StageContext[Config], phase: Phase, weights: list[float]) -> Any:
    """The ``GRPOConfig`` of one phase."""
    from trl import GRPOConfig

    cfg = ctx.config
    # the rollout batch splitting into whole groups was checked when the recipe loaded (Config.validate)
    spg = cfg.steps_per_rollout()
    kwargs = {
        **trainer_kwargs(ctx),
        "output_dir": str(phase.checkpoints),
        "seed": ctx.seed + phase.index,  # each phase draws its own prompt order
        "data_seed": ctx.seed + phase.index,
        "num_generations": cfg.num_generations,
        "max_completion_length": phase.max_completion_length,
        "temperature": phase.temperature,
        "top_p": cfg.top_p,
        "top_k": cfg.top_k,
        "beta": cfg.beta,
        "num_iterations": cfg.num_iterations,
        "steps_per_generation": spg,
        "loss_type": cfg.loss_type,
        "scale_rewards": cfg.scale_rewards,
        "epsilon": cfg.epsilon,
        "epsilon_high": cfg.epsilon_high,
        "entropy_coef": cfg.entropy_coef,
        "mask_truncated_completions": phase.mask_truncated_completions,
        "reward_weights": weights,
        # vLLM generates through TRL's own integration; every other engine through the trainer's rollouts
        "use_vllm": ctx.recipe.generation.engine == "vllm",
        "vllm_mode": ctx.recipe.generation.vllm_mode,
        "log_completions": cfg.log_completions,
        "remove_unused_columns": False,
    }
    if phase.steps > 0:
        kwargs["max_steps"] = phase.steps
    kwargs.update(
        cfg.train.extra
    )  # the recipe's own TRL settings win (their names were checked at load time)
    return make_config(GRPOConfig, kwargs)


def run_phase(
    ctx: StageContext[Config],
    phase: Phase,
    init: str,
    dataset: Any,
    rows: Sequence[dict[str, Any]],
    filter_state: Any,
) -> None:
    """Train one phase from ``init`` (resuming its latest trainer checkpoint), save its weights and record.

    The record (``phase.json``: summary, counters, filter state, log history) is what later phases and
    resumed runs read; it is written after the weights, so a phase with a record is complete.
    """
    from pipeline.atomic import write_json
    from pipeline.models import load_causal_lm, load_tokenizer, peft_config
    from pipeline.stages.grpo.filters import EpochFilterRule
    from pipeline.stages.grpo.trainer import (
        CascadeGRPOTrainer,
        RLOptions,
        counters_summary,
        history_summary,
    )

    cfg = ctx.config
    funcs, weights = build_rewards(ctx)
    args = grpo_args(ctx, phase, weights)
    tokenizer = load_tokenizer(init, ctx.recipe.model)
    tokenizer.padding_side = "left"
    model = load_causal_lm(
        init, ctx.recipe.run.precision, training=True, frozen_base=cfg.lora.enabled, model=ctx.recipe.model
    )
    f = cfg.epoch_filter
    rule = (
        EpochFilterRule(f.drop_solved, f.drop_unsolved, f.readmit_hard, f.readmit_easy) if f.enabled else None
    )

    def on_epoch_filtered(record: dict[str, Any]) -> None:
        ctx.tracker.log_stage(
            ctx.name, {f"epoch_filter/{k}": float(v) for k, v in record.items()}, step=record["epoch"]
        )

    options = RLOptions(
        prompt_ids=list(dataset["id"]),
        side_rows=rows,
        solve_threshold=cfg.threshold(),
        truncated_reward=phase.truncated_reward,
        epoch_filter=rule,
        on_epoch_filtered=on_epoch_filtered,
        generation=ctx.recipe.generation,
        stage=ctx.name,
        max_unscored=cfg.max_unscored,
        unscored_window=cfg.unscored_window,
    )
    metrics = MetricsCallbackFactory.create(ctx)
    trainer = CascadeGRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(cfg.lora),
        callbacks=[metrics, *ctx.callbacks],
        rl=options,
        filter_state=filter_state,
    )
    ckpt = latest_checkpoint(phase.checkpoints)
    if ckpt is not None:
        log.info("stage %s phase %s resumes from %s", ctx.name, phase.name, ckpt)
        trainer.load_rl_state(ckpt)
    t0 = time.monotonic()
    output = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    trainer.end_epoch(partial=True)  # a phase boundary closes the filter's epoch in progress
    history = list(trainer.state.log_history)
    summary = {
        **train_summary(trainer, metrics, output, time.monotonic() - t0),
        **history_summary(history, reward_labels(cfg)),
        **counters_summary(trainer.counters, cfg.threshold()),
        "prompts": len(dataset),
        "reward_facts": {f.__name__: f.facts for f in funcs if f.facts},
        "max_completion_length": phase.max_completion_length,
        "temperature": phase.temperature,
    }
    if rule is not None:
        summary["epoch_filter"] = trainer.filter_state.history
    save_trained(trainer, tokenizer, phase.out)
    if trainer.accelerator.is_main_process:
        write_json(
            phase.dir / PHASE_FILE,
            {
                "status": "done",
                "summary": summary,
                "counters": trainer.rl_state()["counters"],
                "epoch_filter": trainer.filter_state.to_dict(),
                "log_history": history,
            },
        )
    trainer.accelerator.wait_for_everyone()
    del trainer, model
    free_memory()


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def merge_phases(records: list[dict[str, Any]], names: list[str], threshold: float | None) -> dict[str, Any]:
    """The stage summary of several phases: sums of counts, figures over the joined log history."""
    from pipeline.stages.grpo.trainer import counters_summary, history_summary

    summaries = [r["summary"] for r in records]
    if len(records) == 1:
        return summaries[0]
    history = [h for r in records for h in r.get("log_history", [])]
    counters = {k: sum(r["counters"][k] for r in records) for k in records[0]["counters"]}
    last = summaries[-1]
    out = {
        "steps": sum(s["steps"] for s in summaries),
        "final_loss": last.get("final_loss"),
        "tokens": sum(s.get("tokens") or 0 for s in summaries),
        "train_wall_s": round(sum(s.get("train_wall_s") or 0.0 for s in summaries), 2),
        **history_summary(history, names),
        **counters_summary(counters, threshold),
        "prompts": last.get("prompts"),
    }
    for key in ("epoch_filter", "reward_facts"):
        if key in last:
            out[key] = last[key]
    out["phases"] = [{"name": r["name"], **s} for r, s in zip(records, summaries, strict=True)]
    return out
