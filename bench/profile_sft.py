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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_sft import cascade_recipe  # noqa: E402
from bench.profiling import add_profile_arguments, device_time, gpu_busy, on_device, profile_stage  # noqa: E402
from bench.shapes import add_model_arguments, build  # noqa: E402
from bench.stage import announce  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(ap, "qwen3-0.6b-body")
    ap.add_argument("--variant", default="cascade-packed", help="a bench_sft.py Cascade variant")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=1024)
    add_profile_arguments(ap, skip=3)
    args = ap.parse_args()
    args.steps = args.skip + args.active
    logging.basicConfig(level=logging.WARNING)

    import torch

    path = build(args.shape, Path(args.model_dir))
    announce(args.shape, path)
    with tempfile.TemporaryDirectory() as tmp:
        recipe = cascade_recipe(path, args, Path(tmp), args.variant)
        profiler = profile_stage(recipe, "sft", str(path), args.skip, args.active)
    averages = profiler.profile.key_averages()
    gpu = torch.cuda.is_available()
    per_step_ms = 1000 * profiler.wall_s / args.active
    print(
        f"variant {args.variant}, batch {args.batch}, max_length {args.max_length}: {per_step_ms:.1f} ms a step"
    )
    if gpu:
        busy_ms = sum(end - start for start, end in gpu_busy(profiler.profile)) / 1000 / args.active
        kernel_ms = sum(device_time(e) for e in averages if on_device(e)) / 1000 / args.active
        kernels = sum(e.count for e in averages if on_device(e)) / args.active
        print(
            f"GPU busy {busy_ms:.1f} ms a step ({busy_ms / per_step_ms:.0%} of the wall; kernels' own time "
            f"{kernel_ms:.1f} ms), {kernels:.0f} kernels and copies a step"
        )
    sort = "self_cuda_time_total" if gpu else "self_cpu_time_total"
    print(averages.table(sort_by=sort, row_limit=args.ops))


if __name__ == "__main__":
    main()
