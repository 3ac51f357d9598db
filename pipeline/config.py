"""The recipe: typed schema, composition with Hydra, and validation that fails before any model loads.

``load_recipe("tiny", ["stages.sft1.train.max_steps=5"])`` composes ``recipes/tiny.yaml`` (with its
``defaults:``) and the overrides through Hydra's compose API — no working-directory change, no output
folders, so every process of a launch sees the same config — then validates the result into
:class:`Recipe`. Every user error raises :class:`ConfigError` with one sentence naming the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.schema import ConfigError, closest, from_dict, to_dict

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".jsonl.gz", ".json.gz")
# Folders under recipes/ that hold launcher configs, not recipes.
NON_RECIPE_DIRS = {"deepspeed", "accelerate"}
PromptMode = Literal["think", "no_think", "mixed", "none"]  # none: no /think or /no_think markers


@dataclass
class RunConfig:
    name: str
    output_dir: str = "runs"
    seed: int = 42
    rerun_from: str | None = None  # re-run this stage and every later one
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 on GPU, fp32 on CPU


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


@dataclass
class ModelConfig:
    name_or_path: str  # hub id, local directory, or builtin:tiny
    revision: str | None = None
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    builtin: BuiltinModelConfig = field(default_factory=BuiltinModelConfig)

    def validate(self, key: str) -> None:
        src = self.name_or_path
        if src.startswith("builtin:") and src != "builtin:tiny":
            raise ConfigError(
                f"key '{key}.name_or_path' names unknown builtin model '{src}' (known: builtin:tiny)"
            )
        if _looks_local(src) and not Path(src).expanduser().exists():
            raise ConfigError(f"key '{key}.name_or_path' points to '{src}', which does not exist")


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

    def validate(self, key: str) -> None:
        if self.preset is not None:
            self._apply_preset(key)
        if not self.source:
            raise ConfigError(
                f"missing required key '{key}.source' (a builtin task, hub id or file, or a preset)"
            )
        if self.split is None:
            self.split = "train"
        if not 0.0 <= self.max_dropped <= 1.0:
            raise ConfigError(f"key '{key}.max_dropped' must be in [0, 1], got {self.max_dropped}")
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
        if self.size is not None and self.size <= 0:
            raise ConfigError(f"key '{key}.size' must be positive, got {self.size}")
        if self.weight <= 0:
            raise ConfigError(f"key '{key}.weight' must be positive, got {self.weight}")

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
            except Exception as exc:  # the package is not installed
                raise ConfigError(f"key '{key}.source': {exc}") from None
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
    logging_steps: int = 10
    deepspeed: str | None = None  # path to a DeepSpeed JSON config
    extra: dict[str, Any] = field(default_factory=dict)  # passed as-is to the TRL config

    def validate(self, key: str) -> None:
        for name in ("batch_size", "grad_accum", "save_steps", "save_total_limit", "logging_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"key '{key}.{name}' must be positive, got {getattr(self, name)}")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ConfigError(f"key '{key}.max_steps' or '{key}.epochs' must be positive")
        if self.learning_rate < 0:
            raise ConfigError(f"key '{key}.learning_rate' must not be negative, got {self.learning_rate}")
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
    """What every stage kind accepts; each kind extends it (see ``pipeline/stages``)."""

    kind: str
    domain: str | None = None  # the domain this stage trains (chat, instruction, math, code, swe, …)
    init: str | None = None  # None: previous stage's checkpoint; else a stage name, a path or a hub id
    data: list[DataSource] = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)
    prompt_mode: PromptMode = "no_think"
    think_fraction: float = 0.5  # share of thinking prompts when prompt_mode is mixed
    prompt: PromptConfig = field(default_factory=PromptConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)

    def validate(self, key: str) -> None:
        if not self.data:
            raise ConfigError(f"key '{key}.data' must list at least one data source")
        if not 0.0 <= self.think_fraction <= 1.0:
            raise ConfigError(f"key '{key}.think_fraction' must be in [0, 1], got {self.think_fraction}")
        if self.lora.enabled and self.train.zero_stage(f"{key}.train") == 3:
            raise ConfigError(
                f"key '{key}.lora' cannot be used with a ZeRO-3 DeepSpeed config: merging the adapters needs "
                "the whole base model in one process; use ZeRO-2 (or no DeepSpeed) for a LoRA stage"
            )


@dataclass
class ScorerConfig:
    reward: str  # a name from rewards.REWARDS, or "reward_model" for chat
    args: dict[str, Any] = field(default_factory=dict)
    threshold: float = 1.0  # a sample is correct when its score reaches this
    metric: Literal["accuracy", "mean_reward", "win_rate"] = "accuracy"
    judge: str | None = None  # reward-model stage name / path for chat scorers


@dataclass
class GenerationConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    n: int = 1  # samples per prompt → avg@n, pass@k
    batch_size: int = 32


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

    def validate(self, key: str) -> None:
        from rewards.registry import _SPECS

        self._preset_defaults(key)
        if self.scorer.reward not in _SPECS:
            raise ConfigError(
                f"key '{key}.scorer.reward' names unknown reward '{self.scorer.reward}'"
                f"{closest(self.scorer.reward, _SPECS)}"
            )
        if self.generation.n < 1:
            raise ConfigError(f"key '{key}.generation.n' must be at least 1, got {self.generation.n}")
        if not 0.0 <= self.max_unscored <= 1.0:
            raise ConfigError(f"key '{key}.max_unscored' must be in [0, 1], got {self.max_unscored}")

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


@dataclass
class EvalConfig:
    enabled: bool = True
    after: Literal["trained", "all"] = "trained"  # trained: benchmarks of domains trained so far (+ always)
    seed: int = 1234


@dataclass
class GateConfig:
    policy: Literal["stop", "warn", "rollback"] = "stop"
    tolerance: float = 0.02  # absolute drop on the [0, 1] scale that may be ignored
    alpha: float = 0.05  # significance level of the paired test
    n_resamples: int = 10000


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
    source: str = ""  # the recipe name or file it was composed from (set by load_recipe)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.output_dir) / self.run.name

    def stage_names(self) -> list[str]:
        return list(self.stages)

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


def recipes_dir() -> Path:
    """The recipes folder: ``./recipes`` when run from a checkout, else the project's own."""
    local = Path.cwd() / "recipes"
    return local if local.is_dir() else PROJECT_ROOT / "recipes"


