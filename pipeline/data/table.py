"""Stage rows in Arrow: the exact mapped rows, typed tables for the trainers, built once per launch.

A data set of a million rows must not sit in every process as Python objects. Here rows live in Arrow
``datasets.Dataset`` objects, memory-mapped from files, so the processes of a launch share one copy
through the page cache:

- **Mapped rows** (what a source gives after ``columns:``, its preset and the stage's check) are kept
  exactly as the mapping produced them, one pickled row per Arrow cell (:data:`ROW`). Reward columns
  are nested and differ from row to row (a ``kwargs`` dict per instruction, a ``tests`` item that is a
  dict in one row and a list in another); Arrow's struct typing would pad every dict with the keys of
  every other row as ``None`` and widen ints to floats, and a reward would read something the source
  never said. :class:`Rows` reads them back by position, one at a time.
- **Trainer tables** (SFT ``messages``, preference pairs, GRPO prompts) must be typed Arrow columns
  for TRL. :func:`typed_map` builds them in two passes: the first infers each batch's Arrow type and
  unifies them (struct fields merged, as ``Dataset.from_list`` over all rows would), the second writes
  every batch with that one type, which a batched ``map`` without it cannot do.
- :func:`build_once` builds a stage's tables on the main process only and saves them in the stage's
  ``data/`` folder; every process then memory-maps the saved files (no process maps the rows again).

``datasets`` has no exact encoding of arbitrary Python rows (its ``Json`` feature needs datasets 4.7,
and JSON cannot hold every value a Parquet file may give, such as bytes or timestamps); pickling the
rows this process produced itself, into files it wrote itself, is the simplest exact store.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

ROW = "row_pickle"  # the column of mapped rows, one pickled dict per cell
STAGE_DATA = "data"  # the folder under a stage's directory that holds its tables
BATCH = 1000  # rows per batch when mapping and typing
COUNTS = "counts.json"  # beside a stage's tables: what building them counted (rows, dropped, ties)


def encode(row: dict[str, Any]) -> bytes:
    return pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)


def decode(cell: bytes) -> dict[str, Any]:
    return pickle.loads(cell)


def row_table(rows: Sequence[dict[str, Any]]) -> Any:
    """An Arrow table of mapped rows (one :data:`ROW` column)."""
    import pyarrow as pa

    return pa.table({ROW: pa.array([encode(r) for r in rows], type=pa.large_binary())})


def rows_dataset(rows: Sequence[dict[str, Any]]) -> Any:
    """An in-memory ``Dataset`` of mapped rows (builtin tasks, tests)."""
    from datasets import Dataset

    return Dataset(_in_memory(row_table(rows)))


def _in_memory(table: Any) -> Any:
    from datasets.table import InMemoryTable

    return InMemoryTable(table)


class Rows(Sequence[dict[str, Any]]):
    """The mapped rows of a ``Dataset`` of :data:`ROW` cells, read by position (a list's interface)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset.select_columns([ROW]).with_format("arrow")

    def __len__(self) -> int:
        return len(self.dataset)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [decode(c) for c in self.dataset[index][ROW].to_pylist()]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        return decode(self.dataset[index][ROW][0].as_py())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for table in self.dataset.iter(batch_size=BATCH):
            yield from (decode(c) for c in table[ROW].to_pylist())

    def __repr__(self) -> str:
        return f"Rows({len(self)})"


def raw_batches(raw: Any) -> Iterator[list[dict[str, Any]]]:
    """A source's raw rows in batches of Python dicts, as ``Dataset.to_list`` gives them."""
    if isinstance(raw, list):
        for start in range(0, len(raw), BATCH):
            yield raw[start : start + BATCH]
        return
    for table in raw.with_format("arrow").iter(batch_size=BATCH):
        yield to_rows(table, raw.features)


def to_rows(table: Any, features: Any) -> list[dict[str, Any]]:
    """An Arrow batch of a source as Python rows, exactly as ``Dataset.to_list`` gives them.

    ``datasets`` decodes some columns on the way out (its JSON-typed fields, stored as text); a batch
    goes through the same ``to_list`` to get the same values.
    """
    from datasets import Dataset, DatasetInfo

    return Dataset(_in_memory(table), info=DatasetInfo(features=features)).to_list()


def typed_map(
    rows: Any,
    fn: Callable[[dict[str, Any], int], dict[str, Any] | None],
    *,
    desc: str,
    cache_file: Path | None = None,
) -> tuple[Any, int]:
    """``fn(row, index)`` over the mapped rows of ``rows`` as a typed ``Dataset``, and the rows it dropped.

    ``fn`` returns the trainer columns of a row, or None to leave the row out; it must be a pure function
    of its arguments (it runs twice per row). Every batch is written with the type that unifies the
    types of all batches, so rows with a key that others lack (a tool call, a system turn) fit in one
    table. The table goes to ``cache_file`` (memory-mapped), or stays in memory without one.
    """
    import pyarrow as pa
    from datasets import Features

    view = Rows(rows)
    schemas = []
    kept = 0
    for start in range(0, len(view), BATCH):
        outs = [
            o for i, row in enumerate(view[start : start + BATCH], start) if (o := fn(row, i)) is not None
        ]
        if outs:
            schemas.append(pa.Table.from_pylist(outs).schema)
            kept += len(outs)
    if not schemas:
        return None, len(view)
    features = Features.from_arrow_schema(pa.unify_schemas(schemas, promote_options="permissive"))

    def batch(table: Any, indices: list[int]) -> Any:
        cells = table[ROW].to_pylist()
        outs = [o for cell, i in zip(cells, indices, strict=True) if (o := fn(decode(cell), i)) is not None]
        return pa.Table.from_pylist(outs, schema=features.arrow_schema)

    typed = view.dataset.map(
        batch,
        batched=True,
        batch_size=BATCH,
        with_indices=True,
        remove_columns=[ROW],
        features=features,
        desc=desc,
        **written_to(cache_file),
    )
    return typed.with_format(None), len(view) - kept


def written_to(cache_file: Path | None) -> dict[str, Any]:
    """``Dataset.map`` arguments that write its result to ``cache_file`` (always recomputed), or keep it in memory."""
    if cache_file is None:
        return {"keep_in_memory": True, "new_fingerprint": _fresh()}
    return {"cache_file_name": str(cache_file), "load_from_cache_file": False, "new_fingerprint": _fresh()}


def _fresh() -> str:
    """A fingerprint for a map's result: it is never looked up again (every build maps afresh)."""
    import uuid

    return uuid.uuid4().hex


def build_once(path: Path, build: Callable[[Path], tuple[Any, dict[str, Any]]]) -> tuple[Any, dict[str, Any]]:
    """Tables built by the main process, saved at ``path``, and memory-mapped by every process.

    ``build(scratch)`` returns a ``DatasetDict`` and a few counts worth reporting (JSON); only the main
    process calls it, writing what it maps into the ``scratch`` folder it is given (so that nothing large
    is held in memory). The others wait and open what it saved. A failure of the build (a source with too
    many unusable rows) reaches every process, so none waits for ever.
    """
    import json
    import shutil

    from datasets import load_from_disk

    from pipeline.atomic import atomic_dir
    from pipeline.distributed import process_state
    from pipeline.schema import ConfigError

    state = process_state()
    error: Exception | None = None
    failure: tuple[bool, str] | None = None
    if state.is_main_process:
        scratch = path.with_name(path.name + ".build")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        try:
            tables, counts = build(scratch)
            with atomic_dir(path) as staged:
                tables.save_to_disk(str(staged / "tables"))
                (staged / COUNTS).write_text(json.dumps(counts))
        except Exception as exc:
            error, failure = exc, (isinstance(exc, ConfigError), str(exc) or type(exc).__name__)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        failure = broadcast_object_list([failure])[0]  # every process learns how the build went
    if error is not None:
        raise error
    if failure is not None:
        is_config, message = failure
        raise (
            ConfigError(message) if is_config else RuntimeError(f"building the stage data failed: {message}")
        )
    return load_from_disk(str(path / "tables")), json.loads((path / COUNTS).read_text())
