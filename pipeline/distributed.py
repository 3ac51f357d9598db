"""The process group every part of Cascade shares (Accelerate's ``PartialState``), on GPUs or on CPUs.

Accelerate enables its gloo CPU backend only when asked for CPU explicitly, so on a machine without a
GPU the state is created with ``cpu=True``: ``accelerate launch --multi_gpu --num_processes 2`` (or
``torchrun --nproc_per_node 2``) then gives two CPU processes that train and evaluate together.

``accelerate launch`` also sets ``OMP_NUM_THREADS=1`` in every process it starts unless told otherwise,
which on a CPU-only machine leaves all cores but one idle. Without a GPU, Cascade gives each process
its share of the machine's cores instead (``CASCADE_CPU_THREADS`` chooses the number).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from pipeline.schema import ConfigError

logger = logging.getLogger(__name__)

THREADS_ENV = "CASCADE_CPU_THREADS"


def cpu_threads(env: Mapping[str, str], cpu_count: int) -> int | None:
    """Torch threads per process for a run without a GPU, or None to leave torch's own choice.

    ``CASCADE_CPU_THREADS`` wins; otherwise a process that ``accelerate launch`` pinned to one thread
    gets the machine's cores divided among the processes of its node.
    """
    if env.get(THREADS_ENV):
        try:
            threads = int(env[THREADS_ENV])
        except ValueError:
            raise ConfigError(
                f"{THREADS_ENV} must be a whole number of threads, got {env[THREADS_ENV]!r}"
            ) from None
        if threads < 1:
            raise ConfigError(f"{THREADS_ENV} must be at least 1, got {threads}")
        return threads
    launched_by_accelerate = any(key.startswith("ACCELERATE_") for key in env)
    if not launched_by_accelerate or env.get("OMP_NUM_THREADS") != "1":
        return None
    local = int(env.get("LOCAL_WORLD_SIZE") or 1)
    share = max(1, cpu_count // max(1, local))
    return share if share > 1 else None


def _available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def process_state() -> Any:
    """The shared ``PartialState`` (created on first use; CPU backend and CPU threads when there is no GPU)."""
    import torch
    from accelerate import PartialState

    on_cpu = not torch.cuda.is_available()
    if on_cpu:
        threads = cpu_threads(os.environ, _available_cpus())
        if threads is not None and threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            logger.info("no GPU: %d CPU threads per process (%s sets the number)", threads, THREADS_ENV)
    return PartialState(cpu=on_cpu)
