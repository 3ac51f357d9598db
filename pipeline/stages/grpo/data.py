"""The stage's prompts: a small Arrow table for TRL's sampler, and the full rows the rewards read."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.stages.base import StageContext
from pipeline.stages.grpo.config import MODE_COLUMN, ROW_COLUMN, Config

log = logging.getLogger(__name__)


def build_dataset(ctx: StageContext[Config]) -> tuple[Any, Any]:
    """The prompts as a ``Dataset`` (prompt, id, mode and row columns) and the full rows the rewards read.

    Only flat columns and the prompt enter the typed table; reward columns (tests, kwargs, …) are read
    back by ``row`` from the exact rows (:class:`pipeline.data.table.Rows`) when rewards are computed,
    as the source produced them. Both are built once, by the main process, into the stage's ``data/``
    folder, and memory-mapped by every process.
    """
    from datasets import DatasetDict

    from pipeline.data.formatting import rl_prompt
    from pipeline.data.sources import is_prompt, load_rows, row_mode
    from pipeline.data.table import STAGE_DATA, Rows, build_once, typed_map

    cfg = ctx.config
    fmt = cfg.prompt.format()

    def prompt_row(row: dict[str, Any], i: int) -> dict[str, Any]:
        mode = row_mode(cfg.prompt_mode, cfg.think_fraction, i, ctx.seed)
        pid = str(row.get("id") or "") or hashlib.sha256(json.dumps(row["prompt"]).encode()).hexdigest()[:16]
        return {"prompt": rl_prompt(row["prompt"], mode, fmt), "id": pid, MODE_COLUMN: mode, ROW_COLUMN: i}

    def build(scratch: Path) -> Any:
        data = load_rows(cfg.data, {"prompt": is_prompt}, ctx.seed, scratch=scratch)
        prompts, _ = typed_map(
            data.dataset, prompt_row, desc=f"{ctx.name}: prompts", cache_file=scratch / "prompts.arrow"
        )
        log.info("stage %s: %d prompts (%s)", ctx.name, len(prompts), data.describe())
        return DatasetDict({"prompts": prompts, "rows": data.dataset}), {}

    tables, _ = build_once(ctx.stage_dir / STAGE_DATA, build)
    return tables["prompts"], Rows(tables["rows"])


def with_source_rows(
    side_rows: Sequence[dict[str, Any]], inputs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The batch's rows with their full source columns back (by the ``row`` column), for the rewards.

    TRL reads the columns of the first row from every row, and sources mixed in one stage may differ in
    columns, so every row gets the union (None where a source has no such column), in the order the rows
    name them: a set's order would differ between processes and launches (hash randomisation).
    """
    rows = [side_rows[x[ROW_COLUMN]] for x in inputs]
    blank = dict.fromkeys(key for row in rows for key in row)
    return [{**blank, **row, **x} for row, x in zip(rows, inputs, strict=True)]
