"""The report's JSON table: run facts, benchmarks, and one row per stage (base first), from the typed run
state (``ledger.json``) and, where the ledger lacks something, the eval files."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.gates import TEST_LABELS, GateResult, compare_records, format_p_value, prompt_scores
from pipeline.gates.compare import PASS_AT_1, finite, metric_view
from pipeline.run_state import RunState, Scores, Status
from pipeline.rundir import BASE, RunDir
from pipeline.runlock import holder_gone

logger = logging.getLogger(__name__)

DEFAULT_ALPHA = 0.05
"""Significance level of the ▲/▼ marks on rows the gate did not test."""

MINUS = "−"


class ReportError(ValueError):
    """The run directory cannot be reported on (missing or unreadable ledger)."""


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _load_state(run_dir: Path) -> RunState:
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} is not a directory; pass a run directory such as runs/<name>.")
    path = RunDir(run_dir).ledger
    if not path.is_file():
        raise ReportError(f"{run_dir} has no ledger.json; pass a run directory such as runs/<name>.")
    try:
        data = _read_json(path)
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{path} could not be read as JSON ({err}).") from err
    if not isinstance(data, dict):
        raise ReportError(f"{path} does not hold a ledger object.")
    try:
        return RunState.from_json(data)
    except (TypeError, ValueError, AttributeError) as err:
        raise ReportError(f"{path} does not hold a ledger Cascade can read ({err}).") from err


@dataclass
class _LedgerRow:
    """What the report reads of the baseline or of one stage entry."""

    name: str
    index: int
    kind: str
    domain: str | None
    status: str
    wall_s: float | None
    scores: Scores
    gate: GateResult | None = None
    discarded: bool = False
    checkpoint: str | None = None
    next_init: str | None = None
    eval_file: str | None = None
    reward_facts: Mapping[str, Any] = field(
        default_factory=dict
    )  # what each reward found (sandbox isolation)
    error: str | None = None


def _interrupted(state: RunState, run_dir: Path) -> RunState:
    """The state as it really is: a ``running`` run whose launch is gone (killed: nothing could write) is
    reported ``interrupted``, and so is its running stage. The ledger file itself is left as it is."""
    if state.status != Status.RUNNING or not holder_gone(RunDir(run_dir).lock):
        return state
    state.status = Status.INTERRUPTED
    state.error = state.error or (
        "the launch running this run is gone without ending its session (killed?); "
        "run the same command again to resume"
    )
    for entry in state.stages:
        if entry.status == Status.RUNNING:
            entry.status = Status.INTERRUPTED
    return state


def _ledger_rows(state: RunState) -> list[_LedgerRow]:
    """Base first, then the stages in recipe order, as the ledger holds them."""
    base = state.base
    rows = [
        _LedgerRow(BASE, 0, "base", None, base.status, base.wall_s, base.scores, eval_file=base.eval_file)
    ]
    for s in state.stages:
        rows.append(
            _LedgerRow(
                s.name,
                s.index,
                s.kind,
                s.domain,
                s.status,
                s.wall_s,
                s.scores,
                s.gate,
                bool(s.discarded),
                s.checkpoint,
                s.next_init,
                s.eval_file,
                s.summary.get("reward_facts") or {},
                s.error,
            )  # fmt: skip
        )
    return rows


class _Evals:
    """Eval files of the run, read on demand and kept in slim form.

    Eval files of a full-size run carry every completion and can be hundreds of MB; the report keeps
    only what it uses (benchmark fields and per-prompt ``id``/``score``) and reads a file only when a
    benchmark's domain is unknown or a row without a gate record needs its own significance test.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._cache: dict[str, dict[str, dict[str, Any]]] = {}

    def benchmarks(self, relative: str | None) -> dict[str, dict[str, Any]]:
        """Benchmark name → slim record of one eval file; empty when missing or unreadable."""
        if not relative:
            return {}
        if relative not in self._cache:
            try:
                data = _read_json(self.run_dir / relative)
                records = data.get("benchmarks") if isinstance(data, dict) else None
                if not isinstance(records, dict):
                    raise ValueError("no 'benchmarks' mapping")
                self._cache[relative] = {
                    name: _slim(record) for name, record in records.items() if isinstance(record, Mapping)
                }
            except FileNotFoundError:
                self._cache[relative] = {}
            except (OSError, ValueError) as err:  # JSONDecodeError is a ValueError
                logger.warning("ignoring eval file %s: %s", self.run_dir / relative, err)
                self._cache[relative] = {}
        return self._cache[relative]


