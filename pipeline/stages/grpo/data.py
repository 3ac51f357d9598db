"""The stage's prompts: a small Arrow table for TRL's sampler, and the full rows the rewards read."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from pipeline.stages.base import StageContext
from pipeline.stages.grpo.config import MODE_COLUMN, ROW_COLUMN, Config

log = logging.getLogger(__name__)


def build_dataset(ctx: StageContext[Config]) -> tuple[Any, list[dict[str, Any]]]:
    """The prompts as a ``Dataset`` (prompt, id, mode and row columns) and the full rows the rewards read.

    Only flat columns enter Arrow; reward columns (tests, kwargs, …) stay Python objects and are
    joined back by ``row`` when rewards are computed, exactly as the source produced them.
    """
    from datasets import Dataset

    from pipeline.data.formatting import rl_prompt
    from pipeline.data.sources import is_prompt, load_rows, row_mode

    cfg = ctx.config
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
