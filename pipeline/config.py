"""The recipe: typed schema, and validation that fails before any model loads.

``load_recipe("tiny", ["stages.sft1.train.max_steps=5"])`` composes ``recipes/tiny.yaml`` (with its
``defaults:``) and the overrides (:mod:`pipeline.compose`), then validates the result into
:class:`Recipe`: every value, every cross-reference between stages, and every mistake a stage kind can
see in its own config (unknown trainer settings, reward arguments, reward columns, batch shapes).
Every user error raises :class:`ConfigError` with one sentence naming the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pipeline.models import is_hub_id, is_model_ref
from pipeline.schema import (
    FINITE,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    ConfigError,
    Range,
    at_least,
    closest,
    from_dict,
    set_fields,
    to_dict,
)

log = logging.getLogger(__name__)

# Checks of this machine rather than of the recipe (a package, the code sandbox's isolation): errors
# at load, but listed instead while a dry run loads the recipe (load_recipe(defer_environment=True)).
_DEFERRED: ContextVar[list[str] | None] = ContextVar("deferred_environment_checks", default=None)


def environment_problem(message: str) -> None:
    """A check this machine fails (one sentence): a ConfigError, or listed as unchecked in a dry run."""
    deferred = _DEFERRED.get()
    if deferred is None:
        raise ConfigError(message)
    deferred.append(message)


LOCAL_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".jsonl.gz", ".json.gz")
# the builtin tokenizer's 256 bytes and 5 special tokens: a smaller vocabulary would be silently raised
MIN_BUILTIN_VOCAB = 261
PromptMode = Literal["think", "no_think", "mixed", "none"]  # none: no /think or /no_think markers


@dataclass
class RunConfig:
    name: str
    output_dir: str = "runs"
    seed: int = 42
    rerun_from: str | None = None  # re-run this stage and every later one
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    # Stopping early (pipeline.preemption, docs/slurm.md): neither changes what a stage produces.
    deadline: str | None = None  # save and exit this long after the launch ("3h50m", "03:50:00")
    until: str | None = None  # stop after this stage (one Slurm job per stage); the run is "paused"

    def validate(self, key: str) -> None:
        if self.deadline is not None:
            from pipeline.preemption import parse_duration

            parse_duration(self.deadline, f"{key}.deadline")

    RANGES: ClassVar[dict[str, Range]] = {"seed": SEED}


@dataclass
class TrackingConfig:
    backend: Literal["wandb", "none"] = "wandb"
    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "cascade"
    entity: str | None = None


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"

    RANGES: ClassVar[dict[str, Range]] = {
        "r": POSITIVE,
        "alpha": POSITIVE,
        "dropout": Range(0, 1, high_open=True),
    }


@dataclass
class BuiltinModelConfig:
    """Size of the ``builtin:tiny`` model (a Qwen3 architecture built from this config)."""

    vocab_size: int = 2048
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 768
    max_position_embeddings: int = 1024
    tokenizer_corpus_rows: int = 400  # rows per synthetic task used to train the BPE tokenizer

    RANGES: ClassVar[dict[str, Range]] = {
        "vocab_size": at_least(MIN_BUILTIN_VOCAB),
        **dict.fromkeys(
            ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
             "max_position_embeddings", "tokenizer_corpus_rows"),
            POSITIVE,
        ),
    }  # fmt: skip

    def validate(self, key: str) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"key '{key}.hidden_size' ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})"
            )
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"key '{key}.num_heads' ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
            )


@dataclass
class ModelConfig:
    """The starting model and how every load of the policy is made (stages, evaluation)."""

    name_or_path: str  # hub id, local directory, builtin:tiny, or gguf:<file or package> (pipeline.gguf)
    revision: str | None = None  # a hub id's branch, tag or commit
    trust_remote_code: bool = False  # run the checkpoint's own modelling code (a hub model or a local one)
    attn_implementation: str | None = None  # eager, sdpa, flash_attention_2, … (None: transformers' choice)
    # the dtype of the policy's weights: auto keeps trained weights in fp32 (the optimizer's master copy)
    # and loads frozen or evaluated ones in the compute precision; bfloat16 holds them all in bf16 (half
    # the memory of fp32 weights and Adam states, at the cost of small updates lost to rounding)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    chat_template: str | None = None  # a .jinja file (relative to the recipe) or a template's name
    builtin: BuiltinModelConfig = field(default_factory=BuiltinModelConfig)

    def validate(self, key: str) -> None:
        from pipeline.models import chat_template_text, known_attention

        src = self.name_or_path
        if src.startswith("builtin:") and src != "builtin:tiny":
            raise ConfigError(
                f"key '{key}.name_or_path' names unknown builtin model '{src}' (known: builtin:tiny)"
            )
        if _looks_local(src) and not Path(src).expanduser().exists():
            raise ConfigError(f"key '{key}.name_or_path' points to '{src}', which does not exist")
        if src.startswith("gguf:"):  # a GGUF file or a package shipping one (pipeline.gguf)
            from pipeline.gguf import GGUFSourceError, resolve

            try:
                resolve(src)
            except GGUFSourceError as exc:
                raise ConfigError(f"key '{key}.name_or_path': {exc}") from None
        from pipeline.hub import is_remote

        if self.revision is not None and not is_remote(src):
            raise ConfigError(
                f"key '{key}.revision' applies to a hub id, and '{src}' is a local or builtin model"
            )
        if self.trust_remote_code and src.startswith("builtin:"):
            raise ConfigError(f"key '{key}.trust_remote_code' has nothing to run: '{src}' ships no code")
        if self.attn_implementation is not None:
            known = known_attention()
            name = self.attn_implementation
            if name not in known and not is_hub_id(name.partition(":")[0]):
                raise ConfigError(
                    f"key '{key}.attn_implementation' names unknown attention '{name}'{closest(name, known)}; "
                    f"known: {', '.join(known)}, or a kernel repository on the hub (owner/name)"
                )
            package = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}.get(
                name
            )
            import importlib.util

            if package and importlib.util.find_spec(package) is None:
                environment_problem(
                    f"key '{key}.attn_implementation' is {name}, which needs the {package} package, "
                    "not installed here (or use sdpa)"
                )
        if self.chat_template is not None:
            try:
                chat_template_text(self.chat_template)
            except ValueError as exc:
                raise ConfigError(f"key '{key}.chat_template': {exc}") from None


@dataclass
class DataSource:
    """One source of rows: ``builtin:<task>``, a hub dataset id, or a local .jsonl/.json/.parquet/.csv file."""

    source: str = ""  # with a preset: empty for its hub id, "package" for the copy a pip package ships
    split: str | None = None  # None: the preset's split, else "train"
    size: int | None = None  # rows to take (None: all; builtin tasks need a size)
    weight: float = 1.0  # multiplies the source's rows in the mix: 0.5 takes half of them, 2.0 each twice
    columns: dict[str, str] = field(default_factory=dict)  # stage column -> source column
    config: str | None = None  # hub dataset config name
    revision: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # builtin task or preset options (flaw_rate, …)
    preset: str | None = None  # a dataset preset (pipeline/data/presets): hub defaults + a row adapter
    max_dropped: float = 0.01  # share of unusable rows tolerated (dropped and counted) before loading fails

    RANGES: ClassVar[dict[str, Range]] = {"size": POSITIVE, "weight": POSITIVE, "max_dropped": FRACTION}

    def validate(self, key: str) -> None:
        if self.preset is not None:
            self._apply_preset(key)
        if not self.source:
            raise ConfigError(
                f"missing required key '{key}.source' (a builtin task, hub id or file, or a preset)"
            )
        if self.split is None:
            self.split = "train"
        if self.source.startswith("builtin:"):
            from pipeline.data.synthetic import TASKS

            task = self.source.removeprefix("builtin:")
            if task not in TASKS:
                raise ConfigError(
                    f"key '{key}.source' names unknown builtin task '{task}'{closest(task, TASKS)}; "
                    f"known: {', '.join('builtin:' + t for t in TASKS)}"
                )
            if self.size is None:
                raise ConfigError(f"key '{key}.size' is required for builtin source '{self.source}'")
        elif _looks_local(self.source) and not Path(self.source).expanduser().exists():
            raise ConfigError(f"key '{key}.source' points to '{self.source}', which does not exist")

    def known_columns(self) -> frozenset[str] | None:
        """The stage columns this source's rows will have, when the recipe shows them; else None.

        Builtin tasks declare theirs; a local Parquet or CSV file states its schema in its first bytes.
        Hub datasets and JSON files show theirs only when read (the data loader checks those rows).
        """
        path = Path(self.source).expanduser()
        if self.source.startswith("builtin:"):
            from pipeline.data.synthetic import TASKS, task_columns

            task = self.source.removeprefix("builtin:")
            raw = set(task_columns(task)) if task in TASKS else None
        elif path.suffix == ".parquet" and path.is_file():
            import pyarrow.parquet as pq

            raw = set(pq.read_schema(path).names)
        elif path.suffix == ".csv" and path.is_file():
            import csv

            with path.open(newline="") as handle:
                raw = set(next(csv.reader(handle), []))
        else:
            raw = None
        if raw is None:
            return None
        # as pipeline.data.sources.map_columns renames them: a mapped column replaces its source column
        mapped = {stage for stage, col in self.columns.items() if col in raw}
        return frozenset((raw - set(self.columns.values())) | mapped)

    def _apply_preset(self, key: str) -> None:
        """Fill the preset's defaults (hub id, config, split) and check its options."""
        from pipeline.data.presets import get_preset

        try:
            preset = get_preset(self.preset)
            preset.resolve_options(self.options)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"key '{key}.preset': {str(exc).strip(chr(34) + chr(39))}") from None
        if self.source == "package":
            if preset.packaged is None:
                raise ConfigError(
                    f"key '{key}.source': preset '{self.preset}' has no copy shipped in a package"
                )
            try:
                self.source = str(preset.packaged())
            except Exception as exc:  # the package is not installed: this machine's problem, not the recipe's
                environment_problem(f"key '{key}.source': {exc}")
            self.split = self.split or "train"
        elif not self.source:
            if preset.hub is None:
                raise ConfigError(
                    f"key '{key}.source' is required: preset '{self.preset}' has no default hub id"
                )
            self.source, self.config = preset.hub, self.config or preset.config
        self.split = self.split or preset.split


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
class PromptConfig:
    """How prompts become the user turn: a system prompt, a template around the prompt, a suffix."""

    system: str | None = None  # a system turn added to conversations that have none
    template: str | None = None  # a text with one "{prompt}", e.g. "Question: {prompt}"
    suffix: str | None = None  # e.g. "Put the final answer in \\boxed{}."

    def validate(self, key: str) -> None:
        if self.template is not None and self.template.count("{prompt}") != 1:
            raise ConfigError(
                f"key '{key}.template' must contain '{{prompt}}' exactly once, got {self.template!r}"
            )

    def format(self) -> Any:
        from pipeline.data.formatting import PromptFormat

        return PromptFormat(self.system, self.template, self.suffix)


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


