"""The ledger: atomic writes survive a kill, and resume decisions are the same for the same inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline import ledger as L
from pipeline.schema import ConfigError

STAGES = [("sft1", "sft", None), ("sft2", "sft", None), ("math_rl", "grpo", "math")]
HASHES = {"sft1": "h1", "sft2": "h2", "math_rl": "h3"}


def ledger_with(*statuses: str, hashes: dict[str, str] = HASHES) -> dict:
    data = L.Ledger.new(Path("."), "run", "tiny", [])
    for (name, kind, domain), status in zip(STAGES, statuses, strict=False):
        entry = L.stage_entry(name, len(data["stages"]) + 1, kind, domain, hashes[name])
        entry["status"] = status
        entry["checkpoint"] = f"stages/{name}/final"
        data["stages"].append(entry)
    return data


def ok(entry: dict) -> bool:
    return True


# (ledger statuses, rerun_from, expected todo, expected reused, expected stale)
DECISIONS = [
    # a fresh run trains everything
    ((), None, ["sft1", "sft2", "math_rl"], [], []),
    # stage 1 done, stage 2 interrupted while running: stage 1 kept, stage 2 resumed
    ((L.DONE, L.RUNNING), None, ["sft2", "math_rl"], ["sft1"], []),
    # a failed stage is trained again
    ((L.DONE, L.FAILED), None, ["sft2", "math_rl"], ["sft1"], []),
    # everything done: nothing to do
    ((L.DONE, L.DONE, L.DONE), None, [], ["sft1", "sft2", "math_rl"], []),
    # a stage stopped by the gate keeps its checkpoint and counts as finished
    ((L.DONE, L.DONE, L.REGRESSED), None, [], ["sft1", "sft2", "math_rl"], []),
    # rerun_from marks that stage and every later finished one stale
    ((L.DONE, L.DONE, L.DONE), "sft2", ["sft2", "math_rl"], ["sft1"], ["sft2", "math_rl"]),
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
    previous = ledger_with(L.DONE, L.RUNNING)
    same = L.plan(previous, "tiny", STAGES, HASHES, None, ok)
    assert same.stages[1]["resumable"] is True
    changed = L.plan(previous, "tiny", STAGES, {**HASHES, "sft2": "new"}, None, ok)
    assert changed.stages[1]["resumable"] is False


# (previous ledger, recipe, hashes, rerun_from, checkpoint check, message fragment)
MISMATCHES = [
    # a done stage's config changed: stop, name the stage and the way out
    (ledger_with(L.DONE), "tiny", {**HASHES, "sft1": "changed"}, None, ok, "run.rerun_from=sft1"),
    # the run directory holds another recipe
    (ledger_with(L.DONE), "other", HASHES, None, ok, "holds a run of recipe 'tiny'"),
    # a done stage's checkpoint vanished
    (ledger_with(L.DONE), "tiny", HASHES, None, lambda e: False, "missing or incomplete"),
]


@pytest.mark.parametrize(("previous", "recipe", "hashes", "rerun", "check", "fragment"), MISMATCHES)
def test_no_silent_mismatch(previous, recipe, hashes, rerun, check, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        L.plan(previous, recipe, STAGES, hashes, rerun, check)


def test_removed_finished_stage_is_refused() -> None:
    previous = ledger_with(L.DONE, L.DONE)
    with pytest.raises(ConfigError, match="no longer has"):
        L.plan(previous, "tiny", [("sft1", "sft", None)], HASHES, None, ok)


def test_atomic_write_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    L.atomic_write_json(path, {"a": 1})
    L.atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.json"]  # no temp files left


def test_kill_during_writes_leaves_a_valid_ledger(tmp_path: Path) -> None:
    """SIGKILL a process that rewrites a large ledger in a loop; the file always parses."""
    path = tmp_path / "ledger.json"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from pipeline.ledger import atomic_write_json
        i = 0
        while True:
            atomic_write_json({str(path)!r}, {{"i": i, "pad": "x" * 200000}})
            i += 1
        """
    )
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", script])
        import time

        time.sleep(0.8)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        data = json.loads(path.read_text())
        assert data["pad"] == "x" * 200000
