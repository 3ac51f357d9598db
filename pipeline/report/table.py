"""The cascade report: every benchmark through the stages, as a JSON table, ``report.md`` and ``report.png``.

Everything is rebuilt from the run directory (``ledger.json`` and ``evals/*.json``), so the report
of a running, failed or finished run can be regenerated at any time::

    python -m pipeline.report runs/<name>          # writes runs/<name>/report.md and report.png
    python -m pipeline.report runs/<name> --json   # prints the table as JSON, writes nothing
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.gates import TEST_LABELS, GateResult, compare_records, format_p_value, prompt_scores

logger = logging.getLogger(__name__)

DEFAULT_ALPHA = 0.05
"""Significance level of the ▲/▼ marks on rows the gate did not test."""

_MINUS = "−"


class ReportError(ValueError):
    """The run directory cannot be reported on (missing or unreadable ledger)."""


# --------------------------------------------------------------------------------------------------
# The JSON table
# --------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _load_ledger(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} is not a directory; pass a run directory such as runs/<name>.")
    path = run_dir / "ledger.json"
    if not path.is_file():
        raise ReportError(f"{run_dir} has no ledger.json; pass a run directory such as runs/<name>.")
    try:
        ledger = _read_json(path)
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{path} could not be read as JSON ({err}).") from err
    if not isinstance(ledger, dict):
        raise ReportError(f"{path} does not hold a ledger object.")
    return ledger


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
    """An eval record without completions: the fields the report and the paired tests read."""
    samples = record.get("samples") or []
    spp = record.get("samples_per_prompt")
    if spp is None and samples:
        spp = max(len(s.get("correct") or s.get("scores") or [None]) for s in samples)
    slim = {key: record.get(key) for key in ("domain", "metric", "score", "stderr", "n")}
    slim["samples_per_prompt"] = spp
    slim["samples"] = [{"id": i, "score": v} for i, v in prompt_scores(record).items()]
    return slim


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _gate(raw: Any) -> GateResult | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        return GateResult.from_dict(raw)
    except (TypeError, ValueError, AttributeError) as err:
        logger.warning("ignoring an unreadable gate record: %s", err)
        return None


def _raw_rows(ledger: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Base first, then the stages in recipe order, as the ledger holds them."""
    base = dict(ledger.get("base") or {"status": "pending"})
    base.update(name="base", kind="base", index=0, domain=None)
    return [base, *(dict(stage) for stage in ledger.get("stages") or [])]