@dataclass
class ScorerConfig:
    reward: str  # a name from rewards.REWARDS, or "reward_model" for chat
    args: dict[str, Any] = field(default_factory=dict)
    threshold: float = 1.0  # a sample is correct when its score reaches this
    metric: Literal["accuracy", "mean_reward", "win_rate"] = "accuracy"
    judge: str | None = None  # reward-model stage name / path for chat scorers

    RANGES: ClassVar[dict[str, Range]] = {"threshold": FINITE}  # any score scale: rewards may be negative


@dataclass
class GenerationConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    n: int = 1  # samples per prompt → avg@n, pass@k
    batch_size: int = 32

    RANGES: ClassVar[dict[str, Range]] = {
        "max_new_tokens": POSITIVE,
        "temperature": NON_NEGATIVE,
        "top_p": Range(0, 1, low_open=True),
        "n": at_least(1),
        "batch_size": POSITIVE,
    }


SelectionMode = Literal["pass@k", "majority", "genselect"]
HEAVY_MODES = ("majority", "genselect")  # modes that pick one of the n samples per prompt


@dataclass
class GenSelectConfig:
    """GenSelect (arXiv 2507.17797): the policy reads k of its own candidates and names the best one.

    With more samples than ``k`` a knockout tournament runs (groups of at most ``k``, winners advance);
    ``rounds`` independent tournaments over reshuffled candidates vote on the final pick.
    """

    k: int = 4  # candidates shown in one selection prompt
    rounds: int = 1  # independent tournaments; their winners are put to a majority vote
    max_new_tokens: int = 256  # of one selection answer
    temperature: float | None = None  # None: the benchmark's generation temperature
    max_summary_chars: int = 2000  # each candidate's summary (its text after </think>) is cut to this
    template: str | None = None  # the selection prompt; None: pipeline.selection.genselect.TEMPLATE

    def validate(self, key: str) -> None:
        for name, least in (("k", 2), ("rounds", 1), ("max_new_tokens", 1), ("max_summary_chars", 1)):
            if getattr(self, name) < least:
                raise ConfigError(f"key '{key}.{name}' must be at least {least}, got {getattr(self, name)}")
        if self.temperature is not None and self.temperature < 0:
            raise ConfigError(f"key '{key}.temperature' must not be negative, got {self.temperature}")
        if self.template is not None:
            from pipeline.selection.genselect import check_template

            problem = check_template(self.template)
            if problem:
                raise ConfigError(f"key '{key}.template' {problem}")


