"""Code reward: run the answer's program against its tests in the sandbox; 1.0 only if every case passes.

The program is the last fenced ```python block of the final answer (``py``/``python3`` fences too, then
a bare ``` fence as a fallback, or the whole answer when it has no fence at all). Tests follow the
project's contract (docs/rewards-code.md)::

    {"kind": "stdio",  "cases": [{"input": "1 2\\n", "output": "3\\n"}, ...]}
    {"kind": "call",   "fn_name": "f", "cases": [{"args": [1, 2], "expected": 3}, ...]}
    {"kind": "assert", "test": "def check(candidate):\\n    assert ...", "entry_point": "f"}

Any kind may add ``prefix`` and ``suffix`` (strings): code run before and after the answer's program, e.g.
HumanEval's prompt, which its official harness executes together with the completion.

Every program runs in ``rewards.sandbox``; expected outputs and return values never enter the sandbox:
``stdio`` output and ``call`` results are compared here, ``assert`` tests run in a checker process the
program cannot touch. See ``rewards/sandbox_worker.py`` for why early exits, printed fake results,
overridden builtins and rigged ``__eq__`` objects score nothing.

The parts: ``code_tests`` (the test format, the program in an answer), ``code_compare`` (outputs and
values against the expected ones), ``code_run`` (one program on its tests in the sandbox, into a score),
and this module: the reward's options and entry points.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Literal

from rewards import stats
from rewards.code_compare import outputs_match, values_match
from rewards.code_run import CaseResult, CodeResult, DistinctPrograms, RunOptions, score_program
from rewards.code_tests import CodeTests, extract_code, parse_tests
from rewards.common import WarnOnce, column, final_answer
from rewards.sandbox import Limits, SandboxConfig, get_pool, probe_isolation

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "CaseResult",
    "CodeResult",
    "CodeTests",
    "code_reward",
    "code_reward_async",
    "code_reward_details",
    "extract_code",
    "outputs_match",
    "parse_tests",
    "preflight",
    "values_match",
]

logger = logging.getLogger(__name__)
_warn_once = WarnOnce(logger)

DEFAULT_TIMEOUT_S = 5.0


def _options(
    partial_credit: bool,
    timeout_s: float,
    memory_mb: int,
    float_tol: float | None,
    stdio_compare: str,
    assert_mode: str,
) -> RunOptions:
    if stdio_compare not in ("lines", "tokens"):
        raise ValueError(f"code reward: stdio_compare must be 'lines' or 'tokens', got {stdio_compare!r}")
    if assert_mode not in ("isolated", "inprocess"):
        raise ValueError(f"code reward: assert_mode must be 'isolated' or 'inprocess', got {assert_mode!r}")
    if not float(timeout_s) > 0 or not int(memory_mb) > 0:
        raise ValueError(
            f"code reward: timeout_s and memory_mb must be positive, got {timeout_s}, {memory_mb}"
        )
    if float_tol is not None and not float(float_tol) >= 0:
        raise ValueError(f"code reward: float_tol must be None or >= 0, got {float_tol}")
    limits = Limits(wall_s=float(timeout_s), memory_mb=int(memory_mb))
    return RunOptions(bool(partial_credit), limits, float_tol, stdio_compare, assert_mode == "isolated")


def _sandbox_config(sandbox: Any, workers: int, isolation: str) -> SandboxConfig:
    if sandbox is None:
        return SandboxConfig(workers=workers, isolation=isolation)  # type: ignore[arg-type]
    if isinstance(sandbox, SandboxConfig):
        return sandbox
    if not isinstance(sandbox, dict):
        raise ValueError(
            f"code reward: sandbox must be a SandboxConfig or a dict, got {type(sandbox).__name__}"
        )
    known = set(SandboxConfig.__dataclass_fields__)
    unknown = sorted(set(sandbox) - known)
    if unknown:
        raise ValueError(f"code reward: unknown sandbox option(s) {unknown}; known: {sorted(known)}")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in sandbox.items()}  # YAML lists
    return SandboxConfig(**{"workers": workers, "isolation": isolation, **fields})


def code_reward_details(
    completions: Sequence[Any],
    tests: Any = None,
    *,
    partial_credit: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = 1024,
    float_tol: float | None = None,
    stdio_compare: Literal["lines", "tokens"] = "lines",
    assert_mode: Literal["isolated", "inprocess"] = "isolated",
    workers: int = 0,
    isolation: Literal["auto", "bubblewrap", "landlock", "none"] = "auto",
    sandbox: SandboxConfig | dict[str, Any] | None = None,
    **_: Any,
) -> list[CodeResult]:
    """Like :func:`code_reward`, with everything about each score: status, per-case results, errors."""
    started = time.perf_counter()
    completions = list(completions or [])
    options = _options(partial_credit, timeout_s, memory_mb, float_tol, stdio_compare, assert_mode)
    pool = get_pool(_sandbox_config(sandbox, workers, isolation))
    results: list[CodeResult | None] = [None] * len(completions)
    batch = DistinctPrograms()
    for i, (completion, item) in enumerate(zip(completions, column(tests, len(completions)), strict=True)):
        try:
            answer = final_answer(completion)
            if answer is None:
                results[i] = CodeResult(0.0, "no_answer", error="<think> was opened and never closed")
                continue
            code = extract_code(answer)
            if not code.strip():
                results[i] = CodeResult(0.0, "no_code", error="no python program in the answer")
                continue
            try:
                spec = parse_tests(item)
            except ValueError as exc:
                _warn_once(f"Code reward: malformed tests item scored 0: {exc}")
                results[i] = CodeResult(0.0, "bad_tests", error=str(exc))
                continue
            code = spec.program(code)
            batch.add(i, (code, json.dumps(asdict(spec), sort_keys=True, default=repr)), code, spec)
        except Exception as exc:  # a completion or tests item of an unexpected shape
            results[i] = CodeResult(0.0, "internal_error", error=f"{type(exc).__name__}: {exc}")
    for i, result in batch.run(
        lambda code, spec: score_program(code, spec, options, pool), pool, "code-reward"
    ):
        results[i] = result
    final = [r if r is not None else CodeResult(0.0, "internal_error") for r in results]
    _record_stats(final, time.perf_counter() - started)
    return final


def preflight(
    *,
    partial_credit: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = 1024,
    float_tol: float | None = None,
    stdio_compare: str = "lines",
    assert_mode: str = "isolated",
    workers: int = 0,
    isolation: str = "auto",
    sandbox: SandboxConfig | dict[str, Any] | None = None,
    **_: Any,
) -> dict[str, str]:
    """Check the code reward's options and this host's isolation before anything is generated or scored.

    Returns what a run records next to the scores (``{"isolation": "landlock", "isolation_detail":
    "Landlock ABI 7 + seccomp + rlimits"}``); raises ``ValueError`` for an invalid option and
    ``SandboxUnavailableError`` (one sentence naming the ways out) when the chosen isolation cannot
    work here. The scores that follow use exactly this isolation: the probe is cached per process.
    """
    _options(partial_credit, timeout_s, memory_mb, float_tol, stdio_compare, assert_mode)
    return probe_isolation(_sandbox_config(sandbox, workers, isolation)).record()


def code_reward(completions: Sequence[Any], tests: Any = None, **kwargs: Any) -> list[float]:
    """1.0 when the answer's program passes every case of its tests, else 0.0 (TRL GRPO contract).

    Keyword options: ``partial_credit`` (score the fraction of cases passed), ``timeout_s`` (wall
    seconds per run: one stdio case, all calls of a call test, or one check), ``memory_mb``,
    ``float_tol`` (numeric tolerance for outputs and return values), ``stdio_compare`` (``lines`` or
    ``tokens``), ``assert_mode`` (``isolated`` or ``inprocess``), ``workers`` (sandboxes; 0 = two per CPU),
    ``isolation`` (``auto``: bubblewrap, else Landlock; ``bubblewrap``; ``landlock``; ``none``, the
    only way to run programs unisolated) and ``sandbox`` (a ``SandboxConfig`` or a dict of its fields,
    for everything else). Other keyword arguments (dataset columns, trainer state) are ignored. Never
    raises for a bad completion or tests item (those score 0); an invalid option raises ``ValueError``
    and a host where the chosen isolation cannot work raises ``SandboxUnavailableError``, both at the
    first call (or earlier, from :func:`preflight`).
    """
    return [r.score for r in code_reward_details(completions, tests, **kwargs)]


async def code_reward_async(completions: Sequence[Any], tests: Any = None, **kwargs: Any) -> list[float]:
    """:func:`code_reward` for event loops: runs in a worker thread, so the loop keeps serving."""
    return await asyncio.to_thread(code_reward, completions, tests, **kwargs)


def _record_stats(results: list[CodeResult], seconds: float) -> None:
    try:
        stats.record(
            "code",
            [r.score for r in results],
            timeouts=sum(any(c.status == "timeout" for c in r.cases) for r in results),
            errors=sum(r.status in ("sandbox_error", "internal_error", "bad_tests") for r in results),
            parse_failures=sum(r.status in ("no_answer", "no_code") for r in results),
            seconds=seconds,
        )
    except Exception:  # statistics must never cost a score
        logger.debug("could not record code reward statistics", exc_info=True)
