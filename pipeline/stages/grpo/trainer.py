"""TRL's ``GRPOTrainer`` with what Nemotron-Cascade's RL adds: exact dynamic filtering, per-epoch prompt
filtering, scoring of truncated completions, and the counters the stage summary needs.

Everything hooks into three GRPOTrainer methods and changes nothing else of the algorithm:

- ``_calculate_rewards``: rows get their full dataset columns back (the dataset itself carries only
  the prompt, id, prompt mode and row index, so that nested columns never pass through Arrow); with
  ``truncated_reward`` set, truncated completions get that score and no reward is run for them;
  zero-variance groups and per-prompt outcomes are recorded. Rewards arrive gathered from every
  process, so every process records the same outcomes.
- ``_generate_and_score_completions``: advantages of zero-variance groups are set to exactly 0.
- ``_get_train_sampler``: with the epoch filter on, :class:`AdmittedRepeatSampler` draws the prompts.

The state (filter state and counters) is written into every trainer checkpoint before HF writes
``trainer_state.json`` (the file that marks a checkpoint complete), and read back on resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from pipeline.atomic import write_json
from pipeline.config import EngineConfig
from pipeline.stages.grpo.config import ROW_COLUMN, TRUNCATED_COLUMN
from pipeline.stages.grpo.data import with_source_rows
from pipeline.stages.grpo.filters import (
    AdmittedRepeatSampler,
    EpochFilterRule,
    EpochFilterState,
    group_totals,
    zero_group_advantages,
    zero_variance_groups,
)
from pipeline.stages.grpo.rollouts import Rollouts

log = logging.getLogger(__name__)

STATE_FILE = "cascade_rl_state.json"


@dataclass
class RLOptions:
    """The stage settings the trainer needs beyond ``GRPOConfig``."""

    prompt_ids: list[str]  # the dataset's ``id`` column, in dataset order
    side_rows: Sequence[dict[str, Any]]  # full source rows, indexed by the dataset's ``row`` column
    solve_threshold: float | None = None  # a completion is solved when its total reward reaches this
    truncated_reward: float | None = (
        None  # score of a completion cut at max_completion_length (None: as scored)
    )
    epoch_filter: EpochFilterRule | None = None  # None: the filter is off
    on_epoch_filtered: Callable[[dict[str, Any]], None] | None = None
    generation: EngineConfig = field(default_factory=EngineConfig)  # hf and vllm: TRL's own paths
    stage: str = "grpo"  # the stage's name, for the unscored-completions error
    max_unscored: float = 1.0  # share of unscored completions over the window that stops the stage
    unscored_window: int = 4  # rollout batches


class UnscoredRewardsError(RuntimeError):
    """The stage's rewards scored too few completions: training on them would train on zeros."""


@dataclass
class RLCounters:
    """Exact counts over a trainer run (summed over every generation batch, all processes)."""

    groups: int = 0
    zero_std_groups: int = 0
    completions: int = 0
    scored: int = 0  # completions with at least one reward that was not None
    solved: int = 0
    truncated: int = 0


