"""``stages.<name>``: what every stage kind accepts; each kind extends :class:`StageConfig`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pipeline.config.data import DataSource, PromptConfig
from pipeline.config.model import LoraConfig
from pipeline.schema import (
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    ConfigError,
    Range,
    closest,
)

PromptMode = Literal["think", "no_think", "mixed", "none"]  # none: no /think or /no_think markers


@dataclass
class TrainConfig:
    """Optimisation settings shared by every trainer-backed stage (mapped onto TRL/HF arguments)."""

    max_steps: int = -1  # > 0 overrides epochs
    epochs: float = 1.0
    learning_rate: float = 1e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 8  # per device
    grad_accum: int = 1
    max_length: int = 1024
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    gradient_checkpointing: bool = False
    save_steps: int = 50
    save_total_limit: int = 2
    keep_checkpoints: bool = False  # keep the trainer checkpoints of a finished stage (else pruned)
    logging_steps: int = 10
    deepspeed: str | None = None  # path to a DeepSpeed JSON config
    extra: dict[str, Any] = field(default_factory=dict)  # passed as-is to the TRL config (its fields only)

    RANGES: ClassVar[dict[str, Range]] = {
        "max_steps": Range(0, low_open=True, special=(-1, "epochs")),
        "epochs": NON_NEGATIVE,
        "learning_rate": NON_NEGATIVE,
        "warmup_ratio": FRACTION,
        "weight_decay": NON_NEGATIVE,
        "max_grad_norm": NON_NEGATIVE,
        **dict.fromkeys(
            ("batch_size", "grad_accum", "max_length", "save_steps", "save_total_limit", "logging_steps"),
            POSITIVE,
        ),
    }

    def validate(self, key: str) -> None:
        if self.max_steps == -1 and self.epochs <= 0:
            raise ConfigError(f"key '{key}.epochs' must be positive when max_steps is -1, got {self.epochs}")
        if self.deepspeed:
            if not Path(self.deepspeed).exists():
                raise ConfigError(f"key '{key}.deepspeed' points to '{self.deepspeed}', which does not exist")
            self.zero_stage(key)  # fails early on a file that is not a DeepSpeed config

    def zero_stage(self, key: str = "train") -> int | None:
        """The ZeRO stage of the DeepSpeed config, or None without one."""
        if not self.deepspeed:
            return None
        try:
            config = json.loads(Path(self.deepspeed).read_text())
            stage = (config.get("zero_optimization") or {}).get("stage", 0)
        except (OSError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"key '{key}.deepspeed': '{self.deepspeed}' is not a DeepSpeed JSON config ({exc})"
            ) from None
        if stage not in (0, 1, 2, 3):
            raise ConfigError(f"key '{key}.deepspeed': zero_optimization.stage must be 0-3, got {stage!r}")
        return stage


@dataclass
class StageConfig:
    """What every stage kind accepts; each kind extends it (see ``pipeline/stages``).

    A kind declares, as data, the TRL/HF config class its trainer takes (``train.extra`` may hold only
    that class's fields) and the fields that name another stage, a path or a hub id (``STAGE_REFS``:
    dotted paths, ``[]`` for every item of a list), which the recipe validator checks like ``init``.
    """

    TRAINER_CONFIG: ClassVar[str | None] = None  # "module:Class", e.g. "trl:SFTConfig"
    STAGE_REFS: ClassVar[tuple[str, ...]] = ("init",)

    kind: str
    domain: str | None = None  # the domain this stage trains (chat, instruction, math, code, swe, …)
    init: str | None = None  # None: previous stage's checkpoint; else a stage name, a path or a hub id
    data: list[DataSource] = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)
    prompt_mode: PromptMode = "no_think"
    think_fraction: float = 0.5  # share of thinking prompts when prompt_mode is mixed
    prompt: PromptConfig = field(default_factory=PromptConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)

    RANGES: ClassVar[dict[str, Range]] = {"think_fraction": FRACTION}

    def validate(self, key: str) -> None:
        if not self.data:
            raise ConfigError(f"key '{key}.data' must list at least one data source")
        if self.lora.enabled and self.train.zero_stage(f"{key}.train") == 3:
            raise ConfigError(
                f"key '{key}.lora' cannot be used with a ZeRO-3 DeepSpeed config: merging the adapters needs "
                "the whole base model in one process; use ZeRO-2 (or no DeepSpeed) for a LoRA stage"
            )
        if self.train.extra and self.TRAINER_CONFIG:
            self._check_trainer_extra(f"{key}.train.extra")

    def _check_trainer_extra(self, key: str) -> None:
        """Every ``train.extra`` key must be a field of the trainer's config class (the installed version's)."""
        import dataclasses
        import importlib

        module, _, name = str(self.TRAINER_CONFIG).partition(":")
        fields = {f.name for f in dataclasses.fields(getattr(importlib.import_module(module), name))}
        for extra in self.train.extra:
            if extra not in fields:
                raise ConfigError(
                    f"key '{key}.{extra}' is not a setting of {module}.{name}{closest(extra, fields)}"
                )

    def stage_refs(self) -> list[tuple[str, str]]:
        """(key under the stage, value) of every field ``STAGE_REFS`` declares that holds a reference."""
        refs = []
        for pattern in self.STAGE_REFS:
            nodes: list[tuple[str, Any]] = [("", self)]
            for part in pattern.split("."):
                name, each = part.removesuffix("[]"), part.endswith("[]")
                found = []
                for path, node in nodes:
                    value = node.get(name) if isinstance(node, dict) else getattr(node, name, None)
                    path = f"{path}.{name}" if path else name
                    if each:
                        found += [(f"{path}[{i}]", item) for i, item in enumerate(value or [])]
                    elif value is not None:
                        found.append((path, value))
                nodes = found
            refs += [(path, value) for path, value in nodes if isinstance(value, str)]
        return refs
