"""End to end on CPU: two SFT stages through `accelerate launch`, kill -9 and resume, two processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, free_port, subprocess_env, wait_for_checkpoint

RECIPE = str(ROOT / "tests" / "recipes" / "two-sft.yaml")


def launch(
    tmp: Path, *args: str, processes: int = 1, wait: bool = True, name: str = "e2e"
) -> subprocess.Popen:
    cmd = [
        PYTHON, "-m", "accelerate.commands.launch", *(["--multi_gpu"] if processes > 1 else ["--cpu"]), "--num_processes", str(processes),
        "--num_machines", "1", "--main_process_port", free_port(), "--mixed_precision", "no", "--dynamo_backend", "no",
        str(ROOT / "launch" / "cascade.py"), f"recipe={RECIPE}", f"run.name={name}",
        f"run.output_dir={tmp / 'runs'}", *args,
    ]  # fmt: skip
    log = open(tmp / f"{name}.log", "a")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        cmd, cwd=tmp, env=subprocess_env(OMP_NUM_THREADS="1", CASCADE_HEARTBEAT_S="1"), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    if wait:
        proc.wait(timeout=900)
    return proc


def ledger(run: Path) -> dict:
    return json.loads((run / "ledger.json").read_text())


def stage(run: Path, name: str) -> dict:
    return next(s for s in ledger(run)["stages"] if s["name"] == name)


def test_two_sft_stages_through_accelerate_launch(tmp_path: Path) -> None:
    proc = launch(tmp_path)
    log = (tmp_path / "e2e.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    run = tmp_path / "runs" / "e2e"
    data = ledger(run)
    assert data["status"] == "done" and data["wall_s"] > 0
    for name, steps in (("sft1", 6), ("sft2", 8)):
        entry = stage(run, name)
        assert entry["status"] == "done"
        assert entry["summary"]["steps"] == steps and entry["summary"]["final_loss"] > 0
        assert entry["summary"]["tokens"] > 0 and entry["started"] and entry["ended"]
        assert entry["memory"]["host_peak_rss_gib"] > 0.1 and "gpu_peak_gib" not in entry["memory"]  # CPU
        final = run / entry["checkpoint"]
        assert (final / "config.json").exists() and (final / "model.safetensors").exists()
        assert (final / "tokenizer.json").exists() and (final / "chat_template.jinja").exists()
        assert not (final.parent / "checkpoints").exists()  # trainer checkpoints go when the stage ends
        assert entry["disk"]["final_bytes"] > 0 and entry["disk"]["checkpoints_bytes"] > 0
    # the run directory of ARCHITECTURE.md
    for path in (
        "config.yaml",
        "evals/00-base.json",
        "evals/01-sft1.json",
        "evals/02-sft2.json",
        "report.md",
        "report.png",
    ):
        assert (run / path).exists(), path
    assert stage(run, "sft2")["init_from"] == "stages/01-sft1/final"

    # running the same command again trains nothing and says so
    again = launch(tmp_path)
    assert again.returncode == 0
    assert stage(run, "sft1")["attempts"] == 1 and stage(run, "sft2")["attempts"] == 1
    assert len(ledger(run)["sessions"]) == 2

    # a changed done stage is refused with the way out in one sentence; accelerate launch turns every
    # failure into its own exit status 1, a plain python launch keeps Cascade's exit code 2
    changed = launch(tmp_path, "stages.sft1.train.learning_rate=0.01")
    assert changed.returncode != 0
    assert "run.rerun_from=sft1" in (tmp_path / "e2e.log").read_text()
    plain = subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), f"recipe={RECIPE}", "run.name=e2e",
         f"run.output_dir={tmp_path / 'runs'}", "stages.sft1.train.learning_rate=0.01"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert plain.returncode == 2, plain.stderr[-2000:]
    assert stage(run, "sft1")["status"] == "done"  # nothing finished was lost


def test_kill_during_stage_2_then_resume(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "kill"
    # slow stage 2 down a little so that the kill lands after its first checkpoint and before its end
    args = ("stages.sft2.train.max_steps=100", "stages.sft2.train.save_steps=4")
    proc = launch(tmp_path, *args, wait=False, name="kill")
    wait_for_checkpoint(proc, run / "stages" / "02-sft2" / "checkpoints", 8)
    assert proc.poll() is None, (
        "the run ended before it could be killed: " + (tmp_path / "kill.log").read_text()[-2000:]
    )
    time.sleep(2)  # no ledger verb runs now, in the middle of the stage: only the heartbeat writes
    os.killpg(proc.pid, signal.SIGKILL)
    killed_at = datetime.now(UTC)
    proc.wait()
    killed = ledger(run)
    assert stage(run, "sft1")["status"] == "done" and stage(run, "sft2")["status"] == "running"
    sft1_mtime = (run / "stages/01-sft1/final/model.safetensors").stat().st_mtime
    assert killed["status"] == "running"  # a kill -9 cannot be recorded ...
    # ... but the killed session counts up to its last heartbeat, a second before the kill (heartbeat 1 s)
    assert killed["sessions"][0]["wall_s"] > 0 and "ended" not in killed["sessions"][0]
    last_beat = datetime.strptime(killed["updated"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert (killed_at - last_beat).total_seconds() < 3, (killed["updated"], killed_at)
    # report --json tells that the run is no longer running (its holder is gone)
    report = subprocess.run(
        [PYTHON, "-m", "pipeline.report", str(run), "--json"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert json.loads(report.stdout)["status"] == "interrupted"

    resumed = launch(tmp_path, *args, name="kill")
    log = (tmp_path / "kill.log").read_text()
    assert resumed.returncode == 0, log[-3000:]
    assert stage(run, "sft1")["attempts"] == 1  # stage 1 was not trained again
    assert (run / "stages/01-sft1/final/model.safetensors").stat().st_mtime == sft1_mtime
    sft2 = stage(run, "sft2")
    assert sft2["status"] == "done" and sft2["attempts"] == 2 and sft2["summary"]["steps"] == 100
    assert "sft2 · sft from stages/01-sft1/final · attempt 2, resuming from its last checkpoint" in log
    run_log = (run / "cascade.log").read_text()  # the details are in the run's log file
    assert "stage sft2 resumes from" in run_log and "checkpoint-" in run_log
    sessions = ledger(run)["sessions"]
    assert sessions[0]["wall_s"] == killed["sessions"][0]["wall_s"] and sessions[1]["exit"] == 0
    assert ledger(run)["wall_s"] == pytest.approx(sessions[0]["wall_s"] + sessions[1]["wall_s"], abs=0.02)


def test_two_processes(tmp_path: Path) -> None:
    proc = launch(tmp_path, processes=2, name="ddp")
    log = (tmp_path / "ddp.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    run = tmp_path / "runs" / "ddp"
    data = ledger(run)
    assert data["status"] == "done" and data["sessions"][0]["processes"] == 2
    assert stage(run, "sft2")["summary"]["steps"] == 8

    # sharded evaluation gives the same completions and scores as one process
    final = run / stage(run, "sft2")["checkpoint"]
    outs = {}
    for n in (1, 2):
        out = tmp_path / f"eval{n}.json"
        cmd = [
            PYTHON, "-m", "accelerate.commands.launch", *(["--multi_gpu"] if n > 1 else ["--cpu"]), "--num_processes", str(n), "--num_machines", "1",
            "--main_process_port", free_port(), "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "launch" / "evaluate.py"),
            f"recipe={RECIPE}", f"checkpoint={final}", f"out={out}", f"run.output_dir={tmp_path / 'runs'}",
        ]  # fmt: skip
        res = subprocess.run(
            cmd,
            cwd=tmp_path,
            env=subprocess_env(OMP_NUM_THREADS="1"),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        outs[n] = json.loads(out.read_text())["benchmarks"]["ifeval"]
    assert outs[1]["score"] == outs[2]["score"]
    assert [s["completions"] for s in outs[1]["samples"]] == [s["completions"] for s in outs[2]["samples"]]


def test_unusable_data_stops_before_any_stage(tmp_path: Path) -> None:
    """A stage whose data cannot be used stops the launch before any model loads (exit 2, one sentence)."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\n' * 10)
    proc = subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), f"recipe={RECIPE}", "run.name=bad",
         f"run.output_dir={tmp_path / 'runs'}", f"stages.sft2.data=[{{source: {bad}}}]"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    log = proc.stderr
    assert proc.returncode == 2, log[-2000:]
    last = log.strip().splitlines()[-1]
    assert last.startswith("error: ") and "stage 'sft2'" in last and "dropped 10 of 10 rows" in last, log
    assert not (tmp_path / "runs" / "bad" / "ledger.json").exists()  # nothing trained on the way there


