"""Writing the report into the run directory: ``report.md`` and ``report.png``, each atomically."""

from __future__ import annotations

from pathlib import Path

from pipeline.atomic import write_text
from pipeline.report.markdown import render_markdown
from pipeline.report.plot import plot_report
from pipeline.report.table import DEFAULT_ALPHA, build_report
from pipeline.rundir import RunDir


def write_report(run_dir: Path | str, *, alpha: float = DEFAULT_ALPHA) -> tuple[Path, Path]:
    """Rebuild ``report.md`` and ``report.png`` in the run directory and return their paths."""
    layout = RunDir(Path(run_dir))
    report = build_report(layout.root, alpha=alpha)
    write_text(layout.report_md, render_markdown(report))
    return layout.report_md, plot_report(report, layout.report_png)
