"""Generation throughput of each engine on a benchmark-shaped workload, eager ``generate`` first.

    python bench/bench_eval.py                                   # 128 prompts × n 8 × 512 tokens
    python bench/bench_eval.py --prompts 64 --n 1 --max-new-tokens 256 --batch-prompts 64   # decoding
    python bench/bench_eval.py --engines hf,compiled --shape qwen3-0.6b-body --check
    python bench/bench_eval.py --engines hf,compiled,compiled+span      # decoding attends over spans

Prompts are random token ids (lengths drawn between --min-len and --max-len with a fixed seed) for a
model of the chosen shape with random weights, so completions rarely end early: every engine decodes
the full length, the worst case of a benchmark. Prompts go to the engine ``--batch-prompts`` at a time,
as evaluation sends a benchmark's ``generation.batch_size``. Each engine first runs one batch untimed
(CUDA graph capture, allocation) and that time is reported apart. ``--check`` compares greedy
completions of ``hf`` and each engine on the first batch. ``compiled+span`` is the compiled engine
attending over the written cache positions in spans of ``--span-bucket`` (``generation.span_bucket``).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.shapes import add_model_arguments, build, describe, machine  # noqa: E402
from pipeline.generation import Sampling, end_tokens, make_engine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(ap, "qwen3-0.6b")
    ap.add_argument("--engines", default="hf,compiled,paged")
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--batch-prompts", type=int, default=32)
    ap.add_argument("--min-len", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=192)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--compile", default="auto", help="the compiled engine's forward: auto, full or none")
    ap.add_argument("--span-bucket", type=int, default=128, help="compiled+span: generation.span_bucket")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch
    from transformers import AutoModelForCausalLM

    path = build(args.shape, Path(args.model_dir))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    vocab = model.config.vocab_size
    rng = random.Random(0)
    prompts = [
        [rng.randrange(100, vocab - 100) for _ in range(rng.randint(args.min_len, args.max_len))]
        for _ in range(args.prompts)
    ]
    batches = [prompts[i : i + args.batch_prompts] for i in range(0, len(prompts), args.batch_prompts)]
    sampling = Sampling(args.max_new_tokens, args.temperature, args.top_p, 0, args.n)
    eos = end_tokens(model, None) if model.generation_config.eos_token_id is not None else [0]
    pad = model.generation_config.pad_token_id or 0
    print(f"machine: {machine()}")
    print(f"model: {args.shape} ({describe(path)}), {dtype}")
    print(
        f"workload: {args.prompts} prompts ({args.min_len}-{args.max_len} tokens) × n {args.n} × "
        f"{args.max_new_tokens} new tokens, {args.batch_prompts} prompts per call, T={args.temperature}, "
        f"top-p {args.top_p}"
    )
    print(f"{'engine':<14} {'first call s':>12} {'total s':>9} {'tok/s':>9} {'speed-up':>8} {'peak GiB':>9}")
    reference = None
    greedy = Sampling(min(args.max_new_tokens, 64), n=1)
    for name in args.engines.split(","):
        kind, _, flag = name.partition("+")
        if flag not in ("", "span") or (flag and kind != "compiled"):
            raise SystemExit(f"unknown engine '{name}': hf, compiled, compiled+span, paged or vllm")
        options = {"compile": args.compile} if kind == "compiled" else {}
        if flag:
            options["span_bucket"] = args.span_bucket
        engine = make_engine(kind, model, eos, pad, **options)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        engine.generate(batches[0], sampling, seed=1)  # allocation, capture, compilation
        first = time.perf_counter() - t0
        tokens, t0 = 0, time.perf_counter()
        for i, batch in enumerate(batches):
            tokens += engine.generate(batch, sampling, seed=100 + i).tokens
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        rate = tokens / seconds
        reference = reference or rate
        print(
            f"{name:<14} {first:>12.2f} {seconds:>9.2f} {rate:>9.0f} {rate / reference:>7.2f}× {peak:>9.2f}"
        )
        if args.check:
            ref = make_engine("hf", model, eos, pad).generate(batches[0], greedy, seed=0).ids
            got = engine.generate(batches[0], greedy, seed=0).ids
            same = sum(a == b for a, b in zip(ref, got, strict=True))
            prefix = sum(
                next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
                / max(len(a), 1)
                for a, b in zip(ref, got, strict=True)
            ) / len(ref)
            print(
                f"{'':<10} greedy vs hf: {same}/{len(ref)} identical, {prefix:.1%} common prefix on average"
            )
        engine.release()
        del engine
        if device == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
