"""One launch per run directory: the main process holds an ``flock`` on ``<run>/.lock`` while it runs.

Two launches writing one run directory would interleave their ledgers and checkpoints. The kernel drops
an ``flock`` when its holder exits, however it exits (``kill -9`` included), so a lock file left behind
never blocks a resume. On a filesystem without locks the check is skipped, with a warning.

On a shared filesystem a lock can outlive a node that died holding it (the lock server has not noticed).
Under Slurm the lock names its holder's job and attempt, and a requeued attempt of the same job takes
such a lock over: Slurm starts an attempt only after the previous one has ended (:mod:`pipeline.slurm`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO, Any

from pipeline.slurm import earlier_attempt, lock_owner_suffix

log = logging.getLogger(__name__)


class RunLock:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._file: IO[Any] | None = None

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
            if earlier_attempt(holder, os.environ):
                log.warning(
                    "the run lock is held by %s, an earlier attempt of this job: taking it over", holder
                )
                self.path.unlink(missing_ok=True)  # the dead holder's lock stays with the old file
                return self.acquire()
            return holder
        except OSError as exc:
            log.warning(
                "cannot lock %s (%s): a second launch on this run would not be detected", self.path, exc
            )
            handle.close()
            return None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}{lock_owner_suffix(os.environ)}\n")
        handle.flush()
        self._file = handle
        return None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the lock
            self._file = None
