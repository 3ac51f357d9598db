"""The regression gate's policies in a real CPU cascade: a destructive stage erodes a learned domain."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, subprocess_env

RECIPE = str(ROOT / "tests" / "recipes" / "gate.yaml")


def cascade(tmp: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), f"recipe={RECIPE}", f"run.output_dir={tmp / 'runs'}", *overrides],
        cwd=tmp, env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def stages(tmp: Path) -> dict[str, dict]:
    ledger = json.loads((tmp / "runs" / "gate" / "ledger.json").read_text())
    return {s["name"]: s for s in ledger["stages"]} | {"_run": ledger}


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory where stage 'learn' is done and stage 'wreck' was stopped by the gate (policy stop)."""
    tmp = tmp_path_factory.mktemp("gate")
    proc = cascade(tmp)
    assert proc.returncode == 3, proc.stderr[-3000:]  # stop: exit code 3
    return tmp


def test_stop_ends_the_cascade_with_exit_3(learned: Path) -> None:
    s = stages(learned)
    assert s["_run"]["status"] == "regressed"
    assert s["learn"]["scores"]["format"]["score"] >= 0.5  # the domain was learned ...
    wreck = s["wreck"]
    assert wreck["status"] == "regressed"  # ... and eroded
    gate = wreck["gate"]
    assert gate["verdict"] == "regressed" and gate["action"] == "stop"
    check = gate["benchmarks"]["format"]
    assert check["p_value"] < 0.05 and check["delta"] < -0.05  # both the size and the p-value are recorded
    assert (learned / "runs" / "gate" / wreck["checkpoint"] / "config.json").exists()  # kept for inspection
    assert s["after"]["status"] == "pending"


def test_stop_holds_on_rerun_then_warn_goes_on(learned: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(learned / "runs", tmp_path / "runs")
    again = cascade(tmp_path)
    assert again.returncode == 3 and "run.rerun_from=wreck" in again.stderr
    warn = cascade(tmp_path, "gate.policy=warn")
    assert warn.returncode == 0, warn.stderr[-3000:]
    s = stages(tmp_path)
    assert s["learn"]["attempts"] == 1 and s["wreck"]["attempts"] == 1  # nothing trained twice
    assert s["after"]["init_from"] == "stages/02-wreck/final"  # warn: the eroded weights are kept


def test_rollback_discards_the_regressed_stage(tmp_path: Path) -> None:
    proc = cascade(tmp_path, "gate.policy=rollback")
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = stages(tmp_path)
    assert s["wreck"]["status"] == "done" and s["wreck"]["discarded"] is True
    assert s["wreck"]["gate"]["action"] == "rollback"
    assert s["after"]["init_from"] == "stages/01-learn/final"  # the next stage starts from the last good one
    assert s["after"]["scores"]["format"]["score"] >= 0.5  # and the learned domain is held

    report = json.loads(
        subprocess.run(
            [PYTHON, "-m", "pipeline.report", str(tmp_path / "runs" / "gate"), "--json"],
            cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300, check=True,
        ).stdout
    )  # fmt: skip
    rows = {r["name"]: r for r in report["stages"]}
    assert rows["wreck"]["gate"] == "regressed"
    assert (
        rows["learn"]["scores"]["format"] == s["learn"]["scores"]["format"]["score"]
    )  # the ledger's numbers
    markdown = (tmp_path / "runs" / "gate" / "report.md").read_text()
    assert "~~wreck~~" in markdown or "discarded" in markdown
