"""GRPO step time: plain TRL ``GRPOTrainer`` (its defaults, as a user would write it) against Cascade's
GRPO stage per generation engine, same model, prompts, group size, batch, lengths, temperature, steps.

    python bench/bench_grpo.py                              # qwen3-0.6b-body, 8 prompts × G 8 × 256 tokens
    python bench/bench_grpo.py --engines hf,compiled --steps 6
    python bench/bench_grpo.py --engines compiled,compiled+torch_compile   # the training step compiled too
    python bench/bench_grpo.py --engines compiled+keep,compiled    # copy and cache kept through training

Prompts are the builtin math task's, rendered identically for both (Cascade's own prompt format); the
reward is the math verifier. Per variant it prints the steady-state seconds per step (the first step,
which pays for allocation and compilation, is left out and printed apart), completion tokens per
second, the share of the step spent generating and scoring, the GPU's busy share after the first step
(nvidia-smi), peak GPU memory and the MFU of the training part (6 × parameters × trained tokens over
the step's remaining time). The plain trainer is timed by a subclass that only wraps TRL's generation
and reward methods.
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
from bench.stage import GPUBusy, announce, mfu, run_stage, steady, step_history  # noqa: E402


def prompts(n: int, seed: int) -> list[dict[str, Any]]:
    from pipeline.config import DataSource
    from pipeline.data.formatting import rl_prompt
    from pipeline.data.sources import is_prompt, load_rows

    rows = load_rows([DataSource("builtin:math", size=n)], {"prompt": is_prompt}, seed).rows
    return [{"prompt": rl_prompt(r["prompt"], "no_think"), "answer": r["answer"]} for r in rows]


def plain_trl(
    path: Path, rows: list[dict[str, Any]], args: argparse.Namespace, out: Path, callbacks: list[Any]
) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rewards.math import math_reward

    class Timed(GRPOTrainer):
        """GRPOTrainer, unchanged, with its generation and reward calls timed."""

        def _timed(self, metric: str, call: Any, *a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return call(*a, **k)
            finally:
                self._metrics["train"][metric].append(time.perf_counter() - t0)

        def _generate_single_turn(self, *a: Any, **k: Any) -> Any:
            return self._timed("time/generation", super()._generate_single_turn, *a, **k)

        def _calculate_rewards(self, *a: Any, **k: Any) -> Any:
            return self._timed("time/rewards", super()._calculate_rewards, *a, **k)

    config = GRPOConfig(
        output_dir=str(out),
        num_generations=args.group,
        per_device_train_batch_size=args.prompts_per_step * args.group,
        max_completion_length=args.max_new_tokens,
        temperature=args.temperature,
        max_steps=args.steps,
        bf16=torch.cuda.is_available(),
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
    )
    trainer = Timed(
        model=str(path),
        reward_funcs=math_reward,
        args=config,
        train_dataset=Dataset.from_list(rows),
        callbacks=callbacks,
    )
    trainer.train()
    return {"history": trainer.state.log_history}


def add_workload_arguments(ap: argparse.ArgumentParser) -> None:
    """The rollout workload's options, shared with ``profile_grpo.py``."""
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--prompts-per-step", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--rows", type=int, default=256)


