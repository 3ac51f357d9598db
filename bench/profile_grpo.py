"""Where a GRPO step's time goes: Cascade's GRPO stage under ``torch.profiler`` for a few steps, by phase.

    python bench/profile_grpo.py                        # qwen3-0.6b-body, compiled engine, 8 prompts × G 8 × 256
    python bench/profile_grpo.py --engine hf --skip 1 --active 2   # TRL's own generation, two steps
    python bench/profile_grpo.py --cudnn-attention      # the policy's SDPA free to pick cuDNN, for comparison

The workload is ``bench_grpo.py``'s. After ``--skip`` steps (allocation, graph capture, compilation) it
records ``--active`` steps and prints, per phase of a step — generation and reward scoring (the ranges the
stage's trainer names ``cascade/generation`` and ``cascade/rewards``) and the rest, which is training
(log-probabilities, loss, backward, optimizer) — its wall time and the GPU's busy share in it, then the
operators with the most GPU time. A phase whose GPU is idle most of its wall is bound by the host.

One step is profiled by default: every replay of a captured decoding step records each of its kernels
(hundreds per token), so one step's trace already holds some 10⁵ kernel events to read back.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_grpo import add_workload_arguments, cascade_recipe  # noqa: E402
from bench.profiling import add_profile_arguments, covered, gpu_busy, profile_stage, ranges  # noqa: E402
from bench.shapes import add_model_arguments, build  # noqa: E402
from bench.stage import announce  # noqa: E402

PHASES = ("generation", "rewards")  # named by the trainer; the rest of a step is training


def phase_table(profile: object, wall_us: float, active: int) -> list[tuple[str, float, float | None]]:
    """(phase, ms a step, GPU busy share) for each named phase, the training rest and the whole step."""
    busy = gpu_busy(profile)
    total_busy = sum(end - start for start, end in busy)
    rows, named_wall, named_busy = [], 0.0, 0.0
    for phase in PHASES:
        windows = ranges(profile, f"cascade/{phase}")
        wall = sum(end - start for start, end in windows)
        work = sum(covered(busy, w) for w in windows)
        rows.append((phase, wall / 1000 / active, work / wall if wall else None))
        named_wall, named_busy = named_wall + wall, named_busy + work
    rest = wall_us - named_wall
    rows.append(
        ("training (the rest)", rest / 1000 / active, (total_busy - named_busy) / rest if rest > 0 else None)
    )
    rows.append(("whole step", wall_us / 1000 / active, total_busy / wall_us if wall_us else None))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(ap, "qwen3-0.6b-body")
    ap.add_argument("--engine", default="compiled", help="generation.engine of the stage")
    ap.add_argument(
        "--cudnn-attention",
        action="store_true",
        help="leave SDPA's cuDNN backend on in the policy's forward (the stage turns it off: steady_attention)",
    )
    add_profile_arguments(ap, skip=2, active=1)
    add_workload_arguments(ap)
    args = ap.parse_args()
    args.steps = args.skip + args.active
    logging.basicConfig(level=logging.WARNING)

    import torch

    if args.cudnn_attention:
        import contextlib

        from pipeline.stages.grpo import trainer

        trainer.steady_attention = contextlib.nullcontext
    path = build(args.shape, Path(args.model_dir))
    announce(args.shape, path)
    with tempfile.TemporaryDirectory() as tmp:
        recipe = cascade_recipe(path, args.engine, args, Path(tmp))
        profiler = profile_stage(recipe, "rl", str(path), args.skip, args.active)
    gpu = torch.cuda.is_available()
    print(
        f"engine {args.engine}: {args.prompts_per_step} prompts × G {args.group}, {args.max_new_tokens} new "
        f"tokens; steps {args.skip + 1}–{args.steps} profiled"
        + ("; SDPA's cuDNN backend left on" if args.cudnn_attention else "")
    )
    print(f"{'phase':<22} {'ms a step':>10} {'GPU busy':>9}")
    for phase, ms, share in phase_table(profiler.profile, 1e6 * profiler.wall_s, args.active):
        shown = f"{share:.0%}" if gpu and share is not None else "—"
        print(f"{phase:<22} {ms:>10.1f} {shown:>9}")
    sort = "self_cuda_time_total" if gpu else "self_cpu_time_total"
    print(profiler.profile.key_averages().table(sort_by=sort, row_limit=args.ops))


if __name__ == "__main__":
    main()
