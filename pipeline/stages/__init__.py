"""Stage kinds: a small registry from ``kind`` to the module that trains it.

A stage module (or package, like ``grpo``) defines ``Config`` (a dataclass extending
:class:`pipeline.config.StageConfig`, declaring its trainer's config class and the fields that name
other stages) and ``run(ctx: StageContext) -> StageResult``. Modules import their heavy dependencies
(TRL, torch) inside ``run`` so that validating a recipe stays fast. Adding a kind means adding a module
and a line here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pipeline.schema import ConfigError, closest

STAGE_KINDS: dict[str, str] = {
    "sft": "pipeline.stages.sft",
    "reward_model": "pipeline.stages.reward_model",
    "grpo": "pipeline.stages.grpo",
}


def stage_module(kind: str) -> ModuleType:
    return importlib.import_module(STAGE_KINDS[kind])


def stage_config_class(kind: object, key: str = "kind") -> type:
    """The config dataclass of stage ``kind``; an unknown kind is a ConfigError naming ``key``."""
    if not isinstance(kind, str) or kind not in STAGE_KINDS:
        raise ConfigError(
            f"key '{key}' names unknown stage kind {kind!r}{closest(str(kind), STAGE_KINDS)}; "
            f"known kinds: {', '.join(STAGE_KINDS)}"
        )
    try:
        return stage_module(kind).Config
    except ModuleNotFoundError as exc:
        raise ConfigError(f"key '{key}' names stage kind '{kind}', which is not available: {exc}") from None
