"""On a real Slurm: the tiny cascade as a 2-node job, a requeue and a pre-emption warning in the middle of
a stage, and one job per stage chained by dependencies. Interrupted runs must end with the very weights and
scores of the uninterrupted one.

``.ci/run`` starts a one-host cluster of two nodes (launch/slurm/local-cluster.sh) and runs these with
``CASCADE_REQUIRE_SLURM=1``; elsewhere they are skipped with the reason (no Slurm, no controller).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, subprocess_env, wait_for_checkpoint

pytestmark = pytest.mark.slurm

# sft2 gets enough steps for a signal to land in the middle of it (a few seconds on CPU).
LONG_SFT2 = ["stages.sft2.train.max_steps=24", "stages.sft2.train.save_steps=4"]
CASCADE = ["recipe=tiny-smoke", *LONG_SFT2]
# A stage's result depends only on the stages before it: the first stages of the cascade, run alone,
# must match the full reference run stage for stage.
THROUGH_RM = [*CASCADE, *(f"~stages.{s}" for s in ("rlhf", "if_rl", "math_rl", "code_rl", "swe_rl"))]
THROUGH_SFT2 = [*THROUGH_RM, "~stages.rm", "~benchmarks.chat"]  # chat is judged by rm's model, from rm on
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}


# --------------------------------------------------------------------------------------------------
# Submitting and watching jobs


def job_env() -> dict[str, str]:
    return subprocess_env(CASCADE_CPU_THREADS="1")  # two "nodes" share this host's cores


def submit(tmp: Path, name: str, args: list[str], *options: str) -> list[str]:
    """``python -m pipeline.slurm submit`` on two nodes; returns the job ids."""
    out = subprocess.run(
        [PYTHON, "-m", "pipeline.slurm", "submit", "--nodes", "2", *options, *args,
         f"run.name={name}", f"run.output_dir={tmp / 'runs'}"],
        cwd=tmp, env=job_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "=$(sbatch --parsable" in out.stdout and "cascade.sbatch" in out.stdout  # the command is printed
    return [
        line.split()[2].rstrip(":") for line in out.stdout.splitlines() if line.startswith("submitted job")
    ]


def job(job_id: str) -> dict[str, str]:
    """``scontrol show job`` as a mapping (its one-line form is ``key=value`` pairs)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return dict(word.split("=", 1) for word in out.stdout.split() if "=" in word)


def wait_for_end(job_id: str, timeout_s: float = 420) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = job(job_id)
        if info["JobState"] in FINAL_STATES:
            return info
        time.sleep(1)
    subprocess.run(["scancel", job_id])
    raise AssertionError(f"job {job_id} still {info['JobState']} after {timeout_s:.0f} s")


def wait_running(job_id: str, what: Path, step: int) -> None:
    """Wait until the job's stage has a complete trainer checkpoint of ``step`` (the job still running)."""

    class Job:  # wait_for_checkpoint's view of a process
        def poll(self) -> int | None:
            return None if job(job_id)["JobState"] in ("PENDING", "RUNNING", "CONFIGURING") else 1

    wait_for_checkpoint(Job(), what, step, timeout_s=300)  # type: ignore[arg-type]
    assert job(job_id)["JobState"] == "RUNNING", "the stage ended before it could be interrupted"


def ledger(run: Path) -> dict:
    return json.loads((run / "ledger.json").read_text())


def stages(run: Path) -> dict[str, dict]:
    return {s["name"]: s for s in ledger(run)["stages"]}


def node_logs(run: Path, job_id: str, attempt: int) -> list[str]:
    folder = run / "logs" / f"slurm-{job_id}" / f"attempt-{attempt}"
    return [(folder / f"node-{n}.log").read_text(errors="replace") for n in (0, 1)]


