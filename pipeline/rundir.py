"""Where each file of a run lives: the run directory contract (docs/architecture.md), in one place.

    runs/<name>/config.yaml                resolved recipe
    runs/<name>/ledger.json                the run's state (pipeline.ledger)
    runs/<name>/.lock                      held by the launch that runs it (pipeline.runlock)
    runs/<name>/base/                      the builtin starting model, when there is one
    runs/<name>/stages/<NN>-<stage>/       a stage's trainer checkpoints/ and its final/ checkpoint
    runs/<name>/evals/<NN>-<stage>.json    per-benchmark scores and per-sample results (NN 00: the base)
    runs/<name>/report.md, report.png      the report (pipeline.report)
    runs/<name>/logs/                      Slurm jobs: slurm-<job>.out, slurm-<job>/attempt-<k>/node-<n>.log
    runs/<name>/cascade.log                everything the launches logged, tracebacks included (pipeline.console);
                                           cascade.rank<N>.log for the other processes of a launch

The ledger stores paths relative to the run directory, so a run directory can be moved or copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BASE = "base"  # the row of the starting model: index 0 in evals/, directory base/ for a builtin model


def stage_dirname(index: int, name: str) -> str:
    return f"{index:02d}-{name}"


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.json"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def logs(self) -> Path:
        """Slurm's logs of the run (launch/slurm/cascade.sbatch writes them; the submit helper names them)."""
        return self.root / "logs"

    @property
    def base_model(self) -> Path:
        return self.root / BASE

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_png(self) -> Path:
        return self.root / "report.png"

    def log_file(self, rank: int = 0) -> Path:
        """The log of every launch of the run (appended), one file per process rank."""
        return self.root / ("cascade.log" if rank == 0 else f"cascade.rank{rank}.log")

    def stage_dir(self, index: int, name: str) -> Path:
        return self.root / "stages" / stage_dirname(index, name)

    def final_dir(self, index: int, name: str) -> Path:
        """A stage's final checkpoint (HF format, model and tokenizer)."""
        return self.stage_dir(index, name) / "final"

    def eval_file(self, index: int, name: str) -> str:
        """The eval file of row ``name`` (``base`` at index 0), relative to the run directory."""
        return f"evals/{stage_dirname(index, name)}.json"

    def path(self, ref: str) -> str:
        """A reference the ledger holds → a path: relative to the run directory if it is inside, else as is."""
        inside = self.root / ref
        return str(inside) if inside.exists() else ref

    def ref(self, path: str | Path) -> str:
        """The inverse of :meth:`path`: a path inside the run directory relative to it, anything else as is."""
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)
