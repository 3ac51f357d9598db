"""Experiment tracking: one wandb run per cascade, metrics namespaced by stage (offline by default).

HF's own wandb integration logs every stage under the same ``train/`` keys and would start one wandb
run per trainer; Cascade keeps one run for the whole cascade (resumed with the run directory) and
prefixes metrics with the stage name, so stages can be compared on one dashboard.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from pipeline.config import Recipe

log = logging.getLogger(__name__)


class Tracker:
    """Logs to wandb from the main process; a no-op elsewhere or when tracking is off."""

    def __init__(self, recipe: Recipe, run_dir: Path, is_main: bool):
        self.run = None
        cfg = recipe.tracking
        if not is_main or cfg.backend == "none" or cfg.mode == "disabled":
            return
        try:
            import wandb
        except ImportError:
            log.warning("wandb is not installed; metrics are kept in the ledger only")
            return
        run_id = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
        try:
            # the process-wide settings decide what wandb prints on its own (a library reading run.url
            # of an offline run, TRL's model card); a run's settings alone leave those on the console
            wandb.setup(settings=wandb.Settings(silent=True))
            self.run = wandb.init(
                project=cfg.project,
                entity=cfg.entity,
                name=recipe.run.name,
                id=run_id,
                resume="allow",
                mode=cfg.mode,
                dir=str(run_dir),
                config=recipe.to_dict(),
                settings=wandb.Settings(silent=True, console="off"),
            )
        except Exception as exc:  # tracking must never take a training run down
            log.warning("wandb could not start (%s); metrics are kept in the ledger only", exc)
            self.run = None

    def log_stage(self, stage: str, metrics: dict[str, float], step: int) -> None:
        if self.run is None:
            return
        self.run.log({f"{stage}/{k}": v for k, v in metrics.items()} | {f"{stage}/step": step})

    def log(self, data: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.log(data)

    def log_report(self, table_columns: list[str], rows: list[list[Any]], image: Path | None) -> None:
        if self.run is None:
            return
        import wandb

        data: dict[str, Any] = {"cascade/report": wandb.Table(columns=table_columns, data=rows)}
        if image is not None and image.exists():
            data["cascade/report_png"] = wandb.Image(str(image))
        self.run.log(data)

    def summary(self, data: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(data)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
