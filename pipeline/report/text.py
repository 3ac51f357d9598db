"""The report as the console tells it: a line per stage start and end, and the closing table.

Pure functions of the typed run state (and of :func:`pipeline.report.table.build_report`'s table), so
the console and the files cannot disagree and every line is tested on its own.

    [2/8] sft2 · sft from stages/01-sft1/final
    [2/8] sft2 done in 14.5s · 4 steps on 320 rows · loss 6.125 · gate pass
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.gates import GateResult
from pipeline.report.markdown import format_duration
from pipeline.report.table import MINUS
from pipeline.run_state import BaseEntry, BenchmarkScore, Scores, StageEntry, Status

# What a stage's summary says it trained on, by kind: the key and its unit.
TRAINED_ON = (("rows", "rows"), ("pairs", "pairs"), ("prompts", "prompts"))
# The one metric a stage's end line shows, first found wins: summary key, label, format.
HEADLINES = (
    ("pairwise_accuracy", "held-out accuracy", "pct"),  # reward model: pairs ranked right
    ("reward_mean", "mean reward", ".3f"),  # GRPO: mean total reward of its rollouts
    ("final_loss", "loss", ".4g"),  # SFT (and anything trained on a loss)
)


def _number(value: float, style: str) -> str:
    text = f"{100.0 * value:.1f}%" if style == "pct" else format(value, style)
    return text.replace("-", MINUS)


def score_text(score: BenchmarkScore) -> str:
    """A benchmark's score as the console shows it: a percentage for accuracies, raw units otherwise."""
    if score.score is None:
        return "—"
    fraction = score.metric in (None, "accuracy", "win_rate") and 0.0 <= score.score <= 1.0
    return _number(score.score, "pct" if fraction else ".3f")


def _scores(scores: Scores, names: Sequence[str] | None = None) -> str:
    chosen = [n for n in (names if names is not None else scores) if n in scores]
    return ", ".join(f"{name} {score_text(scores[name])}" for name in chosen)


def run_header(
    run_name: str,
    recipe: str,
    stages: int,
    benchmarks: int,
    run_dir: str,
    log_file: str,
    reused: Sequence[str],
) -> str:
    """The first line of a launch: what runs, where it lands, where the full log is."""
    again = f"; {', '.join(reused)} already done" if reused else ""
    return (
        f"cascade {run_name} (recipe {recipe}): {stages} stages, {benchmarks} benchmarks → {run_dir}"
        f" (log: {log_file}){again}"
    )


def baseline_line(base: BaseEntry) -> str:
    return f"[base] evaluated in {format_duration(base.wall_s)}: {_scores(base.scores) or 'no benchmark'}"


def stage_start_line(entry: StageEntry, total: int, init: str, resume: bool) -> str:
    attempt = f" · attempt {entry.attempts}" if (entry.attempts or 1) > 1 else ""
    again = ", resuming from its last checkpoint" if resume else ""
    return f"[{entry.index}/{total}] {entry.name} · {entry.kind} from {init}{attempt}{again}"


def trained_text(summary: Mapping[str, Any]) -> str:
    """``4 steps on 320 rows``: how much a stage trained, from its summary."""
    steps = summary.get("steps")
    parts = [f"{steps} steps" if steps is not None else "trained"]
    for key, unit in TRAINED_ON:
        if isinstance(summary.get(key), int):
            parts.append(f"on {summary[key]} {unit}")
            break
    return " ".join(parts)


def headline_text(summary: Mapping[str, Any]) -> str | None:
    for key, label, style in HEADLINES:
        value = summary.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return f"{label} {_number(float(value), style)}"
    return None


def gate_text(gate: GateResult | None, discarded: bool) -> str:
    if gate is None:
        return "gate —"
    if gate.verdict != "pass":
        worst = ", ".join(
            f"{c.name} {_number(c.delta or 0.0, 'pct' if _fraction(c.before, c.after) else '+.3f')}"
            for c in gate.regressions
        )
        action = "rolled back" if discarded else gate.action
        return f"gate regressed ({worst}) → {action}"
    return "gate pass (own domain flat)" if gate.own_domain_improved is False else "gate pass"


def _fraction(*values: float | None) -> bool:
    return all(v is None or 0.0 <= v <= 1.0 for v in values)


def stage_end_line(entry: StageEntry, total: int) -> str:
    """How a stage ended: time, what it trained, its headline metric, its own domain's scores, the gate."""
    parts = [f"[{entry.index}/{total}] {entry.name} done in {format_duration(entry.wall_s)}"]
    parts.append(trained_text(entry.summary))
    headline = headline_text(entry.summary)
    if headline:
        parts.append(headline)
    own = [name for name, score in entry.scores.items() if entry.domain and score.domain == entry.domain]
    if own:
        parts.append(_scores(entry.scores, own))
    parts.append(gate_text(entry.gate, entry.discarded))
    if entry.status == Status.REGRESSED:
        parts[0] = f"[{entry.index}/{total}] {entry.name} stopped after {format_duration(entry.wall_s)}"
    return " · ".join(parts)


# --------------------------------------------------------------------------------------------------
# The closing table


def _cell(row: Mapping[str, Any], name: str, unit: str) -> str:
    score = row["scores"].get(name)
    if score is None:
        return "—"
    text = f"{100.0 * score:.1f}" if unit == "%" else f"{score:.3f}"
    mark = {"up": "▲", "down": "▼"}.get(row["change"].get(name) or "", "")
    return (text + mark).replace("-", MINUS)


def _gate_cell(row: Mapping[str, Any]) -> str:
    if row["status"] not in (Status.DONE, Status.REGRESSED):
        return str(row["status"])
    if row["gate"] is None:
        return "—"
    if row["gate"] == "regressed":
        return "rolled back" if row["discarded"] else f"regressed→{row['action']}"
    return "pass, own flat" if row["own_domain_improved"] is False else "pass"


def closing_table(report: Mapping[str, Any]) -> str:
    """Every stage × benchmark, aligned for a terminal: scores in % ([raw] in their own units), ▲/▼ the
    significant changes, the gate, the time; ``report.md`` has the errors and the legend."""
    names = list(report["benchmarks"])
    units = {n: report["benchmarks"][n].get("unit", "%") for n in names}
    header = ["stage", *[n + (" [raw]" if units[n] == "raw" else " %") for n in names], "gate", "time"]
    rows = [
        [str(row["name"]), *[_cell(row, n, units[n]) for n in names], _gate_cell(row), format_duration(row.get("wall_s"))]
        for row in report["stages"]
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = set(range(1, len(names) + 1)) | {len(header) - 1}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join(line(r) for r in [header, *rows])