def assert_same_as(reference: Path, run: Path) -> None:
    """Every stage of ``run`` ends with the reference's weights, loss and scores (same seed)."""
    from safetensors.torch import load_file

    ref = stages(reference)
    for name, entry in stages(run).items():
        assert entry["status"] == "done", (name, entry["status"])
        assert entry["scores"] == ref[name]["scores"], name
        assert entry["summary"]["final_loss"] == ref[name]["summary"]["final_loss"], name
        mine = load_file(run / entry["checkpoint"] / "model.safetensors")
        theirs = load_file(reference / ref[name]["checkpoint"] / "model.safetensors")
        assert mine.keys() == theirs.keys() and all(mine[k].equal(theirs[k]) for k in mine), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], float]:
    """The uninterrupted cascade: ``recipe=tiny-smoke`` through cascade.sbatch on two nodes."""
    tmp = tmp_path_factory.mktemp("slurm-reference")
    t0 = time.monotonic()
    (job_id,) = submit(tmp, "reference", CASCADE)
    info = wait_for_end(job_id)
    return tmp / "runs" / "reference", info, time.monotonic() - t0


# --------------------------------------------------------------------------------------------------


def test_two_node_cascade(reference: tuple[Path, dict[str, str], float]) -> None:
    """(a) Two tasks of a 2-node allocation, one `accelerate launch` each, meet on the first node (gloo)."""
    run, info, wall = reference
    assert info["JobState"] == "COMPLETED" and info["NumNodes"] == "2" and info["Restarts"] == "0", info
    data = ledger(run)
    assert data["status"] == "done"
    assert [s["status"] for s in data["stages"]] == ["done"] * 8
    (session,) = data["sessions"]
    assert session["processes"] == 2 and session["exit"] == 0
    assert session["slurm_job"] == info["JobId"] and session["slurm_attempt"] == 0
    node0, node1 = node_logs(run, info["JobId"], 0)
    assert "[8/8] swe_rl · grpo from" in node0  # the main process, on the first node
    assert "Traceback" not in node0 + node1
    assert (run / "logs" / f"slurm-{info['JobId']}.out").read_text().count("exited with status 0") == 1
    print(f"reference job: {wall:.0f} s")


def test_requeue_in_the_middle_of_a_stage(
    tmp_path: Path, reference: tuple[Path, dict[str, str], float]
) -> None:
    """(b) `scontrol requeue` during sft2: SIGTERM, the stage is recorded interrupted at its last checkpoint,
    Slurm runs the job again, it resumes from that checkpoint; sft1 is not retrained."""
    run = tmp_path / "runs" / "requeued"
    (job_id,) = submit(tmp_path, "requeued", THROUGH_RM)
    wait_running(job_id, run / "stages" / "02-sft2" / "checkpoints", 4)
    sft1_weights = run / "stages" / "01-sft1" / "final" / "model.safetensors"
    sft1_mtime = sft1_weights.stat().st_mtime
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
    info = wait_for_end(job_id)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", info

    first, second = ledger(run)["sessions"]
    assert first["slurm_attempt"] == 0 and second["slurm_attempt"] == 1
    assert first["exit"] == 143 and second["exit"] == 0  # 128 + SIGTERM: recorded, not lost
    stop = first["stop"]
    assert stop["reason"] == "SIGTERM" and stop["stage"] == "sft2" and stop["step"] >= 4
    assert not stop["saved_on_stop"]  # the step in flight was abandoned, the last periodic one kept
    by_name = stages(run)
    assert by_name["sft1"]["attempts"] == 1 and sft1_weights.stat().st_mtime == sft1_mtime
    assert by_name["sft2"]["attempts"] == 2 and by_name["sft2"]["summary"]["steps"] == 24
    resumed = node_logs(run, job_id, 1)[0]
    assert (
        "[2/3] sft2 · sft from stages/01-sft1/final · attempt 2, resuming from its last checkpoint" in resumed
    )
    assert "[1/3] sft1 · sft from" not in resumed  # taken as it was
    assert f"stage sft2 resumes from {run / stop['checkpoint']}" in (run / "cascade.log").read_text()
    assert_same_as(reference[0], run)


