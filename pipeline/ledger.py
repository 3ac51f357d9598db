"""The run's durable state: ``runs/<name>/ledger.json``, written atomically, and the resume decisions.

Only the main process writes; every process reads the same file and calls the same pure functions
(:func:`plan`), so all processes take the same decision. A write is temp file → fsync → rename →
fsync of the directory, so a ``kill -9`` at any moment leaves either the old or the new ledger.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.schema import ConfigError

log = logging.getLogger(__name__)

LEDGER_VERSION = 1
PENDING, RUNNING, DONE, FAILED, REGRESSED, STALE = (
    "pending",
    "running",
    "done",
    "failed",
    "regressed",
    "stale",
)
FINISHED = (DONE, REGRESSED)  # a stage whose checkpoint exists and need not be trained again


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Ledger:
    """A thin handle on ledger.json: load, mutate the dict, ``save()`` (main process only).

    Each launch is a session. Its ``wall_s`` is brought up to date by every save, so a session that was
    killed still counts (up to its last write) in the run's ``wall_s``, the sum over sessions.
    """

    def __init__(self, run_dir: Path, data: dict[str, Any], writer: bool):
        self.run_dir, self.data, self.writer = Path(run_dir), data, writer
        self._session: dict[str, Any] | None = None
        self._session_t0 = 0.0

    def open_session(self, processes: int, t0: float | None = None) -> None:
        """Start this launch's session (``t0``: its ``time.monotonic()`` start, default now)."""
        self._session = {"started": now(), "processes": processes, "wall_s": 0.0}
        self._session_t0 = time.monotonic() if t0 is None else t0
        self.data["sessions"].append(self._session)

    def close_session(self, exit_code: int) -> None:
        if self._session is not None:
            self._session.update(ended=now(), exit=exit_code)
        self.save()

    @property
    def path(self) -> Path:
        return self.run_dir / "ledger.json"

    @classmethod
    def read(cls, run_dir: Path) -> dict[str, Any] | None:
        path = Path(run_dir) / "ledger.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:  # never written torn by us; a hand edit may break it
            raise ConfigError(f"ledger '{path}' is not valid JSON ({exc}); fix or remove it") from None

    @classmethod
    def new(cls, run_dir: Path, run_name: str, recipe: str, stages: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "version": LEDGER_VERSION,
            "run_name": run_name,
            "recipe": recipe,
            "created": now(),
            "updated": now(),
            "status": RUNNING,
            "wall_s": 0.0,
            "sessions": [],
            "base": {"status": PENDING},
            "stages": stages,
        }

    def save(self) -> None:
        if not self.writer:
            return
        self.data["updated"] = now()
        if self._session is not None:
            self._session["wall_s"] = round(time.monotonic() - self._session_t0, 2)
            self.data["wall_s"] = round(sum(s.get("wall_s", 0.0) for s in self.data["sessions"]), 2)
        atomic_write_json(self.path, self.data)

    def stage(self, name: str) -> dict[str, Any]:
        for entry in self.data["stages"]:
            if entry["name"] == name:
                return entry
        raise KeyError(name)

    def update_stage(self, name: str, **fields: Any) -> None:
        self.stage(name).update(fields)
        self.save()


