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
    if row["status"] in ("pending", "running", "interrupted", "failed", "stale"):
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
        primary = report["benchmarks"][name].get("primary")
        header.append(
            name + (f" ({domain})" if domain else "") + (" [raw]" if unit == "raw" else "")
            + (f" [{primary}]" if primary else "")
        )  # fmt: skip
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
    lines += _heavy_lines(report)
    lines += _unscored_lines(report)
    lines += _isolation_lines(report)
    return "\n".join(lines) + "\n"


def mode_label(mode: str, n: int | None) -> str:
    """``pass@1``, ``majority@8``, ``genselect@8``, ``oracle pass@8``."""
    if mode in ("majority", "genselect"):
        return f"{mode}@{n}" if n else mode
    return f"oracle {mode}" if n and mode == f"pass@{n}" else mode


def samples_of(modes: list[str]) -> int | None:
    """n, the samples per prompt, from a benchmark's modes (its oracle is pass@n, the largest k)."""
    ks = [int(m[5:]) for m in modes if m.startswith("pass@") and m[5:].isdigit()]
    return max(ks) if ks and max(ks) > 1 else None


def _heavy_lines(report: Mapping[str, Any]) -> list[str]:
    """One table per benchmark evaluated in heavy mode: every mode through the stages, and its cost."""
    heavy = {name: info for name, info in report["benchmarks"].items() if info.get("modes")}
    if not heavy:
        return []
    lines = ["", "## Heavy mode", ""]
    for name, info in heavy.items():
        modes, n = info["modes"], samples_of(info["modes"])
        lines += [f"### {name}" + (f" ({n} samples per prompt)" if n else ""), ""]
        header = ["stage", *(mode_label(m, n) for m in modes)]
        has_genselect = "genselect" in modes
        header += ["genselect fallbacks", "selection tokens"] if has_genselect else []
        header += ["sample tokens", "time (samples / vote / genselect)"]
        lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        for row in report["stages"]:
            got = (row.get("modes") or {}).get(name)
            if not got:
                continue
            cells = [str(row["name"])]
            for mode in modes:
                m = got.get(mode) or {}
                score, stderr = m.get("score"), m.get("stderr")
                cells.append(
                    "—"
                    if score is None
                    else f"{100 * score:.1f}" + ("" if stderr is None else f" ± {100 * stderr:.1f}")
                )
            g = got.get("genselect") or {}
            if has_genselect:
                cells.append(f"{g.get('fallbacks', 0)}/{g.get('calls', 0)}" if g else "—")
                cells.append(f"{g.get('tokens', 0):,}" if g else "—")
            p1 = got.get("pass@1") or {}
            cells.append(f"{p1['tokens']:,}" if p1.get("tokens") is not None else "—")
            times = [p1.get("seconds"), (got.get("majority") or {}).get("seconds"), g.get("seconds")]
            cells.append(" / ".join(format_duration(t) for t in times))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(
        "pass@1: the mean over a prompt's samples; majority: the vote over answer classes (math: equal under "
        "math-verify, code: identical outputs on the tests' inputs), ties to the class seen first; genselect: "
        "the policy picks the best of k candidates in a knockout tournament; oracle pass@n: any sample is "
        "right, the ceiling of every selection. Fallbacks: selections whose choice could not be read, decided "
        "by majority voting. Scores in %, ± standard error over prompts; tokens and times are what each "
        'mode generated and took (docs/evaluation.md, "Heavy mode").'
    )
    return lines


def _unscored_lines(report: Mapping[str, Any]) -> list[str]:
    """Benchmarks whose scorer could not score some samples (a checker that cannot run on this host): how
    many, per evaluation. Their scores cover the scored samples only, which a reader must know."""
    counts: dict[str, list[str]] = {}
    for row in report["stages"]:
        for name, unscored in (row.get("unscored") or {}).items():
            counts.setdefault(name, []).append(f"{row['name']} {unscored}")
    found = [f"- {name}: {', '.join(per_stage)}" for name, per_stage in counts.items()]
    if not found:
        return []
    return [
        "",
        "## Unscored samples",
        "",
        "Samples the scorer could not score, left out of the benchmark's score and n (docs/evaluation.md):",
        "",
        *found,
    ]


def _isolation_lines(report: Mapping[str, Any]) -> list[str]:
    """Where model-written programs ran: the code sandbox's isolation of every stage and benchmark."""

    def said(isolation: str) -> str:
        return "**none: programs ran unisolated**" if isolation == "none" else isolation

    found = [
        f"- stage {row['name']}, reward {label}: {said(isolation)}"
        for row in report["stages"]
        for label, isolation in (row.get("isolation") or {}).items()
    ]
    found += [
        f"- benchmark {name}: {said(info['isolation'])}"
        for name, info in report["benchmarks"].items()
        if info.get("isolation")
    ]
    return ["", "## Code sandbox", "", *found] if found else []
