"""The SFT profiler runs end to end on CPU (the tiny shape) and reports the profiled steps."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import PYTHON, ROOT, subprocess_env


def test_profile_sft_reports_its_steps(tmp_path: Path) -> None:
    proc = subprocess.run(
        [PYTHON, "bench/profile_sft.py", "--shape", "tiny", "--model-dir", str(tmp_path),
         "--skip", "1", "--active", "2", "--batch", "2", "--max-length", "128", "--rows", "5"],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "variant cascade-packed, batch 2, max_length 128:" in proc.stdout
    assert "aten::mm" in proc.stdout  # the operator table, CPU time on this machine
