"""A stage's rows: every source read, mapped and checked, then mixed by weight, as Arrow data sets.

A source yields rows with the *stage's* column names: ``columns:`` maps stage column ← source column,
then a ``preset:`` adapter (pipeline/data/presets) converts the row, then the stage's own transform
(an SFT conversation, a preference pair) and its checks run. Rows that cannot be used are dropped and
counted with their reason; more than the source's ``max_dropped`` share (1% by default) is an error
naming the source, the reason and an example row, because that almost always means a wrong mapping or
preset. Rows a preset leaves out on purpose (ties, dates outside a window) are counted as skipped,
apart from the dropped ones.

The mapped rows are kept exactly as mapped, in Arrow (:mod:`pipeline.data.table`): each source's are
written beside its raw copy (or into the stage's scratch folder), and the mix is an index over them, so
no process holds a data set as Python objects. The order is a function of the seed alone: the same
seed gives the same rows in the same order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import DataSource
from pipeline.data.read import DataError, read_source
from pipeline.data.table import BATCH, Rows, raw_batches, row_table, rows_dataset, to_rows, written_to

__all__ = ["DataError", "LoadedData", "RowMapper", "SourceReport", "load_rows", "read_source", "row_mode"]

log = logging.getLogger(__name__)

MAX_DROP_FRACTION = 0.01  # the default of DataSource.max_dropped
RowCheck = Callable[[Any], bool]


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
    bad_example: tuple[dict[str, Any], str, int] | None = (
        None  # the first dropped row, its reason, its number
    )

    def describe(self) -> str:
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        return f"{self.source}: {self.used} rows ({self.dropped} dropped{skipped})"


@dataclass
class LoadedData:
    """The mixed rows of a stage's sources (an Arrow ``Dataset`` of exact rows) and what each source gave."""

    dataset: Any
    reports: list[SourceReport] = field(default_factory=list)

    @property
    def rows(self) -> Rows:
        return Rows(self.dataset)

    def describe(self) -> str:
        return ", ".join(r.describe() for r in self.reports)


def seed_for(source: DataSource, seed: int) -> int:
    """A per-source seed, so that two sources of one task do not draw the same rows."""
    key = f"{source.source}|{source.split or 'train'}|{sorted(source.options.items())}|{seed}"
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


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


