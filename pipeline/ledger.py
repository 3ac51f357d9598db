"""The run's durable state, ``runs/<name>/ledger.json``: its verbs, and the resume decisions.

The ledger is changed only through its verbs (start a stage, finish its training, record an evaluation,
record a verdict, accept, roll back, stop, fail or interrupt it, end the session), each of which writes
the file at once: a kill at any moment leaves the ledger telling what was done up to then. Only the main
process writes (:mod:`pipeline.atomic`: the old file or the new one, never a torn one); every process
reads the same file and calls the same pure function (:func:`plan`), so all processes take the same
decision. A heartbeat thread rewrites the file every few seconds so that the open session's time is
never more than a few seconds behind, however the launch ends.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from pipeline.atomic import write_json
from pipeline.gates import GateResult
from pipeline.run_state import (
    FINISHED,
    BaseEntry,
    RunState,
    Scores,
    Session,
    StageEntry,
    Status,
    StopRecord,
)
from pipeline.rundir import RunDir
from pipeline.schema import ConfigError
from pipeline.slurm import SlurmJob

if TYPE_CHECKING:
    from pipeline.outcome import Ending

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0  # seconds between two writes of the open session's time; CASCADE_HEARTBEAT_S sets it
P = ParamSpec("P")
R = TypeVar("R")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_state(run_dir: Path) -> RunState | None:
    """The state a run directory holds, None for a new run; a ledger that is not JSON is a ConfigError."""
    path = RunDir(Path(run_dir)).ledger
    if not path.exists():
        return None
    try:
        return RunState.from_json(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:  # never written torn by us; a hand edit may break it
        raise ConfigError(f"ledger '{path}' is not valid JSON ({exc}); fix or remove it") from None


def stage_checkpoints(run_dir: Path) -> dict[str, str]:
    """The final checkpoints a run's ledger records and the disk holds, by stage name (absolute paths)."""
    from pipeline.models import checkpoint_exists

    layout, state = RunDir(Path(run_dir)), read_state(run_dir)
    found = {}
    for entry in state.stages if state is not None else []:
        if entry.checkpoint and checkpoint_exists(layout.root / entry.checkpoint):
            found[entry.name] = str(layout.root / entry.checkpoint)
    return found


def new_state(run_name: str, recipe: str) -> RunState:
    return RunState(run_name=run_name, recipe=recipe, created=now(), updated=now(), wall_s=0.0)


def _writes(verb: Callable[P, R]) -> Callable[P, R]:
    """A verb runs under the ledger's lock: the heartbeat never writes a state that is half changed."""

    @functools.wraps(verb)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0]._lock:  # type: ignore[attr-defined]
            return verb(*args, **kwargs)

    return locked


def heartbeat_seconds() -> float:
    """The heartbeat's interval: ``CASCADE_HEARTBEAT_S`` (0 turns it off), else :data:`HEARTBEAT_S`."""
    value = os.environ.get("CASCADE_HEARTBEAT_S", "")
    try:
        return max(float(value), 0.0) if value else HEARTBEAT_S
    except ValueError:
        raise ConfigError(f"CASCADE_HEARTBEAT_S must be a number of seconds, got '{value}'") from None


