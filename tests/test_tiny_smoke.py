"""The whole tiny cascade (every stage kind, a few steps each) end to end on CPU, as CI runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import PYTHON, ROOT, subprocess_env

STAGES = ["sft1", "sft2", "rm", "rlhf", "if_rl", "math_rl", "code_rl", "swe_rl"]
BENCHMARKS = {"chat": "chat", "ifeval": "instruction", "math": "math", "code": "code", "swe": "swe"}


def test_tiny_smoke_runs_every_stage(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "tiny-smoke"
    proc = subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), "recipe=tiny-smoke", f"run.output_dir={tmp_path / 'runs'}"],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    # the console reads like a report (docs/console.md): it printed ~230 lines before, dicts and warnings
    lines = proc.stderr.strip().splitlines()
    assert len(lines) <= 40, proc.stderr
    assert lines[-1].startswith("done in ") and lines[-1].endswith(f"the report is {run / 'report.md'}"), (
        lines[-1]
    )
    assert sum(line.startswith("[") and " done in " in line for line in lines) == len(STAGES)
    for noise in ("Traceback", "{'loss'", "FutureWarning", "Writing model shards", "WARNING"):
        assert noise not in proc.stderr + proc.stdout, noise
    assert "sft1 step" in (run / "cascade.log").read_text()  # the trainers' metrics are in the log file
    ledger = json.loads((run / "ledger.json").read_text())
    assert [s["name"] for s in ledger["stages"]] == STAGES
    assert all(s["status"] == "done" for s in ledger["stages"])
    by_name = {s["name"]: s for s in ledger["stages"]}
    assert "pairwise_accuracy" in by_name["rm"]["summary"]
    assert by_name["rlhf"]["init_from"] == "stages/02-sft2/final"  # the reward model left the policy alone
    assert [p["name"] for p in by_name["math_rl"]["summary"].get("phases", [])] == ["short", "long"]

    report = json.loads(
        subprocess.run(
            [PYTHON, "-m", "pipeline.report", str(run), "--json"],
            cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300, check=True,
        ).stdout
    )  # fmt: skip
    assert {n: b["domain"] for n, b in report["benchmarks"].items()} == BENCHMARKS
    assert [s["name"] for s in report["stages"]] == ["base", *STAGES]
    for row in report["stages"][1:]:
        assert row["gate"] in ("pass", "regressed"), row
        assert set(row["scores"]) >= {"ifeval", "math", "code", "swe"}
    # the chat benchmark is judged by the reward model from the stage that trains it on
    assert report["stages"][0]["scores"].get("chat") is None
    assert report["stages"][3]["scores"].get("chat") is not None
    # verifiable scores are fractions
    for row in report["stages"]:
        for name in ("ifeval", "math", "code"):
            assert 0.0 <= row["scores"][name] <= 1.0
    assert (run / "report.md").exists() and (run / "report.png").stat().st_size > 10_000


def test_same_seed_same_numbers(tmp_path: Path) -> None:
    """Two CPU runs of the same recipe and seed give the same losses and scores."""
    results = []
    for name in ("a", "b"):
        proc = subprocess.run(
            [PYTHON, str(ROOT / "launch" / "cascade.py"), "recipe=tiny-smoke", f"run.name={name}",
             f"run.output_dir={tmp_path}", "~stages.math_rl", "~stages.code_rl", "~stages.swe_rl"],
            cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        ledger = json.loads((tmp_path / name / "ledger.json").read_text())
        results.append([(s["summary"].get("final_loss"), s["scores"]) for s in ledger["stages"]])
    assert results[0] == results[1]