def _slim(record: Mapping[str, Any]) -> dict[str, Any]:
    """An eval record without completions: the fields the report and the paired tests read, on the
    benchmark's primary metric (the one its score and the gate are on)."""
    view = metric_view(record)
    samples = view.get("samples") or []
    spp = view.get("samples_per_prompt")
    if spp is None and samples:
        spp = max(len(s.get("correct") or s.get("scores") or [None]) for s in samples)
    slim = {key: view.get(key) for key in ("domain", "metric", "score", "stderr")}
    slim["n"] = record.get("n")
    slim["samples_per_prompt"] = spp
    slim["samples"] = [{"id": i, "score": v} for i, v in prompt_scores(view).items()]
    return slim


def build_report(run_dir: Path | str, *, alpha: float = DEFAULT_ALPHA, seed: int = 0) -> dict[str, Any]:
    """The report as a JSON-safe table: run facts, benchmarks, and one row per stage (base first).

    Each row carries the scores (fractions for verifiable benchmarks), standard errors, the change
    against the checkpoint the stage started from (``delta``, the gate's p-values where the gate ran,
    otherwise a paired test on the eval files), the gate verdict and the flags worth a reader's eye.
    """
    run_dir = Path(run_dir)
    state = _interrupted(_load_state(run_dir), run_dir)
    evals = _Evals(run_dir)
    ledger_rows = _ledger_rows(state)

    benchmarks: dict[str, dict[str, Any]] = {}
    for raw in ledger_rows:
        for name in raw.scores:
            benchmarks.setdefault(name, {"domain": None, "metric": None})
        for name, check in (raw.gate.benchmarks if raw.gate else {}).items():
            if name in benchmarks and check.domain:
                benchmarks[name]["domain"] = benchmarks[name]["domain"] or check.domain
        for name, value in raw.scores.items():  # ledgers may carry these fields too
            benchmarks[name]["domain"] = benchmarks[name]["domain"] or value.domain
            benchmarks[name]["metric"] = benchmarks[name]["metric"] or value.metric
            if value.isolation:  # the latest evaluation's code sandbox
                benchmarks[name]["isolation"] = value.isolation
            if value.primary and value.primary != PASS_AT_1:  # the metric its score (and the gate) is on
                benchmarks[name]["primary"] = value.primary
            if value.modes:  # heavy modes: pass@1, majority, genselect, the oracle pass@n
                benchmarks[name]["modes"] = mode_order([*benchmarks[name].get("modes", []), *value.modes])
    for raw in ledger_rows:  # the base eval holds every benchmark; later files only while a field is missing
        if all(info["domain"] and info["metric"] for info in benchmarks.values()):
            break
        for name, record in evals.benchmarks(raw.eval_file).items():
            if name in benchmarks:
                benchmarks[name]["domain"] = benchmarks[name]["domain"] or record.get("domain")
                benchmarks[name]["metric"] = benchmarks[name]["metric"] or record.get("metric")

    rows: list[dict[str, Any]] = []
    for raw in ledger_rows:
        row: dict[str, Any] = {
            "name": raw.name,
            "index": raw.index,
            "kind": raw.kind,
            "domain": raw.domain,
            "status": raw.status,
            "wall_s": finite(raw.wall_s),
            "scores": {name: finite(value.score) for name, value in raw.scores.items()},
            "stderr": {name: finite(value.stderr) for name, value in raw.scores.items()},
            "n": {name: value.n for name, value in raw.scores.items()},
            # samples the scorer could not score, left out of the score and n
            "unscored": {name: value.unscored for name, value in raw.scores.items() if value.unscored},
            # every mode's score and cost, for benchmarks evaluated in heavy mode
            "modes": {
                name: {mode: m.to_json() for mode, m in value.modes.items()}
                for name, value in raw.scores.items()
                if value.modes
            },
            "delta": {},
            "p_value": {},
            "change": {},
            "regressed": [],
            "reference": None,
            "gate": None,
            "action": None,
            "own_domain_improved": None,
            "discarded": raw.discarded,
            "checkpoint": raw.checkpoint,
            "next_init": raw.next_init,
            "eval_file": raw.eval_file,
            # the code sandbox's isolation per reward term the stage trained with
            "isolation": {
                label: facts.get("isolation")
                for label, facts in raw.reward_facts.items()
                if isinstance(facts, Mapping) and facts.get("isolation")
            },
            "error": raw.error,
            "flags": [],
        }
        gate = raw.gate
        if gate is not None:
            row.update(gate=gate.verdict, action=gate.action, own_domain_improved=gate.own_domain_improved)
            row["regressed"] = [c.name for c in gate.regressions]
        _changes(row, raw.eval_file, rows, gate, evals, alpha=alpha, seed=seed)
        row["flags"] = _flags(row, gate)
        rows.append(row)

    for name, info in benchmarks.items():
        values = [row["scores"][name] for row in rows if row["scores"].get(name) is not None]
        # accuracies and win rates are fractions; mean rewards (e.g. reward-model scores) are raw units
        fraction = info.get("metric") in (None, "accuracy", "win_rate")
        info["unit"] = "%" if fraction and all(0.0 <= v <= 1.0 for v in values) else "raw"

    wall_s = finite(state.wall_s)
    if wall_s is None:
        wall_s = sum(finite(s.wall_s) or 0.0 for s in state.sessions) or None
    return {
        "run_name": state.run_name or run_dir.name,
        "recipe": state.recipe,
        "status": state.status,
        "error": state.error,  # why the last launch ended badly (the sentence it printed last)
        "created": state.created,
        "updated": state.updated,
        "wall_s": wall_s,
        "alpha": alpha,
        "benchmarks": benchmarks,
        "stages": rows,
        "flags": [{"stage": row["name"], "message": flag} for row in rows for flag in row["flags"]],
    }


