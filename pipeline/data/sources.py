"""Loading a stage's rows: builtin synthetic tasks, hub datasets and local files, mapped and mixed.

A source yields rows with the *stage's* column names: ``columns:`` maps stage column ← source column,
then a ``preset:`` adapter (pipeline/data/presets) converts the row. Rows that cannot be used are
dropped and counted with their reason; more than the source's ``max_dropped`` share (1% by default) is
an error naming the source, the reason and an example row, because that almost always means a wrong
mapping or preset. Rows a preset leaves out on purpose (ties, dates outside a window) are counted as
skipped, apart from the dropped ones.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import DataSource
from pipeline.schema import ConfigError

log = logging.getLogger(__name__)

MAX_DROP_FRACTION = 0.01  # the default of DataSource.max_dropped
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".gz": "json"}
RowCheck = Callable[[Any], bool]


class DataError(ConfigError):
    """A data source that cannot be used as configured (one sentence naming the source)."""


def is_str(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != ""


def is_messages(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) > 0
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in v
        )
    )


def is_prompt(v: Any) -> bool:
    return is_str(v) or is_messages(v)


def is_list(v: Any) -> bool:
    return isinstance(v, list)


def is_present(v: Any) -> bool:
    return v is not None and v != ""


@dataclass
class SourceReport:
    """What loading one source gave: rows read, dropped (with the reasons), skipped on purpose, used."""

    source: str
    rows: int
    dropped: int
    used: int = 0
    skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    example: dict[str, Any] | None = None  # the first mapped row

    def describe(self) -> str:
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        return f"{self.source}: {self.used} rows ({self.dropped} dropped{skipped})"


@dataclass
class LoadedData:
    rows: list[dict[str, Any]]
    reports: list[SourceReport] = field(default_factory=list)

    def describe(self) -> str:
        return ", ".join(r.describe() for r in self.reports)


def seed_for(source: DataSource, seed: int) -> int:
    """A per-source seed, so that two sources of one task do not draw the same rows."""
    key = f"{source.source}|{source.split or 'train'}|{sorted(source.options.items())}|{seed}"
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


def read_source(source: DataSource, seed: int) -> list[dict[str, Any]]:
    """The raw rows of one source (source column names)."""
    if source.source.startswith("builtin:"):
        from pipeline.data.synthetic import generate

        task = source.source.removeprefix("builtin:")
        try:
            return generate(task, source.split or "train", source.size or 0, seed=seed, **source.options)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"data source '{source.source}' ({source.split}) cannot be generated: {exc}"
            ) from None
    import datasets

    path = Path(source.source).expanduser()
    try:
        if path.is_file():
            fmt = LOCAL_FORMATS.get(path.suffix)
            if fmt is None or (path.suffix == ".gz" and Path(path.stem).suffix not in (".jsonl", ".json")):
                raise DataError(
                    f"data source '{source.source}' has an unsupported suffix "
                    "(use .jsonl, .json, .parquet, .csv, or .jsonl.gz / .json.gz)"
                )
            ds = datasets.load_dataset(fmt, data_files=str(path), split="train")
        else:  # a hub id, or a local folder laid out like a hub dataset repository
            ds = datasets.load_dataset(
                source.source, name=source.config, split=source.split or "train", revision=source.revision
            )
    except DataError:
        raise
    except Exception as exc:  # datasets raises many types; the user needs the source and the reason
        reason = " ".join(str(exc).split())[:300]
        raise DataError(f"data source '{source.source}' could not be loaded: {reason}") from None
    if source.size is not None and len(ds) > source.size:
        ds = ds.shuffle(seed=seed).select(range(source.size))
    return ds.to_list()


def map_columns(row: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """The row with stage column names: mapped columns renamed, the others kept as they are."""
    if not columns:
        return row
    out = {k: v for k, v in row.items() if k not in columns.values()}
    for stage_col, source_col in columns.items():
        out[stage_col] = row.get(source_col)
    return out


def source_name(source: DataSource) -> str:
    return f"{source.source} (preset {source.preset})" if source.preset else source.source


def row_adapter(source: DataSource) -> Callable[[dict[str, Any]], Any] | None:
    """The source's preset adapter with its options bound, or None without a preset."""
    if not source.preset:
        return None
    from pipeline.data.presets import get_preset

    preset = get_preset(source.preset)
    options = preset.resolve_options(source.options)
    return lambda row: preset.adapt(row, options)


