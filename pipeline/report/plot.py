"""``report.png``: every benchmark through the stages, one panel per unit (percentages, raw rewards)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.atomic import write_file
from pipeline.report.markdown import format_duration, mode_label, samples_of
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
    heavy = [n for n in names if report["benchmarks"][n].get("modes")]
    ratios = [3.0, 1.6][: len(panels)] + [1.8] * len(heavy)
    fig = Figure(figsize=(12, 3.6 + 2.0 * sum(ratios[1:]) / 1.6), dpi=100, layout="constrained")
    axes = fig.subplots(len(ratios), 1, sharex=True, squeeze=False, height_ratios=ratios)[:, 0]
    for ax in axes:
        _stage_columns(ax, rows, color, labels=ax is axes[0])
    for ax, name in zip(axes[len(panels) :], heavy, strict=True):
        _heavy_band(ax, rows, name, report["benchmarks"][name], style[name][0])

    for ax, unit in zip(axes, panels, strict=False):
        scale = 100.0 if unit == "%" else 1.0

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
    fig.align_ylabels(axes)
    status = report.get("status") or "unknown"
    fig.suptitle(
        f"{report['run_name']}: benchmarks through the cascade  ·  {status}, {format_duration(report.get('wall_s'))}",
        fontsize=12.5,
        fontweight="bold",
    )
    path = Path(path)
    write_file(path, lambda handle: fig.savefig(handle, format="png"), binary=True)
    return path


def _stage_columns(ax: Any, rows: list[Mapping[str, Any]], color: Mapping[str, str], *, labels: bool) -> None:
    """Each stage's column shaded in its domain's colour (named on the top panel), discarded ones hatched."""
    from matplotlib.transforms import blended_transform_factory

    top = blended_transform_factory(ax.transData, ax.transAxes)
    for x, row in enumerate(rows):
        if row.get("domain"):
            ax.axvspan(x - 0.5, x + 0.5, color=color[row["domain"]], alpha=0.09, lw=0, zorder=0)
            if labels:
                # above the panel: inside it the name would cover scores near the top of the scale
                ax.text(x, 1.01, row["domain"], transform=top, ha="center", va="bottom", fontsize=8.5,
                        color=color[row["domain"]], fontweight="bold", clip_on=False)  # fmt: skip
        if row["discarded"]:
            ax.axvspan(x - 0.5, x + 0.5, facecolor="none", edgecolor="0.75", hatch="///", lw=0, zorder=0)
            ax.text(x, 0.015, "discarded", transform=top, ha="center", va="bottom", fontsize=8,
                    color="0.4", style="italic",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})  # fmt: skip
        if x > 0:
            ax.axvline(x - 0.5, color="0.82", lw=0.8, zorder=0)


_MODE_STYLE = {
    "pass@1": ("-", "o", None),
    "majority": ("--", "s", "0.3"),
    "genselect": ("-.", "D", "#b8860b"),
}


def _heavy_band(ax: Any, rows: list[Mapping[str, Any]], name: str, info: Mapping[str, Any], c: str) -> None:
    """One benchmark's heavy modes through the stages: pass@1, majority and genselect as lines inside
    the band from pass@1 up to the oracle pass@n (what a perfect selector would reach)."""
    modes, n = list(info["modes"]), samples_of(info["modes"])
    oracle = f"pass@{n}" if n else None

    def series(mode: str) -> tuple[list[int], list[float]]:
        points = [
            (x, 100.0 * score)
            for x, row in enumerate(rows)
            if (score := (((row.get("modes") or {}).get(name) or {}).get(mode) or {}).get("score"))
            is not None
        ]
        return [p[0] for p in points], [p[1] for p in points]

    if oracle in modes and "pass@1" in modes:
        (x1, low), (x2, high) = series("pass@1"), series(oracle)
        shared = sorted(set(x1) & set(x2))
        ax.fill_between(shared, [low[x1.index(x)] for x in shared], [high[x2.index(x)] for x in shared],
                        color=c, alpha=0.13, lw=0, label=f"pass@1 … {mode_label(oracle, n)}")  # fmt: skip
        ax.plot(*series(oracle), color=c, lw=1.2, ls=":", marker="^", ms=5, label=mode_label(oracle, n))
    for mode in [m for m in modes if m in _MODE_STYLE]:
        linestyle, marker, mode_color = _MODE_STYLE[mode]
        ax.plot(*series(mode), color=mode_color or c, lw=1.8, ls=linestyle, marker=marker, ms=5,
                label=mode_label(mode, n))  # fmt: skip
    ax.set_ylabel(f"{name}\nheavy mode (%)")
    ax.grid(axis="y", color="0.9", lw=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
