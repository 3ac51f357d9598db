"""Two GPUs: the tiny-smoke cascade under DDP and under DeepSpeed ZeRO-3 in every stage; a ZeRO-3 stage
killed after a checkpoint resumes from it.

Run on a machine with two GPUs: ``pytest -m gpu tests/test_multi_gpu.py`` (skipped with fewer).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import PYTHON, ROOT, free_port, subprocess_env, wait_for_checkpoint
from tests.test_tiny_smoke import STAGES

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs"),
]

ZERO3_JSON = ROOT / "recipes" / "deepspeed" / "zero3.json"
ZERO3 = [f"stages.{s}.train.deepspeed={ZERO3_JSON}" for s in STAGES]


def launch(tmp: Path, name: str, *args: str, wait: bool = True) -> subprocess.Popen:
    log = open(tmp / f"{name}.log", "a")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        [PYTHON, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", free_port(),
         "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "launch" / "cascade.py"),
         f"run.name={name}", f"run.output_dir={tmp}", *args],
        cwd=ROOT, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    if wait:
        proc.wait(timeout=900)
    return proc


def kill_run(run_dir: Path) -> None:
    """SIGKILL the launcher and its workers (torchrun starts each worker in a session of its own)."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if proc.name.isdigit() and str(run_dir) in cmdline and int(proc.name) != os.getpid():
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def ledger(run: Path) -> dict:
    return json.loads((run / "ledger.json").read_text())


@pytest.mark.parametrize(("name", "overrides"), [("ddp", []), ("zero3", ZERO3)])
def test_two_gpu_cascade(tmp_path: Path, name: str, overrides: list[str]) -> None:
    proc = launch(tmp_path, name, "recipe=tiny-smoke", *overrides)
    assert proc.returncode == 0, (tmp_path / f"{name}.log").read_text()[-6000:]
    run = tmp_path / name
    data = ledger(run)
    assert [s["name"] for s in data["stages"]] == STAGES and data["sessions"][0]["processes"] == 2
    for stage in data["stages"]:
        assert stage["status"] == "done", stage
        scores = {b: stage["scores"][b]["score"] for b in ("ifeval", "math", "code")}
        assert all(0.0 <= v <= 1.0 for v in scores.values()) and "swe" in stage["scores"], stage["name"]

    # every stage's checkpoint is whole (ZeRO-3 gathered it when saving) and loads like the base model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(run / "base").state_dict()
    shapes = {k: v.shape for k, v in base.items()}
    for stage in data["stages"]:
        if stage["kind"] == "reward_model":
            continue
        weights = AutoModelForCausalLM.from_pretrained(run / stage["checkpoint"]).state_dict()
        assert {k: v.shape for k, v in weights.items()} == shapes, stage["name"]
        assert all(torch.isfinite(v).all() for v in weights.values()), stage["name"]
        assert any(not torch.equal(v, base[k]) for k, v in weights.items()), stage["name"]


def test_zero3_stage_killed_after_a_checkpoint_resumes(tmp_path: Path) -> None:
    args = (
        f"recipe={ROOT / 'tests' / 'recipes' / 'two-sft.yaml'}",
        f"stages.sft1.train.deepspeed={ZERO3_JSON}",
        f"stages.sft2.train.deepspeed={ZERO3_JSON}",
        "stages.sft2.train.max_steps=300",
        "stages.sft2.train.save_steps=10",
    )
    proc = launch(tmp_path, "kill", *args, wait=False)
    run = tmp_path / "kill"
    wait_for_checkpoint(proc, run / "stages" / "02-sft2" / "checkpoints", 20)
    assert proc.poll() is None, (
        "the run ended before the kill: " + (tmp_path / "kill.log").read_text()[-3000:]
    )
    kill_run(tmp_path)
    proc.wait()
    time.sleep(2)  # let the killed workers' files settle before the relaunch reads them
    assert [s["status"] for s in ledger(run)["stages"]] == ["done", "running"]

    resumed = launch(tmp_path, "kill", *args)
    log = (tmp_path / "kill.log").read_text()
    assert resumed.returncode == 0, log[-6000:]
    sft1, sft2 = ledger(run)["stages"]
    assert sft1["attempts"] == 1 and sft2["attempts"] == 2
    assert sft2["status"] == "done" and sft2["summary"]["steps"] == 300
    run_log = (run / "cascade.log").read_text()  # the details are in the run's log file
    assert "stage sft2 resumes from" in run_log and "checkpoint-" in run_log