def map_source_rows(
    source: DataSource,
    raw: Sequence[dict[str, Any]],
    required: dict[str, RowCheck],
    transform: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> tuple[list[dict[str, Any]], SourceReport]:
    """One source's rows mapped (columns, preset, stage transform) and checked; unusable rows counted.

    Raises DataError when more than ``source.max_dropped`` of the rows are unusable.
    """
    from pipeline.data.presets import SKIP, RowError

    adapter = row_adapter(source)
    report = SourceReport(source_name(source), len(raw), 0)
    kept: list[dict[str, Any]] = []
    example: tuple[dict[str, Any], str] | None = None
    for row in raw:
        mapped: Any = map_columns(row, source.columns)
        try:
            if adapter is not None:
                mapped = adapter(mapped)
            if transform is not None and mapped is not None and mapped is not SKIP:
                mapped = transform(mapped)
        except RowError as exc:
            reason = str(exc)
        else:
            if mapped is SKIP:
                report.skipped += 1
                continue
            bad = [c for c, ok in required.items() if not ok(mapped.get(c))] if mapped is not None else None
            if bad == []:
                kept.append(mapped)
                continue
            reason = f"missing or invalid column(s) {', '.join(bad)}" if bad else "unusable"
        report.dropped += 1
        report.reasons[reason] += 1
        example = example or (row, reason)
    report.example = kept[0] if kept else None
    if report.dropped > source.max_dropped * len(raw):
        row, reason = example  # type: ignore[misc]
        shown = {k: (str(v)[:60]) for k, v in list(row.items())[:6]}
        fix = (
            f"check its 'preset:' (it reads {', '.join(_preset_reads(source))})"
            if source.preset
            else f"check its 'columns:' mapping (needed: {', '.join(required)})"
        )
        raise DataError(
            f"data source '{report.source}' dropped {report.dropped} of {len(raw)} rows ({reason}), "
            f"e.g. row {shown}; {fix}, or raise its 'max_dropped' ({source.max_dropped:g})"
        )
    if report.dropped:
        log.warning(
            "data source %s: dropped %d of %d unusable rows (%s)",
            report.source, report.dropped, len(raw), "; ".join(f"{r}: {n}" for r, n in report.reasons.most_common(3)),
        )  # fmt: skip
    return kept, report


def _preset_reads(source: DataSource) -> tuple[str, ...]:
    from pipeline.data.presets import get_preset

    return get_preset(source.preset or "").reads


def load_rows(
    sources: Sequence[DataSource],
    required: dict[str, RowCheck],
    seed: int,
    transform: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> LoadedData:
    """Rows of all sources with the ``required`` columns valid, mixed by weight and shuffled by ``seed``.

    ``transform`` may rewrite a mapped row (e.g. HelpSteer3 pairs → chosen/rejected) or return None to
    drop it (counted like an invalid row).
    """
    import random

    per_source: list[list[dict[str, Any]]] = []
    reports = []
    for source in sources:
        raw = read_source(source, seed_for(source, seed))
        if not raw:
            raise DataError(f"data source '{source_name(source)}' ({source.split}) has no rows")
        kept, report = map_source_rows(source, raw, required, transform)
        if not kept:
            raise DataError(f"data source '{report.source}' ({source.split}) has no usable rows left")
        per_source.append(kept)
        reports.append(report)

    rng = random.Random(seed)
    mixed: list[dict[str, Any]] = []
    for rows, source, report in zip(per_source, sources, reports, strict=True):
        # weight scales a source's rows: 0.5 takes a random half, 2.0 takes every row twice
        want = max(1, round(len(rows) * source.weight))
        repeats, rest = divmod(want, len(rows))
        chosen = rows * repeats + rng.sample(rows, rest)
        report.used = len(chosen)
        mixed.extend(chosen)
    rng.shuffle(mixed)
    return LoadedData(mixed, reports)


def row_mode(prompt_mode: str, think_fraction: float, index: int, seed: int) -> str:
    """``think`` or ``no_think`` for row ``index`` of a stage (deterministic; mixed stages split by fraction)."""
    if prompt_mode != "mixed":
        return prompt_mode
    h = int(hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "think" if h < think_fraction else "no_think"
