"""GRPO stage: one stage kind for every RL domain of the cascade (RLHF, IF-RL, math, code, SWE).

A stage is configured by its data, its rewards (a weighted list of registry rewards, each optionally
limited to thinking or non-thinking prompts, all optionally wrapped by the language-mixing penalty) and
the GRPO hyper-parameters. The defaults are Nemotron-Cascade's: strictly on-policy (one optimizer step
per rollout batch, ``num_iterations=1``), no KL term and no reference model (``beta=0``), token-level
loss (``dapo``), no entropy bonus, 8 rollouts per prompt, temperature 0.6 and top-p 0.95. Groups whose
rewards do not vary contribute exactly no gradient and are counted; math RL adds per-epoch difficulty
filtering (``epoch_filter``), see :mod:`pipeline.stages.grpo_filters`.

``phases`` turns a stage into a length curriculum: phases run in order, each a trainer run of
``steps`` steps from the previous phase's weights, with its own generation length, temperature,
overlong filtering and truncated-answer score. Each phase keeps its own trainer checkpoints under
``phases/<k>-<name>/``; a killed stage resumes the phase it was in, and finished phases are skipped.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.config import StageConfig
from pipeline.schema import ConfigError, closest
from pipeline.stages.base import (
    MetricsCallbackFactory,
    StageContext,
    StageResult,
    latest_checkpoint,
    make_config,
    save_trained,
    train_summary,
    trainer_kwargs,
)

log = logging.getLogger(__name__)

LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo")
# Rewards whose total reaches 1.0 exactly when the answer is right: accuracy and "solved" make sense.
VERIFIABLE_REWARDS = frozenset({"math", "code", "instruction", "swe", "if_rm"})
_BATCH_MIN = re.compile(r"batch_min_minus_\d+(\.\d+)?")
_PHASE_NAME = re.compile(r"[A-Za-z0-9_-]+")
PHASE_FILE = "phase.json"
# Columns the stage adds to every prompt; namespaced so that no reward keyword (e.g. ``mode``) is shadowed.
MODE_COLUMN, ROW_COLUMN = "cascade_mode", "cascade_row"


# --------------------------------------------------------------------------------------------------
# Config


@dataclass
class RewardTerm:
    """One reward of the stage; the stage's reward is the weighted sum of its terms."""

    name: str  # a reward of rewards.REWARDS, or "package.module:function"
    weight: float = 1.0
    args: dict[str, Any] = field(
        default_factory=dict
    )  # factory/keyword arguments; model_path may name a stage
    mode: Literal["any", "think", "no_think"] = "any"  # score only prompts of this mode (None for the others)
    language_penalty: bool = True  # whether the stage's language_penalty applies to this term

    def validate(self, key: str) -> None:
        if ":" in self.name:
            module = self.name.partition(":")[0]
            try:
                found = bool(module) and importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):  # a missing parent package
                found = False
            if not found:
                raise ConfigError(f"key '{key}.name' names module '{module}', which cannot be imported")
            return
        from rewards.registry import _SPECS

        if self.name not in _SPECS:
            raise ConfigError(
                f"key '{key}.name' names unknown reward '{self.name}'{closest(self.name, _SPECS)}; "
                f"known: {', '.join(sorted(_SPECS))}, or 'module:function'"
            )


@dataclass
class EpochFilterConfig:
    """Per-epoch difficulty filtering (Nemotron-Cascade math RL)."""

    enabled: bool = False
    drop_solved: bool = True  # drop prompts every completion solved in the epoch
    drop_unsolved: bool = True  # drop prompts no completion solved
    readmit_hard: float = 0.1  # chance that an excluded unsolved prompt returns for the next epoch
    readmit_easy: float = 0.01  # chance that an excluded solved prompt returns

    def validate(self, key: str) -> None:
        for name in ("readmit_hard", "readmit_easy"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"key '{key}.{name}' must be in [0, 1], got {getattr(self, name)}")