@dataclass
class MajorityConfig:
    """How majority voting groups the n answers of a prompt (docs/evaluation.md, "Heavy mode")."""

    code_inputs: str = "tests"  # column whose code tests give the inputs programs run on (never the outputs)


@dataclass
class BenchmarkConfig:
    data: DataSource
    domain: str | None = None  # None: the data preset's domain
    scorer: ScorerConfig | None = None  # None: the data preset's scorer
    prompt_mode: Literal["think", "no_think", "none"] = "no_think"
    prompt: PromptConfig = field(default_factory=PromptConfig)
    max_unscored: float = 0.02  # share of samples the scorer may leave unscored before the benchmark fails
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    always: bool = False  # evaluate after every stage, whatever was trained
    tolerance: float | None = None  # per-benchmark gate tolerance (absolute, on the [0, 1] scale)
    selection: list[SelectionMode] = field(default_factory=list)  # heavy modes over generation.n samples
    genselect: GenSelectConfig = field(default_factory=GenSelectConfig)
    majority: MajorityConfig = field(default_factory=MajorityConfig)
    primary: str = "pass@1"  # the metric the gate compares: pass@1, pass@<k>, majority or genselect

    RANGES: ClassVar[dict[str, Range]] = {"max_unscored": FRACTION, "tolerance": NON_NEGATIVE}

    def validate(self, key: str) -> None:
        from rewards import registry

        self._preset_defaults(key)
        if not registry.has(self.scorer.reward):
            raise ConfigError(
                f"key '{key}.scorer.reward' names unknown reward '{self.scorer.reward}'"
                f"{closest(self.scorer.reward, registry.REWARDS)}"
            )
        # the judge (or an earlier stage) may still give a reward model's model_path: only names and types
        keys = (f"{key}.scorer.reward", f"{key}.scorer.args")
        check_reward_args(self.scorer.reward, self.scorer.args, keys, complete=False)
        self._check_selection(key)

    def _check_selection(self, key: str) -> None:
        """Heavy modes need several distinct samples, a 0/1 verdict per sample and answers that can be grouped."""
        from pipeline.selection.grouping import GROUPED_REWARDS

        n, reward = self.generation.n, self.scorer.reward
        if len(set(self.selection)) < len(self.selection):
            raise ConfigError(f"key '{key}.selection' lists a mode twice: {self.selection}")
        heavy = [m for m in self.selection if m in HEAVY_MODES]
        if heavy and reward not in GROUPED_REWARDS:
            raise ConfigError(
                f"key '{key}.selection' lists '{heavy[0]}', which groups answers by the domain's verifier; "
                f"scorer '{reward}' has no final answer to vote on (majority and genselect work with "
                f"{' and '.join(GROUPED_REWARDS)} scorers)"
            )
        for mode in self.selection:
            if n < 2:
                raise ConfigError(
                    f"key '{key}.selection' lists '{mode}', which needs several samples per prompt: "
                    f"set {key}.generation.n to 2 or more (it is {n})"
                )
            if self.scorer.metric != "accuracy":
                raise ConfigError(
                    f"key '{key}.selection' lists '{mode}', which needs a right/wrong verdict per sample, "
                    f"but the scorer's metric is {self.scorer.metric}"
                )
        if heavy and self.generation.temperature <= 0:
            raise ConfigError(
                f"key '{key}.selection' lists '{heavy[0]}' but {key}.generation.temperature is 0: greedy "
                "decoding makes the n samples identical, so there is nothing to select from"
            )
        primary = self.primary
        if primary in HEAVY_MODES:
            if primary not in self.selection:
                raise ConfigError(
                    f"key '{key}.primary' is '{primary}', which {key}.selection does not list {self.selection}"
                )
        elif primary != "pass@1":
            k = primary.removeprefix("pass@")
            known = ["pass@1", "pass@<k>", *HEAVY_MODES]
            if not (primary.startswith("pass@") and k.isdigit()):
                raise ConfigError(
                    f"key '{key}.primary' must be one of {', '.join(known)}, got {primary!r}"
                    f"{closest(primary, known)}"
                )
            if not 1 <= int(k) <= n or self.scorer.metric != "accuracy":
                raise ConfigError(
                    f"key '{key}.primary' is {primary}, which needs an accuracy scorer and k between 1 and "
                    f"{key}.generation.n ({n})"
                )

    def _preset_defaults(self, key: str) -> None:
        """Domain and scorer from the data preset when the recipe leaves them out."""
        preset = None
        if self.data.preset:
            from pipeline.data.presets import get_preset

            preset = get_preset(self.data.preset)  # known: the data source was validated first
        if self.scorer is None:
            if preset is None or preset.scorer is None:
                raise ConfigError(
                    f"missing required key '{key}.scorer' (its data has no preset with a scorer)"
                )
            ps = preset.scorer
            self.scorer = ScorerConfig(reward=ps.reward, args=dict(ps.args), metric=ps.metric)
        if self.domain is None:
            if preset is None or preset.domain is None:
                raise ConfigError(f"missing required key '{key}.domain'")
            self.domain = preset.domain


