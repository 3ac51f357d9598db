"""Stopping early without losing work (pipeline.preemption): the deadline's format, the stop request, and
end to end on CPU: a warning and a SIGTERM in the middle of a stage, each resumed, end with the very weights
and scores of an uninterrupted run; run.until pauses a run; a requeued Slurm attempt takes over the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.preemption import EXIT_PREEMPTED, StopRequest, parse_duration
from pipeline.run_state import Session
from pipeline.schema import ConfigError
from pipeline.slurm import SlurmJob, earlier_attempt, exit_status, lock_owner_suffix
from tests.conftest import PYTHON, ROOT, subprocess_env, wait_for_checkpoint

RECIPE = str(ROOT / "tests" / "recipes" / "two-sft.yaml")
LONG_SFT2 = ("stages.sft2.train.max_steps=24", "stages.sft2.train.save_steps=4")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3h50m", 13800),  # units, largest first
        ("90m", 5400),
        ("45s", 45),
        ("1d", 86400),
        ("1.5h", 5400),  # a fraction of a unit
        ("1h30m15s", 5415),
        ("03:50:00", 13800),  # Slurm's HH:MM:SS, as in --time
        ("1-00:00:00", 86400),  # Slurm's D-HH:MM:SS
        (" 2h ", 7200),  # spaces around are fine
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("90", "must be a duration such as"),  # a bare number: minutes to Slurm, seconds to most people
        ("", "must be a duration such as"),
        ("3x", "must be a duration such as"),
        ("2m3h", "must be a duration such as"),  # units out of order
        ("01:60:00", "60 or more"),
        ("0s", "longer than zero"),
    ],
)
def test_bad_durations_are_one_sentence_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_duration(text, "run.deadline")
    assert "'run.deadline'" in str(err.value)


def test_recipe_keys_are_checked_when_the_recipe_loads() -> None:
    from pipeline.config import load_recipe

    recipe = load_recipe(RECIPE, ["run.deadline=3h50m", "run.until=sft1"])
    assert (recipe.run.deadline, recipe.run.until) == ("3h50m", "sft1")
    with pytest.raises(ConfigError, match="key 'run.deadline' must be a duration"):
        load_recipe(RECIPE, ["run.deadline=90"])
    with pytest.raises(ConfigError, match="key 'run.until' names stage 'sft3'.*did you mean 'sft2'"):
        load_recipe(RECIPE, ["run.until=sft3"])


def test_stop_request_reasons(tmp_path: Path) -> None:
    stop_file = tmp_path / "stop-request"
    request = StopRequest.from_env(None, {"CASCADE_STOP_FILE": str(stop_file)})
    assert request.local_reason() is None and request.agreed() is None  # one process: its own reason
    stop_file.touch()
    assert request.agreed() == "warning" and request.describe("warning") == "stop file"
    late = StopRequest.from_env("1h", {})
    assert late.local_reason() is None
    late.t0 -= 3601
    assert late.local_reason() == "deadline" and "3600s" in late.describe("deadline")
    warned = StopRequest()
    warned.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert warned.local_reason() == "warning" and warned.describe("warning") == "SIGUSR1"
    finally:
        warned.uninstall()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


@pytest.mark.parametrize(
    ("holder", "env", "earlier"),
    [
        ("pid 1 on n1 (slurm job 7 attempt 0)", {"SLURM_JOB_ID": "7", "SLURM_RESTART_COUNT": "1"}, True),
        ("pid 1 on n1 (slurm job 7 attempt 2)", {"SLURM_JOB_ID": "7", "SLURM_RESTART_COUNT": "3"}, True),
        # the same attempt, a later one, another job, no job: a live holder, never taken over
        ("pid 1 on n1 (slurm job 7 attempt 1)", {"SLURM_JOB_ID": "7", "SLURM_RESTART_COUNT": "1"}, False),
        ("pid 1 on n1 (slurm job 7 attempt 0)", {"SLURM_JOB_ID": "8", "SLURM_RESTART_COUNT": "1"}, False),
        ("pid 1 on n1 (slurm job 7 attempt 0)", {}, False),
        ("pid 1 on n1", {"SLURM_JOB_ID": "7", "SLURM_RESTART_COUNT": "1"}, False),
    ],
)
def test_a_requeued_attempt_recognises_its_predecessor(
    holder: str, env: dict[str, str], earlier: bool
) -> None:
    assert earlier_attempt(holder, env) is earlier


def test_sessions_name_their_slurm_attempt() -> None:
    env = {"SLURM_JOB_ID": "7", "SLURM_RESTART_COUNT": "2"}
    assert lock_owner_suffix(env) == " (slurm job 7 attempt 2)" and lock_owner_suffix({}) == ""
    sessions = [Session(slurm_job="7", slurm_attempt=1, exit=75), Session(slurm_job="7", slurm_attempt=2)]
    assert exit_status(sessions, SlurmJob("7", 1)) == 75
    assert exit_status(sessions, SlurmJob("7", 2)) is None  # killed before it could close
    assert exit_status(sessions, SlurmJob("9", 0)) is None


# --------------------------------------------------------------------------------------------------
# End to end on CPU


def start(tmp: Path, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    log = open(tmp / f"{name}.log", "a")  # noqa: SIM115 - handed to the child process
    return subprocess.Popen(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), f"recipe={RECIPE}", f"run.name={name}",
         f"run.output_dir={tmp / 'runs'}", *args],
        cwd=tmp, env=env or subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def ledger(run: Path) -> dict:
    return json.loads((run / "ledger.json").read_text())


def stages(run: Path) -> dict[str, dict]:
    return {s["name"]: s for s in ledger(run)["stages"]}


def interrupt(tmp: Path, name: str, sig: int, after_step: int) -> int:
    """Launch, send ``sig`` once stage 2 has a checkpoint of ``after_step``, return the exit status."""
    proc = start(tmp, name, *LONG_SFT2)
    wait_for_checkpoint(proc, tmp / "runs" / name / "stages" / "02-sft2" / "checkpoints", after_step)
    assert proc.poll() is None, (tmp / f"{name}.log").read_text()[-3000:]
    proc.send_signal(sig)
    return proc.wait(timeout=300)


def test_warning_and_sigterm_mid_stage_resume_to_the_same_numbers(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    reference = start(tmp_path, "ref", *LONG_SFT2)
    assert reference.wait(timeout=600) == 0, (tmp_path / "ref.log").read_text()[-3000:]
    run = tmp_path / "runs" / "stopped"

    # the warning: the step in flight ends, a checkpoint of it is saved and recorded, exit 75
    assert interrupt(tmp_path, "stopped", signal.SIGUSR1, 4) == EXIT_PREEMPTED
    data = ledger(run)
    assert data["status"] == "interrupted" and data["sessions"][0]["exit"] == EXIT_PREEMPTED
    sft2 = stages(run)["sft2"]
    stop = sft2["stop"]
    assert sft2["status"] == "interrupted" and stop["reason"] == "SIGUSR1" and stop["saved_on_stop"]
    assert 4 <= stop["step"] < 24 and (run / stop["checkpoint"] / "trainer_state.json").exists()
    assert stop["checkpoint"] == f"stages/02-sft2/checkpoints/checkpoint-{stop['step']}"

    # SIGTERM: the step in flight is dropped; the stage resumes from its last periodic checkpoint
    log = tmp_path / "stopped.log"
    assert interrupt(tmp_path, "stopped", signal.SIGTERM, stop["step"] + 4) == 128 + signal.SIGTERM
    # the run's log file holds what the console leaves out (pipeline.console)
    assert f"stage sft2 resumes from {run / stop['checkpoint']}" in (run / "cascade.log").read_text()
    term = stages(run)["sft2"]["stop"]
    assert term["reason"] == "SIGTERM" and not term["saved_on_stop"] and term["step"] % 4 == 0
    assert ledger(run)["sessions"][1]["stop"] == term  # the session keeps the record when the stage goes on

    resumed = start(tmp_path, "stopped", *LONG_SFT2)
    assert resumed.wait(timeout=600) == 0, log.read_text()[-3000:]
    ref, done = stages(tmp_path / "runs" / "ref"), stages(run)
    assert done["sft1"]["attempts"] == 1 and done["sft2"]["attempts"] == 3
    assert [s["exit"] for s in ledger(run)["sessions"]] == [75, 143, 0]
    for name in ("sft1", "sft2"):
        assert done[name]["scores"] == ref[name]["scores"]
        assert done[name]["summary"]["final_loss"] == ref[name]["summary"]["final_loss"]
        mine = load_file(run / done[name]["checkpoint"] / "model.safetensors")
        theirs = load_file(tmp_path / "runs" / "ref" / ref[name]["checkpoint"] / "model.safetensors")
        assert all(mine[k].equal(theirs[k]) for k in theirs), name


def test_until_pauses_after_a_stage_and_the_next_launch_goes_on(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "paused"
    assert start(tmp_path, "paused", "run.until=sft1").wait(timeout=600) == 0
    assert ledger(run)["status"] == "paused"
    assert [s["status"] for s in ledger(run)["stages"]] == ["done", "pending"]
    assert "paused after stage sft1 (run.until)" in (tmp_path / "paused.log").read_text()
    assert start(tmp_path, "paused").wait(timeout=600) == 0
    assert ledger(run)["status"] == "done" and stages(run)["sft1"]["attempts"] == 1


def test_deadline_and_a_lock_left_by_an_earlier_attempt(tmp_path: Path) -> None:
    """A requeued attempt takes over the lock its dead predecessor still holds (another job may not);
    a deadline reached before a stage starts stops the run there, with exit 75."""
    run = tmp_path / "runs" / "late"
    run.mkdir(parents=True)
    holder = subprocess.Popen(
        [PYTHON, "-c", "import fcntl, sys, time\nf = open(sys.argv[1], 'a+')\nfcntl.flock(f, fcntl.LOCK_EX)\n"
         "f.write('pid 4242 on node7 (slurm job 99 attempt 0)'); f.flush(); print('held', flush=True); time.sleep(300)",
         str(run / ".lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        other_job = subprocess_env(SLURM_JOB_ID="98", SLURM_RESTART_COUNT="1")
        assert start(tmp_path, "late", env=other_job).wait(timeout=300) == 2
        assert "in use by pid 4242 on node7 (slurm job 99 attempt 0)" in (tmp_path / "late.log").read_text()

        requeued = subprocess_env(SLURM_JOB_ID="99", SLURM_RESTART_COUNT="1")
        t0 = time.monotonic()
        assert start(tmp_path, "late", "run.deadline=1s", env=requeued).wait(timeout=300) == EXIT_PREEMPTED
        assert time.monotonic() - t0 < 120
    finally:
        holder.kill()
        holder.wait()
    assert "between stages" in (tmp_path / "late.log").read_text()  # the last sentence, on the console
    assert "an earlier attempt of this job: taking it over" in (run / "cascade.log").read_text()
    data = ledger(run)
    assert data["status"] == "interrupted" and [s["status"] for s in data["stages"]] == ["pending", "pending"]
    (session,) = data["sessions"]
    assert (session["slurm_job"], session["slurm_attempt"], session["exit"]) == ("99", 1, 75)
    assert session["stop"] == {"reason": "run.deadline (1s after the launch)"}  # no stage was running