def test_wandb_offline_run_per_cascade(tmp_path: Path) -> None:
    """tracking.mode=offline: one wandb run in the run directory, the resolved recipe as its config."""
    env = subprocess_env()
    env.pop("WANDB_MODE")  # the test environment disables wandb; this test wants the recipe's mode
    proc = subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), f"recipe={RECIPE}", "run.name=wb",
         f"run.output_dir={tmp_path / 'runs'}", "tracking.mode=offline", "~benchmarks"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = list((tmp_path / "runs" / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    data = (runs[0] / f"run-{runs[0].name.rsplit('-', 1)[-1]}.wandb").read_bytes()
    assert b"tokenizer_corpus_rows" in data  # the resolved recipe is the run's config
    assert b"sft1/loss" in data and b"sft2/loss" in data  # metrics namespaced by stage
    assert b"cascade/report" in data  # the report table
    assert (
        "wandb:" not in proc.stderr
    )  # wandb's own messages (an offline run's missing URL) stay off the console


def test_lora_and_packing_save_a_merged_plain_checkpoint(tmp_path: Path) -> None:
    proc = subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), f"recipe={RECIPE}", "run.name=lora",
         f"run.output_dir={tmp_path / 'runs'}", "stages.sft2.lora.enabled=true", "stages.sft2.lora.r=4",
         "stages.sft2.packing=true", "~benchmarks"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = tmp_path / "runs" / "lora" / "stages" / "02-sft2" / "final"
    assert not (final / "adapter_config.json").exists()  # merged: later stages load a plain model
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(final)
    before = AutoModelForCausalLM.from_pretrained(tmp_path / "runs" / "lora" / "stages" / "01-sft1" / "final")
    changed = [n for n, p in merged.named_parameters() if not p.equal(dict(before.named_parameters())[n])]
    assert changed  # the adapters' update is in the merged weights


def test_a_run_directory_in_use_is_refused(tmp_path: Path) -> None:
    """A second launch on a run that another launch holds stops with exit 2; a left-over lock file does not."""
    run = tmp_path / "runs" / "busy"
    run.mkdir(parents=True)
    holder = subprocess.Popen(
        [PYTHON, "-c", "import fcntl, sys, time\nf = open(sys.argv[1], 'a+')\nfcntl.flock(f, fcntl.LOCK_EX)\n"
         "f.write('pid 4242 on node7'); f.flush(); print('held', flush=True); time.sleep(120)", str(run / ".lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        cmd = [PYTHON, str(ROOT / "launch" / "cascade.py"), f"recipe={RECIPE}", "run.name=busy",
               f"run.output_dir={tmp_path / 'runs'}", "~stages.sft2"]  # fmt: skip
        busy = subprocess.run(
            cmd, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300
        )
        assert busy.returncode == 2, busy.stderr[-2000:]
        assert "is in use by pid 4242 on node7" in busy.stderr and "run.name" in busy.stderr
        assert not (run / "ledger.json").exists()  # nothing of the other launch's run was touched
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone and its lock with it; the file it left behind does not block
    free = subprocess.run(
        cmd, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert free.returncode == 0, free.stderr[-2000:]
    assert ledger(run)["status"] == "done"
