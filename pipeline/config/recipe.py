"""The recipe: its sections put together, loaded from YAML and validated before any model loads.

``load_recipe("tiny", ["stages.sft1.train.max_steps=5"])`` composes ``recipes/tiny.yaml`` (with its
``defaults:``) and the overrides (:mod:`pipeline.compose`), then validates the result into
:class:`Recipe`: every value, every cross-reference between stages, and every mistake a stage kind can
see in its own config (unknown trainer settings, reward arguments, reward columns, batch shapes).
Every user error raises :class:`ConfigError` with one sentence naming the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config.benchmark import BenchmarkConfig
from pipeline.config.checks import environment_checks, looks_local
from pipeline.config.model import ModelConfig
from pipeline.config.run import EngineConfig, EvalConfig, GateConfig, RunConfig, TrackingConfig
from pipeline.config.stage import StageConfig
from pipeline.models import is_hub_id, is_model_ref
from pipeline.schema import ConfigError, closest, from_dict, to_dict


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
    with environment_checks(defer=defer_environment) as deferred:
        recipe = recipe_from_dict(data)
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
            if looks_local(ref):
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
