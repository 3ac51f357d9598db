"""Throughput of the math reward: verifications per second on a mixed batch, and the slowest input.

    python bench/bench_math.py [--n 300] [--seed 0] [--timeout 5]

The batch mixes what a math RL step sees: integer answers (settled by the in-process fast path),
fractions, decimals, percentages, radicals, polynomials, sets, intervals, matrices, and wrong answers
of each kind. It reports a cold batch (pool start-up included), a warm batch of fresh pairs (the
steady state of training), and every pair timed on its own to find the slowest.
"""

from __future__ import annotations

import argparse
import random
import time

from rewards import stats
from rewards.math import MAX_WORKERS, math_reward
from rewards.process import REWARD_WORKERS, cpu_share


def _pairs(n: int, rng: random.Random) -> list[tuple[str, str, bool]]:
    """``n`` (gold, completion, is-correct) triples, about half correct, across answer kinds."""

    def integer(ok: bool) -> tuple[str, str]:
        a = rng.randint(-10_000, 10_000)
        return str(a), f"<think>work</think>So the total is \\boxed{{{a if ok else a + rng.randint(1, 9)}}}."

    def fraction(ok: bool) -> tuple[str, str]:
        p, q = rng.randint(1, 50), rng.randint(2, 60)
        pred = f"\\dfrac{{{2 * p}}}{{{2 * q}}}" if ok else f"\\frac{{{q}}}{{{p}}}"
        return f"\\frac{{{p}}}{{{q}}}", f"The answer is $\\boxed{{{pred}}}$"

    def decimal(ok: bool) -> tuple[str, str]:
        p = rng.randint(1, 99)
        return f"\\frac{{{p}}}{{100}}", f"\\boxed{{{p / 100 if ok else p / 10}}}"

    def percent(ok: bool) -> tuple[str, str]:
        p = rng.randint(1, 99)
        return f"{p}\\%", f"\\boxed{{{p if ok else p + 1}\\%}}"

    def radical(ok: bool) -> tuple[str, str]:
        a, b = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7])
        return f"{a}\\sqrt{{{b}}}", f"\\boxed{{\\sqrt{{{a * a * b if ok else a * b}}}}}"

    def polynomial(ok: bool) -> tuple[str, str]:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        gold = f"x^2 + {a + b}x + {a * b}"
        return gold, f"\\boxed{{(x+{a})(x+{b if ok else b + 1})}}"

    def solution_set(ok: bool) -> tuple[str, str]:
        a, b = rng.sample(range(-20, 20), 2)
        return f"{a}, {b}", f"\\boxed{{{b}}}, \\boxed{{{a if ok else a + 1}}}"

    def interval(ok: bool) -> tuple[str, str]:
        a = rng.randint(-9, 9)
        return f"({a}, \\infty)", f"\\boxed{{{'(' if ok else '['}{a}, \\infty)}}"

    def matrix(ok: bool) -> tuple[str, str]:
        m = [rng.randint(0, 9) for _ in range(4)]
        gold = f"\\begin{{pmatrix}}{m[0]}&{m[1]}\\\\{m[2]}&{m[3]}\\end{{pmatrix}}"
        pred_m = m if ok else [m[1], m[0], m[2], m[3] + 1]
        pred = f"\\begin{{bmatrix}}{pred_m[0]}&{pred_m[1]}\\\\{pred_m[2]}&{pred_m[3]}\\end{{bmatrix}}"
        return gold, f"\\boxed{{{pred}}}"

    makers = [integer, integer, integer, fraction, decimal, percent, radical, polynomial, solution_set]
    makers += [interval, matrix]
    triples = []
    for _ in range(n):
        ok = rng.random() < 0.5
        triples.append((*rng.choice(makers)(ok), ok))
    return triples


def _batch(triples: list[tuple[str, str, bool]], timeout_s: float) -> tuple[float, dict[str, float], int]:
    """(seconds, statistics, number of scores that disagree with the labels) of one batch."""
    stats.reset()
    started = time.perf_counter()
    scores = math_reward([c for _, c, _ in triples], [g for g, _, _ in triples], timeout_s=timeout_s)
    seconds = time.perf_counter() - started
    wrong = sum((score == 1.0) != ok for score, (_, _, ok) in zip(scores, triples, strict=True))
    return seconds, stats.snapshot()["math"], wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cold, warm = _pairs(args.n, rng), _pairs(args.n, rng)

    print(
        f"math reward benchmark: {args.n} pairs per batch, {cpu_share(REWARD_WORKERS, cap=MAX_WORKERS)} workers"
    )
    for label, pairs in (("cold batch (pool start-up included)", cold), ("warm batch (fresh pairs)", warm)):
        seconds, counted, wrong = _batch(pairs, args.timeout)
        print(
            f"{label:38s} {seconds:6.2f}s  {len(pairs) / seconds:7.1f} verifications/s  "
            f"mean={counted['mean']:.3f} timeouts={counted['timeouts']:.0f} errors={counted['errors']:.0f} "
            f"disagreeing with labels={wrong}"
        )

    timings = []
    for gold, completion, _ in _pairs(args.n, rng):
        started = time.perf_counter()
        math_reward([completion], [gold], timeout_s=args.timeout)
        timings.append((time.perf_counter() - started, gold, completion))
    timings.sort(reverse=True)
    total = sum(t for t, _, _ in timings)
    print(f"{'one at a time':38s} {total:6.2f}s  {len(timings) / total:7.1f} verifications/s")
    print(f"median single call {timings[len(timings) // 2][0] * 1000:.1f} ms")
    for seconds, gold, completion in timings[:3]:
        print(f"slow: {seconds * 1000:7.1f} ms  gold={gold!r}  completion={completion!r}")


if __name__ == "__main__":
    main()