def list_recipes(root: Path | None = None) -> list[tuple[str, str]]:
    """(name, one-line description) for every recipe YAML under ``root``, recursively."""
    import yaml

    root = root or recipes_dir()
    out = []
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root)
        if rel.parts[0] in NON_RECIPE_DIRS:
            continue
        try:
            desc = (yaml.safe_load(path.read_text()) or {}).get("description", "")
        except yaml.YAMLError:
            desc = "(unreadable YAML)"
        out.append((str(rel.with_suffix("")), str(desc).strip().splitlines()[0] if desc else ""))
    return out


def _resolve_recipe_file(name: str) -> Path:
    path = Path(name).expanduser()
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise ConfigError(f"recipe file '{name}' does not exist")
        return path.resolve()
    root = recipes_dir()
    candidate = root / f"{name}.yaml"
    if not candidate.exists():
        known = [n for n, _ in list_recipes(root)]
        raise ConfigError(f"unknown recipe '{name}'{closest(name, known)}; run with recipe=list to see them")
    return candidate.resolve()


def _hydra_compose(path: Path, overrides: list[str]) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(path.parent), version_base=None, job_name="cascade"):
            cfg = compose(config_name=path.stem, overrides=overrides)
        data = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_hydra_message(exc, overrides)) from None
    assert isinstance(data, dict)
    return data


def _hydra_message(exc: Exception, overrides: list[str]) -> str:
    """Hydra's multi-line errors, reduced to one sentence."""
    text = " ".join(str(exc).split())
    missing = re.search(r"Could not override '([^']+)'", text) or re.search(
        r"Key '([^']+)' is not in struct", text
    )
    if missing:
        key = missing.group(1)
        return (
            f"override '{key}' names a key the recipe does not set; "
            f"prefix it with '+' to add it (+{key}=…), or check the spelling"
        )
    if "Could not append to config" in text or "already exists" in text:
        m = re.search(r"'([^']+)'", text)
        key = m.group(1) if m else "?"
        return f"override '+{key}' adds a key that already exists; drop the '+' to change it"
    if "mismatched input" in text or "no viable alternative" in text or "Error parsing override" in text:
        bad = next((o for o in overrides if o in text), None) or text
        return f"override '{bad}' is not valid Hydra override syntax (expected key=value)"
    if "Could not load" in text or "Could not find" in text:
        return f"recipe defaults could not be resolved: {text}"
    return f"recipe could not be composed: {text}"