class Ledger:
    """The run's state and the verbs that change it; every verb writes ``ledger.json`` (main process only).

    Each launch is a session. Its ``wall_s`` is brought up to date by every write and by a heartbeat
    (:meth:`open_session` starts it), so a session that was killed still counts, up to a few seconds
    before the kill, in the run's ``wall_s``, the sum over sessions.
    """

    def __init__(self, run_dir: RunDir, state: RunState, writer: bool):
        self.run_dir, self.state, self.writer = run_dir, state, writer
        self._session: Session | None = None
        self._session_t0 = 0.0
        self._lock = threading.RLock()
        self._heartbeat: _Heartbeat | None = None

    @_writes
    def save(self) -> None:
        if not self.writer:
            return
        self.state.updated = now()
        if self._session is not None:
            self._session.wall_s = round(time.monotonic() - self._session_t0, 2)
            self.state.wall_s = round(sum(s.wall_s or 0.0 for s in self.state.sessions), 2)
        write_json(self.run_dir.ledger, self.state.to_json())

    def stage(self, name: str) -> StageEntry:
        return self.state.stage(name)

    # -- the run -------------------------------------------------------------------------------------

    @_writes
    def open_session(
        self, processes: int, t0: float | None = None, heartbeat_s: float = 0.0, slurm: SlurmJob | None = None
    ) -> None:
        """Start this launch's session (``t0``: its ``time.monotonic()`` start, default now); the run runs.

        With ``heartbeat_s`` > 0 (the writer only) a daemon thread rewrites the ledger that often.
        ``slurm``: the job attempt this launch is, so that its batch script can find its exit status.
        """
        self._session = Session(started=now(), processes=processes, wall_s=0.0)
        if slurm is not None:
            self._session.slurm_job, self._session.slurm_attempt = slurm.job_id, slurm.attempt
        self._session_t0 = time.monotonic() if t0 is None else t0
        self.state.sessions.append(self._session)
        self.state.status, self.state.error = Status.RUNNING, None
        self.save()
        if self.writer and heartbeat_s > 0:
            self._heartbeat = _Heartbeat(self, heartbeat_s)

    def end_session(self, ending: Ending) -> None:
        """End this launch's session as ``ending`` says: the run's status, its sentence, the exit code.

        A run that ``run.until`` paused stays paused when the launch ends well.

        This is the last write of a launch, often made on the way out of a failure (a full disk, a
        read-only run directory): it never raises, it says on the log when it could not write.
        """
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        with self._lock:
            if not (ending.ok and self.state.status == Status.PAUSED):
                self.state.status = ending.status
            self.state.error = None if ending.ok else ending.sentence
            if self._session is not None:
                self._session.ended, self._session.exit = now(), int(ending.code)
            try:
                self.save()
            except OSError as exc:
                log.warning("the ledger could not record the end of this launch: %s", exc)

    @_writes
    def beat(self) -> None:
        """Bring the open session's time up to date (the heartbeat's write)."""
        self.save()

    @_writes
    def run_paused(self) -> None:
        """The run stopped after the stage ``run.until`` names; the next launch goes on."""
        self.state.status = Status.PAUSED
        self.save()

    @_writes
    def run_interrupted(self, stop: StopRecord) -> None:
        """The run stopped early (pipeline.preemption); the session keeps where, for good."""
        self.state.status = Status.INTERRUPTED
        if self._session is not None:
            self._session.stop = stop
        self.save()

    # -- evaluations ---------------------------------------------------------------------------------

    @_writes
    def record_baseline(
        self, eval_file: str, benchmarks: list[str], scores: Scores, wall_s: float | None
    ) -> None:
        self.state.base = BaseEntry(
            status=Status.DONE, eval_file=eval_file, benchmarks=benchmarks, scores=scores, wall_s=wall_s
        )
        self.save()

    @_writes
    def record_evaluation(self, name: str, eval_file: str, scores: Scores, wall_s: float | None) -> None:
        entry = self.stage(name)
        entry.eval_file, entry.scores, entry.eval_wall_s = eval_file, scores, wall_s
        self.save()

    @_writes
    def record_verdict(self, name: str, verdict: GateResult) -> None:
        self.stage(name).gate = verdict
        self.save()

    # -- a stage's life ------------------------------------------------------------------------------

    @_writes
    def start_stage(self, name: str, init_from: str) -> bool:
        """A new attempt at stage ``name``; returns whether it may resume an earlier attempt's checkpoints."""
        entry = self.stage(name)
        resume, entry.resumable = bool(entry.resumable), None
        entry.status, entry.started, entry.ended = Status.RUNNING, now(), None
        entry.init_from, entry.attempts = init_from, (entry.attempts or 0) + 1
        self.save()
        return resume

    @_writes
    def record(self, name: str, fields: Mapping[str, Any]) -> None:
        """Fields a running stage reports about itself (e.g. GRPO's phases)."""
        self.stage(name).record(fields)
        self.save()

    @_writes
    def interrupt_stage(self, name: str, stop: StopRecord) -> None:
        """The stage stopped early; its next attempt resumes from ``stop.checkpoint``."""
        entry = self.stage(name)
        entry.status, entry.ended, entry.stop = Status.INTERRUPTED, now(), stop
        self.save()

    @_writes
    def fail_stage(self, name: str, error: str, traceback: str | None) -> None:
        entry = self.stage(name)
        entry.status, entry.ended, entry.error, entry.traceback = Status.FAILED, now(), error, traceback
        self.save()

    @_writes
    def fail_baseline(self, error: str) -> None:
        self.state.base.status = Status.FAILED
        self.state.base.extra["error"] = error
        self.save()

    @_writes
    def finish_training(self, name: str, summary: dict[str, Any], checkpoint: str, wall_s: float) -> None:
        entry = self.stage(name)
        entry.summary, entry.checkpoint, entry.train_wall_s = summary, checkpoint, wall_s
        self.save()

    @_writes
    def accept_stage(self, name: str, next_init: str, wall_s: float) -> None:
        """The stage is done and the next one starts from ``next_init`` (its own policy, or the one it kept)."""
        self._end(name, Status.DONE, next_init, wall_s)

    @_writes
    def discard_stage(self, name: str, next_init: str, wall_s: float) -> None:
        """Rolled back by the gate: done, its weights discarded, the next stage starts from ``next_init``."""
        self.stage(name).discarded = True
        self._end(name, Status.DONE, next_init, wall_s)

    @_writes
    def stop_stage(self, name: str, wall_s: float) -> None:
        """Stopped by the gate: its checkpoint is kept for inspection (and for ``gate.policy=warn`` later)."""
        entry = self.stage(name)
        self.state.status = Status.REGRESSED
        self._end(name, Status.REGRESSED, entry.checkpoint, wall_s)

    @_writes
    def settle_regression(self, name: str, discard: bool, next_init: str | None) -> None:
        """A stage the gate stopped in an earlier launch, judged now by warn (kept) or rollback (discarded)."""
        entry = self.stage(name)
        entry.status, entry.discarded = Status.DONE, discard
        if next_init is not None:
            entry.next_init = next_init
        self.save()

    @_writes
    def _end(self, name: str, status: Status, next_init: str | None, wall_s: float) -> None:
        entry = self.stage(name)
        entry.status, entry.ended, entry.next_init, entry.wall_s = status, now(), next_init, wall_s
        self.save()