class RowMapper:
    """One source's rows → stage rows: ``columns:``, the preset, the stage's transform, the required columns.

    Called on batches of raw rows in order, it returns the usable ones and counts the others with their
    reason in :attr:`report`; :meth:`finish` raises DataError when more than ``source.max_dropped`` of
    the rows were unusable. ``transform`` may rewrite a mapped row (an SFT conversation, a preference
    pair), raise RowError with the reason it cannot, or return None (counted as unusable).
    """

    def __init__(
        self,
        source: DataSource,
        required: dict[str, RowCheck],
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ):
        self.source, self.required, self.transform = source, required, transform
        self.adapter = row_adapter(source)
        self.report = SourceReport(source_name(source), 0, 0)

    def __call__(self, raw: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        from pipeline.data.presets import SKIP, RowError

        report, kept = self.report, []
        for row in raw:
            report.rows += 1
            mapped: Any = map_columns(row, self.source.columns)
            try:
                if self.adapter is not None:
                    mapped = self.adapter(mapped)
                if self.transform is not None and mapped is not None and mapped is not SKIP:
                    mapped = self.transform(mapped)
            except RowError as exc:
                reason = str(exc)
            else:
                if mapped is SKIP:
                    report.skipped += 1
                    continue
                reason = "the stage cannot use it" if mapped is None else self._invalid(mapped)
                if not reason:
                    kept.append(mapped)
                    if report.example is None:
                        report.example = mapped
                    continue
            report.dropped += 1
            report.reasons[reason] += 1
            if report.bad_example is None:
                report.bad_example = (row, reason, report.rows)
        return kept

    def _invalid(self, row: dict[str, Any]) -> str:
        """Why ``row`` fails the required columns ('' when it passes): each bad column, missing or its type."""
        bad = [(c, row.get(c)) for c, ok in self.required.items() if not ok(row.get(c))]
        if not bad:
            return ""
        return "missing or invalid column(s) " + ", ".join(
            f"{c} ({'missing' if v is None else 'empty' if v == '' else _kind(v)})" for c, v in bad
        )

    def finish(self) -> SourceReport:
        """The report; DataError when more rows were unusable than the source tolerates."""
        report, source = self.report, self.source
        if report.rows == 0:
            raise DataError(f"data source '{report.source}' ({source.split}) has no rows")
        if report.dropped > source.max_dropped * report.rows:
            row, reason, number = report.bad_example  # type: ignore[misc]
            if source.preset:
                fix = f"check its 'preset:' (it reads {', '.join(_preset_reads(source))})"
            elif self.required:
                fix = f"check its 'columns:' mapping (needed: {', '.join(self.required)})"
            else:
                fix = "check its 'columns:' mapping"
            raise DataError(
                f"data source '{report.source}' dropped {report.dropped} of {report.rows} rows ({reason}), "
                f"e.g. row {number} {shown_row(row)}; {fix}, or raise its 'max_dropped' ({source.max_dropped:g})"
            )
        if report.dropped:
            log.warning(
                "data source %s: dropped %d of %d unusable rows (%s)",
                report.source, report.dropped, report.rows,
                "; ".join(f"{r}: {n}" for r, n in report.reasons.most_common(3)),
            )  # fmt: skip
        return report


def _kind(value: Any) -> str:
    """A value's type as a reader of a recipe would name it: text, a number, a list, …"""
    return {
        str: "text",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "a dict",
    }.get(type(value), type(value).__name__)


def shown_row(row: dict[str, Any], columns: int = 6, width: int = 60) -> str:
    """A row for an error message: its first columns, each value as JSON (null, not 'None'), cut short."""
    shown = []
    for key, value in list(row.items())[:columns]:
        text = json.dumps(value, ensure_ascii=False, default=str)
        shown.append(f"{json.dumps(key)}: {text if len(text) <= width else text[:width] + '…'}")
    return "{" + ", ".join(shown) + "}"


def map_source(
    source: DataSource,
    raw: Any,
    required: dict[str, RowCheck],
    transform: Callable[[dict[str, Any]], Any] | None = None,
    cache_file: Path | None = None,
) -> tuple[Any, SourceReport]:
    """One source's mapped rows as a ``Dataset`` of exact rows (in raw order), and its report.

    The rows go to ``cache_file`` (memory-mapped) when given, else they stay in memory.
    """
    mapper = RowMapper(source, required, transform)
    if isinstance(raw, list):  # a builtin task: Python rows already
        dataset = rows_dataset(mapper(raw))
    else:
        dataset = (
            raw.with_format("arrow")
            .map(
                lambda table: row_table(mapper(to_rows(table, raw.features))),
                batched=True,
                batch_size=BATCH,
                remove_columns=raw.column_names,
                desc=f"mapping {mapper.report.source}",
                **written_to(cache_file),
            )
            .with_format(None)
        )
    return dataset, mapper.finish()


def check_source(
    source: DataSource,
    raw: Any,
    required: dict[str, RowCheck],
    transform: Callable[[dict[str, Any]], Any] | None = None,
) -> SourceReport:
    """One source mapped and checked without keeping its rows (the data check); DataError if unusable."""
    mapper = RowMapper(source, required, transform)
    for batch in raw_batches(raw):
        mapper(batch)
    return mapper.finish()


def _preset_reads(source: DataSource) -> tuple[str, ...]:
    from pipeline.data.presets import get_preset

    return get_preset(source.preset or "").reads


def load_rows(
    sources: Sequence[DataSource],
    required: dict[str, RowCheck],
    seed: int,
    transform: Callable[[dict[str, Any]], Any] | None = None,
    scratch: Path | None = None,
) -> LoadedData:
    """Rows of all sources with the ``required`` columns valid, mixed by weight and shuffled by ``seed``.

    ``transform`` may rewrite a mapped row (e.g. HelpSteer3 pairs → chosen/rejected), raise RowError, or
    return None to drop it (counted like an invalid row). With ``scratch`` (a folder), mapped rows are
    written there and memory-mapped; without it, they are kept in memory (benchmarks, tests).
    """
    parts, reports = [], []
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    for k, source in enumerate(sources):
        raw = read_source(source, seed_for(source, seed))
        cache_file = scratch / f"source-{k}.arrow" if scratch is not None else None
        part, report = map_source(source, raw, required, transform, cache_file)
        if len(part) == 0:
            raise DataError(f"data source '{report.source}' ({source.split}) has no usable rows left")
        parts.append(part)
        reports.append(report)
    return LoadedData(mix(parts, [s.weight for s in sources], reports, seed), reports)


def mix(parts: Sequence[Any], weights: Sequence[float], reports: Sequence[SourceReport], seed: int) -> Any:
    """The sources' rows in one shuffled order: ``weight`` scales each source's share.

    0.5 takes a random half of a source's rows, 2.0 takes every row twice; the order is a function of
    ``seed`` and the sources' sizes alone. The result is an index over the parts (no row is copied).
    """
    from datasets import concatenate_datasets

    rng = random.Random(seed)
    order: list[int] = []
    offset = 0
    for part, weight, report in zip(parts, weights, reports, strict=True):
        n = len(part)
        want = max(1, round(n * weight))
        repeats, rest = divmod(want, n)
        chosen = list(range(offset, offset + n)) * repeats + [offset + j for j in rng.sample(range(n), rest)]
        report.used = len(chosen)
        order.extend(chosen)
        offset += n
    rng.shuffle(order)
    whole = parts[0] if len(parts) == 1 else concatenate_datasets(list(parts))
    return whole.select(order)


def row_mode(prompt_mode: str, think_fraction: float, index: int, seed: int) -> str:
    """``think`` or ``no_think`` for row ``index`` of a stage (deterministic; mixed stages split by fraction)."""
    if prompt_mode != "mixed":
        return prompt_mode
    h = int(hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "think" if h < think_fraction else "no_think"
