"""Throughput of the code reward against a naive harness, and the sandbox's start-up costs.

    python bench/bench_code.py                  # 300 programs, one worker per CPU
    python bench/bench_code.py --programs 120 --workers 2 --fresh 40

The programs are small and all distinct (no deduplication helps): half stdio (two cases each), half
call (three cases each); about a third of them are wrong or crash, as in a GRPO batch. Measured:

* naive: one unsandboxed ``python -c`` per program run, one after another (a stdio program runs once
  per case, a call program once for all its cases) -- with this process's interpreter, and with
  ``-I -S`` (the fastest an interpreter starts);
* code_reward: the bubblewrap + zygote pool (the default), and with a fresh sandbox per program;
* sandbox start-up: starting one sandbox (bubblewrap, interpreter, preloaded modules) and the
  per-program overhead of an empty program through a warm sandbox.

Programs/s is the figure of merit (a program with all its cases is one unit of work in a GRPO batch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rewards.code import code_reward_details, outputs_match, values_match  # noqa: E402
from rewards.sandbox import Limits, SandboxConfig, SandboxPool, available_cpus, probe_isolation  # noqa: E402

TIMEOUT_S = 5.0


def build_programs(n: int) -> list[tuple[str, dict, float]]:
    """(completion, tests, expected score) for ``n`` distinct small programs."""
    programs = []
    for k in range(n):
        variant = (k // 2) % 6  # per kind: four right programs out of six
        if k % 2 == 0:  # stdio: the sum of the numbers, then the numbers sorted
            cases = []
            for line in (f"{k} 3 1 2\n", f"{k + 1} 5 4\n"):
                nums = [int(x) for x in line.split()]
                cases.append({"input": line, "output": f"{sum(nums)}\n{' '.join(map(str, sorted(nums)))}\n"})
            tests = {"kind": "stdio", "cases": cases}
            body = "nums = list(map(int, input().split()))\nprint(sum(nums))\nprint(*sorted(nums))"
            if variant == 1:
                body = "nums = list(map(int, input().split()))\nprint(sum(nums) + 1)\nprint(*sorted(nums))"  # wrong
            elif variant == 3:
                body = "nums = list(map(int, input().split()))\nprint(sum(nums)\nprint(nums)"  # syntax error
            expected = 0.0 if variant in (1, 3) else 1.0
        else:  # call: gcd / fibonacci style functions
            cases = [
                {"args": [a, b], "expected": _gcd(a, b)}
                for a, b in ((12 + k, 18), (7 * k + 1, 21), (100, 75 + k))
            ]
            tests = {"kind": "call", "fn_name": "gcd", "cases": cases}
            body = "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a"
            if variant == 5:
                body = "def gcd(a, b):\n    return min(a, b)"  # wrong
            elif variant == 3:
                body = "def gcd(a, b):\n    raise ValueError('no')"  # crashes
            expected = 0.0 if variant in (3, 5) else 1.0
        body += f"\n# program {k}\n"  # every program distinct
        programs.append((f"Solution:\n```python\n{body}```\n", tests, expected))
    return programs


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


# --------------------------------------------------------------------------------------------------
# Naive harness
# --------------------------------------------------------------------------------------------------

CALL_DRIVER = (
    "\nimport json as _j, sys as _s\n_r = [gcd(*c) for c in _j.loads(_s.argv[1])]\nprint(_j.dumps(_r))\n"
)


def naive_score(python: list[str], completion: str, tests: dict) -> float:
    code = completion.split("```python\n", 1)[1].rsplit("```", 1)[0]
    try:
        if tests["kind"] == "stdio":
            for case in tests["cases"]:
                run = subprocess.run(
                    [*python, "-c", code],
                    input=case["input"],
                    capture_output=True,
                    text=True,
                    timeout=TIMEOUT_S,
                )
                if run.returncode != 0 or not outputs_match(run.stdout, case["output"]):
                    return 0.0
            return 1.0
        args = json.dumps([c["args"] for c in tests["cases"]])
        run = subprocess.run(
            [*python, "-c", code + CALL_DRIVER, args], capture_output=True, text=True, timeout=TIMEOUT_S
        )
        if run.returncode != 0:
            return 0.0
        results = json.loads(run.stdout)
        return float(
            all(values_match(r, c["expected"]) for r, c in zip(results, tests["cases"], strict=True))
        )
    except (subprocess.TimeoutExpired, ValueError):
        return 0.0


def bench_naive(programs: list[tuple[str, dict, float]], python: list[str]) -> tuple[float, list[float]]:
    started = time.perf_counter()
    scores = [naive_score(python, c, t) for c, t, _ in programs]
    return time.perf_counter() - started, scores


def bench_reward(programs: list[tuple[str, dict, float]], config: SandboxConfig) -> tuple[float, list[float]]:
    completions = [c for c, _, _ in programs]
    tests = [t for _, t, _ in programs]
    # Warm-up on different programs: sandbox start-up is measured separately below.
    code_reward_details(
        ["```python\nprint(1)\n```"] * 1,
        [{"kind": "stdio", "cases": [{"input": "", "output": "1"}]}],
        sandbox=config,
    )
    started = time.perf_counter()
    details = code_reward_details(completions, tests, timeout_s=TIMEOUT_S, sandbox=config)
    return time.perf_counter() - started, [d.score for d in details]


def bench_startup(config: SandboxConfig, repeats: int) -> tuple[float, float]:
    """(seconds to start one sandbox, seconds of overhead per empty program in a warm sandbox)."""
    pool = SandboxPool(config)
    try:
        worker = pool._workers[0]
        starts = []
        for _ in range(repeats):
            t = time.perf_counter()
            worker.start()
            starts.append(time.perf_counter() - t)
        request = {"mode": "stdio", "code": "pass", "stdin": ""}
        for _ in range(5):
            pool.run(request, Limits(wall_s=TIMEOUT_S))
        per_program = []
        for _ in range(50):
            t = time.perf_counter()
            pool.run(request, Limits(wall_s=TIMEOUT_S))
            per_program.append(time.perf_counter() - t)
        return statistics.median(starts), statistics.median(per_program)
    finally:
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--programs", type=int, default=300)
    parser.add_argument("--workers", type=int, default=0, help="sandbox workers (0: one per CPU)")
    parser.add_argument("--fresh", type=int, default=60, help="programs to run with a fresh sandbox each")
    args = parser.parse_args()

    programs = build_programs(args.programs)
    expected = [e for _, _, e in programs]
    workers = args.workers or available_cpus()
    isolation = probe_isolation()
    print(f"machine: {available_cpus()} CPUs, load {os.getloadavg()[0]:.2f}; isolation: {isolation.mode}")
    print(f"{len(programs)} programs ({sum(expected):.0f} correct), {workers} sandbox workers\n")

    rows = []
    naive_t, naive_scores = bench_naive(programs, [sys.executable])
    rows.append(
        ("naive python -c (sequential, no sandbox)", naive_t, len(programs), naive_scores == expected)
    )
    fast_t, fast_scores = bench_naive(programs, [os.path.realpath(sys.executable), "-I", "-S"])
    rows.append(
        ("naive python -I -S -c (sequential, no sandbox)", fast_t, len(programs), fast_scores == expected)
    )
    zygote_t, zygote_scores = bench_reward(programs, SandboxConfig(workers=workers))
    rows.append(
        (
            f"code_reward: bwrap + zygote, {workers} workers",
            zygote_t,
            len(programs),
            zygote_scores == expected,
        )
    )
    one_t, one_scores = bench_reward(programs, SandboxConfig(workers=1))
    rows.append(("code_reward: bwrap + zygote, 1 worker", one_t, len(programs), one_scores == expected))
    if args.fresh:
        subset = programs[: args.fresh]
        fresh_t, fresh_scores = bench_reward(subset, SandboxConfig(workers=workers, programs_per_sandbox=1))
        rows.append(
            (
                f"code_reward: fresh sandbox per program, {workers} workers",
                fresh_t,
                len(subset),
                fresh_scores == expected[: args.fresh],
            )
        )

    print(f"{'harness':<56} {'programs/s':>10} {'vs naive':>9}  scores right")
    naive_rate = len(programs) / naive_t
    for name, seconds, count, right in rows:
        rate = count / seconds
        print(f"{name:<56} {rate:>10.1f} {rate / naive_rate:>8.1f}x  {right}")

    start_s, per_program_s = bench_startup(SandboxConfig(workers=1), repeats=5)
    bare_s, _ = bench_startup(SandboxConfig(workers=1, programs_per_sandbox=1), repeats=5)
    print(f"\nsandbox start-up, zygote with preloaded modules: {start_s * 1000:.0f} ms (median of 5)")
    print(f"sandbox start-up, no preload (fresh sandbox per program): {bare_s * 1000:.0f} ms (median of 5)")
    print(
        f"per-program overhead in a warm sandbox (empty program, round trip): {per_program_s * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
