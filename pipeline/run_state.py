"""The run's state as ``ledger.json`` holds it, typed: the run, its sessions, the baseline, one entry per stage.

The JSON layout is the one every earlier version of Cascade wrote, and reading is lenient in the ways
those versions differ: a field that is missing takes its default (ledgers before sessions had a
``wall_s``, scores before they carried ``domain``/``metric``, gate checks before ``metric``), a score
may be a bare number, and keys this version does not know (a newer Cascade's, or what a stage kind
records about itself, such as GRPO's ``phases``) are kept in ``extra`` and written back unchanged. So a
run started by one version resumes under another without losing a field.

Writing leaves out optional fields that are None (a killed session has no ``ended``), except the few that
a stage entry has always carried as ``null`` (``domain``, ``checkpoint``, ``gate``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar, Self

from pipeline.gates import GateResult

log = logging.getLogger(__name__)

LEDGER_VERSION = 1


class Status(StrEnum):
    """The status of a run, of its baseline and of each stage (written as the plain string)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REGRESSED = "regressed"  # stopped by the gate; the checkpoint is kept for inspection
    STALE = "stale"
    INTERRUPTED = (
        "interrupted"  # stopped early, resumable: a signal (Ctrl-C, SIGTERM), a pre-emption warning,
    )
    # run.deadline (pipeline.preemption; see its StopRecord); the same command resumes it
    PAUSED = "paused"  # a run that stopped where run.until told it to


FINISHED = (Status.DONE, Status.REGRESSED)  # a stage whose checkpoint exists and need not be trained again


@dataclass
class _Json:
    """JSON in and out for the dataclasses below: per-field readers, unknown keys kept in ``extra``."""

    extra: dict[str, Any] = field(default_factory=dict, kw_only=True)  # keys this version does not know
    _NULLABLE: ClassVar[tuple[str, ...]] = ()  # written even when None
    _READERS: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: cls._READERS.get(k, _same)(v) for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        return cls(**known, extra=extra)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (value is None and f.name not in self._NULLABLE):
                continue
            out[f.name] = _plain(value)
        out.update(self.extra)
        return out


def _same(value: Any) -> Any:
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, _Json):
        return value.to_json()
    if isinstance(value, GateResult):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass
class ModeScore(_Json):
    """One evaluation mode of a benchmark (pass@1, the oracle pass@n, majority, genselect): its score and
    what it cost on top of the samples (docs/evaluation.md, "Heavy mode")."""

    score: float | None = None
    stderr: float | None = None
    tokens: int | None = None  # generated: the samples' for pass@1, the selection prompts' for genselect
    seconds: float | None = None
    calls: int | None = None  # genselect: selection prompts generated
    fallbacks: int | None = None  # genselect: selections whose choice could not be read (majority decided)

    @classmethod
    def of_record(cls, record: Mapping[str, Any]) -> ModeScore:
        return cls(**{f.name: record.get(f.name) for f in fields(cls) if f.name != "extra"})


def read_modes(value: Any) -> dict[str, ModeScore] | None:
    if not isinstance(value, Mapping):
        return None
    return {str(k): ModeScore.from_json(v) for k, v in value.items() if isinstance(v, Mapping)}


@dataclass
class BenchmarkScore(_Json):
    """One benchmark's score summary in the ledger (the full record, with samples, is in the eval file).

    ``score`` is the metric the gate compares: pass@1 unless the benchmark names another ``primary``;
    ``modes`` (benchmarks with ``selection``) holds every mode's score and cost.
    """

    score: float | None = None
    stderr: float | None = None
    n: int | None = None
    domain: str | None = None
    metric: str | None = None
    isolation: str | None = None  # how the code sandbox isolated the programs it scored (code benchmarks)
    primary: str | None = None  # None: pass@1 (ledgers of benchmarks without selection)
    modes: dict[str, ModeScore] | None = None
    unscored: int | None = None  # samples the scorer could not score, left out of score and n

    _NULLABLE = ("score", "stderr", "n", "domain", "metric")
    _READERS = {"modes": read_modes}

    @classmethod
    def read(cls, value: Any) -> BenchmarkScore:
        """A ledger score: a mapping, or a bare number as hand-written ledgers have it."""
        if isinstance(value, Mapping):
            return cls.from_json(value)
        return cls(score=value if isinstance(value, int | float) and not isinstance(value, bool) else None)

    @classmethod
    def of_record(cls, record: Mapping[str, Any]) -> BenchmarkScore:
        """The summary of one benchmark record of an eval file."""
        keys = ("score", "stderr", "n", "domain", "metric", "isolation", "primary", "unscored")
        values: dict[str, Any] = {k: record.get(k) for k in keys}
        modes = record.get("modes")
        if isinstance(modes, Mapping) and modes:
            values["modes"] = {
                str(k): ModeScore.of_record(v) for k, v in modes.items() if isinstance(v, Mapping)
            }
        return cls(**values)


Scores = dict[str, BenchmarkScore]


