"""``python -m pipeline.report RUN_DIR [--json]``: rebuild a run's report, or print its table."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.report.files import write_report
from pipeline.report.table import DEFAULT_ALPHA, ReportError, build_report

logger = logging.getLogger("pipeline.report")


def parser() -> argparse.ArgumentParser:
    """The command line's arguments (also what the docs' commands are checked against)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.report",
        description="Rebuild report.md and report.png of a cascade run from its ledger and eval files.",
    )
    parser.add_argument("run_dir", type=Path, help="the run directory, e.g. runs/tiny")
    parser.add_argument("--json", action="store_true", help="print the report table as JSON; write no files")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="level of the ▲/▼ marks")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.report RUN_DIR [--json]``; exit 2 when RUN_DIR is not a run."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.json:
            sys.stdout.write(json.dumps(build_report(args.run_dir, alpha=args.alpha), indent=2) + "\n")
        else:
            for path in write_report(args.run_dir, alpha=args.alpha):
                logger.info("wrote %s", path)
    except ReportError as err:
        logger.error("error: %s", err)
        return 2
    return 0