def steady_attention() -> contextlib.AbstractContextManager[None]:
    """SDPA without its cuDNN backend, for the policy's forward and backward passes.

    A GRPO batch's length changes every step (prompt and completion lengths vary), and cuDNN's SDPA
    plans per shape: on an H200 its backward took 20 ms of CPU per layer call, 0.57 s of a 2.1 s step,
    against 13 ms of GPU time (docs/results/performance.md, "GRPO step"). FlashAttention and the
    memory-efficient kernel have no per-shape setup; where neither fits, SDPA falls back to its math
    kernel. The gain is not measured yet (``bench/profile_grpo.py --cudnn-attention`` compares).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


class CascadeGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with exact dynamic filtering, per-epoch filtering and truncated-answer scoring."""

    def __init__(
        self, *args: Any, rl: RLOptions, filter_state: EpochFilterState | None = None, **kwargs: Any
    ):
        self.rl = rl
        self.counters = RLCounters()
        self.filter_state = filter_state or EpochFilterState()
        self._zero_groups: torch.Tensor | None = None
        self._last_log: tuple[float, int] | None = None
        self._batch_inputs: list[dict[str, Any]] | None = None
        self._unscored: deque[tuple[int, int]] = deque(maxlen=rl.unscored_window)  # (completions, unscored)
        super().__init__(*args, **kwargs)
        self.add_callback(_RLCallback(self))
        from pipeline.generation import resolve

        engine = resolve(rl.generation.engine, self.accelerator.device.type)
        self.rollouts = Rollouts(self, engine, rl.generation) if engine in ("compiled", "paged") else None

    # ---------------------------------------------------------------------------------------------
    # Generation

    def _generate_single_turn(
        self,
        prompt_ids: Any,
        images: Any,
        multimodal_fields: Any,
        num_generations: int,
        has_tool_images: bool = False,
    ) -> tuple[list[list[int]], Any]:
        with self._timed("generation"):
            if self.rollouts is None or images is not None or multimodal_fields:
                return super()._generate_single_turn(
                    prompt_ids, images, multimodal_fields, num_generations, has_tool_images
                )
            return self.rollouts.generate(prompt_ids, self._batch_inputs), None

    # ---------------------------------------------------------------------------------------------
    # Training forward

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any) -> Any:
        with steady_attention():
            return super()._get_per_token_logps_and_entropies(*args, **kwargs)

    @contextlib.contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        """Time ``phase`` into the step's ``time/<phase>`` metric, and name it ``cascade/<phase>`` for a
        profiler's trace (``torch.profiler``, Nsight), where the GPU's work can be told apart by phase."""
        t0 = time.perf_counter()
        try:
            with torch.profiler.record_function(f"cascade/{phase}"):
                yield
        finally:
            mode = "train" if self.model.training else "eval"
            self._metrics[mode][f"time/{phase}"].append(time.perf_counter() - t0)

    # ---------------------------------------------------------------------------------------------
    # Sampling

    def _get_train_sampler(self, dataset: Any = None) -> Any:
        if self.rl.epoch_filter is None:
            return super()._get_train_sampler(dataset)
        return AdmittedRepeatSampler(
            ids=self.rl.prompt_ids,
            state=self.filter_state,
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            seed=self.args.seed,
        )

    @property
    def prompts_per_epoch(self) -> int:
        per_batch = self.args.generation_batch_size // self.num_generations
        return (len(self.rl.prompt_ids) // per_batch) * per_batch

    # ---------------------------------------------------------------------------------------------
    # Rewards, filtering, advantages

    def _calculate_rewards(
        self,
        inputs: list[dict[str, Any]],
        prompts: list[Any],
        completions: list[Any],
        completion_ids_list: Any,
    ) -> torch.Tensor:
        # TRL passes every process's own completion_ids: one cut at max_completion_length ends without
        # EOS or padding (the test TRL's own clipped_ratio and mask_truncated_completions use).
        stop = {*self.eos_token_ids, self._tokenizer.pad_token_id}
        cut = [bool(ids) and ids[-1] not in stop for ids in completion_ids_list]
        with self._timed("rewards"):
            if self.rollouts is not None:
                self.rollouts.wait()  # completions scored while the batch was generating
            rewards = super()._calculate_rewards(
                self._reward_inputs(inputs, cut), prompts, completions, completion_ids_list
            )
        truncated = self.accelerator.gather(torch.tensor(cut, device=rewards.device).long()).bool()
        if self.model.training:
            self._record(inputs, rewards, truncated)
        return rewards

    def _reward_inputs(self, inputs: list[dict[str, Any]], cut: list[bool]) -> list[dict[str, Any]]:
        """The rows as the rewards read them: full dataset columns back, truncated completions' scores fixed.

        The dataset carries only the prompt, id, prompt mode and row index, so that nested columns never
        pass through Arrow (:func:`~pipeline.stages.grpo.data.with_source_rows` joins them back). With
        ``truncated_reward`` set, a truncated completion's score is known before any reward runs: every
        term gives it that score (:class:`~pipeline.stages.grpo.rewards.StageReward` reads it from the
        row) and no reward is run for it.
        """
        if inputs and ROW_COLUMN in inputs[0]:
            inputs = with_source_rows(self.rl.side_rows, inputs)
        fixed = self.rl.truncated_reward
        if fixed is not None:
            inputs = [{**x, TRUNCATED_COLUMN: fixed if c else None} for x, c in zip(inputs, cut, strict=True)]
        return inputs

    def _record(self, inputs: list[dict[str, Any]], rewards: torch.Tensor, truncated: torch.Tensor) -> None:
        from accelerate.utils import gather_object

        g = self.num_generations
        # TRL 1.x sums the weighted terms inside _generate_and_score_completions and returns only the
        # advantages, so the total is formed here once, from the same tensor and TRL's own weights.
        totals = group_totals(rewards, self.reward_weights)
        zero = zero_variance_groups(totals, g)
        self._zero_groups = zero
        scored = ~torch.isnan(totals)
        c = self.counters
        c.groups += int(zero.numel())
        c.zero_std_groups += int(zero.sum())
        c.completions += int(totals.numel())
        c.scored += int(scored.sum())
        c.truncated += int(truncated.sum())
        self._unscored.append((int(totals.numel()), int((~scored).sum())))
        if len(self._unscored) == self._unscored.maxlen:
            self.check_unscored()
        metrics = self._metrics["train"]
        metrics["filter/zero_std_groups"].append(float(zero.sum()))
        metrics["filter/zero_std_frac"].append(float(zero.float().mean()))
        metrics["completions/truncated"].append(float(truncated.sum()))
        threshold = self.rl.solve_threshold
        if threshold is None:
            return
        solved = scored & (torch.nan_to_num(totals, nan=-torch.inf) >= threshold)
        c.solved += int(solved.sum())
        metrics["accuracy"].append(float(solved.sum()) / max(1, int(scored.sum())))
        if self.rl.epoch_filter is not None:
            ids = gather_object([str(x["id"]) for x in inputs])
            for pid, ok, has_score in zip(ids, solved.tolist(), scored.tolist(), strict=True):
                self.filter_state.record(pid, ok, has_score)
            self.filter_state.groups_in_epoch += int(zero.numel())

    def check_unscored(self) -> None:
        """Fail when no reward scored more than ``max_unscored`` of the window's completions.

        Every process sees the same gathered rewards, so all of them fail at the same step.
        """
        total = sum(n for n, _ in self._unscored)
        unscored = sum(u for _, u in self._unscored)
        if total and unscored > self.rl.max_unscored * total:
            names = ", ".join(f"'{n}'" for n in self.reward_func_names)
            raise UnscoredRewardsError(
                f"stage '{self.rl.stage}': {unscored} of {total} completions of the last {len(self._unscored)} "
                f"rollout batches got no score from any reward ({names}), more than max_unscored="
                f"{self.rl.max_unscored:g}: the rows lack what the reward reads or its checker cannot run"
            )

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._batch_inputs = inputs  # the rows of the prompts being generated, for early scoring
        output = super()._generate_and_score_completions(inputs)
        self._batch_inputs = None
        if self.model.training and self._zero_groups is not None:
            start = self.accelerator.process_index * len(inputs)
            output["advantages"] = zero_group_advantages(
                output["advantages"], self._zero_groups, self.num_generations, start
            )
            self._zero_groups = None
        return output

    # ---------------------------------------------------------------------------------------------
    # Epoch filter

    def end_epoch(self, partial: bool = False) -> dict[str, Any] | None:
        """Close the current epoch of the filter (a complete one, or a partial one when ``partial``)."""
        state, rule = self.filter_state, self.rl.epoch_filter
        if rule is None or (partial and not state.outcomes):
            return None
        if not partial and state.groups_in_epoch < self.prompts_per_epoch:
            return None  # training stopped inside the epoch (max_steps): not an epoch boundary
        record = state.close_epoch(self.rl.prompt_ids, rule, self.args.seed, partial=partial)
        log.info(
            "epoch filter after epoch %d%s: %d prompts seen, %d solved by all, %d by none; dropped %d easy, %d hard; "
            "re-admitted %d easy, %d hard; %d admitted, %d excluded",
            record["epoch"],
            " (partial)" if partial else "",
            record["seen"],
            record["solved_all"],
            record["unsolved_all"],
            record["dropped_easy"],
            record["dropped_hard"],
            record["readmitted_easy"],
            record["readmitted_hard"],
            record["admitted"],
            record["excluded_easy"] + record["excluded_hard"],
        )
        if self.rl.on_epoch_filtered is not None and self.accelerator.is_main_process:
            self.rl.on_epoch_filtered(record)
        return record

    # ---------------------------------------------------------------------------------------------
    # Logging, checkpoints

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        now, tokens = time.monotonic(), int(self.state.num_input_tokens_seen or 0)
        if self.model.training and "loss" in logs:
            if self._last_log is not None and now > self._last_log[0]:
                logs["tokens_per_s"] = (tokens - self._last_log[1]) / (now - self._last_log[0])
            self._last_log = (now, tokens)
        super().log(logs, start_time)

    def rl_state(self) -> dict[str, Any]:
        return {"counters": asdict(self.counters), "epoch_filter": self.filter_state.to_dict()}

    def load_rl_state(self, checkpoint: str | Path) -> None:
        """Restore the filter state and counters saved in a trainer checkpoint (if it has them)."""
        path = Path(checkpoint) / STATE_FILE
        if not path.exists():
            log.warning("%s has no %s; filter state and counters start afresh", checkpoint, STATE_FILE)
            return
        data = json.loads(path.read_text())
        self.counters = RLCounters(**data.get("counters", {}))
        self.filter_state.__dict__.update(EpochFilterState.from_dict(data.get("epoch_filter", {})).__dict__)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        if self.args.should_save:
            ckpt = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            ckpt.mkdir(parents=True, exist_ok=True)
            write_json(ckpt / STATE_FILE, self.rl_state())
        super()._save_checkpoint(model, trial)


class _RLCallback(TrainerCallback):
    """Starts the throughput clock once a (resumed) run begins; closes the filter's epoch after each pass."""

    def __init__(self, trainer: CascadeGRPOTrainer):
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer._last_log = (time.monotonic(), int(state.num_input_tokens_seen or 0))

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.end_epoch()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.trainer.rollouts is not None:  # the engine's caches and inference copy go with the phase
            self.trainer.rollouts.close()
        self.trainer.check_unscored()  # a run shorter than the window is judged on what it saw


def counters_summary(counters: RLCounters | dict[str, int], threshold: float | None) -> dict[str, Any]:
    """The exact filter and accuracy figures of the stage summary."""
    c = counters if isinstance(counters, dict) else asdict(counters)
    out: dict[str, Any] = {
        "groups": c["groups"],
        "zero_std_groups": c["zero_std_groups"],
        "zero_std_fraction": round(c["zero_std_groups"] / c["groups"], 4) if c["groups"] else None,
        "completions": c["completions"],
        "unscored_completions": c["completions"] - c["scored"],
        "truncated_fraction": round(c["truncated"] / c["completions"], 4) if c["completions"] else None,
    }
    if threshold is not None:
        out["accuracy"] = round(c["solved"] / c["scored"], 4) if c["scored"] else None
        out["solve_threshold"] = threshold
    return out


def history_summary(history: Sequence[dict[str, Any]], reward_names: Sequence[str]) -> dict[str, Any]:
    """Per-stage figures TRL logs per step, reduced over a run's log history (means unless said otherwise)."""

    def values(key: str) -> list[float]:
        return [float(h[key]) for h in history if isinstance(h.get(key), (int, float)) and h[key] == h[key]]

    def mean(key: str) -> float | None:
        v = values(key)
        return round(sum(v) / len(v), 5) if v else None

    def last(key: str) -> float | None:
        v = values(key)
        return round(v[-1], 5) if v else None

    lengths = values("completions/max_length")
    return {
        "rewards": {
            name: {
                "mean": mean(f"rewards/{name}/mean"),
                "std": mean(f"rewards/{name}/std"),
                "last": last(f"rewards/{name}/mean"),
            }
            for name in reward_names
        },
        "reward_mean": mean("reward"),
        "reward_std": mean("reward_std"),
        "reward_last": last("reward"),
        "completion_length": {
            "mean": mean("completions/mean_length"),
            "max": max(lengths) if lengths else None,
            "clipped_fraction": mean("completions/clipped_ratio"),
        },
        "frac_reward_zero_std": mean("frac_reward_zero_std"),
        "entropy": mean("entropy"),
        "clip_ratio": mean("clip_ratio/region_mean"),
        "step_time_s": mean("step_time"),
        "generation_s": mean("time/generation"),
        "rewards_s": mean("time/rewards"),
        "tokens_per_s": mean("tokens_per_s"),
    }
