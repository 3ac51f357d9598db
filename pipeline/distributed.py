"""The process group every part of Cascade shares (Accelerate's ``PartialState``), on GPUs or on CPUs.

Accelerate enables its gloo CPU backend only when asked for CPU explicitly, so on a machine without a
GPU the state is created with ``cpu=True``: ``accelerate launch --multi_gpu --num_processes 2`` (or
``torchrun --nproc_per_node 2``) then gives two CPU processes that train and evaluate together.
"""

from __future__ import annotations

from typing import Any


def process_state() -> Any:
    """The shared ``PartialState`` (created on first use; CPU backend when there is no GPU)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
