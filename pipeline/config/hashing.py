"""Stage hashes: a done stage is reused only while the config that produced it is unchanged."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pipeline.config.recipe import Recipe
from pipeline.schema import (
    set_fields,
)

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