def test_preemption_warning_saves_and_requeues(
    tmp_path: Path, reference: tuple[Path, dict[str, str], float]
) -> None:
    """(c) The warning (`scancel --signal=USR1 --batch`, as `--signal=B:USR1@…` sends it before the time
    limit): every rank stops after its step, a checkpoint of that step is saved and recorded, all exit 75
    well within the grace period, the job requeues itself and finishes from that step."""
    run = tmp_path / "runs" / "warned"
    (job_id,) = submit(tmp_path, "warned", THROUGH_SFT2, "--grace", "120")
    assert job(job_id)["Requeue"] == "1"
    wait_running(job_id, run / "stages" / "02-sft2" / "checkpoints", 4)
    t0 = time.monotonic()
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True, timeout=30)
    while not ledger(run)["sessions"][0].get("ended") and time.monotonic() - t0 < 120:
        time.sleep(0.2)
    stopped_in = time.monotonic() - t0
    info = wait_for_end(job_id)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", info

    first, second = ledger(run)["sessions"]
    assert first["exit"] == 75 and second["exit"] == 0
    assert stopped_in < 60, f"the ranks took {stopped_in:.0f} s to stop"  # the grace period is 120 s
    stop = first["stop"]
    assert stop["stage"] == "sft2" and stop["saved_on_stop"] and 4 <= stop["step"] < 24
    assert stop["checkpoint"] == f"stages/02-sft2/checkpoints/checkpoint-{stop['step']}"
    batch_log = (run / "logs" / f"slurm-{job_id}.out").read_text()
    assert "pre-emption warning" in batch_log and f"requeueing job {job_id}" in batch_log
    resumed = node_logs(run, job_id, 1)[0]
    assert (
        "[2/2] sft2 · sft from stages/01-sft1/final · attempt 2, resuming from its last checkpoint" in resumed
    )
    # the very step it stopped at (the run's log file has what the console leaves out)
    assert f"stage sft2 resumes from {run / stop['checkpoint']}" in (run / "cascade.log").read_text()
    by_name = stages(run)
    assert by_name["sft1"]["attempts"] == 1 and by_name["sft2"]["attempts"] == 2
    print(f"stopped {stopped_in:.1f} s after the warning, at step {stop['step']}")
    assert_same_as(reference[0], run)


def test_one_job_per_stage_chained(tmp_path: Path, reference: tuple[Path, dict[str, str], float]) -> None:
    """(d) `--per-stage`: a job per stage, each stopping after its stage, the next waiting (afterok)."""
    run = tmp_path / "runs" / "chained"
    ids = submit(tmp_path, "chained", THROUGH_SFT2, "--per-stage")
    assert len(ids) == 2
    assert job(ids[1])["Dependency"].startswith(f"afterok:{ids[0]}")
    infos = [wait_for_end(i) for i in ids]
    assert [i["JobState"] for i in infos] == ["COMPLETED", "COMPLETED"], infos
    assert infos[1]["StartTime"] >= infos[0]["EndTime"]

    data = ledger(run)
    assert data["status"] == "done"
    assert [(s["slurm_job"], s["exit"]) for s in data["sessions"]] == [(ids[0], 0), (ids[1], 0)]
    first, second = node_logs(run, ids[0], 0)[0], node_logs(run, ids[1], 0)[0]
    assert "[1/2] sft1 · sft from" in first and "[2/2]" not in first
    assert "paused after stage sft1 (run.until)" in first
    assert "[2/2] sft2 · sft from" in second and "[1/2] sft1 · sft from" not in second
    assert_same_as(reference[0], run)


def test_a_bad_recipe_fails_before_any_node_starts(tmp_path: Path) -> None:
    """`sbatch cascade.sbatch` by hand with a mistyped key: the batch script validates the recipe before
    srun, and the job fails with Cascade's exit 2 and its one-sentence error."""
    sbatch = ROOT / "launch" / "slurm" / "cascade.sbatch"
    out = subprocess.run(
        ["sbatch", "--parsable", "--nodes", "2", f"--output={tmp_path / 'bad.out'}", str(sbatch),
         "recipe=tiny-smoke", "stages.sft1.train.learning_rat=1"],
        cwd=tmp_path, env={**job_env(), "CASCADE_PYTHON": PYTHON, "CASCADE_ROOT": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    info = wait_for_end(out.stdout.strip())
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "2:0", info
    log = (tmp_path / "bad.out").read_text()
    assert "'stages.sft1.train.learning_rat'" in log and "rendezvous" not in log
