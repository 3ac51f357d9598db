"""The ledger: its verbs, resume decisions that are the same for the same inputs, and ledgers of every version."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline import ledger as L
from pipeline.gates import GateResult
from pipeline.outcome import Ending, stopped
from pipeline.run_state import FINISHED, RunState, StageEntry, Status, StopRecord
from pipeline.rundir import RunDir
from pipeline.schema import ConfigError

STAGES = [("sft1", "sft", None), ("sft2", "sft", None), ("math_rl", "grpo", "math")]
HASHES = {"sft1": "h1", "sft2": "h2", "math_rl": "h3"}


def ledger_with(*statuses: str, hashes: dict[str, str] = HASHES) -> RunState:
    state = L.new_state("run", "tiny")
    for (name, kind, domain), status in zip(STAGES, statuses, strict=False):
        index = len(state.stages) + 1
        entry = StageEntry(name=name, index=index, kind=kind, domain=domain, config_hash=hashes[name])
        entry.status, entry.checkpoint = status, f"stages/{name}/final"
        state.stages.append(entry)
    return state


def ok(entry: StageEntry) -> bool:
    return True


# (ledger statuses, rerun_from, expected todo, expected reused, expected stale)
DECISIONS = [
    # a fresh run trains everything
    ((), None, ["sft1", "sft2", "math_rl"], [], []),
    # stage 1 done, stage 2 interrupted while running: stage 1 kept, stage 2 resumed
    ((Status.DONE, Status.RUNNING), None, ["sft2", "math_rl"], ["sft1"], []),
    # a failed stage is trained again
    ((Status.DONE, Status.FAILED), None, ["sft2", "math_rl"], ["sft1"], []),
    # everything done: nothing to do
    ((Status.DONE, Status.DONE, Status.DONE), None, [], ["sft1", "sft2", "math_rl"], []),
    # a stage stopped by the gate keeps its checkpoint and counts as finished
    ((Status.DONE, Status.DONE, Status.REGRESSED), None, [], ["sft1", "sft2", "math_rl"], []),
    # rerun_from marks that stage and every later finished one stale
    ((Status.DONE, Status.DONE, Status.DONE), "sft2", ["sft2", "math_rl"], ["sft1"], ["sft2", "math_rl"]),
]


@pytest.mark.parametrize(("statuses", "rerun", "todo", "reused", "stale"), DECISIONS)
def test_resume_decisions(statuses, rerun, todo, reused, stale) -> None:
    previous = ledger_with(*statuses) if statuses else None
    plan = L.plan(previous, "tiny", STAGES, HASHES, rerun, ok)
    assert (plan.todo, plan.reused, plan.stale) == (todo, reused, stale)
    # the same inputs give the same plan (every process decides alike)
    again = L.plan(previous, "tiny", STAGES, HASHES, rerun, ok)
    assert again.todo == plan.todo and again.stages == plan.stages


def test_interrupted_stage_resumes_only_with_unchanged_config() -> None:
    previous = ledger_with(Status.DONE, Status.RUNNING)
    same = L.plan(previous, "tiny", STAGES, HASHES, None, ok)
    assert same.stages[1].resumable is True
    changed = L.plan(previous, "tiny", STAGES, {**HASHES, "sft2": "new"}, None, ok)
    assert changed.stages[1].resumable is False


# (previous ledger, recipe, hashes, rerun_from, checkpoint check, message fragment)
MISMATCHES = [
    # a done stage's config changed: stop, name the stage and the way out
    (ledger_with(Status.DONE), "tiny", {**HASHES, "sft1": "changed"}, None, ok, "run.rerun_from=sft1"),
    # the run directory holds another recipe
    (ledger_with(Status.DONE), "other", HASHES, None, ok, "holds a run of recipe 'tiny'"),
    # a done stage's checkpoint vanished
    (ledger_with(Status.DONE), "tiny", HASHES, None, lambda e: False, "missing or incomplete"),
]


@pytest.mark.parametrize(("previous", "recipe", "hashes", "rerun", "check", "fragment"), MISMATCHES)
def test_no_silent_mismatch(previous, recipe, hashes, rerun, check, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        L.plan(previous, recipe, STAGES, hashes, rerun, check)


def test_removed_finished_stage_is_refused() -> None:
    previous = ledger_with(Status.DONE, Status.DONE)
    with pytest.raises(ConfigError, match="no longer has"):
        L.plan(previous, "tiny", [("sft1", "sft", None)], HASHES, None, ok)


# --------------------------------------------------------------------------------------------------
# Ledgers of every version

FIXTURE = Path(__file__).parent / "fixtures" / "ledger-v1-tiny-smoke.json"
"""ledger.json of `recipe=tiny-smoke` as Cascade wrote it before the run state was typed (stages 1-6 of
the run, scores and gate checks trimmed to three benchmarks): every field the runner writes, GRPO's
``phases`` (recorded by the stage itself), gate verdicts with their message."""


def fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def oldest(data: dict) -> dict:
    """The same run as the first ledgers wrote it: scores without domain/metric, gate checks without
    metric, no gate message, and a session killed before sessions carried their own wall_s."""
    for row in [data["base"], *data["stages"]]:
        for score in row.get("scores", {}).values():
            score.pop("domain"), score.pop("metric")
        if row.get("gate"):
            row["gate"].pop("message")
            for check in row["gate"]["benchmarks"].values():
                check.pop("metric")
    data["sessions"] = [{"started": "2026-01-01T00:00:00Z", "processes": 1}, *data["sessions"]]
    return data


def test_the_current_ledger_round_trips_exactly() -> None:
    data = fixture()
    state = RunState.from_json(data)
    assert state.to_json() == data and list(state.to_json()) == list(data)  # same keys, same order
    math_rl = state.stage("math_rl")
    assert isinstance(math_rl.gate, GateResult) and math_rl.gate.action == "continue"
    assert math_rl.gate.message.startswith("Stage math_rl passed the gate")
    assert [p["name"] for p in math_rl.extra["phases"]] == ["short", "long"]  # recorded by the stage
    assert state.stage("rm").scores["chat"].score == pytest.approx(0.37496881932)
    assert state.base.scores["swe"].metric == "mean_reward" and state.sessions[0].exit == 0


def test_the_oldest_ledger_reads_and_writes_back_what_it_holds() -> None:
    state = RunState.from_json(oldest(fixture()))
    assert state.stage("sft1").scores["ifeval"].domain is None and state.stage("sft1").gate.message == ""
    assert state.sessions[0].wall_s is None
    again = RunState.from_json(json.loads(json.dumps(state.to_json())))
    assert again.to_json() == state.to_json()
    assert "ended" not in state.to_json()["sessions"][0]  # a killed session stays one


def test_unknown_keys_and_an_unreadable_gate_are_kept() -> None:
    data = fixture()
    data["from_a_newer_cascade"] = {"x": 1}
    data["stages"][0]["new_field"] = [1, 2]
    data["stages"][1]["gate"] = {"verdict": "pass"}  # damaged by hand: not a whole verdict
    state = RunState.from_json(data)
    assert state.stages[1].gate is None
    assert state.to_json() == data


def test_bare_number_scores_read_as_scores() -> None:
    data = fixture()
    data["stages"][0]["scores"] = {"ifeval": 0.25}
    assert RunState.from_json(data).stages[0].scores["ifeval"].score == 0.25


@pytest.mark.parametrize("make", [fixture, lambda: oldest(fixture())])
def test_ledgers_of_earlier_versions_resume(make) -> None:
    """Same recipe: every finished stage is reused; one killed mid-stage resumes from its checkpoints."""
    data = make()
    stages = [(s["name"], s["kind"], s["domain"]) for s in data["stages"]]
    hashes = {s["name"]: s["config_hash"] for s in data["stages"]}
    done = L.plan(RunState.from_json(data), "tiny-smoke", stages, hashes, None, ok)
    assert done.reused == [s[0] for s in stages] and done.todo == []
    data["stages"][-1]["status"] = "running"
    killed = L.plan(RunState.from_json(data), "tiny-smoke", stages, hashes, None, ok)
    assert killed.todo == ["math_rl"] and killed.stages[-1].resumable is True
    assert killed.stages[-1].attempts == 1


@pytest.mark.parametrize("make", [fixture, lambda: oldest(fixture())])
def test_the_report_reads_ledgers_of_earlier_versions(tmp_path: Path, make) -> None:
    from pipeline.report import build_report

    (tmp_path / "ledger.json").write_text(json.dumps(make()))
    report = build_report(tmp_path)  # the eval files are absent: the ledger alone gives the table
    assert [row["name"] for row in report["stages"]] == [
        "base",
        "sft1",
        "sft2",
        "rm",
        "rlhf",
        "if_rl",
        "math_rl",
    ]
    assert report["stages"][3]["scores"]["chat"] == pytest.approx(0.37496881932)
    assert report["stages"][6]["gate"] == "pass" and report["benchmarks"]["swe"]["domain"] == "swe"


# --------------------------------------------------------------------------------------------------
# The verbs


def written(run: RunDir) -> dict:
    return json.loads(run.ledger.read_text())


def test_each_verb_is_written_at_once(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    state = L.new_state("run", "tiny")
    state.stages = L.plan(None, "tiny", STAGES, HASHES, None, ok).stages
    ledger = L.Ledger(run, state, writer=True)
    ledger.open_session(processes=2)
    assert written(run)["status"] == "running" and written(run)["sessions"][0]["processes"] == 2

    assert ledger.start_stage("sft1", init_from="base") is False  # a first attempt resumes nothing
    entry = written(run)["stages"][0]
    assert (entry["status"], entry["attempts"], entry["init_from"]) == ("running", 1, "base")
    ledger.record("sft1", {"phases": [{"name": "short"}]})
    assert written(run)["stages"][0]["phases"] == [{"name": "short"}]
    ledger.finish_training("sft1", {"steps": 4}, "stages/01-sft1/final", 1.5)
    assert written(run)["stages"][0]["checkpoint"] == "stages/01-sft1/final"
    ledger.accept_stage("sft1", next_init="stages/01-sft1/final", wall_s=2.0)
    entry = written(run)["stages"][0]
    assert (entry["status"], entry["next_init"], entry["wall_s"]) == ("done", "stages/01-sft1/final", 2.0)

    ledger.start_stage("sft2", init_from="stages/01-sft1/final")
    ledger.fail_stage("sft2", "RuntimeError: boom", "Traceback …")
    data = written(run)
    assert data["stages"][1]["status"] == "failed" and data["stages"][1]["error"] == "RuntimeError: boom"
    ledger.end_session(Ending(1, Status.FAILED, "stage sft2 crashed (RuntimeError: boom)", crashed=True))
    data = written(run)
    session = data["sessions"][0]
    assert session["exit"] == 1 and session["ended"] and data["status"] == "failed"
    assert data["error"] == "stage sft2 crashed (RuntimeError: boom)"


def test_a_stage_stopped_by_the_gate_keeps_its_checkpoint(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    state = L.new_state("run", "tiny")
    state.stages = L.plan(None, "tiny", STAGES, HASHES, None, ok).stages
    ledger = L.Ledger(run, state, writer=True)
    ledger.start_stage("sft1", init_from="base")
    ledger.finish_training("sft1", {}, "stages/01-sft1/final", 1.0)
    ledger.stop_stage("sft1", wall_s=3.0)
    data = written(run)
    assert data["status"] == "regressed" and data["stages"][0]["status"] == "regressed"
    assert data["stages"][0]["next_init"] == "stages/01-sft1/final" and Status.REGRESSED in FINISHED
    # the next launch goes on with gate.policy=rollback: the stage is done and discarded
    ledger.settle_regression("sft1", discard=True, next_init="base")
    entry = written(run)["stages"][0]
    assert (entry["status"], entry["discarded"], entry["next_init"]) == ("done", True, "base")


def test_a_reader_process_writes_nothing(tmp_path: Path) -> None:
    ledger = L.Ledger(RunDir(tmp_path), L.new_state("run", "tiny"), writer=False)
    ledger.open_session(processes=1)
    assert not (tmp_path / "ledger.json").exists()


def test_a_ledger_that_is_not_json_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "ledger.json").write_text("{oops")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        L.read_state(tmp_path)


# --------------------------------------------------------------------------------------------------
# How a session ends, its time, and who may read the files


def _ledger(tmp_path: Path) -> L.Ledger:
    state = L.new_state("run", "tiny")
    state.stages = L.plan(None, "tiny", STAGES, HASHES, None, ok).stages
    return L.Ledger(RunDir(tmp_path), state, writer=True)


def test_the_heartbeat_keeps_a_killed_sessions_time_within_seconds(tmp_path: Path) -> None:
    # Time was counted only at ledger writes: a launch killed 11 s into a stage recorded 0.05 s.
    ledger = _ledger(tmp_path)
    ledger.open_session(processes=1, heartbeat_s=0.1)
    ledger.start_stage("sft1", init_from="base")
    first = written(RunDir(tmp_path))["sessions"][0]["wall_s"]
    import time

    time.sleep(0.8)  # no verb runs: only the heartbeat writes
    data = written(RunDir(tmp_path))
    assert data["sessions"][0]["wall_s"] >= first + 0.5 and data["wall_s"] == data["sessions"][0]["wall_s"]
    assert "ended" not in data["sessions"][0]  # what a kill -9 leaves: the time, no end
    ledger.end_session(Ending(0, Status.DONE, "done"))
    assert ledger._heartbeat is None


def test_heartbeat_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CASCADE_HEARTBEAT_S", raising=False)
    assert L.heartbeat_seconds() == L.HEARTBEAT_S
    monkeypatch.setenv("CASCADE_HEARTBEAT_S", "0")
    assert L.heartbeat_seconds() == 0.0
    monkeypatch.setenv("CASCADE_HEARTBEAT_S", "soon")
    with pytest.raises(ConfigError, match="CASCADE_HEARTBEAT_S must be a number of seconds, got 'soon'"):
        L.heartbeat_seconds()


def test_an_interrupted_stage_and_run_say_so(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.open_session(processes=1)
    ledger.start_stage("sft1", init_from="base")
    stop = StopRecord(
        reason="SIGINT", stage="sft1", step=6, checkpoint="stages/01-sft1/checkpoints/checkpoint-6"
    )
    ledger.interrupt_stage("sft1", stop)
    ledger.run_interrupted(stop)
    sentence = stopped("SIGINT", 130, "sft1", 6, stop.checkpoint).sentence
    ledger.end_session(Ending(130, Status.INTERRUPTED, sentence))
    data = written(RunDir(tmp_path))
    assert (data["status"], data["error"], data["sessions"][0]["exit"]) == ("interrupted", sentence, 130)
    assert data["stages"][0]["status"] == "interrupted" and data["stages"][0]["stop"] == stop.to_json()
    assert data["sessions"][0]["stop"] == stop.to_json()
    # the next launch resumes it like any unfinished stage
    again = L.plan(RunState.from_json(data), "tiny", STAGES, HASHES, None, ok)
    assert again.todo[0] == "sft1" and again.stages[0].resumable is True


def test_a_new_session_clears_the_last_error(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.open_session(processes=1)
    ledger.end_session(Ending(2, Status.FAILED, "stage sft1: bad data"))
    ledger.open_session(processes=1)
    data = written(RunDir(tmp_path))
    assert data["status"] == "running" and "error" not in data


def test_the_last_write_of_a_launch_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # On a full disk the session's end cannot be written; the launch must still end with its sentence.
    import errno

    ledger = _ledger(tmp_path)
    ledger.open_session(processes=1)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(L, "write_json", full)
    ledger.end_session(Ending(2, Status.FAILED, "the disk is full"))  # no exception
    assert ledger.state.status == "failed"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_run_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    # ledger.json was created 0600 by the temporary file of the atomic write, whatever the umask said.
    import os
    import stat

    old = os.umask(umask)
    try:
        ledger = _ledger(tmp_path)
        ledger.open_session(processes=1)
        from pipeline.atomic import write_text

        write_text(tmp_path / "report.md", "# report\n")
    finally:
        os.umask(old)
    for name in ("ledger.json", "report.md"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_a_lock_whose_holder_is_gone_or_a_zombie(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from pipeline.runlock import holder_gone

    lock = tmp_path / ".lock"
    host = socket.gethostname()
    lock.write_text(f"pid {os.getpid()} on {host}\n")
    assert holder_gone(lock) is False  # this process: alive
    lock.write_text(f"pid {os.getpid()} on another-host\n")
    assert holder_gone(lock) is False  # another machine: given the benefit of the doubt
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        pass  # exited, not yet reaped: what a killed launch whose parent died leaves in a container
    lock.write_text(f"pid {zombie.pid} on {host}\n")
    assert holder_gone(lock) is True
    zombie.wait()
    assert holder_gone(lock) is True  # reaped: no such process
    lock.write_text("")
    assert holder_gone(lock) is False
