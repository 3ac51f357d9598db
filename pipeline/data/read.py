"""Reading one data source's raw rows: a builtin task, a local file, a hub-shaped folder or a hub id.

Local files and hub data sets come back as Arrow ``datasets.Dataset`` objects, memory-mapped from the
datasets cache (so a second process, or a second launch, reads the prepared copy instead of parsing the
file again); builtin tasks are generated as Python rows (they are small, and their nested columns must
not be retyped by Arrow).

A file that cannot be read is one sentence naming the file and the reason: an empty file says so; a
JSON Lines file names its first line that is not a JSON object, and why (found by reading the file
here with ``json``, because the loader reports only "an error occurred while generating the dataset").
A hub id that is offline and not in the cache fails at once with the ways out (:mod:`pipeline.hub`).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from pathlib import Path
from typing import Any

from pipeline.config import DataSource
from pipeline.schema import ConfigError

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".gz": "json"}


class DataError(ConfigError):
    """A data source that cannot be used as configured (one sentence naming the source)."""


def read_source(source: DataSource, seed: int) -> Any:
    """The raw rows of one source (source column names): a list for builtin tasks, else a ``Dataset``.

    ``source.size`` rows are drawn at random (by ``seed``) when the source has more.
    """
    if source.source.startswith("builtin:"):
        from pipeline.data.synthetic import generate

        task = source.source.removeprefix("builtin:")
        try:
            return generate(task, source.split or "train", source.size or 0, seed=seed, **source.options)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"data source '{source.source}' ({source.split}) cannot be generated: {exc}"
            ) from None
    path = Path(source.source).expanduser()
    ds = read_file(source.source, path) if path.is_file() else read_hub(source)
    if source.size is not None and len(ds) > source.size:
        ds = ds.shuffle(seed=seed).select(range(source.size))
    return ds


def read_file(name: str, path: Path) -> Any:
    """A local .jsonl / .json / .parquet / .csv (or .jsonl.gz / .json.gz) file as a ``Dataset``."""
    import datasets

    fmt = LOCAL_FORMATS.get(path.suffix)
    if fmt is None or (path.suffix == ".gz" and Path(path.stem).suffix not in (".jsonl", ".json")):
        raise DataError(
            f"data source '{name}' has an unsupported suffix "
            "(use .jsonl, .json, .parquet, .csv, or .jsonl.gz / .json.gz)"
        )
    if _is_empty(path, fmt):
        raise DataError(f"data source '{name}' is an empty file")
    try:
        with _quiet():
            return datasets.load_dataset(fmt, data_files=str(path), split="train")
    except Exception as exc:  # the loader raises many types; the reason is found here, by format
        problem = json_problem(path) if fmt == "json" else None
        raise DataError(f"data source '{name}' could not be read: {problem or _reason(exc)}") from None


def read_hub(source: DataSource) -> Any:
    """A hub data set, or a local folder laid out like a hub repository, split ``source.split``.

    Offline (:func:`pipeline.hub.offline`), a hub id loads from the datasets cache without waiting for
    the network, or fails at once naming the ways out when the cache does not have it.
    """
    import datasets

    from pipeline import hub

    name = source.source
    remote = hub.is_remote(name)
    if remote and hub.offline() and not hub.dataset_cached(name, source.config):
        raise DataError(hub.unavailable("dataset", name))
    offline = hub.offline_mode() if remote and hub.offline() else contextlib.nullcontext()
    try:
        with offline, _quiet():
            return datasets.load_dataset(
                name, name=source.config, split=source.split or "train", revision=source.revision
            )
    except Exception as exc:  # datasets raises many types; the user needs the source and the reason
        raise DataError(f"data source '{name}' could not be loaded: {_reason(exc)}") from None


def _is_empty(path: Path, fmt: str) -> bool:
    """Whether the file holds nothing (text formats: nothing but white space)."""
    if path.stat().st_size == 0:
        return True
    if fmt == "parquet":
        return False
    with _open_text(path) as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return False
    return True


def json_problem(path: Path) -> str | None:
    """Where and why a JSON Lines (or JSON) file does not parse as rows, or None if it does."""
    with _open_text(path) as handle:
        if path.suffix == ".json" or path.name.endswith(".json.gz"):
            try:
                data = json.load(handle)
            except json.JSONDecodeError as exc:
                return f"line {exc.lineno} column {exc.colno} is not valid JSON ({exc.msg})"
            if not isinstance(data, (list, dict)):
                return f"it holds a JSON {type(data).__name__}, not a list of objects"
            return None
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                return f"line {number} is not valid JSON ({exc.msg} at column {exc.colno})"
            if not isinstance(value, dict):
                return f"line {number} is a JSON {type(value).__name__}, not an object"
    return None


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def _reason(exc: BaseException) -> str:
    """The library's own account of a failure, one line: the innermost cause's type and first line."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[0].split())[:300] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _quiet() -> Any:
    """The loader's own error log lines off: the one sentence raised here says it all."""
    import datasets

    level = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)
