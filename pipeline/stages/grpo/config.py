"""The GRPO stage's recipe schema, and every check of it that needs no model: all of them run at load time.

Besides the value checks of each key, :meth:`Config.validate` checks what only the stage as a whole
shows: each reward's arguments against its signature (``rewards.registry.check_args``), the dataset
columns each reward reads against the columns the stage's sources provide, and that a rollout batch
(``batch_size × processes × steps_per_generation``) splits into whole groups of ``num_generations``
for the world size this process was launched with.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pipeline.config import StageConfig, check_reward_args
from pipeline.schema import NON_NEGATIVE, POSITIVE, ConfigError, Range, closest

LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo")
# Rewards whose total reaches 1.0 exactly when the answer is right: accuracy and "solved" make sense.
VERIFIABLE_REWARDS = frozenset({"math", "code", "instruction", "swe", "if_rm"})
_BATCH_MIN = re.compile(r"batch_min_minus_\d+(\.\d+)?")
_PHASE_NAME = re.compile(r"[A-Za-z0-9_-]+")
# Columns the stage adds to every prompt (beyond those of its sources), namespaced so that no reward
# keyword (e.g. ``mode``) is shadowed; ``id`` is the prompt's own (the source's, or a hash of the prompt).
MODE_COLUMN, ROW_COLUMN, TRUNCATED_COLUMN = "cascade_mode", "cascade_row", "cascade_truncated_score"
STAGE_COLUMNS = frozenset({"id", "prompt", MODE_COLUMN, ROW_COLUMN})


@dataclass
class RewardTerm:
    """One reward of the stage; the stage's reward is the weighted sum of its terms."""

    name: str  # a reward of rewards.REWARDS, or "package.module:function"
    weight: float = 1.0
    # factory/keyword arguments, checked against the reward's signature; model_path may name a stage
    args: dict[str, Any] = field(default_factory=dict)
    mode: Literal["any", "think", "no_think"] = "any"  # score only prompts of this mode (None for the others)
    language_penalty: bool = True  # whether the stage's language_penalty applies to this term

    def validate(self, key: str) -> None:
        from rewards import registry

        if ":" not in self.name and not registry.has(self.name):
            known = list(registry.REWARDS)
            raise ConfigError(
                f"key '{key}.name' names unknown reward '{self.name}'{closest(self.name, known)}; "
                f"known: {', '.join(sorted(known))}, or 'module:function'"
            )
        check_reward_args(self.name, self.args, (f"{key}.name", f"{key}.args"))


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
    TRAINER_CONFIG: ClassVar[str] = "trl:GRPOConfig"
    # Reward models named by an earlier stage (or a path, or a hub id), checked like ``init``.
    STAGE_REFS: ClassVar[tuple[str, ...]] = ("init", "rewards[].args.model_path")

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
    log_completions: bool = False
    # a reward that scores nothing must not train on zeros: the stage fails when more than this share of
    # the completions of the last unscored_window rollout batches got no score from any reward
    max_unscored: float = 0.1
    unscored_window: int = 4

    RANGES: ClassVar[dict[str, Range]] = {
        "top_k": NON_NEGATIVE,
        "epsilon_high": POSITIVE,
        "entropy_coef": NON_NEGATIVE,
    }

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
            ("max_unscored", 0 <= self.max_unscored <= 1, "must be in [0, 1]"),
            ("unscored_window", self.unscored_window >= 1, "must be at least 1"),
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
        self._check_rollout_batch(key, launched_world_size())
        self._check_reward_columns(key)

    def threshold(self) -> float | None:
        """The reward a completion needs to count as solved (accuracy, epoch filter), or None."""
        if self.solve_threshold is not None:
            return self.solve_threshold
        return 1.0 if self.rewards and self.rewards[0].name in VERIFIABLE_REWARDS else None

    def steps_per_rollout(self) -> int:
        """Optimizer micro-steps per rollout batch (TRL's ``steps_per_generation``)."""
        return self.steps_per_generation or self.train.grad_accum

    def _check_rollout_batch(self, key: str, world_size: int) -> None:
        """A rollout batch must hold whole groups: GRPO normalises each prompt's rewards within its group.

        The numbers are those the trainer gets: ``train.extra`` overrides the stage's own keys there.
        """
        extra = self.train.extra
        per_device = extra.get("per_device_train_batch_size", self.train.batch_size)
        steps = extra.get("steps_per_generation", self.steps_per_rollout())
        group = extra.get("num_generations", self.num_generations)
        if not all(isinstance(v, int) and v > 0 for v in (per_device, steps, group)):
            return  # TRL rejects such values itself when it builds its config
        completions = per_device * world_size * steps
        if completions % group:
            raise ConfigError(
                f"key '{key}.train.batch_size' gives {completions} completions per rollout batch "
                f"(batch_size {per_device} × {world_size} process(es) × steps_per_generation {steps}), "
                f"not a multiple of num_generations={group}"
            )

    def _check_reward_columns(self, key: str) -> None:
        """Every column a reward reads is provided by some source (checked where the sources' columns are known)."""
        from rewards import registry

        provided: set[str] = set(STAGE_COLUMNS)
        for source in self.data:
            known = source.known_columns()
            if known is None:  # a hub dataset or a file whose columns show only when it is read
                return
            provided |= known
        for i, term in enumerate(self.rewards):
            for column in registry.columns(term.name, term.args):
                if column not in provided:
                    sources = ", ".join(s.source for s in self.data)
                    raise ConfigError(
                        f"key '{key}.rewards[{i}].name' names reward '{term.name}', which reads column "
                        f"'{column}' that no source of '{key}.data' provides ({sources}); map one to it "
                        f"with 'columns: {{{column}: <source column>}}'"
                    )

    def describe(self) -> list[str]:
        """Extra lines for the dry-run plan."""
        terms = ", ".join(
            f"{t.name}×{t.weight:g}" + (f" ({t.mode})" if t.mode != "any" else "") for t in self.rewards
        )
        penalty = self.language_penalty if self.language_penalty is not None else "none"
        lines = [
            f"rewards {terms}; language penalty {penalty}",
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


def launched_world_size() -> int:
    """The number of processes of this launch, as ``accelerate launch`` and ``torchrun`` announce it (1 alone)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


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