def check_reward_args(
    name: str, args: dict[str, Any], keys: tuple[str, str], *, complete: bool = True
) -> None:
    """A ConfigError naming the key when reward ``name`` cannot be loaded or would not accept ``args``.

    ``keys`` are the recipe keys of the reward's name and of its arguments; see
    ``rewards.registry.check_args`` for what is checked (``complete``: a factory's required arguments too).
    """
    from rewards import registry

    name_key, args_key = keys
    try:
        problem = registry.check_args(name, args, complete=complete)
    except registry.RewardLoadError as exc:
        raise ConfigError(f"key '{name_key}': {exc}") from None
    if problem is not None:
        takes = f"; it takes {', '.join(problem.known)}" if problem.known else ""
        hint = closest(problem.arg, problem.known)
        raise ConfigError(f"key '{args_key}.{problem.arg}' {problem.reason}{hint}{takes}")
    if registry.has(name):
        try:  # a reward this host cannot run (the code sandbox without any isolation) stops the launch now
            registry.preflight(name, args)
        except (ValueError, RuntimeError) as exc:
            environment_problem(f"key '{args_key}': {exc}")


@dataclass
class EngineConfig:
    """How rollouts (GRPO) and benchmarks generate: ``pipeline.generation``, docs/stages.md."""

    engine: Literal["auto", "hf", "compiled", "paged", "vllm"] = "auto"  # auto: compiled on a GPU, hf on CPU
    compile: Literal["auto", "full", "none"] = "auto"  # compiled engine: torch.compile the decoding step
    vllm_mode: Literal["colocate", "server"] = (
        "colocate"  # GRPO with vllm: in the training processes, or trl vllm-serve
    )

    def validate(self, key: str) -> None:
        import importlib.util

        if self.engine == "vllm" and importlib.util.find_spec("vllm") is None:
            environment_problem(
                f"key '{key}.engine' is vllm but vLLM is not installed here (pip install vllm); "
                "generation.engine=auto uses transformers' fast path instead"
            )


