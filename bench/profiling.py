"""What the profile scripts share: a trainer callback that profiles chosen steps, and the GPU's busy time
read from the profile.

The GPU is busy while at least one kernel or copy runs. Summing the operators' GPU times over-counts
twice: an operator's self GPU time is its kernels' time (so operators and kernels hold the same time),
and a range named with ``record_function`` (the optimizer's step, Cascade's ``cascade/<phase>``) appears
on the GPU as an annotation spanning the kernels inside it. So busy time here is the union of the
kernels' and copies' intervals, which also counts work on overlapping streams once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

Interval = tuple[float, float]  # (start, end), µs from the profile's start


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


def add_profile_arguments(ap: Any, skip: int, active: int = 3) -> None:
    """``--skip``, ``--active`` and ``--ops``, the same in every profile script."""
    ap.add_argument(
        "--skip", type=int, default=skip, help="steps run before profiling (allocation, compilation)"
    )
    ap.add_argument("--active", type=int, default=active, help="steps profiled")
    ap.add_argument("--ops", type=int, default=25, help="operators listed")


def profile_stage(recipe: dict[str, Any], stage: str, init: str, skip: int, active: int) -> StepProfiler:
    """Run ``stage`` of ``recipe`` from ``init`` (``bench.stage.run_stage``) with steps ``skip + 1`` …
    ``skip + active`` profiled; the profiler, holding the profile and the steps' wall time."""
    from bench.stage import run_stage

    profiler = StepProfiler(skip, active)
    run_stage(recipe, stage, init, callbacks=[profiler.callback()])
    if profiler.wall_s is None:
        raise SystemExit("the profiled steps did not run (fewer steps than --skip + --active?)")
    return profiler


def device_time(event: Any) -> float:
    """An averaged event's own GPU time in µs (the attribute's name changed across torch versions)."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def on_device(event: Any) -> bool:
    """Whether an event is the GPU's own work (a kernel, a copy): not the operator that launched it, and not
    a named range's annotation on the GPU's timeline."""
    from torch.autograd import DeviceType

    return event.device_type != DeviceType.CPU and not getattr(event, "is_user_annotation", False)


def merged(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of ``intervals`` as sorted, disjoint intervals."""
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def covered(busy: list[Interval], window: Interval) -> float:
    """How much of ``window`` the disjoint ``busy`` intervals cover (µs)."""
    lo, hi = window
    return sum(max(0.0, min(end, hi) - max(start, lo)) for start, end in busy)


def gpu_busy(profile: Any) -> list[Interval]:
    """When the GPU ran a kernel or a copy during ``profile``: disjoint intervals, µs."""
    return merged((e.time_range.start, e.time_range.end) for e in profile.events() if on_device(e))


def ranges(profile: Any, name: str) -> list[Interval]:
    """The host-side intervals of the ranges named ``name`` (``record_function``) in ``profile``."""
    from torch.autograd import DeviceType

    return [
        (e.time_range.start, e.time_range.end)
        for e in profile.events()
        if e.name == name and e.device_type == DeviceType.CPU
    ]