@dataclass
class PhaseConfig:
    """One phase of a length curriculum; unset fields take the stage's value."""

    name: str
    steps: int
    max_completion_length: int | None = None
    temperature: float | None = None
    mask_truncated_completions: bool | None = None  # overlong filtering: truncated completions leave the loss
    truncated_reward: float | None = None  # score given to truncated completions (None: the stage's setting)

    def validate(self, key: str) -> None:
        if not _PHASE_NAME.fullmatch(self.name):
            raise ConfigError(f"key '{key}.name' must use letters, digits, '_' or '-', got '{self.name}'")
        if self.steps <= 0:
            raise ConfigError(f"key '{key}.steps' must be positive, got {self.steps}")
        if self.max_completion_length is not None and self.max_completion_length <= 0:
            raise ConfigError(
                f"key '{key}.max_completion_length' must be positive, got {self.max_completion_length}"
            )
        if self.temperature is not None and self.temperature <= 0:
            raise ConfigError(f"key '{key}.temperature' must be positive, got {self.temperature}")


@dataclass
class Config(StageConfig):
    rewards: list[RewardTerm] = field(default_factory=list)
    language_penalty: float | str | None = None  # none, a number, or batch_min_minus_<k>
    num_generations: int = 8  # group size: rollouts per prompt
    max_completion_length: int = 1024
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 0  # 0: off
    beta: float = 0.0  # KL coefficient; 0 loads no reference model
    num_iterations: int = 1  # optimisation passes per rollout batch (1: on-policy)
    steps_per_generation: int | None = None  # micro-steps per rollout batch; None: grad_accum (on-policy)
    loss_type: str = "dapo"  # token-level: normalised by the tokens of the global batch
    scale_rewards: Literal["group", "batch", "none"] = "group"
    epsilon: float = 0.2
    epsilon_high: float | None = None
    entropy_coef: float = 0.0
    mask_truncated_completions: bool = False
    truncated_reward: float | None = None
    solve_threshold: float | None = None  # None: 1.0 when the first reward is verifiable, else no accuracy
    epoch_filter: EpochFilterConfig = field(default_factory=EpochFilterConfig)
    phases: list[PhaseConfig] = field(default_factory=list)
    use_transformers_paged: bool = False  # transformers' continuous-batching generation
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    log_completions: bool = False

    def validate(self, key: str) -> None:
        super().validate(key)
        if not self.rewards:
            raise ConfigError(f"key '{key}.rewards' must list at least one reward ({{name, weight, args}})")
        checks = [
            ("num_generations", self.num_generations >= 2, "must be at least 2"),
            ("max_completion_length", self.max_completion_length > 0, "must be positive"),
            ("temperature", self.temperature > 0, "must be positive"),
            ("top_p", 0 < self.top_p <= 1, "must be in (0, 1]"),
            ("beta", self.beta >= 0, "must not be negative"),
            ("num_iterations", self.num_iterations >= 1, "must be at least 1"),
            ("epsilon", self.epsilon > 0, "must be positive"),
            ("steps_per_generation", (self.steps_per_generation or 1) >= 1, "must be at least 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"key '{key}.{name}' {rule}, got {getattr(self, name)}")
        if self.loss_type not in LOSS_TYPES:
            raise ConfigError(
                f"key '{key}.loss_type' must be one of {', '.join(LOSS_TYPES)}, got "
                f"'{self.loss_type}'{closest(self.loss_type, LOSS_TYPES)}"
            )
        parse_penalty(self.language_penalty, f"{key}.language_penalty")
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ConfigError(f"key '{key}.phases' repeats a phase name ({', '.join(names)})")
        if self.epoch_filter.enabled and self.threshold() is None:
            raise ConfigError(
                f"key '{key}.epoch_filter.enabled' needs '{key}.solve_threshold' (the first reward, "
                f"'{self.rewards[0].name}', has no natural 'solved' score)"
            )
        if self.use_vllm and self.use_transformers_paged:
            raise ConfigError(f"keys '{key}.use_vllm' and '{key}.use_transformers_paged' exclude each other")
        if self.use_vllm and importlib.util.find_spec("vllm") is None:
            raise ConfigError(f"key '{key}.use_vllm' is true but vLLM is not installed (pip install vllm)")

    def threshold(self) -> float | None:
        """The reward a completion needs to count as solved (accuracy, epoch filter), or None."""
        if self.solve_threshold is not None:
            return self.solve_threshold
        return 1.0 if self.rewards and self.rewards[0].name in VERIFIABLE_REWARDS else None

    # The recipe validator checks every key listed in ``stage_refs`` like ``init``: reward models named by
    # an earlier stage, an existing path or a hub id. Their keys are nested, so they are read through
    # ``__getattr__`` under their full dotted name, which is also what an error message shows.
    @property
    def stage_refs(self) -> tuple[str, ...]:
        return tuple(self._model_refs())

    def _model_refs(self) -> dict[str, str]:
        return {
            f"rewards[{i}].args.model_path": term.args["model_path"]
            for i, term in enumerate(self.rewards)
            if isinstance(term.args.get("model_path"), str)
        }

    def __getattr__(self, name: str) -> Any:
        if name.startswith("rewards["):
            refs = self._model_refs()
            if name in refs:
                return refs[name]
        raise AttributeError(name)

    def describe(self) -> list[str]:
        """Extra lines for the dry-run plan."""
        terms = ", ".join(
            f"{t.name}×{t.weight:g}" + (f" ({t.mode})" if t.mode != "any" else "") for t in self.rewards
        )
        lines = [
            f"rewards {terms}; language penalty {self.language_penalty if self.language_penalty is not None else 'none'}",
            f"GRPO G={self.num_generations}, T={self.temperature:g}, top-p {self.top_p:g}, "
            f"max_completion_length {self.max_completion_length}, beta {self.beta:g}, loss {self.loss_type}",
        ]
        for p in self.phases:
            lines.append(
                f"phase {p.name}: {p.steps} steps, max_completion_length "
                f"{p.max_completion_length or self.max_completion_length}"
            )
        if self.epoch_filter.enabled:
            f = self.epoch_filter
            lines.append(f"epoch filter: re-admit hard {f.readmit_hard:g}, easy {f.readmit_easy:g}")
        return lines


def parse_penalty(value: float | str | None, key: str) -> float | str | None:
    """The language penalty as ``with_language_penalty`` takes it, or None when off."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "off", "")):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if _BATCH_MIN.fullmatch(value.strip()):
        return value.strip()
    try:
        return float(value)
    except ValueError:
        raise ConfigError(
            f"key '{key}' must be none, a number or batch_min_minus_<k>, got '{value}'"
        ) from None


# --------------------------------------------------------------------------------------------------
# Rewards


class StageReward:
    """A reward term as TRL calls it: named for the logs, limited to one prompt mode if asked.

    Rows of the other mode get None, which TRL leaves out of that term's mean and of the weighted sum.
    """

    def __init__(self, fn: Any, name: str, mode: str = "any"):
        self.fn, self.__name__, self.mode = fn, name, mode

    def __call__(self, completions: list[Any], **columns: Any) -> list[float | None]:
        from pipeline.models import whole_weights

        # a reward that loads a model (a reward model) loads it whole, also inside a ZeRO-3 stage
        with whole_weights():
            return self._score(completions, columns)

    def _score(self, completions: list[Any], columns: dict[str, Any]) -> list[float | None]:
        n = len(completions)
        if self.mode == "any":
            return list(self.fn(completions, **columns))
        keep = [i for i, m in enumerate(columns.get(MODE_COLUMN) or [None] * n) if m == self.mode]
        out: list[float | None] = [None] * n
        if not keep:
            return out
        sub = {
            k: [v[i] for i in keep] if isinstance(v, list) and len(v) == n else v for k, v in columns.items()
        }
        for i, score in zip(keep, self.fn([completions[i] for i in keep], **sub), strict=True):
            out[i] = score
        return out

    def __repr__(self) -> str:
        return f"StageReward({self.__name__}, mode={self.mode})"


def load_reward(name: str, args: dict[str, Any]) -> Any:
    """A registry reward (factories called with ``args``), or ``module:function`` with ``args`` bound."""
    from rewards.registry import BoundReward, build_reward

    if ":" not in name:
        return build_reward(name, args)
    module, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"reward '{name}' cannot be loaded: {exc}") from None
    return BoundReward(fn, attr, args) if args else fn


def reward_labels(cfg: Config) -> list[str]:
    """The names TRL logs the terms under (``rewards/<label>/mean``): the reward's name, numbered if repeated."""
    base = [t.name.rpartition(":")[2] for t in cfg.rewards]
    return [b if base.count(b) == 1 else f"{b}_{i}" for i, b in enumerate(base)]


def build_rewards(ctx: StageContext) -> tuple[list[StageReward], list[float]]:
    """The stage's reward functions and weights; reward-model paths naming a stage are resolved."""
    cfg: Config = ctx.config  # type: ignore[assignment]
    penalty = parse_penalty(cfg.language_penalty, f"stages.{ctx.name}.language_penalty")
    funcs = []
    for term, label in zip(cfg.rewards, reward_labels(cfg), strict=True):
        args = dict(term.args)
        if isinstance(args.get("model_path"), str):
            args["model_path"] = ctx.resolve_ref(args["model_path"])
        fn = load_reward(term.name, args)
        if penalty is not None and term.language_penalty:
            from rewards.format import with_language_penalty

            fn = with_language_penalty(fn, penalty)
        funcs.append(StageReward(fn, label, term.mode))
    return funcs, [t.weight for t in cfg.rewards]


# --------------------------------------------------------------------------------------------------
# Data


def build_dataset(ctx: StageContext) -> tuple[Any, list[dict[str, Any]]]:
    """The prompts as a ``Dataset`` (prompt, id, mode and row columns) and the full rows the rewards read.

    Only flat columns enter Arrow; reward columns (tests, kwargs, …) stay Python objects and are
    joined back by ``row`` when rewards are computed, exactly as the source produced them.
    """
    import hashlib

    from datasets import Dataset

    from pipeline.data.formatting import rl_prompt
    from pipeline.data.sources import is_prompt, load_rows, row_mode

    cfg: Config = ctx.config  # type: ignore[assignment]
    data = load_rows(cfg.data, {"prompt": is_prompt}, ctx.seed)
    fmt = cfg.prompt.format()
    table = []
    for i, row in enumerate(data.rows):
        mode = row_mode(cfg.prompt_mode, cfg.think_fraction, i, ctx.seed)
        pid = str(row.get("id") or "") or hashlib.sha256(json.dumps(row["prompt"]).encode()).hexdigest()[:16]
        table.append(
            {"prompt": rl_prompt(row["prompt"], mode, fmt), "id": pid, MODE_COLUMN: mode, ROW_COLUMN: i}
        )
    log.info("stage %s: %d prompts (%s)", ctx.name, len(table), data.describe())
    return Dataset.from_list(table), data.rows


# --------------------------------------------------------------------------------------------------
# Phases


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


def resolve_phases(ctx: StageContext) -> list[Phase]:
    """The stage's phases with inherited settings; without ``phases``, one phase of the stage's own."""
    cfg: Config = ctx.config  # type: ignore[assignment]
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


def _fresh_start(ctx: StageContext) -> None:
    """Forget trainer checkpoints and finished phases of an earlier attempt with another config."""
    for path in (ctx.stage_dir / "phases", ctx.checkpoints_dir, ctx.stage_dir / PHASE_FILE):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def grpo_args(ctx: StageContext, phase: Phase, weights: list[float]) -> Any:
    """The ``GRPOConfig`` of one phase."""
    from accelerate import PartialState
    from trl import GRPOConfig

    cfg: Config = ctx.config  # type: ignore[assignment]
    t = cfg.train
    spg = cfg.steps_per_generation or t.grad_accum
    completions = t.batch_size * PartialState().num_processes * spg
    if completions % cfg.num_generations:
        raise ConfigError(
            f"key 'stages.{ctx.name}.train.batch_size' gives {completions} completions per rollout batch "
            f"(batch_size × processes × steps_per_generation), not a multiple of num_generations={cfg.num_generations}"
        )
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
        "use_vllm": cfg.use_vllm,
        "vllm_mode": cfg.vllm_mode,
        "log_completions": cfg.log_completions,
        "remove_unused_columns": False,
    }
    if phase.steps > 0:
        kwargs["max_steps"] = phase.steps
    if cfg.use_transformers_paged:
        import dataclasses

        known = {f.name for f in dataclasses.fields(GRPOConfig)}
        flag = (
            "use_transformers_continuous_batching"
            if "use_transformers_continuous_batching" in known
            else "use_transformers_paged"
        )
        kwargs[flag] = True
    kwargs.update(t.extra)
    return make_config(GRPOConfig, kwargs)


def run_phase(
    ctx: StageContext,
    phase: Phase,
    init: str,
    dataset: Any,
    rows: list[dict[str, Any]],
    filter_state: Any,
) -> None:
    """Train one phase from ``init`` (resuming its latest trainer checkpoint), save its weights and record.

    The record (``phase.json``: summary, counters, filter state, log history) is what later phases and
    resumed runs read; it is written after the weights, so a phase with a record is complete.
    """
    from pipeline.models import load_causal_lm, load_tokenizer, peft_config
    from pipeline.stages.grpo_filters import EpochFilterRule
    from pipeline.stages.grpo_trainer import (
        CascadeGRPOTrainer,
        RLOptions,
        counters_summary,
        history_summary,
        write_json,
    )

    cfg: Config = ctx.config  # type: ignore[assignment]
    funcs, weights = build_rewards(ctx)
    args = grpo_args(ctx, phase, weights)
    tokenizer = load_tokenizer(init)
    tokenizer.padding_side = "left"
    model = load_causal_lm(init, ctx.recipe.run.precision, training=True, frozen_base=cfg.lora.enabled)
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
    )
    metrics = MetricsCallbackFactory.create(ctx)
    trainer = CascadeGRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(cfg.lora),
        callbacks=[metrics],
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
    _free_memory()


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def merge_phases(records: list[dict[str, Any]], names: list[str], threshold: float | None) -> dict[str, Any]:
    """The stage summary of several phases: sums of counts, figures over the joined log history."""
    from pipeline.stages.grpo_trainer import counters_summary, history_summary

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
    if "epoch_filter" in last:
        out["epoch_filter"] = last["epoch_filter"]
    out["phases"] = [{"name": r["name"], **s} for r, s in zip(records, summaries, strict=True)]
    return out


