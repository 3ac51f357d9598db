"""Loading a stage's rows: builtin synthetic tasks, hub datasets and local files, mapped and mixed.

A source yields rows with the *stage's* column names (``columns:`` maps stage column ← source column).
Rows that cannot be used are dropped and counted; more than ``MAX_DROP_FRACTION`` dropped is an error
naming the source and an example row, because that almost always means a wrong column mapping.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import DataSource
from pipeline.schema import ConfigError

log = logging.getLogger(__name__)

MAX_DROP_FRACTION = 0.01
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
    source: str
    rows: int
    dropped: int
    used: int = 0


@dataclass
class LoadedData:
    rows: list[dict[str, Any]]
    reports: list[SourceReport] = field(default_factory=list)

    def describe(self) -> str:
        return ", ".join(f"{r.source}: {r.used} rows ({r.dropped} dropped)" for r in self.reports)


def _seed_for(source: DataSource, seed: int) -> int:
    """A per-source seed, so that two sources of one task do not draw the same rows."""
    key = f"{source.source}|{source.split}|{sorted(source.options.items())}|{seed}"
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


def read_source(source: DataSource, seed: int) -> list[dict[str, Any]]:
    """The raw rows of one source (source column names)."""
    if source.source.startswith("builtin:"):
        from pipeline.data.synthetic import generate

        task = source.source.removeprefix("builtin:")
        try:
            return generate(task, source.split, source.size or 0, seed=seed, **source.options)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"data source '{source.source}' ({source.split}) cannot be generated: {exc}"
            ) from None
    import datasets

    path = Path(source.source).expanduser()
    try:
        if path.is_file():
            fmt = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(path.suffix)
            if fmt is None:
                raise DataError(
                    f"data source '{source.source}' has an unsupported suffix (use .jsonl, .json, .parquet, .csv)"
                )
            ds = datasets.load_dataset(fmt, data_files=str(path), split="train")
        else:  # a hub id, or a local folder laid out like a hub dataset repository
            ds = datasets.load_dataset(
                source.source, name=source.config, split=source.split, revision=source.revision
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
        raw = read_source(source, _seed_for(source, seed))
        if not raw:
            raise DataError(f"data source '{source.source}' ({source.split}) has no rows")
        kept, dropped, example = [], 0, None
        for row in raw:
            mapped = map_columns(row, source.columns)
            if transform is not None and mapped is not None:
                mapped = transform(mapped)
            bad = mapped is None or [c for c, ok in required.items() if not ok(mapped.get(c))]
            if bad:
                dropped += 1
                example = example or (row, bad)
                continue
            kept.append(mapped)
        if dropped > MAX_DROP_FRACTION * len(raw):
            row, bad = example
            what = f"missing or invalid column(s) {', '.join(bad)}" if isinstance(bad, list) else "unusable"
            shown = {k: (str(v)[:60]) for k, v in list(row.items())[:6]}
            raise DataError(
                f"data source '{source.source}' dropped {dropped} of {len(raw)} rows ({what}), "
                f"e.g. row {shown}; check its 'columns:' mapping (needed: {', '.join(required)})"
            )
        if dropped:
            log.warning("data source %s: dropped %d of %d unusable rows", source.source, dropped, len(raw))
        per_source.append(kept)
        reports.append(SourceReport(source.source, len(raw), dropped))

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