@dataclass
class EvalConfig:
    enabled: bool = True
    after: Literal["trained", "all"] = "trained"  # trained: benchmarks of domains trained so far (+ always)
    seed: int = 1234

    RANGES: ClassVar[dict[str, Range]] = {"seed": SEED}


@dataclass
class GateConfig:
    policy: Literal["stop", "warn", "rollback"] = "stop"
    tolerance: float = 0.02  # absolute drop on the [0, 1] scale that may be ignored
    alpha: float = 0.05  # significance level of the paired test
    n_resamples: int = 10000

    RANGES: ClassVar[dict[str, Range]] = {
        "tolerance": NON_NEGATIVE,
        "alpha": Range(0, 1, low_open=True, high_open=True),
        "n_resamples": POSITIVE,
    }


@dataclass
class Recipe:
    run: RunConfig
    model: ModelConfig
    stages: dict[str, StageConfig]
    description: str = ""
    benchmarks: dict[str, BenchmarkConfig] = field(default_factory=dict)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    generation: EngineConfig = field(default_factory=EngineConfig)
    source: str = ""  # the recipe name or file it was composed from (set by load_recipe)
    # what this machine could not check, listed instead of failing (a dry run's load; not a recipe key)
    unchecked: list[str] = field(default_factory=list, init=False)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.output_dir) / self.run.name

    def stage_names(self) -> list[str]:
        return list(self.stages)

    def benchmarks_after(self, trained_domains: set[str] | None) -> list[str]:
        """The benchmarks evaluated after a stage, given the domains trained so far (None: the baseline)."""
        if not self.eval.enabled:
            return []
        if trained_domains is None or self.eval.after == "all":
            return list(self.benchmarks)
        return [n for n, b in self.benchmarks.items() if b.always or b.domain in trained_domains]

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