class RunLock:
    """One launch per run directory: the main process holds an ``flock`` on ``<run>/.lock`` while it runs.

    The kernel drops the lock when its holder exits, however it exits (``kill -9`` included), so a lock
    file left behind never blocks a resume. On a filesystem without locks the check is skipped, with a
    warning.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._file: Any = None

    def acquire(self) -> str | None:
        """Take the lock: None when this process holds it now, otherwise who holds it."""
        import fcntl
        import socket

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another launch"
            handle.close()
            return holder
        except OSError as exc:
            log.warning(
                "cannot lock %s (%s): a second launch on this run would not be detected", self.path, exc
            )
            handle.close()
            return None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._file = handle
        return None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the lock
            self._file = None


def stage_entry(name: str, index: int, kind: str, domain: str | None, config_hash: str) -> dict[str, Any]:
    return {
        "name": name,
        "index": index,
        "kind": kind,
        "domain": domain,
        "status": PENDING,
        "config_hash": config_hash,
        "checkpoint": None,
        "summary": {},
        "scores": {},
        "gate": None,
        "discarded": False,
    }


def stage_dirname(index: int, name: str) -> str:
    return f"{index:02d}-{name}"


# --------------------------------------------------------------------------------------------------
# Resume decisions (pure: same ledger + recipe → same plan in every process)


@dataclass
class Plan:
    """What to do with each stage of the recipe on this invocation."""

    stages: list[dict[str, Any]]  # the ledger's stage entries, reconciled with the recipe
    todo: list[str]  # stage names to (re)train, in order
    reused: list[str]  # finished stages kept as they are
    stale: list[str]  # finished stages invalidated by rerun_from


def plan(
    previous: dict[str, Any] | None,
    recipe_source: str,
    stages: list[tuple[str, str, str | None]],  # (name, kind, domain) in recipe order
    hashes: dict[str, str],
    rerun_from: str | None,
    checkpoint_ok: Any,  # callable(stage_entry) -> bool
) -> Plan:
    """Reconcile the ledger with the recipe; raise ConfigError on a mismatch the user must resolve."""
    old = {e["name"]: e for e in (previous or {}).get("stages", [])}
    if previous is not None:
        if previous.get("recipe") != recipe_source:
            raise ConfigError(
                f"the run directory holds a run of recipe '{previous.get('recipe')}', not '{recipe_source}'; "
                "choose another run.name"
            )
        removed = [n for n in old if n not in {s[0] for s in stages} and old[n]["status"] in FINISHED]
        if removed:
            raise ConfigError(
                f"the run directory holds finished stage '{removed[0]}', which the recipe no longer has; "
                "choose another run.name"
            )
    rerun_index = next((i for i, s in enumerate(stages) if s[0] == rerun_from), None)
    entries, todo, reused, stale = [], [], [], []
    for i, (name, kind, domain) in enumerate(stages, start=1):
        prior = old.get(name)
        entry = stage_entry(name, i, kind, domain, hashes[name])
        finished = prior is not None and prior["status"] in FINISHED
        if finished and rerun_index is not None and i - 1 >= rerun_index:
            stale.append(name)
            entry["previous_run"] = {
                k: prior.get(k) for k in ("config_hash", "ended", "scores", "checkpoint")
            }
            todo.append(name)
        elif finished:
            if prior["config_hash"] != hashes[name]:
                raise ConfigError(
                    f"stage '{name}' finished with a different config (hash {prior['config_hash']}, recipe now "
                    f"gives {hashes[name]}); re-run it with run.rerun_from={name} or use another run.name"
                )
            if prior.get("index") != i:
                raise ConfigError(
                    f"stage '{name}' was stage {prior.get('index')} of this run and is now stage {i}; "
                    "re-run with run.rerun_from or use another run.name"
                )
            if not checkpoint_ok(prior):
                raise ConfigError(
                    f"stage '{name}' is marked {prior['status']} but its checkpoint '{prior.get('checkpoint')}' "
                    f"is missing or incomplete; re-run it with run.rerun_from={name}"
                )
            entry = prior
            reused.append(name)
        else:
            if prior is not None:
                # interrupted or failed: keep its history, train it (again), resuming from its checkpoints
                # only if its config is unchanged.
                entry["attempts"] = prior.get("attempts", 0)
                entry["resumable"] = prior.get("config_hash") == hashes[name]
            todo.append(name)
        entries.append(entry)
    # A stage after a re-trained one must be re-trained too: its starting checkpoint changes.
    if todo:
        first = next(i for i, e in enumerate(entries) if e["name"] == todo[0])
        for e in entries[first + 1 :]:
            if e["name"] in reused:
                raise ConfigError(
                    f"stage '{e['name']}' is finished but an earlier stage '{todo[0]}' must be trained again; "
                    f"re-run with run.rerun_from={todo[0]} or use another run.name"
                )
    return Plan(entries, todo, reused, stale)