def mode_order(modes: Sequence[str]) -> list[str]:
    """Modes without repeats, as the report shows them: pass@1, majority, genselect, then pass@k by k."""
    rank = {PASS_AT_1: (0, 0), "majority": (1, 0), "genselect": (2, 0)}

    def key(mode: str) -> tuple[int, int]:
        k = mode.removeprefix("pass@")
        return rank.get(mode) or ((3, int(k)) if k.isdigit() else (4, 0))

    return sorted(dict.fromkeys(modes), key=key)


def _changes(
    row: dict[str, Any],
    eval_file: str | None,
    earlier: Sequence[dict[str, Any]],
    gate: GateResult | None,
    evals: _Evals,
    *,
    alpha: float,
    seed: int,
) -> None:
    """Fill the row's delta, p-values and ▲/▼ direction against the checkpoint it started from.

    The reference of a benchmark is its latest earlier row whose weights were kept (a stage after a
    rollback starts from the last checkpoint that passed, not from the discarded one).
    """
    for name, score in row["scores"].items():
        reference = next(
            (r for r in reversed(earlier) if not r["discarded"] and r["scores"].get(name) is not None), None
        )
        if score is None or reference is None:
            continue
        row["reference"] = row["reference"] or reference["name"]
        row["delta"][name] = score - reference["scores"][name]
        check = gate.benchmarks.get(name) if gate is not None else None
        p_value, level = None, alpha
        if gate is not None and check is not None and check.p_value is not None:
            p_value, level = check.p_value, gate.alpha
        else:
            before = evals.benchmarks(reference.get("eval_file")).get(name)
            after = evals.benchmarks(eval_file).get(name)
            if isinstance(before, Mapping) and isinstance(after, Mapping):
                p_value = compare_records(before, after, seed=seed, confidence=None).p_value
        row["p_value"][name] = p_value
        significant = p_value is not None and p_value < level and row["delta"][name] != 0.0
        row["change"][name] = ("up" if row["delta"][name] > 0 else "down") if significant else None


