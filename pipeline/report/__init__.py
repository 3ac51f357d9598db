"""The cascade report: every benchmark through the stages, as a JSON table, ``report.md`` and ``report.png``.

Everything is rebuilt from the run directory (``ledger.json`` and ``evals/*.json``), so the report
of a running, failed or finished run can be regenerated at any time::

    python -m pipeline.report runs/<name>          # writes runs/<name>/report.md and report.png
    python -m pipeline.report runs/<name> --json   # prints the table as JSON, writes nothing

``table`` builds the JSON table from the typed run state, ``markdown`` and ``plot`` draw it, ``files``
writes both into the run directory, ``cli`` is the command line.
"""

from pipeline.report.cli import main
from pipeline.report.files import write_report
from pipeline.report.markdown import format_duration, render_markdown
from pipeline.report.plot import plot_report
from pipeline.report.table import DEFAULT_ALPHA, ReportError, build_report, report_table_rows

__all__ = [
    "DEFAULT_ALPHA",
    "ReportError",
    "build_report",
    "format_duration",
    "main",
    "plot_report",
    "render_markdown",
    "report_table_rows",
    "write_report",
]
