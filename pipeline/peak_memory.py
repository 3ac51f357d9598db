"""Peak memory of a stage, for the ledger: the GPU's high-water mark and the process's resident set.

Sizing a run (will the 14B recipe's RL stage fit, how much host memory the sandbox pool and the
generation engine take) needs what each stage really used, not an estimate. The GPU figure is
PyTorch's own high-water mark of allocated memory since the stage began (what the caching allocator
handed to tensors; ``nvidia-smi`` shows more, the cache and the CUDA context included). The host figure
is the process's peak resident set since it started (the kernel keeps no per-stage peak), so it only
grows from stage to stage; worker processes (the code sandbox) are not in it.
"""

from __future__ import annotations

import resource
import sys

GIB = 1024**3


def reset() -> None:
    """Start a new GPU high-water mark (a no-op without CUDA)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def read() -> dict[str, float]:
    """``gpu_peak_gib`` (absent without CUDA) and ``host_peak_rss_gib``, rounded to MiB."""
    import torch

    peaks: dict[str, float] = {}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peaks["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 3)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peaks["host_peak_rss_gib"] = round(rss * (1 if sys.platform == "darwin" else 1024) / GIB, 3)
    return peaks