# --------------------------------------------------------------------------------------------------
# Loading


def _looks_local(source: str) -> bool:
    """Whether a source string is meant as a local path (not a hub id)."""
    return (
        source.startswith(("/", "./", "../", "~"))
        or source.endswith(LOCAL_DATA_SUFFIXES)
        or (os.sep in source and Path(source).exists())
    )


def load_recipe(name: str, overrides: list[str] | None = None, *, defer_environment: bool = False) -> Recipe:
    """The validated recipe ``name`` (a name under recipes/ or a YAML path) with Hydra overrides applied.

    With ``defer_environment`` (dry runs), checks of this machine rather than of the recipe (vLLM or
    another package installed, the code sandbox's isolation) are listed in ``recipe.unchecked`` instead
    of failing: a dry run needs no GPU, no vLLM and no hub.
    """
    from pipeline.compose import compose, override_keys, recipe_file, resolve_paths

    path, overrides = recipe_file(name), list(overrides or [])
    data = compose(path, overrides)
    resolve_paths(data, path.parent, override_keys(overrides))
    deferred: list[str] = []
    token = _DEFERRED.set(deferred if defer_environment else None)
    try:
        recipe = recipe_from_dict(data)
    finally:
        _DEFERRED.reset(token)
    recipe.source, recipe.unchecked = name, deferred
    return recipe


