"""What belongs to one process: its share of the CPU cores, and objects (worker pools) it must not share.

Rewards run inside training processes that ``torchrun``/``accelerate launch`` start several of per node,
and inside processes that fork (``DataLoader`` workers). Two things follow, and both are decided here
once for every part of Cascade (training threads, the math pool, the code sandboxes):

* **A share of the cores.** Each process of a node takes its part of the CPUs it may run on
  (``CPUs / LOCAL_WORLD_SIZE``), not all of them, or N ranks start N times too many workers. A
  variable such as ``CASCADE_REWARD_WORKERS`` sets the number by hand.
* **Objects of one process.** A worker pool's processes and pipes belong to the process that started
  them: a forked child must build its own instead of writing to its parent's pipes (or killing its
  parent's workers at exit), and a lock some other thread held at the fork would never be released in
  the child. :class:`PerProcess` holds such objects, forgets them in a forked child and closes them at
  interpreter exit. Python has no such helper (``multiprocessing.util`` keeps an undocumented one for
  its own objects), hence this one.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

TORCH_THREADS = "CASCADE_CPU_THREADS"
REWARD_WORKERS = "CASCADE_REWARD_WORKERS"
SANDBOX_WORKERS = "CASCADE_SANDBOX_WORKERS"
SHARE_VARIABLES = (TORCH_THREADS, REWARD_WORKERS, SANDBOX_WORKERS)
"""The variables that set a share by hand: torch threads per process, math workers, code sandboxes."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cpu_share(
    variable: str | None = None,
    *,
    cap: int | None = None,
    environ: Mapping[str, str] | None = None,
    cpus: int | None = None,
) -> int:
    """How many cores this process may keep busy: ``$variable`` when set, else its share of the node.

    The share is the CPUs this process may run on divided among the processes of its node
    (``LOCAL_WORLD_SIZE``, set by torchrun and ``accelerate launch``), at most ``cap``, at least 1.
    A value set by hand is taken as it is (``cap`` does not apply); one that is not a whole number of
    at least 1 raises ``ValueError`` naming the variable.
    """
    env = os.environ if environ is None else environ
    if variable is not None and env.get(variable):
        raw = env[variable]
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{variable} must be a whole number, got {raw!r}") from None
        if value < 1:
            raise ValueError(f"{variable} must be at least 1, got {value}")
        return value
    try:
        local = max(1, int(env.get("LOCAL_WORLD_SIZE") or 1))
    except ValueError:
        local = 1
    share = max(1, (available_cpus() if cpus is None else cpus) // local)
    return min(share, cap) if cap is not None else share


def check_share_variables(environ: Mapping[str, str] | None = None) -> None:
    """Raise ``ValueError`` for the first of :data:`SHARE_VARIABLES` set to something unusable.

    A launcher calls this before any work starts, so a typo fails the launch instead of the first reward
    call of a stage hours later.
    """
    for variable in SHARE_VARIABLES:
        cpu_share(variable, environ=environ)


# -- objects of one process ------------------------------------------------------------------------

T = TypeVar("T")
_ALL: list[PerProcess] = []  # every holder; they are module globals and live as long as the process


class PerProcess(Generic[T]):
    """Objects created on first use, one per key and per process; closed at exit, forgotten by a fork.

    ``get(key, create)`` returns this process's object for ``key``, calling ``create()`` the first time.
    ``create`` runs outside the lock, so it may take long or take other locks; when two threads race,
    the first object stored is kept and the other is closed. In a forked child the parent's objects
    are forgotten (not closed: they belong to the parent) and the lock is new.
    """

    def __init__(self, name: str, close: Callable[[T], None] | None = None):
        self.name, self._close = name, close
        self._lock = threading.Lock()
        self._items: dict[Hashable, T] = {}
        self._pid = os.getpid()
        _ALL.append(self)

    def get(self, key: Hashable, create: Callable[[], T]) -> T:
        if self._pid != os.getpid():  # a fork that the hook did not see (os.fork without it)
            self._forget()
        with self._lock:
            found = self._items.get(key)
        if found is not None:
            return found
        made = create()
        with self._lock:
            kept = self._items.setdefault(key, made)
        if kept is not made and self._close is not None:
            self._close(made)
        return kept

    def values(self) -> list[T]:
        with self._lock:
            return list(self._items.values())

    def close_all(self) -> None:
        """Close every object of this process (an exit hook; also for tests)."""
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        if self._pid != os.getpid():
            return
        for item in items:
            if self._close is not None:
                try:
                    self._close(item)
                except Exception as exc:  # one pool failing to stop must not keep the others running
                    logger.warning("could not close a %s object: %s", self.name, exc)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._items = {}
        self._pid = os.getpid()


def _forget_all_after_fork() -> None:
    for holder in _ALL:
        holder._forget()


def _close_all_at_exit() -> None:
    for holder in reversed(_ALL):
        holder.close_all()


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all_after_fork)
