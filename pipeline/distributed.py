"""The process group every part of Cascade shares (Accelerate's ``PartialState``), on GPUs or on CPUs.

Accelerate enables its gloo CPU backend only when asked for CPU explicitly, so on a machine without a
GPU the state is created with ``cpu=True``: ``accelerate launch --multi_gpu --num_processes 2`` (or
``torchrun --nproc_per_node 2``) then gives two CPU processes that train and evaluate together.

``accelerate launch`` also sets ``OMP_NUM_THREADS=1`` in every process it starts unless told otherwise,
which on a CPU-only machine leaves all cores but one idle. Without a GPU, Cascade gives each process
its share of the machine's cores instead (``rewards.process.cpu_share``; ``CASCADE_CPU_THREADS``
chooses the number).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from pipeline.schema import ConfigError
from rewards.process import TORCH_THREADS, available_cpus, check_share_variables, cpu_share

logger = logging.getLogger(__name__)


def cpu_threads(env: Mapping[str, str], cpu_count: int) -> int | None:
    """Torch threads per process for a run without a GPU, or None to leave torch's own choice.

    ``CASCADE_CPU_THREADS`` wins; otherwise a process that ``accelerate launch`` pinned to one thread
    gets its share of the node's cores.
    """
    if env.get(TORCH_THREADS):
        try:
            return cpu_share(TORCH_THREADS, environ=env, cpus=cpu_count)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    launched_by_accelerate = any(key.startswith("ACCELERATE_") for key in env)
    if not launched_by_accelerate or env.get("OMP_NUM_THREADS") != "1":
        return None
    share = cpu_share(environ=env, cpus=cpu_count)
    return share if share > 1 else None


def process_state() -> Any:
    """The shared ``PartialState`` (created on first use; CPU backend and CPU threads when there is no GPU).

    Raises ConfigError when a variable that sets a process's share of the cores is unusable, so a typo
    in ``CASCADE_REWARD_WORKERS`` fails the launch, not the first reward call of a stage.
    """
    import torch
    from accelerate import PartialState

    try:
        check_share_variables()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    on_cpu = not torch.cuda.is_available()
    threads = cpu_threads(os.environ, available_cpus()) if on_cpu else None
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        logger.info("no GPU: %d CPU threads per process (%s sets the number)", threads, TORCH_THREADS)
    return PartialState(cpu=on_cpu)


def leave_process_group() -> None:
    """Destroy the process group, if this process joined one, at the end of a command every process finished.

    Left to the interpreter's exit, the group's gloo and store threads can be torn down while still running,
    and a process that has finished its work aborts ("terminate called without an active exception"),
    which the launcher reports as a failed run: about one two-process CPU launch in twenty on a loaded
    host did. Accelerate's ``end_training`` does the same. Only for endings every process reached
    together: after a crash another process may still wait in a collective, and exiting is what frees it.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