def _schema_field(path: str, composed: dict[str, Any], root: Any = None) -> bool:
    """Whether dotted ``path`` names a field of the recipe schema (so that it may be set without '+')."""
    import dataclasses
    import typing

    from pipeline.stages import STAGE_KINDS, stage_config_class

    parts = path.split(".")
    tp: Any = root or Recipe
    node: Any = composed
    for i, part in enumerate(parts):
        origin = typing.get_origin(tp)
        if tp is Recipe and part == "stages" and i + 1 < len(parts):
            kind = ((node or {}).get("stages", {}).get(parts[i + 1]) or {}).get("kind")
            if kind not in STAGE_KINDS:
                return False
            tp, node = stage_config_class(kind), node["stages"][parts[i + 1]]
            return _schema_field(".".join(parts[i + 2 :]), node, tp) if i + 2 < len(parts) else True
        if origin in (list, dict) or (origin is not None and type(None) in typing.get_args(tp)):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[-1] if args else Any
            if origin in (list, dict):
                node = None
                continue
        if not dataclasses.is_dataclass(tp):
            return False
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return False
        tp = hints[part]
        node = node.get(part) if isinstance(node, dict) else None
    return True


def _compose_lenient(path: Path, overrides: list[str]) -> dict[str, Any]:
    """Compose; a plain ``key=value`` for a schema field the YAML leaves out is applied as ``++key=value``.

    Hydra's grammar asks for ``+key`` to add a key; that is needless friction for a field the typed
    schema knows (``stages.sft1.train.save_steps=10``). Keys the schema does not know keep Hydra's error.
    """
    overrides = list(overrides)
    base: dict[str, Any] | None = None
    for _ in range(len(overrides) + 1):
        try:
            return _hydra_compose(path, overrides)
        except ConfigError as exc:
            m = re.match(r"override '([^']+)' names a key the recipe does not set", str(exc))
            if not m:
                raise
            key = m.group(1)
            base = base if base is not None else _hydra_compose(path, [])
            index = next((i for i, o in enumerate(overrides) if o.split("=", 1)[0] == key), None)
            if index is None or not _schema_field(key, base):
                raise
            overrides[index] = "++" + overrides[index]
    return _hydra_compose(path, overrides)


def load_recipe(name: str, overrides: list[str] | None = None) -> Recipe:
    """The validated recipe ``name`` (a name under recipes/ or a YAML path) with Hydra overrides applied."""
    path = _resolve_recipe_file(name)
    data = _compose_lenient(path, list(overrides or []))
    data.pop("defaults", None)
    recipe = recipe_from_dict(data)
    recipe.source = name
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
        for ref_key in ("init", *getattr(stage, "stage_refs", ())):
            ref = getattr(stage, ref_key, None)
            if ref is None:
                continue
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
            elif not re.fullmatch(r"[\w.-]+/[\w.-]+", ref):
                raise ConfigError(
                    f"key 'stages.{stage_name}.{ref_key}' names '{ref}', which is no earlier stage"
                    f"{closest(ref, names[:i])}, existing path or hub id"
                )
    if recipe.run.rerun_from is not None and recipe.run.rerun_from not in names:
        raise ConfigError(
            f"key 'run.rerun_from' names stage '{recipe.run.rerun_from}', which is not in the recipe"
            f"{closest(recipe.run.rerun_from, names)}"
        )
    for bench_name, bench in recipe.benchmarks.items():
        judge = bench.scorer.judge
        if (
            judge
            and judge not in names
            and not Path(judge).exists()
            and not re.fullmatch(r"[\w.-]+/[\w.-]+", judge)
        ):
            raise ConfigError(
                f"key 'benchmarks.{bench_name}.scorer.judge' names '{judge}', which is no stage{closest(judge, names)}, "
                "existing path or hub id"
            )


# --------------------------------------------------------------------------------------------------
# Hashing: a done stage is reused only while the config that produced it is unchanged.

# Keys that change how a stage is run or logged, not what it produces.
_VOLATILE_TRAIN_KEYS = ("save_steps", "save_total_limit", "logging_steps")


def stage_hashes(recipe: Recipe) -> dict[str, str]:
    """A hash per stage covering its config, the starting model, the seed and every earlier stage."""
    previous = _digest(
        {"model": to_dict(recipe.model), "seed": recipe.run.seed, "precision": recipe.run.precision}
    )
    out = {}
    for name, stage in recipe.stages.items():
        cfg = to_dict(stage)
        for k in _VOLATILE_TRAIN_KEYS:
            cfg.get("train", {}).pop(k, None)
        previous = _digest({"name": name, "stage": cfg, "previous": previous})
        out[name] = previous
    return out


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