def run(ctx: StageContext) -> StageResult:
    from accelerate import PartialState

    from pipeline.stages.grpo_filters import EpochFilterState

    cfg: Config = ctx.config  # type: ignore[assignment]
    if cfg.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            f"key 'stages.{ctx.name}.use_vllm' is true but vLLM is not installed (pip install vllm)"
        )
    phases = resolve_phases(ctx)
    state = PartialState()
    if not ctx.resume and state.is_main_process:
        _fresh_start(ctx)
    state.wait_for_everyone()
    dataset, rows = build_dataset(ctx)
    names = reward_labels(cfg)
    init, filter_state = ctx.init_path, EpochFilterState()
    records: list[dict[str, Any]] = []
    ledger = [p.record("pending") for p in phases]
    for phase in phases:
        done = finished_phase(phase)
        if done is not None:
            log.info("stage %s: phase %s already finished; skipped", ctx.name, phase.name)
        else:
            ledger[phase.index] = phase.record("running")
            ctx.record({"phases": ledger})
            log.info(
                "stage %s: phase %d/%d %s (%s steps, max_completion_length %d)",
                ctx.name,
                phase.index + 1,
                len(phases),
                phase.name,
                phase.steps if phase.steps > 0 else "epochs",
                phase.max_completion_length,
            )
            run_phase(ctx, phase, init, dataset, rows, filter_state)
            done = finished_phase(phase)
            if done is None:
                raise RuntimeError(f"phase {phase.name} of stage {ctx.name} finished without its record")
        records.append({"name": phase.name, **done})
        filter_state = EpochFilterState.from_dict(done.get("epoch_filter", {}))
        ledger[phase.index] = phase.record("done", done["summary"])
        ctx.record({"phases": ledger})
        init = str(phase.out)
    return StageResult(merge_phases(records, names, cfg.threshold()))
