"""The SFT profiler runs end to end on CPU (the tiny shape) and reports the profiled steps."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, subprocess_env


def test_profile_sft_reports_its_steps(tmp_path: Path) -> None:
    proc = subprocess.run(
        [PYTHON, "bench/profile_sft.py", "--shape", "tiny", "--model-dir", str(tmp_path),
         "--skip", "1", "--active", "2", "--batch", "2", "--max-length", "128", "--ops", "5"],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "variant cascade-packed, batch 2, max_length 128:" in proc.stdout
    assert "aten::mm" in proc.stdout  # the operator table, CPU time on this machine


def test_profile_grpo_splits_the_step_by_phase(tmp_path: Path) -> None:
    """The trainer names its generation and scoring ranges; the profile finds them inside the steps."""
    proc = subprocess.run(
        [PYTHON, "bench/profile_grpo.py", "--shape", "tiny", "--model-dir", str(tmp_path), "--skip", "1",
         "--active", "2", "--max-new-tokens", "16", "--prompts-per-step", "2", "--group", "4", "--ops", "5"],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {}
    for line in proc.stdout.splitlines():
        for phase in ("generation", "rewards", "training (the rest)", "whole step"):
            if line.startswith(phase + " "):
                rows[phase] = float(line[len(phase) :].split()[0])
    assert set(rows) == {"generation", "rewards", "training (the rest)", "whole step"}, proc.stdout
    assert rows["generation"] > 0 and rows["training (the rest)"] > 0
    assert rows["generation"] + rows["rewards"] + rows["training (the rest)"] == pytest.approx(
        rows["whole step"], abs=0.2
    )
