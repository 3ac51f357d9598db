"""Where a decoding step's time goes: the compiled engine's step by variant, and the sampler alone.

    python bench/profile_decode.py [--shape qwen3-0.6b] [--rows 64] [--length 512]

Times, with CUDA events over ``--steps`` replays each: the eager step; the captured step with greedy,
plain and top-p sampling (top-p by sorting the vocabulary and by rejection, ``sampler``); the same with
the forward compiled; with SDPA's repeated K/V heads instead of grouped decoding attention; the samplers
alone on logits of the model's vocabulary for ``--rows`` and for 256 rows; and, for
reference, HF ``generate`` with its static cache and automatic compilation (``--hf-reference``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.shapes import SHAPES, build, describe, machine  # noqa: E402
from pipeline.generation import Sampling  # noqa: E402
from pipeline.generation.sampler import head_candidates, sample_filtered, sample_plain  # noqa: E402
from pipeline.generation.static import StaticEngine, _Plan  # noqa: E402


def timed(fn, steps: int) -> float:
    """Milliseconds per call of ``fn`` (CUDA events), after two untimed calls."""
    import torch

    for _ in range(2):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(steps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="qwen3-0.6b", choices=SHAPES)
    ap.add_argument("--model-dir", default="/tmp/cascade-bench-models")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument(
        "--variants", default="none,full,full-sdpa", help="compile mode, -sdpa: repeated K/V heads"
    )
    ap.add_argument("--hf-reference", action="store_true")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    path = build(args.shape, Path(args.model_dir))
    print(
        f"machine: {machine()}\nmodel: {args.shape} ({describe(path)}), bf16, {args.rows} rows, cache {args.length}"
    )
    vocab = None
    prompt = [[1000 + i for i in range(100)]] * args.rows
    for variant in args.variants.split(","):
        mode, _, attention = variant.partition("-")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).cuda().eval()
        vocab = model.config.vocab_size
        eos = [model.generation_config.eos_token_id or 0]
        t0 = time.perf_counter()
        e = StaticEngine(model, eos, 0, compile=mode, grouped_attention=attention != "sdpa")
        e.generate(prompt, Sampling(args.length - 100), seed=0)
        b = e._buffers
        setup = time.perf_counter() - t0
        rows = []

        def at_middle(b=b) -> None:  # every timed step decodes position 256 of the cache
            for layer in b.cache.layers:
                layer.cumulative_length.fill_(256)
            b.step.fill_(1)

        if mode == "none":
            rows.append(
                ("eager step, greedy", timed(lambda e=e, b=b: (at_middle(), e._step(b, _Plan(True))), 10))
            )
        for label, plan in [
            ("graph, greedy", _Plan(True)),
            ("graph, plain sampling", _Plan(False)),
            ("graph, top-p sampling, sort", _Plan(False, True)),
            ("graph, top-p sampling, rejection", _Plan(False, True, 0, head_candidates(0.95))),
        ]:
            t1 = time.perf_counter()
            graph = e._graph(plan)
            capture = time.perf_counter() - t1

            def replay(g=graph, at_middle=at_middle):
                at_middle()
                g.replay()

            rows.append((f"{label} (capture {capture:.1f}s)", timed(replay, args.steps)))
        print(f"{variant} (first generate incl. compilation {setup:.1f}s)")
        for label, ms in rows:
            print(f"  {label:<44} {ms:7.2f} ms/step")
        e.release()
        del e, model
        torch.cuda.empty_cache()
    t, p = torch.tensor(0.6, device="cuda"), torch.tensor(0.95, device="cuda")
    k = head_candidates(0.95)
    fused = torch.compile(sample_filtered, dynamic=False)
    for rows in sorted({args.rows, 256}):
        logits = torch.randn(rows, vocab, device="cuda")
        print(f"samplers alone on [{rows}, {vocab}] fp32 logits, T 0.6, top-p 0.95 (eager launches):")
        for label, fn in [
            ("argmax", lambda x=logits: x.argmax(-1)),
            ("plain", lambda x=logits: sample_plain(x, t)),
            ("top-p, sort", lambda x=logits: sample_filtered(x, t, p, 0)),
            (f"top-p, rejection among {k}", lambda x=logits: sample_filtered(x, t, p, 0, k)),
            (f"top-p, rejection among {k}, torch.compile", lambda x=logits: fused(x, t, p, 0, k)),
        ]:
            print(f"  {label:<44} {timed(fn, args.steps):7.2f} ms")
    if args.hf_reference:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).cuda().eval()
        ids = torch.tensor(prompt, device="cuda")
        kw = dict(max_new_tokens=256, min_new_tokens=256, do_sample=True, temperature=0.6, top_p=0.95,
                  cache_implementation="static", pad_token_id=0)  # fmt: skip
        for i in range(2):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            model.generate(ids, **kw)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            print(
                f"HF generate static cache + compile, call {i + 1}: {dt:.2f}s = {dt / 256 * 1000:.2f} ms/token"
            )


if __name__ == "__main__":
    import torch

    with torch.no_grad():
        main()