class _Heartbeat:
    """A daemon thread of the main process that rewrites the ledger every ``interval`` seconds.

    Time was counted only at ledger writes, so a launch killed during a long stage (no write for
    minutes) was missing those minutes. A failed write (a full disk) is said once and retried.
    """

    def __init__(self, ledger: Ledger, interval: float):
        self.ledger, self.interval = ledger, interval
        self._stop = threading.Event()
        self._warned = False
        self._thread = threading.Thread(target=self._run, name="cascade-ledger-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.ledger.beat()
            except OSError as exc:
                if not self._warned:
                    log.warning("the ledger's heartbeat could not write (%s); retrying", exc)
                    self._warned = True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)


# --------------------------------------------------------------------------------------------------
# Resume decisions (pure: same ledger + recipe → same plan in every process)


@dataclass
class Plan:
    """What to do with each stage of the recipe on this invocation."""

    stages: list[StageEntry]  # the ledger's stage entries, reconciled with the recipe
    todo: list[str]  # stage names to (re)train, in order
    reused: list[str]  # finished stages kept as they are
    stale: list[str]  # finished stages invalidated by rerun_from


def plan(
    previous: RunState | None,
    recipe_source: str,
    stages: list[tuple[str, str, str | None]],  # (name, kind, domain) in recipe order
    hashes: dict[str, str],
    rerun_from: str | None,
    checkpoint_ok: Callable[[StageEntry], bool],
) -> Plan:
    """Reconcile the ledger with the recipe; raise ConfigError on a mismatch the user must resolve."""
    old = {e.name: e for e in (previous.stages if previous is not None else [])}
    if previous is not None:
        if previous.recipe != recipe_source:
            raise ConfigError(
                f"the run directory holds a run of recipe '{previous.recipe}', not '{recipe_source}'; "
                "choose another run.name"
            )
        removed = [n for n, e in old.items() if n not in {s[0] for s in stages} and e.status in FINISHED]
        if removed:
            raise ConfigError(
                f"the run directory holds finished stage '{removed[0]}', which the recipe no longer has; "
                "choose another run.name"
            )
    rerun_index = next((i for i, s in enumerate(stages) if s[0] == rerun_from), None)
    entries: list[StageEntry] = []
    todo: list[str] = []
    reused: list[str] = []
    stale: list[str] = []
    for i, (name, kind, domain) in enumerate(stages, start=1):
        prior = old.get(name)
        entry = StageEntry(name=name, index=i, kind=kind, domain=domain, config_hash=hashes[name])
        finished = prior is not None and prior.status in FINISHED
        if prior is not None and finished and rerun_index is not None and i - 1 >= rerun_index:
            stale.append(name)
            entry.previous_run = {
                "config_hash": prior.config_hash,
                "ended": prior.ended,
                "scores": {k: v.to_json() for k, v in prior.scores.items()},
                "checkpoint": prior.checkpoint,
            }
            todo.append(name)
        elif prior is not None and finished:
            if prior.config_hash != hashes[name]:
                raise ConfigError(
                    f"stage '{name}' finished with a different config (hash {prior.config_hash}, recipe now "
                    f"gives {hashes[name]}); re-run it with run.rerun_from={name} or use another run.name"
                )
            if prior.index != i:
                raise ConfigError(
                    f"stage '{name}' was stage {prior.index} of this run and is now stage {i}; "
                    "re-run with run.rerun_from or use another run.name"
                )
            if not checkpoint_ok(prior):
                raise ConfigError(
                    f"stage '{name}' is marked {prior.status} but its checkpoint '{prior.checkpoint}' "
                    f"is missing or incomplete; re-run it with run.rerun_from={name}"
                )
            entry = prior
            reused.append(name)
        else:
            if prior is not None:
                # interrupted or failed: keep its history, train it (again), resuming from its checkpoints
                # only if its config is unchanged.
                entry.attempts = prior.attempts or 0
                entry.resumable = prior.config_hash == hashes[name]
            todo.append(name)
        entries.append(entry)
    # A stage after a re-trained one must be re-trained too: its starting checkpoint changes.
    if todo:
        first = next(i for i, e in enumerate(entries) if e.name == todo[0])
        for e in entries[first + 1 :]:
            if e.name in reused:
                raise ConfigError(
                    f"stage '{e.name}' is finished but an earlier stage '{todo[0]}' must be trained again; "
                    f"re-run with run.rerun_from={todo[0]} or use another run.name"
                )
    return Plan(entries, todo, reused, stale)