def build_report(run_dir: Path | str, *, alpha: float = DEFAULT_ALPHA, seed: int = 0) -> dict[str, Any]:
    """The report as a JSON-safe table: run facts, benchmarks, and one row per stage (base first).

    Each row carries the scores (fractions for verifiable benchmarks), standard errors, the change
    against the checkpoint the stage started from (``delta``, the gate's p-values where the gate ran,
    otherwise a paired test on the eval files), the gate verdict and the flags worth a reader's eye.
    """
    run_dir = Path(run_dir)
    ledger = _load_ledger(run_dir)
    evals = _Evals(run_dir)
    raw_rows = _raw_rows(ledger)

    benchmarks: dict[str, dict[str, Any]] = {}
    for raw in raw_rows:
        for name in raw.get("scores") or {}:
            benchmarks.setdefault(name, {"domain": None, "metric": None})
        gate = raw.get("gate") if isinstance(raw.get("gate"), Mapping) else {}
        for name, check in (gate.get("benchmarks") or {}).items():
            if isinstance(check, Mapping) and name in benchmarks and check.get("domain"):
                benchmarks[name]["domain"] = benchmarks[name]["domain"] or check["domain"]
        for name, value in (raw.get("scores") or {}).items():  # ledgers may carry these fields too
            if isinstance(value, Mapping):
                benchmarks[name]["domain"] = benchmarks[name]["domain"] or value.get("domain")
                benchmarks[name]["metric"] = benchmarks[name]["metric"] or value.get("metric")
    for raw in raw_rows:  # the base eval holds every benchmark; later files only while a field is missing
        if all(info["domain"] and info["metric"] for info in benchmarks.values()):
            break
        for name, record in evals.benchmarks(raw.get("eval_file")).items():
            if name in benchmarks:
                benchmarks[name]["domain"] = benchmarks[name]["domain"] or record.get("domain")
                benchmarks[name]["metric"] = benchmarks[name]["metric"] or record.get("metric")

    rows: list[dict[str, Any]] = []
    for raw in raw_rows:
        scores_raw = raw.get("scores") or {}
        row: dict[str, Any] = {
            "name": raw.get("name"),
            "index": raw.get("index"),
            "kind": raw.get("kind"),
            "domain": raw.get("domain"),
            "status": raw.get("status", "pending"),
            "wall_s": _number(raw.get("wall_s")),
            "scores": {},
            "stderr": {},
            "n": {},
            "delta": {},
            "p_value": {},
            "change": {},
            "regressed": [],
            "reference": None,
            "gate": None,
            "action": None,
            "own_domain_improved": None,
            "discarded": bool(raw.get("discarded", False)),
            "checkpoint": raw.get("checkpoint"),
            "next_init": raw.get("next_init"),
            "eval_file": raw.get("eval_file"),
            "flags": [],
        }
        for name, value in scores_raw.items():
            value = value if isinstance(value, Mapping) else {"score": value}
            row["scores"][name] = _number(value.get("score"))
            row["stderr"][name] = _number(value.get("stderr"))
            row["n"][name] = value.get("n")
        gate = _gate(raw.get("gate"))
        if gate is not None:
            row.update(gate=gate.verdict, action=gate.action, own_domain_improved=gate.own_domain_improved)
            row["regressed"] = [c.name for c in gate.regressions]
        _changes(row, raw, rows, gate, evals, alpha=alpha, seed=seed)
        row["flags"] = _flags(row, gate)
        rows.append(row)

    for name, info in benchmarks.items():
        values = [row["scores"][name] for row in rows if row["scores"].get(name) is not None]
        # accuracies and win rates are fractions; mean rewards (e.g. reward-model scores) are raw units
        fraction = info.get("metric") in (None, "accuracy", "win_rate")
        info["unit"] = "%" if fraction and all(0.0 <= v <= 1.0 for v in values) else "raw"

    wall_s = _number(ledger.get("wall_s"))
    if wall_s is None:
        wall_s = sum(_number(s.get("wall_s")) or 0.0 for s in ledger.get("sessions") or []) or None
    return {
        "run_name": ledger.get("run_name") or run_dir.name,
        "recipe": ledger.get("recipe"),
        "status": ledger.get("status"),
        "created": ledger.get("created"),
        "updated": ledger.get("updated"),
        "wall_s": wall_s,
        "alpha": alpha,
        "benchmarks": benchmarks,
        "stages": rows,
        "flags": [{"stage": row["name"], "message": flag} for row in rows for flag in row["flags"]],
    }