def read_scores(value: Any) -> Scores:
    return {str(k): BenchmarkScore.read(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def scores_of(evaluation: Mapping[str, Any]) -> Scores:
    """The ledger's scores of an evaluation (an eval file's content: ``benchmarks`` → record)."""
    return {name: BenchmarkScore.of_record(b) for name, b in (evaluation.get("benchmarks") or {}).items()}


def read_gate(value: Any) -> GateResult | None:
    """A stage's gate verdict; None for none (an unreadable one is kept as it is, see StageEntry)."""
    return GateResult.from_dict(value) if isinstance(value, Mapping) else None


@dataclass
class StopRecord(_Json):
    """Why and where a run stopped early (pipeline.preemption), and the checkpoint it resumes from.

    ``saved_on_stop``: the checkpoint was saved by the stop itself (a warning or the deadline: nothing is
    lost); otherwise it is the stage's last periodic one (SIGTERM). ``stage`` is None between stages.
    """

    reason: str = ""
    stage: str | None = None
    step: int | None = None
    checkpoint: str | None = None  # relative to the run directory
    saved_on_stop: bool | None = None


def read_stop(value: Any) -> StopRecord | None:
    return StopRecord.from_json(value) if isinstance(value, Mapping) else None


@dataclass
class Session(_Json):
    """One launch of the run: ``wall_s`` is brought up to date by a heartbeat every few seconds (and by
    every ledger write), so a killed session counts up to a few seconds before its end; ``ended`` and
    ``exit`` (the launch's exit code) are set when it ends in any way but a kill. Under Slurm it names
    its job and attempt (a requeued job keeps its id), and a session that stopped early keeps its
    :class:`StopRecord` for good."""

    started: str | None = None
    processes: int | None = None
    wall_s: float | None = None
    ended: str | None = None
    exit: int | None = None
    slurm_job: str | None = None
    slurm_attempt: int | None = None
    stop: StopRecord | None = None

    _READERS = {"stop": read_stop}


@dataclass
class BaseEntry(_Json):
    """The baseline: the starting model's evaluation (row ``base`` of the report)."""

    status: str = Status.PENDING
    eval_file: str | None = None
    benchmarks: list[str] = field(default_factory=list)  # the benchmarks it was evaluated on
    scores: Scores = field(default_factory=dict)
    wall_s: float | None = None

    _READERS = {"scores": read_scores}


@dataclass
class StageEntry(_Json):
    """One stage of the run: what it trained from, its checkpoint, summary, scores and gate verdict.

    What a stage kind records about itself while it runs (GRPO: its ``phases``) lands in ``extra``.
    """

    name: str
    index: int
    kind: str
    domain: str | None = None
    status: str = Status.PENDING
    config_hash: str = ""
    checkpoint: str | None = None  # the final checkpoint, relative to the run directory
    summary: dict[str, Any] = field(default_factory=dict)  # the stage kind's training summary
    scores: Scores = field(default_factory=dict)
    gate: GateResult | None = None
    discarded: bool = False  # rolled back by the gate: the cascade went on without these weights
    started: str | None = None
    ended: str | None = None
    init_from: str | None = None  # the checkpoint it started from (relative, or a hub id / path)
    attempts: int | None = None
    train_wall_s: float | None = None
    eval_file: str | None = None
    eval_wall_s: float | None = None
    wall_s: float | None = None  # training, evaluation and gate of the last attempt
    next_init: str | None = None  # where the next stage starts (this checkpoint, or the last kept one)
    error: str | None = None
    traceback: str | None = None
    previous_run: dict[str, Any] | None = None  # a finished run of the stage that rerun_from made stale
    resumable: bool | None = None  # set by the plan, taken by the start of the next attempt
    stop: StopRecord | None = None  # where an interrupted stage resumes (its next attempt clears it)

    _NULLABLE = ("domain", "checkpoint", "gate")
    _READERS = {"scores": read_scores, "stop": read_stop}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StageEntry:
        try:
            gate = read_gate(data.get("gate"))
        except (TypeError, ValueError, AttributeError) as exc:
            log.warning("stage %s: unreadable gate record kept as it is (%s)", data.get("name"), exc)
            entry = super().from_json({k: v for k, v in data.items() if k != "gate"})
            entry.extra["gate"] = data["gate"]  # written back unchanged
            return entry
        entry = super().from_json({k: v for k, v in data.items() if k != "gate"})
        entry.gate = gate
        return entry

    def record(self, fields_: Mapping[str, Any]) -> None:
        """Merge fields a stage reports about itself (known fields by name, others into ``extra``)."""
        names = {f.name for f in fields(self)} - {"extra"}
        for key, value in fields_.items():
            if key in names:
                setattr(self, key, value)
            else:
                self.extra[key] = value


def read_stages(value: Any) -> list[StageEntry]:
    return [StageEntry.from_json(s) for s in value or []]


@dataclass
class RunState(_Json):
    """Everything ``ledger.json`` holds."""

    version: int = LEDGER_VERSION
    run_name: str = ""
    recipe: str | None = None
    created: str | None = None
    updated: str | None = None
    status: str = Status.RUNNING
    error: str | None = None  # why the last launch ended badly: the sentence it printed last
    wall_s: float | None = None  # the sum of the sessions' wall_s
    sessions: list[Session] = field(default_factory=list)
    base: BaseEntry = field(default_factory=BaseEntry)
    stages: list[StageEntry] = field(default_factory=list)

    _READERS = {
        "sessions": lambda v: [Session.from_json(s) for s in v or []],
        "base": lambda v: BaseEntry.from_json(v or {}),
        "stages": read_stages,
    }

    def stage(self, name: str) -> StageEntry:
        for entry in self.stages:
            if entry.name == name:
                return entry
        raise KeyError(name)