def recipe_from_dict(data: dict[str, Any]) -> Recipe:
    """Validate a composed recipe dict (stages get the schema of their kind)."""
    from pipeline.stages import stage_config_class

    data = dict(data)
    stages_raw = data.pop("stages", None)
    if not isinstance(stages_raw, dict) or not stages_raw:
        raise ConfigError("missing required key 'stages' (a mapping of stage name to stage config)")
    stages: dict[str, StageConfig] = {}
    for stage_name, raw in stages_raw.items():
        key = f"stages.{stage_name}"
        if not isinstance(raw, dict):
            raise ConfigError(f"key '{key}' must be a mapping, got {raw!r}")
        if "kind" not in raw:
            raise ConfigError(f"missing required key '{key}.kind'")
        stages[str(stage_name)] = from_dict(stage_config_class(raw["kind"], f"{key}.kind"), raw, key)
    data["stages"] = {}
    recipe = from_dict(Recipe, data)
    recipe.stages = stages
    _check_cross_references(recipe)
    return recipe


def _check_cross_references(recipe: Recipe) -> None:
    names = list(recipe.stages)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", recipe.run.name):
        raise ConfigError(
            f"key 'run.name' must use letters, digits, '.', '_' or '-', got '{recipe.run.name}'"
        )
    for i, (stage_name, stage) in enumerate(recipe.stages.items()):
        if not re.fullmatch(r"[A-Za-z0-9_-]+", stage_name):
            raise ConfigError(f"stage name '{stage_name}' must use letters, digits, '_' or '-'")
        for ref_key, ref in stage.stage_refs():
            if ref in names[:i]:
                continue
            if ref in names:
                raise ConfigError(
                    f"key 'stages.{stage_name}.{ref_key}' names stage '{ref}', which runs later, not before it"
                )
            if _looks_local(ref):
                if not Path(ref).expanduser().exists():
                    raise ConfigError(
                        f"key 'stages.{stage_name}.{ref_key}' points to '{ref}', which does not exist"
                    )
            elif ref.startswith("builtin:"):
                if ref != "builtin:tiny":
                    raise ConfigError(
                        f"key 'stages.{stage_name}.{ref_key}' names unknown builtin model '{ref}'"
                    )
            elif not is_hub_id(ref):
                raise ConfigError(
                    f"key 'stages.{stage_name}.{ref_key}' names '{ref}', which is no earlier stage"
                    f"{closest(ref, names[:i])}, existing path or hub id"
                )
    if recipe.run.until is not None and recipe.run.until not in names:
        raise ConfigError(
            f"key 'run.until' names stage '{recipe.run.until}', which is not in the recipe"
            f"{closest(recipe.run.until, names)}"
        )
    if recipe.run.rerun_from is not None and recipe.run.rerun_from not in names:
        raise ConfigError(
            f"key 'run.rerun_from' names stage '{recipe.run.rerun_from}', which is not in the recipe"
            f"{closest(recipe.run.rerun_from, names)}"
        )
    for bench_name, bench in recipe.benchmarks.items():
        judge = bench.scorer.judge
        if judge and judge not in names and not is_model_ref(judge):
            raise ConfigError(
                f"key 'benchmarks.{bench_name}.scorer.judge' names '{judge}', which is no stage{closest(judge, names)}, "
                "existing path or hub id"
            )


# --------------------------------------------------------------------------------------------------
# Hashing: a done stage is reused only while the config that produced it is unchanged.

# Keys that change how a stage is run or logged, not what it produces.
_VOLATILE_TRAIN_KEYS = ("save_steps", "save_total_limit", "keep_checkpoints", "logging_steps")


def stage_hashes(recipe: Recipe) -> dict[str, str]:
    """A hash per stage covering its config, the starting model, the seed and every earlier stage.

    Only the values a recipe sets away from their defaults count (``set_fields``): a key added to the
    schema later leaves the hashes of existing runs as they were.
    """
    previous = _digest(
        {"model": set_fields(recipe.model), "seed": recipe.run.seed, "precision": recipe.run.precision}
    )
    out = {}
    for name, stage in recipe.stages.items():
        cfg = set_fields(stage)
        train = {k: v for k, v in cfg.pop("train", {}).items() if k not in _VOLATILE_TRAIN_KEYS}
        if train:  # a train section that sets only volatile keys hashes as one left at its defaults
            cfg["train"] = train
        previous = _digest({"name": name, "stage": cfg, "previous": previous})
        out[name] = previous
    return out


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
