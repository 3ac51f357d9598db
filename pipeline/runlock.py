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
import re
import socket
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
        handle.write(
            f"pid {os.getpid()} on {socket.gethostname()}{lock_owner_suffix(os.environ)}\n"
        )  # holder_gone
        handle.flush()
        self._file = handle
        return None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the lock
            self._file = None


def holder_gone(path: Path) -> bool:
    """Whether the launch the lock file names has ended, as far as this machine can tell.

    True only when it ran on this host and its process no longer exists (``kill -9``, a crash of the
    machine's OOM killer): a ledger that still says ``running`` then describes an interrupted run. A
    launch on another host, or a lock file that names none, is given the benefit of the doubt. The lock
    is not probed with ``flock``: taking it even for an instant could refuse a launch starting then.
    """
    try:
        text = Path(path).read_text()
    except OSError:
        return False
    found = re.match(r"pid (\d+) on (\S+)", text.strip())
    if found is None or found.group(2) != socket.gethostname():
        return False
    return not _alive(int(found.group(1)))


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed and not yet reaped by its new parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")
