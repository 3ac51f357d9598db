"""SFT throughput: plain TRL ``SFTTrainer`` (its defaults: padded batches) against Cascade's SFT stage
(padded; ``cascade-padding-free``: a batch as one row; ``cascade-packed``: BFD packing, each of the batch's
rows filled with conversations up to max_length; ``-liger`` adds Liger kernels, ``-compile`` compiles the
training step with ``torch.compile`` through ``train.extra``, ``-bf16`` holds the weights in bf16
(``model.dtype: bfloat16``: no float32 master copy, no casts), same model,
conversations, batch size, length limit and steps. Flattened batches use varlen attention
(pipeline/varlen_attention.py). A packed step holds many more conversations than a padded one: compare
real tokens per second, not seconds per step.

    python bench/bench_sft.py                           # qwen3-0.6b-body, the builtin SFT mix, batch 16
    python bench/bench_sft.py --variants trl,cascade,cascade-packed,cascade-packed-liger --steps 30
    python bench/bench_sft.py --variants cascade-packed,cascade-packed-compile      # the fused step
    python bench/bench_sft.py --variants cascade-packed,cascade-packed-bf16,cascade-packed-bf16-compile

The conversations are the builtin tasks' (math, code, instruction, chat, SWE; thinking and non-thinking
prompts), rendered by Cascade's formatting for both. Per variant: seconds per step, real (non-padding)
tokens per second, the share of padding in the batches, peak GPU memory and MFU on real tokens
(6 × parameters × real tokens per second over the GPU's dense bf16 peak).
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

from bench.shapes import add_model_arguments, build  # noqa: E402
from bench.stage import announce, mfu, run_stage  # noqa: E402

MIX = [
    {"source": "builtin:math", "size": 600},
    {"source": "builtin:code", "size": 600},
    {"source": "builtin:instruction", "size": 600},
    {"source": "builtin:chat", "size": 600},
    {"source": "builtin:swe", "size": 600},
]


def conversations() -> list[dict[str, Any]]:
    from pipeline.config import DataSource
    from pipeline.data.formatting import sft_messages
    from pipeline.data.sources import load_rows, row_mode

    rows = load_rows([DataSource(**m) for m in MIX], {}, 0).rows
    return [{"messages": sft_messages(r, row_mode("mixed", 0.3, i, 0))} for i, r in enumerate(rows)]


def plain_trl(path: Path, args: argparse.Namespace, out: Path) -> tuple[float, float, float, int]:
    """(seconds, real tokens, all tokens, steps) of SFTTrainer with its defaults."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=args.batch,
        max_length=args.max_length,
        max_steps=args.steps,
        bf16=torch.cuda.is_available(),
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        include_num_input_tokens_seen="non_padding",
        seed=0,
    )
    trainer = SFTTrainer(model=str(path), args=config, train_dataset=Dataset.from_list(conversations()))
    batches = []
    collate = trainer.data_collator

    def counting(features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate(features)
        batches.append(batch["input_ids"].numel())
        return batch

    trainer.data_collator = counting  # counts the padded batches' tokens; the trainer counts the real ones
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    return seconds, float(trainer.state.num_input_tokens_seen), float(sum(batches[: args.steps])), args.steps


def cascade_recipe(path: Path, args: argparse.Namespace, out: Path, variant: str) -> dict[str, Any]:
    """The one-stage recipe of a Cascade variant: ``cascade`` with ``-padding-free``, ``-packed``, ``-liger``,
    ``-compile``, ``-bf16``."""
    flags = variant.split("-")
    unknown = set(flags) - {"cascade", "padding", "free", "packed", "liger", "compile", "bf16"}
    if flags[0] != "cascade" or unknown:
        raise SystemExit(
            f"unknown variant '{variant}': trl, or cascade with -padding-free, -packed, -liger, -compile, -bf16"
        )
    return {
        "run": {"name": "bench-sft", "output_dir": str(out), "seed": 0},
        "model": {"name_or_path": str(path), "dtype": "bfloat16" if "bf16" in flags else "auto"},
        "tracking": {"backend": "none"},
        "eval": {"enabled": False},
        "stages": {
            "sft": {
                "kind": "sft",
                "prompt_mode": "mixed",
                "think_fraction": 0.3,
                "liger": "liger" in flags,
                "padding_free": "free" in flags,
                "packing": "packed" in flags,
                "data": MIX,
                "train": {
                    "max_steps": args.steps,
                    "batch_size": args.batch,
                    "max_length": args.max_length,
                    "learning_rate": 1e-5,
                    "logging_steps": 10,
                    "save_steps": 10_000,
                    "extra": {"torch_compile": True} if "compile" in flags else {},
                },
            }
        },
    }


def cascade(path: Path, args: argparse.Namespace, out: Path, variant: str) -> tuple[float, float, float, int]:
    summary = run_stage(cascade_recipe(path, args, out, variant), "sft", str(path))
    return float(summary["train_wall_s"]), float(summary["tokens"]), float("nan"), int(summary["steps"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(ap, "qwen3-0.6b-body")
    ap.add_argument("--variants", default="trl,cascade")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=1024)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    path = build(args.shape, Path(args.model_dir))
    params = announce(args.shape, path)
    print(f"workload: builtin SFT mix, batch {args.batch}, max_length {args.max_length}, {args.steps} steps")
    print(f"{'variant':<16} {'s/step':>7} {'real tok/s':>10} {'padding':>8} {'peak GiB':>8} {'MFU':>6}")
    for name in args.variants.split(","):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as tmp:
            if name == "trl":
                seconds, real, total, steps = plain_trl(path, args, Path(tmp))
            else:
                seconds, real, total, steps = cascade(path, args, Path(tmp), name)
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
        util = mfu(params, real, seconds)
        padding = 1 - real / total if total == total and total else float("nan")  # nan: not counted
        print(
            f"{'plain TRL' if name == 'trl' else name:<16} {seconds / steps:>7.3f} {real / seconds:>10.0f} "
            f"{100 * padding:>7.0f}% {peak:>8.1f} {100 * util if util else float('nan'):>5.1f}%"
        )


if __name__ == "__main__":
    main()
