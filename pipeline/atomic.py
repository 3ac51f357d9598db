"""Writes that a kill at any moment leaves whole: the old version or the new one, never a torn mix.

A file goes to a temporary file in the same folder, is flushed to disk and renamed over the old one; a
directory (a checkpoint) is built beside its final place under ``<name>.tmp`` and renamed into place.
Then the folder itself is flushed, so the rename survives a power cut too. The ledger, eval files,
reports and checkpoints are all written this way. Why by hand: the standard library has the pieces
(``tempfile``, ``os.replace``, ``os.fsync``) but nothing that puts them together, and neither has any
library Cascade depends on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def file_mode() -> int:
    """The mode ``open()`` would give a new file: ``0o666`` less the process umask.

    ``mkstemp`` creates its file ``0600``; run files are meant to be read by the group that shares a
    runs directory (dashboards, colleagues), as the user's umask says. The umask is read from
    ``/proc/self/status`` where there is one, because the only portable way to read it (set it and set it
    back) would, for that instant, change the mode of files other threads create.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o666 & ~_UMASK_AT_IMPORT


def _umask_at_import() -> int:
    mask = os.umask(0o022)  # at import, before any thread of Cascade's exists
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_at_import()


def write_file(path: Path | str, write: Callable[[IO[Any]], Any], *, binary: bool = False) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then put it in ``path``'s place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        handle = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_folder(path.parent)


def write_json(path: Path | str, data: Any) -> None:
    """Write ``data`` as indented JSON (values JSON does not know are written as their ``str``)."""

    def dump(handle: IO[str]) -> None:
        json.dump(data, handle, indent=2, default=str)
        handle.write("\n")

    write_file(path, dump)


def write_text(path: Path | str, text: str) -> None:
    write_file(path, lambda handle: handle.write(text))


def staging_dir(final: Path | str) -> Path:
    """Where ``final`` is built before :func:`commit_dir` (the same path in every process)."""
    final = Path(final)
    return final.with_name(final.name + ".tmp")


def clear_staging(final: Path | str) -> Path:
    """An empty staging folder for ``final`` (what a killed earlier attempt left there is removed)."""
    staged = staging_dir(final)
    shutil.rmtree(staged, ignore_errors=True)
    return staged


def commit_dir(staged: Path | str, final: Path | str) -> None:
    """Put the finished folder ``staged`` in ``final``'s place, replacing what was there."""
    staged, final = Path(staged), Path(final)
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)  # a folder cannot be renamed over a non-empty one: set the old one aside
    os.replace(staged, final)
    shutil.rmtree(old, ignore_errors=True)
    _sync_folder(final.parent)


@contextlib.contextmanager
def atomic_dir(final: Path | str) -> Iterator[Path]:
    """Build a folder in the ``with`` block (in the path it yields); it replaces ``final`` on success."""
    staged = clear_staging(final)
    staged.mkdir(parents=True)
    try:
        yield staged
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    commit_dir(staged, final)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