def _changes(
    row: dict[str, Any],
    raw: Mapping[str, Any],
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
        if check is not None and check.p_value is not None:
            p_value, level = check.p_value, gate.alpha
        else:
            before = evals.benchmarks(reference.get("eval_file")).get(name)
            after = evals.benchmarks(raw.get("eval_file")).get(name)
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
    if row["status"] == "failed":
        flags.append(f"{name} failed.")
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
    return ("+" if x >= 0 else _MINUS) + _points(abs(x), *scale)


def _level(x: float | None, check: Any) -> str:
    """A score as the table shows it: a percentage for [0, 1] scores, raw otherwise."""
    if x is None:
        return "n/a"
    fraction = all(v is None or 0.0 <= v <= 1.0 for v in (check.before, check.after))
    return f"{100.0 * x:.1f}%" if fraction else f"{x:.3g}"


def format_duration(seconds: float | None) -> str:
    """``12.3s``, ``3m 20s`` or ``1h 02m``; an em dash when unknown."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def _cell(row: Mapping[str, Any], name: str, unit: str) -> str:
    score = row["scores"].get(name)
    if score is None:
        return "—"
    stderr = row["stderr"].get(name)
    scale = 100.0 if unit == "%" else 1.0
    digits = ".1f" if unit == "%" else ".3f"
    text = f"{scale * score:{digits}}" + (f" ± {scale * stderr:{digits}}" if stderr is not None else "")
    delta = row["delta"].get(name)
    if delta is not None:
        mark = {"up": " ▲", "down": " ▼"}.get(row["change"].get(name) or "", "")
        text += f" ({scale * delta:+{digits}}{mark})".replace("-", _MINUS)
    return f"**{text}**" if name in row["regressed"] else text


def _gate_cell(row: Mapping[str, Any]) -> str:
    if row["status"] in ("pending", "running", "failed", "stale"):
        return row["status"]
    if row["gate"] is None:
        return "—"
    if row["gate"] == "regressed":
        text = f"**regressed** → {row['action']}"
        return text + " (discarded)" if row["discarded"] else text
    if row["own_domain_improved"] is False:
        return "pass (own domain flat)"
    return "pass"


def render_markdown(report: Mapping[str, Any]) -> str:
    """``report.md``: run facts, the stage × benchmark table, a legend and the flagged stages."""
    names = list(report["benchmarks"])
    lines = [
        f"# Cascade report: {report['run_name']}",
        "",
        f"Recipe `{report.get('recipe') or '—'}` · status **{report.get('status') or 'unknown'}** · "
        f"total time {format_duration(report.get('wall_s'))}"
        + (f" · updated {report['updated']}" if report.get("updated") else ""),
        "",
        "![Benchmarks through the cascade](report.png)",
        "",
    ]
    header = ["stage", "kind", "domain"]
    for name in names:
        domain = report["benchmarks"][name].get("domain")
        unit = report["benchmarks"][name].get("unit")
        header.append(name + (f" ({domain})" if domain else "") + (" [raw]" if unit == "raw" else ""))
    header += ["gate", "time"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * 3 + ["---:"] * len(names) + ["---", "---:"]) + "|")
    for row in report["stages"]:
        label = f"~~{row['name']}~~" if row["discarded"] else str(row["name"])
        cells = [label, str(row.get("kind") or "—"), str(row.get("domain") or "—")]
        cells += [_cell(row, name, report["benchmarks"][name].get("unit", "%")) for name in names]
        cells += [_gate_cell(row), format_duration(row.get("wall_s"))]
        lines.append("| " + " | ".join(cells) + " |")
    alpha = report.get("alpha", DEFAULT_ALPHA)
    lines += [
        "",
        "Scores are percentages, mean ± standard error over prompts ([raw]: reward-model units). "
        "In parentheses: the change against the checkpoint the stage started from (the previous row, "
        f"or the last kept one after a rollback). ▲/▼: a significant change under a paired test at "
        f"α = {alpha:g} (the gate's α where the gate ran): exact McNemar for one 0/1 sample per prompt, "
        "a sign-flip permutation test otherwise. **Bold**: a regression the gate flagged (a drop beyond the "
        "tolerance that is also significant). ~~Struck~~ stages had their weights discarded by a "
        "rollback. Gate: the verdict on the benchmarks of domains trained by earlier stages and what "
        "the policy did; *own domain flat*: no significant gain on the stage's own domain.",
        "",
        "## Flagged stages",
        "",
    ]
    flags = report.get("flags") or []
    lines += [f"- {flag['message']}" for flag in flags] if flags else ["None."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# report.png
# --------------------------------------------------------------------------------------------------

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
_RED = "#d62728"  # reserved for regressions
_MARKERS = ["o", "s", "D", "^", "v", "P", "X"]
_LINESTYLES = ["-", "--", "-.", ":"]


def plot_report(report: Mapping[str, Any], path: Path | str) -> Path:
    """Draw every benchmark through the stages (error bars, own-domain shading, regressions in red).

    x holds every stage of the recipe in order (base first, pending stages greyed), each stage's
    column is shaded in its domain's colour, benchmarks share their domain's colour; discarded stages
    are hatched with hollow markers off the line, and gate regressions are circled in red.
    """
    from matplotlib.figure import Figure  # lazy: matplotlib is slow to import and only needed here
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory

    rows = list(report["stages"])
    names = list(report["benchmarks"])
    xs = list(range(len(rows)))
    domains: list[str] = []
    for domain in [report["benchmarks"][n].get("domain") or "other" for n in names] + [
        r.get("domain") for r in rows
    ]:
        if domain and domain not in domains:
            domains.append(domain)
    color = {d: _PALETTE[i % len(_PALETTE)] for i, d in enumerate(domains)}
    style: dict[str, tuple[str, str, str]] = {}
    per_domain: dict[str, int] = {}
    for name in names:
        domain = report["benchmarks"][name].get("domain") or "other"
        k = per_domain[domain] = per_domain.get(domain, -1) + 1
        style[name] = (color[domain], _MARKERS[k % len(_MARKERS)], _LINESTYLES[k % len(_LINESTYLES)])

    groups = {u: [n for n in names if report["benchmarks"][n].get("unit", "%") == u] for u in ("%", "raw")}
    panels = [unit for unit in ("%", "raw") if groups[unit]] or ["%"]
    fig = Figure(figsize=(12, 5.6 if len(panels) == 1 else 7.6), dpi=100, layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False, height_ratios=[3, 1.6][: len(panels)])[
        :, 0
    ]

    for ax, unit in zip(axes, panels, strict=True):
        scale = 100.0 if unit == "%" else 1.0
        top = blended_transform_factory(ax.transData, ax.transAxes)
        for x, row in zip(xs, rows, strict=True):
            if row.get("domain"):
                ax.axvspan(x - 0.5, x + 0.5, color=color[row["domain"]], alpha=0.09, lw=0, zorder=0)
                if ax is axes[0]:
                    ax.text(x, 0.985, row["domain"], transform=top, ha="center", va="top", fontsize=8.5,
                            color=color[row["domain"]], fontweight="bold",
                            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 1})  # fmt: skip
            if row["discarded"]:
                ax.axvspan(x - 0.5, x + 0.5, facecolor="none", edgecolor="0.75", hatch="///", lw=0, zorder=0)
                ax.text(x, 0.015, "discarded", transform=top, ha="center", va="bottom", fontsize=8,
                        color="0.4", style="italic",
                        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})  # fmt: skip
            if x > 0:
                ax.axvline(x - 0.5, color="0.82", lw=0.8, zorder=0)

        low, high = math.inf, -math.inf
        members = groups[unit]
        spread = min(0.05, 0.25 / max(1, len(members)))  # dodge so error bars of close scores stay apart
        for k, name in enumerate(members):
            c, marker, linestyle = style[name]
            dodge = (k - (len(members) - 1) / 2) * spread
            points = [
                (x + dodge, scale * row["scores"][name], scale * (row["stderr"].get(name) or 0.0), row)
                for x, row in zip(xs, rows, strict=True)
                if row["scores"].get(name) is not None
            ]
            if not points:
                continue
            domain = report["benchmarks"][name].get("domain")
            kept = [p for p in points if not p[3]["discarded"]]
            ax.errorbar([p[0] for p in kept], [p[1] for p in kept], yerr=[p[2] for p in kept], color=c,
                        marker=marker, linestyle=linestyle, lw=1.8, ms=6, capsize=3, elinewidth=1,
                        label=f"{name} ({domain})" if domain else name)  # fmt: skip
            for x, score, stderr, _ in (p for p in points if p[3]["discarded"]):
                ax.errorbar([x], [score], yerr=[stderr], color=c, marker=marker, mfc="white", ms=6, capsize=3,
                            elinewidth=1, linestyle="none")  # fmt: skip
            for x, score, stderr, row in points:
                low, high = min(low, score - stderr), max(high, score + stderr)
                if name not in row["regressed"]:
                    continue
                ax.scatter([x], [score], s=260, facecolors="none", edgecolors=_RED, linewidths=2.2, zorder=6)
                delta = row["delta"].get(name)
                if delta is not None:
                    text = f"{scale * delta:+.1f}" + (" pts" if unit == "%" else "")
                    right_edge = x > len(rows) - 1.5  # keep the label inside the axes on the last stage
                    ax.annotate(text.replace("-", _MINUS), (x, score), xytext=(-10 if right_edge else 10, -6),
                                textcoords="offset points", color=_RED, fontsize=9, fontweight="bold", va="top",
                                ha="right" if right_edge else "left", zorder=7,
                                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})  # fmt: skip
        if math.isfinite(low):
            pad = max(2.0 * scale / 100.0, 0.08 * (high - low))
            bottom, ceiling = low - pad, high + 2.2 * pad  # headroom for the domain labels
            if unit == "%":
                bottom, ceiling = max(bottom, -2.0), min(ceiling, 104.0)
            ax.set_ylim(bottom, ceiling)
        ax.set_ylabel("score (%)" if unit == "%" else "reward (raw units)")
        ax.grid(axis="y", color="0.9", lw=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        handles, labels = ax.get_legend_handles_labels()
        if ax is axes[0] and any(row["regressed"] for row in rows):
            handles.append(Line2D([], [], marker="o", mfc="none", mec=_RED, mew=2, ms=11, ls="none"))
            labels.append("regression (gate)")
        if ax is axes[0] and any(row["discarded"] for row in rows):
            handles.append(Line2D([], [], marker="o", mfc="white", mec="0.4", ms=6, ls="none"))
            labels.append("discarded by rollback")
        if handles:
            ax.legend(
                handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9
            )

    bottom_ax = axes[-1]
    bottom_ax.set_xlim(-0.5, len(rows) - 0.5)
    bottom_ax.set_xticks(xs)
    labels = [
        row["name"] if row.get("kind") in (None, "base", row["name"]) else f"{row['name']}\n{row['kind']}"
        for row in rows
    ]
    bottom_ax.set_xticklabels(labels, fontsize=9, rotation=0 if len(rows) <= 10 else 30)
    for tick, row in zip(bottom_ax.get_xticklabels(), rows, strict=True):
        if row["regressed"]:
            tick.set_color(_RED)
        elif row["status"] not in ("done", "regressed") or row["discarded"]:
            tick.set_color("0.55")
            tick.set_fontstyle("italic")
    status = report.get("status") or "unknown"
    fig.suptitle(
        f"{report['run_name']}: benchmarks through the cascade  ·  {status}, {format_duration(report.get('wall_s'))}",
        fontsize=12.5,
        fontweight="bold",
    )
    path = Path(path)
    _atomic_write(path, lambda handle: fig.savefig(handle, format="png"), binary=True)
    return path


# --------------------------------------------------------------------------------------------------
# Files, wandb rows and the CLI
# --------------------------------------------------------------------------------------------------


def _atomic_write(path: Path, write: Any, *, binary: bool = False) -> None:
    """Write through a temporary file in the same folder, so a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            write(handle)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(run_dir: Path | str, *, alpha: float = DEFAULT_ALPHA) -> tuple[Path, Path]:
    """Rebuild ``report.md`` and ``report.png`` in the run directory and return their paths."""
    run_dir = Path(run_dir)
    report = build_report(run_dir, alpha=alpha)
    markdown = run_dir / "report.md"
    _atomic_write(markdown, lambda handle: handle.write(render_markdown(report)))
    image = plot_report(report, run_dir / "report.png")
    return markdown, image


def report_table_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the report table for ``wandb.Table`` (scores as fractions, None when absent)."""
    names = list(report["benchmarks"])
    columns = ["stage", "kind", "domain", "status", "gate", "wall_s"]
    columns += names + [f"{name}_stderr" for name in names]
    rows = [
        [row["name"], row.get("kind"), row.get("domain"), row["status"], row.get("gate"), row.get("wall_s")]
        + [row["scores"].get(name) for name in names]
        + [row["stderr"].get(name) for name in names]
        for row in report["stages"]
    ]
    return columns, rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.report RUN_DIR [--json]``; exit 2 when RUN_DIR is not a run."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.report",
        description="Rebuild report.md and report.png of a cascade run from its ledger and eval files.",
    )
    parser.add_argument("run_dir", type=Path, help="the run directory, e.g. runs/tiny")
    parser.add_argument("--json", action="store_true", help="print the report table as JSON; write no files")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="level of the ▲/▼ marks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.json:
            sys.stdout.write(json.dumps(build_report(args.run_dir, alpha=args.alpha), indent=2) + "\n")
        else:
            for path in write_report(args.run_dir, alpha=args.alpha):
                logger.info("wrote %s", path)
    except ReportError as err:
        logger.error("error: %s", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
