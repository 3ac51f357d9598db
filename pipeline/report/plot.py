"""``report.png``: every benchmark through the stages, one panel per unit (percentages, raw rewards)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.atomic import write_file
from pipeline.report.markdown import format_duration
from pipeline.report.table import MINUS

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
                    ax.annotate(text.replace("-", MINUS), (x, score), xytext=(-10 if right_edge else 10, -6),
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
    write_file(path, lambda handle: fig.savefig(handle, format="png"), binary=True)
    return path
