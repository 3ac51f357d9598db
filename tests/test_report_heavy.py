"""The report of a run whose benchmarks were evaluated in heavy mode: columns, tables and bands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.report import build_report, render_markdown, report_table_rows, write_report
from pipeline.report.table import mode_order
from tests.test_report import make_run

MODES = ("pass@1", "majority", "genselect", "pass@4")


def with_heavy_math(run: Path, primary: str | None = None) -> None:
    """Give livecodebench (4 samples per prompt) heavy-mode summaries in every row of the ledger."""
    ledger = json.loads((run / "ledger.json").read_text())
    rows = [ledger["base"], *ledger["stages"]]
    for i, row in enumerate(rows):
        score = row["scores"].get("livecodebench")
        if not score:
            continue
        base = score["score"]
        score["modes"] = {
            "pass@1": {"score": base, "stderr": 0.03, "tokens": 4000, "seconds": 12.0},
            "majority": {"score": base + 0.04, "stderr": 0.03, "seconds": 1.5},
            "genselect": {"score": base + 0.02 * (i % 2), "stderr": 0.03, "tokens": 900, "seconds": 6.0,
                          "calls": 480, "fallbacks": 12 + i},
            "pass@4": {"score": min(1.0, base + 0.2), "stderr": 0.02},
        }  # fmt: skip
        if primary:
            score["primary"] = primary
    (run / "ledger.json").write_text(json.dumps(ledger))


def test_mode_order() -> None:
    assert mode_order(["pass@8", "genselect", "pass@1", "majority", "pass@2", "majority"]) == [
        "pass@1", "majority", "genselect", "pass@2", "pass@8",
    ]  # fmt: skip


def test_heavy_modes_in_the_table_markdown_and_figure(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    with_heavy_math(run, primary="majority")
    report = build_report(run)
    info = report["benchmarks"]["livecodebench"]
    assert info["modes"] == list(MODES) and info["primary"] == "majority"
    assert "modes" not in report["benchmarks"]["ifeval"]  # benchmarks without selection are unchanged
    code_rl = next(row for row in report["stages"] if row["name"] == "code_rl")
    assert code_rl["modes"]["livecodebench"]["genselect"]["fallbacks"] == 19
    columns, rows = report_table_rows(report)
    assert "livecodebench_majority" in columns and len(rows[0]) == len(columns)

    text = render_markdown(report)
    assert "livecodebench (code) [majority]" in text
    assert "### livecodebench (4 samples per prompt)" in text
    assert "| stage | pass@1 | majority@4 | genselect@4 | oracle pass@4 | genselect fallbacks |" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("| code_rl |") and "/480" in ln)
    assert "19/480" in line and "900" in line

    markdown, image = write_report(run)
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "## Heavy mode" in markdown.read_text()


def test_runs_without_heavy_modes_have_no_heavy_section(tmp_path: Path) -> None:
    report = build_report(make_run(tmp_path))
    assert "## Heavy mode" not in render_markdown(report)
    assert all(row["modes"] == {} for row in report["stages"])


def test_eval_files_are_read_on_the_primary_metric() -> None:
    from pipeline.report.table import _slim
    from tests.test_selection import heavy_eval

    record = heavy_eval([True, False, True], [0.25, 0.5, 0.75])
    slim = _slim(record)
    assert slim["score"] == pytest.approx(2 / 3) and slim["samples_per_prompt"] == 1
    assert [s["score"] for s in slim["samples"]] == [1.0, 0.0, 1.0]  # the vote's outcomes, not pass@1
    record["primary"] = "pass@1"
    assert [s["score"] for s in _slim(record)["samples"]] == [0.25, 0.5, 0.75]
