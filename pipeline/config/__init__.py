"""The recipe's typed schema, one module per section, and the loader that validates it.

``from pipeline.config import load_recipe, Recipe, StageConfig`` is the way in; the modules are:

- :mod:`~pipeline.config.recipe`: :class:`Recipe`, :func:`load_recipe` (compose, validate, cross-check)
- :mod:`~pipeline.config.run`: ``run``, ``tracking``, ``generation``, ``eval``, ``gate``
- :mod:`~pipeline.config.model`: ``model`` and a stage's ``lora``
- :mod:`~pipeline.config.data`: a data source and the prompt format
- :mod:`~pipeline.config.stage`: ``stages.<name>`` (each stage kind extends :class:`StageConfig`)
- :mod:`~pipeline.config.benchmark`: ``benchmarks.<name>``
- :mod:`~pipeline.config.checks`: checks the sections share (this machine's, paths, reward arguments)
- :mod:`~pipeline.config.hashing`: the stage hashes that decide whether a done stage is reused
"""

from pipeline.config.benchmark import (
    HEAVY_MODES,
    BenchmarkConfig,
    GenerationConfig,
    GenSelectConfig,
    MajorityConfig,
    ScorerConfig,
    SelectionMode,
)
from pipeline.config.checks import LOCAL_DATA_SUFFIXES, check_reward_args, environment_problem, looks_local
from pipeline.config.data import DataSource, PromptConfig
from pipeline.config.hashing import stage_hashes
from pipeline.config.model import MIN_BUILTIN_VOCAB, BuiltinModelConfig, LoraConfig, ModelConfig
from pipeline.config.recipe import Recipe, load_recipe, recipe_from_dict
from pipeline.config.run import EngineConfig, EvalConfig, GateConfig, RunConfig, TrackingConfig
from pipeline.config.stage import PromptMode, StageConfig, TrainConfig

__all__ = [
    "HEAVY_MODES",
    "LOCAL_DATA_SUFFIXES",
    "MIN_BUILTIN_VOCAB",
    "BenchmarkConfig",
    "BuiltinModelConfig",
    "DataSource",
    "EngineConfig",
    "EvalConfig",
    "GateConfig",
    "GenSelectConfig",
    "GenerationConfig",
    "LoraConfig",
    "MajorityConfig",
    "ModelConfig",
    "PromptConfig",
    "PromptMode",
    "Recipe",
    "RunConfig",
    "ScorerConfig",
    "SelectionMode",
    "StageConfig",
    "TrackingConfig",
    "TrainConfig",
    "check_reward_args",
    "environment_problem",
    "load_recipe",
    "looks_local",
    "recipe_from_dict",
    "stage_hashes",
]