def cascade_recipe(path: Path, variant: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """A one-stage recipe: Cascade's GRPO stage on the benchmark's workload. ``variant`` is an engine name,
    with ``+torch_compile`` for a training step compiled by the trainer (``train.extra``) and ``+keep``
    for an inference copy and KV cache kept through the training step (``generation.free_for_training:
    false``; the default frees them)."""
    engine, *flags = variant.split("+")
    if set(flags) - {"torch_compile", "keep"}:
        raise SystemExit(f"unknown variant '{variant}': an engine, optionally with +torch_compile and +keep")
    fused = "torch_compile" in flags
    return {
        "run": {"name": "bench", "output_dir": str(out), "seed": 0},
        "model": {"name_or_path": str(path)},
        "tracking": {"backend": "none"},
        "eval": {"enabled": False},
        "generation": {"engine": engine, "free_for_training": "keep" not in flags},
        "stages": {
            "rl": {
                "kind": "grpo",
                "domain": "math",
                "data": [{"source": "builtin:math", "size": args.rows}],
                "rewards": [{"name": "math"}],
                "num_generations": args.group,
                "max_completion_length": args.max_new_tokens,
                "temperature": args.temperature,
                "top_p": 1.0,
                "train": {
                    "max_steps": args.steps,
                    "batch_size": args.prompts_per_step * args.group,
                    "learning_rate": 1e-6,
                    "logging_steps": 1,
                    "save_steps": 10_000,
                    "extra": {"torch_compile": True} if fused else {},
                },
            }
        },
    }


def cascade(
    path: Path, variant: str, args: argparse.Namespace, out: Path, callbacks: list[Any]
) -> dict[str, Any]:
    import json

    summary = run_stage(cascade_recipe(path, variant, args, out), "rl", str(path), callbacks)
    phase = next((out / "bench").rglob("phase.json"))
    return {"history": json.loads(phase.read_text())["log_history"], "summary": summary}


def report(
    name: str, result: dict[str, Any], params: int, rows_per_step: int, busy: float | None, peak: float
) -> None:
    h = result["history"]
    steps = step_history(h, "step_time")
    gen, rew = step_history(h, "time/generation"), step_history(h, "time/rewards")
    lengths = step_history(h, "completions/mean_length")
    tokens = step_history(h, "num_tokens")
    per_step_tokens = [b - a for a, b in zip([0.0, *tokens], tokens, strict=False)]
    s, g, r = steady(steps), steady(gen), steady(rew)
    completion_tps = (steady(lengths) or 0) * rows_per_step / s if s else None
    train_s = s - (g or 0) - (r or 0) if s else None
    util = mfu(params, steady(per_step_tokens) or 0, train_s) if train_s else None
    print(
        f"{name:<31} {steps[0] if steps else float('nan'):>8.2f} {s or float('nan'):>8.2f} "
        f"{completion_tps or float('nan'):>9.0f} {100 * (g or 0) / s if s else float('nan'):>6.0f}% "
        f"{100 * (r or 0) / s if s else float('nan'):>6.0f}% {busy if busy is not None else float('nan'):>6.0f}% "
        f"{peak:>8.1f} {100 * util if util else float('nan'):>6.1f}%"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(ap, "qwen3-0.6b-body")
    ap.add_argument(
        "--engines",
        default="trl,compiled",
        help="trl (plain GRPOTrainer) and Cascade engines; +torch_compile also compiles the training step, "
        "+keep keeps the inference copy and KV cache through it (the default frees them)",
    )
    ap.add_argument("--steps", type=int, default=6)
    add_workload_arguments(ap)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    path = build(args.shape, Path(args.model_dir))
    params = announce(args.shape, path)
    rows_per_step = args.prompts_per_step * args.group
    print(
        f"workload: {args.prompts_per_step} prompts × G {args.group} = {rows_per_step} rollouts per step, "
        f"{args.max_new_tokens} new tokens, T={args.temperature}, {args.steps} steps (the first reported apart)"
    )
    print(
        f"{'variant':<31} {'step 1 s':>8} {'s/step':>8} {'compl tok/s':>9} {'gen':>7} {'reward':>7} "
        f"{'GPU busy':>7} {'peak GiB':>8} {'train MFU':>7}"
    )
    data = prompts(args.rows, 0)
    for name in args.engines.split(","):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as tmp, GPUBusy() as busy:
            if name == "trl":
                result = plain_trl(path, data, args, Path(tmp), [busy.callback()])
            else:
                result = cascade(path, name, args, Path(tmp), [busy.callback()])
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
        report(
            "plain TRL" if name == "trl" else f"Cascade {name}",
            result,
            params,
            rows_per_step,
            busy.steady,
            peak,
        )


if __name__ == "__main__":
    main()