_POLICY_OUTCOME = {
    "stop": "policy stop: the cascade stopped here",
    "warn": "policy warn: recorded, the cascade went on",
    "rollback": "policy rollback: the stage's weights were discarded",
    "continue": "the cascade went on",
}


def _flags(row: Mapping[str, Any], gate: GateResult | None) -> list[str]:
    """Short messages on what needs a reader's attention in this row."""
    flags: list[str] = []
    name = row["name"]
    if row["status"] in ("failed", "interrupted"):
        flags.append(f"{name} {row['status']}" + (f": {row['error']}" if row.get("error") else "."))
    if gate is not None:
        for check in gate.regressions:
            flags.append(
                f"{name} regressed {check.name} by {_points(-(check.delta or 0.0), check.before, check.after)} "
                f"({_level(check.before, check)} → {_level(check.after, check)}, "
                f"{TEST_LABELS.get(check.test or '', check.test)} {format_p_value(check.p_value)}, "
                f"tolerance {_points(check.tolerance)}); {_POLICY_OUTCOME.get(gate.action, gate.action)}."
            )
        if gate.own_domain_improved is False:
            own = ", ".join(
                f"{c.name} {_signed_points(c.delta or 0.0, c.before, c.after)}, {format_p_value(c.p_value)}"
                for c in gate.benchmarks.values()
                if c.role == "own" and c.delta is not None
            )
            flags.append(f"{name} did not significantly improve its own domain {gate.stage_domain} ({own}).")
        for check in gate.benchmarks.values():
            if check.gated and check.verdict in ("untested", "missing"):
                flags.append(f"{name}: {check.name} was not checked ({check.note or check.verdict}).")
    if row["discarded"]:
        start = f"; the next stage started from {row['next_init']}" if row.get("next_init") else ""
        flags.append(f"{name}: weights discarded by rollback{start}.")
    return flags


# --------------------------------------------------------------------------------------------------
# report.md
# --------------------------------------------------------------------------------------------------


def _points(x: float, *scale: float | None) -> str:
    if all(v is None or 0.0 <= v <= 1.0 for v in scale):
        return f"{100.0 * x:.1f} points"
    return f"{x:.3g}"


def _signed_points(x: float, *scale: float | None) -> str:
    return ("+" if x >= 0 else MINUS) + _points(abs(x), *scale)


def _level(x: float | None, check: Any) -> str:
    """A score as the table shows it: a percentage for [0, 1] scores, raw otherwise."""
    if x is None:
        return "n/a"
    fraction = all(v is None or 0.0 <= v <= 1.0 for v in (check.before, check.after))
    return f"{100.0 * x:.1f}%" if fraction else f"{x:.3g}"


def report_table_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the report table for ``wandb.Table`` (scores as fractions, None when absent)."""
    names = list(report["benchmarks"])
    heavy = [(name, mode) for name in names for mode in report["benchmarks"][name].get("modes", [])]
    columns = ["stage", "kind", "domain", "status", "gate", "wall_s"]
    columns += names + [f"{name}_stderr" for name in names] + [f"{name}_{mode}" for name, mode in heavy]
    rows = [
        [row["name"], row.get("kind"), row.get("domain"), row["status"], row.get("gate"), row.get("wall_s")]
        + [row["scores"].get(name) for name in names]
        + [row["stderr"].get(name) for name in names]
        + [((row.get("modes") or {}).get(name, {}).get(mode) or {}).get("score") for name, mode in heavy]
        for row in report["stages"]
    ]
    return columns, rows
