"""Where an SFT step's time goes: Cascade's SFT stage under ``torch.profiler`` for a few steps.

    python bench/profile_sft.py                          # qwen3-0.6b-body, packed batches of 16 rows × 1024
    python bench/profile_sft.py --variant cascade --batch 16 --steps 8

After ``--skip`` steps (allocation, compilation) it records ``--active`` steps and prints, per step: wall
time, the GPU's kernel time (its busy share of the wall), the kernels launched, and the operators
with the most GPU (or, on CPU, CPU) time. A step whose kernel time is far below its wall time is bound by
the host (launches, Python); one whose kernels fill it, by the GPU — and then the table says which.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_sft import cascade_recipe  # noqa: E402
from bench.shapes import add_model_arguments, build  # noqa: E402
from bench.stage import announce, run_stage  # noqa: E402


class StepProfiler:
    """Profiles steps ``skip + 1`` … ``skip + active`` of a training run; ``callback()`` goes to the trainer,
    and after the run ``profile`` holds what was recorded and ``wall_s`` the steps' wall time."""

    def __init__(self, skip: int, active: int):
        import torch

        self.skip, self.active = skip, active
        self.activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            self.activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profile: Any = None
        self.wall_s: float | None = None
        self._start: float | None = None

    def _begin(self, step: int) -> None:
        import torch

        if step == self.skip:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.profile = torch.profiler.profile(activities=self.activities)
            self.profile.__enter__()
            self._start = time.perf_counter()

    def _end(self, step: int) -> None:
        import torch

        if step == self.skip + self.active and self._start is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.wall_s, self._start = time.perf_counter() - self._start, None
            self.profile.__exit__(None, None, None)

    def callback(self) -> Any:
        from transformers import TrainerCallback

        profiler = self

        class Profile(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                profiler._begin(state.global_step)

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                profiler._end(state.global_step)

        return Profile()


def device_time(event: Any) -> float:
    """An averaged event's own GPU time in µs (the attribute's name changed across torch versions)."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def on_device(event: Any) -> bool:
    """Whether an averaged event is the GPU's own work (a kernel, a copy), not the operator that launched
    it: an operator's self GPU time is its kernels' time, so summing both would count every kernel twice."""
    from torch.autograd import DeviceType

    return event.device_type != DeviceType.CPU


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(ap, "qwen3-0.6b-body")
    ap.add_argument("--variant", default="cascade-packed", help="a bench_sft.py Cascade variant")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--skip", type=int, default=3)
    ap.add_argument("--active", type=int, default=3)
    ap.add_argument("--rows", type=int, default=25, help="operators listed")
    args = ap.parse_args()
    args.steps = args.skip + args.active
    logging.basicConfig(level=logging.WARNING)

    import torch

    path = build(args.shape, Path(args.model_dir))
    announce(args.shape, path)
    profiler = StepProfiler(args.skip, args.active)
    with tempfile.TemporaryDirectory() as tmp:
        recipe = cascade_recipe(path, args, Path(tmp), args.variant)
        run_stage(recipe, "sft", str(path), callbacks=[profiler.callback()])
    if profiler.wall_s is None:
        raise SystemExit("the profiled steps did not run (fewer steps than --skip + --active?)")
    averages = profiler.profile.key_averages()
    gpu = torch.cuda.is_available()
    per_step_ms = 1000 * profiler.wall_s / args.active
    print(
        f"variant {args.variant}, batch {args.batch}, max_length {args.max_length}: {per_step_ms:.1f} ms a step"
    )
    if gpu:
        work = [e for e in averages if on_device(e)]
        kernel_ms = sum(device_time(e) for e in work) / 1000 / args.active
        kernels = sum(e.count for e in work) / args.active
        print(
            f"GPU kernel time {kernel_ms:.1f} ms a step ({kernel_ms / per_step_ms:.0%} of the wall), "
            f"{kernels:.0f} kernels and copies a step"
        )
    sort = "self_cuda_time_total" if gpu else "self_cpu_time_total"
    print(averages.table(sort_by=sort, row_limit=args.rows))


if __name__ == "__main__":
    main()
