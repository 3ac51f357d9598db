"""A cascade on the builtin model with one stage per domain, every source and benchmark through a preset."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, subprocess_env

RECIPE = "tests/recipes/presets.yaml"


def launch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), f"recipe={RECIPE}", *args],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=1200,
    )  # fmt: skip


def test_every_fixture_passes_the_data_check() -> None:
    proc = launch("dry_run=data")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert " 0 dropped" in proc.stdout and " dropped" not in proc.stdout.replace(" 0 dropped", "")


@pytest.mark.slow
def test_cascade_through_presets_runs_on_cpu(tmp_path: Path) -> None:
    proc = launch(f"run.output_dir={tmp_path / 'runs'}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    ledger = json.loads((tmp_path / "runs" / "presets" / "ledger.json").read_text())
    assert [s["status"] for s in ledger["stages"]] == ["done"] * 6
    evals = sorted((tmp_path / "runs" / "presets" / "evals").glob("*.json"))
    last = json.loads(evals[-1].read_text())["benchmarks"]
    assert set(last) == {"humaneval", "ifeval", "aime", "swebench"}
    assert all(0.0 <= b["score"] <= 1.0 or b["metric"] == "mean_reward" for b in last.values())
