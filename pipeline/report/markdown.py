"""``report.md``: the run's facts, the stage × benchmark table with changes and marks, a legend, the flags."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.report.table import DEFAULT_ALPHA, MINUS


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
        text += f" ({scale * delta:+{digits}}{mark})".replace("-", MINUS)
    return f"**{text}**" if name in row["regressed"] else text


def _gate_cell(row: Mapping[str, Any]) -> str:
    if row["status"] in ("pending", "running", "failed", "stale", "interrupted"):
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
        *(["", f"**The last launch ended:** {report['error']}"] if report.get("error") else []),
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
