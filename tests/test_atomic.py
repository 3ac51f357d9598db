"""Atomic writes: a kill at any moment leaves the old file or folder or the new one, never a torn one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.atomic import atomic_dir, clear_staging, commit_dir, staging_dir, write_json, write_text


def test_json_round_trip_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.json"]
    assert path.stat().st_mode & 0o777 == 0o644  # readable by others, like any run file


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    write_text(path, "old")
    with pytest.raises(TypeError):
        write_json(path, {"x": 1, 1j: 2})  # a key JSON cannot hold fails mid-write
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_kill_during_writes_leaves_a_valid_file(tmp_path: Path) -> None:
    """SIGKILL a process that rewrites a large JSON file in a loop; the file always parses."""
    path = tmp_path / "ledger.json"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from pipeline.atomic import write_json
        i = 0
        while True:
            write_json({str(path)!r}, {{"i": i, "pad": "x" * 200000}})
            i += 1
        """
    )
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", script])
        time.sleep(0.8)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        data = json.loads(path.read_text())
        assert data["pad"] == "x" * 200000


def test_a_folder_replaces_the_old_one_only_when_complete(tmp_path: Path) -> None:
    final = tmp_path / "final"
    with atomic_dir(final) as staged:
        (staged / "config.json").write_text("1")
    assert (final / "config.json").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_dir(final) as staged:
        (staged / "config.json").write_text("2")
        raise RuntimeError("killed while saving")
    assert (final / "config.json").read_text() == "1"  # the old checkpoint is untouched
    with atomic_dir(final) as staged:
        (staged / "model.safetensors").write_text("3")
    assert sorted(p.name for p in final.iterdir()) == ["model.safetensors"]  # replaced, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_staging_left_by_a_killed_save_is_cleared(tmp_path: Path) -> None:
    final = tmp_path / "final"
    staging_dir(final).mkdir()
    (staging_dir(final) / "torn.bin").write_text("half")
    staged = clear_staging(final)
    staged.mkdir()
    (staged / "config.json").write_text("ok")
    commit_dir(staged, final)
    assert [p.name for p in final.iterdir()] == ["config.json"]
