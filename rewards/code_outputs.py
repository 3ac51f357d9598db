"""What a completion's program does on its tests' inputs: a fingerprint for grouping programs by behaviour.

Majority voting over code samples (AlphaCode's clustering) needs to know which programs behave alike.
Each program runs in the code reward's sandbox (same isolation, limits and options) on the inputs of
its tests — stdin of ``stdio`` cases, arguments of ``call`` cases — and the fingerprint is what it
printed or returned, case by case. The expected outputs are never read: grouping must not peek at the
answer key. ``assert`` tests have no inputs of their own, so their programs get no fingerprint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from rewards.code import DEFAULT_TIMEOUT_S, _options, _sandbox_config
from rewards.code_compare import canonical, output_lines
from rewards.code_run import DistinctPrograms
from rewards.code_tests import CodeTests, extract_code, parse_tests
from rewards.common import column, final_answer
from rewards.sandbox import Limits, SandboxPool, get_pool
from rewards.sandbox_worker import TransferError, decode_value

logger = logging.getLogger(__name__)

Fingerprint = tuple[str, ...]


def has_inputs(tests: Any) -> bool:
    """Whether a ``tests`` item has inputs a program can be run on (``stdio`` or ``call`` cases)."""
    try:
        return parse_tests(tests).kind in ("stdio", "call")
    except ValueError:
        return False


def _stdout(text: str, compare: str) -> str:
    """Output as the code reward compares it: whitespace runs, trailing spaces and blank lines ignored."""
    if compare == "tokens":
        return " ".join(text.split())
    return "\n".join(" ".join(line.split()) for line in output_lines(text))


def _run(code: str, tests: CodeTests, limits: Limits, compare: str, pool: SandboxPool) -> Fingerprint | None:
    outputs: list[str] = []
    if tests.kind == "stdio":
        for case in tests.cases:
            response = pool.run({"mode": "stdio", "code": code, "stdin": case["input"]}, limits)
            if response.get("status") != "ok" or response.get("stdout_truncated"):
                outputs.append(f"!{response.get('status', 'error')}")
            else:
                outputs.append(_stdout(str((response.get("attachments") or {}).get("stdout", "")), compare))
    else:
        cases = [{"args": c["args"], "kwargs": c["kwargs"]} for c in tests.cases]  # never the expected values
        response = pool.run({"mode": "call", "code": code, "fn_name": tests.fn_name, "cases": cases}, limits)
        records: dict[int, Any] = {}
        for line in str(response.get("records", "")).splitlines():
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # the program can write to its report: anything may be here
                continue
            if isinstance(record, dict) and isinstance(record.get("i"), int) and record.get("ok") is True:
                records[record["i"]] = record.get("v")
        for index in range(len(cases)):
            try:
                value = json.dumps(canonical(decode_value(records[index])), sort_keys=True)
            except (KeyError, TransferError, RecursionError, TypeError, ValueError):
                value = "!error"
            outputs.append(value)
    if all(out.startswith("!") for out in outputs):
        return None  # failed on every input: no behaviour to agree on
    return tuple(outputs)


def _safe_run(code: str, tests: CodeTests, options: Any, pool: SandboxPool) -> Fingerprint | None:
    try:
        return _run(code, tests, options.limits, options.stdio_compare, pool)
    except Exception:  # a sandbox failure costs this program its fingerprint, never the evaluation
        logger.exception("could not run one program for its outputs")
        return None


def program_outputs(
    completions: Sequence[Any],
    tests: Any = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = 1024,
    stdio_compare: str = "lines",
    workers: int = 0,
    isolation: str = "auto",
    sandbox: Any = None,
    **_: Any,
) -> list[Fingerprint | None]:
    """Per completion, its program's outputs on its tests' inputs (None: no program, no inputs, or a
    program that failed on every input). Takes the code reward's options; identical programs run once."""
    completions = list(completions or [])
    options = _options(False, timeout_s, memory_mb, None, stdio_compare, "isolated")
    pool = get_pool(_sandbox_config(sandbox, workers, isolation))
    out: list[Fingerprint | None] = [None] * len(completions)
    batch = DistinctPrograms()
    for i, (completion, item) in enumerate(zip(completions, column(tests, len(completions)), strict=True)):
        answer = final_answer(completion)
        code = extract_code(answer) if answer is not None else ""
        try:
            spec = parse_tests(item)
        except ValueError:
            continue
        if not code.strip() or spec.kind == "assert":
            continue
        program = spec.program(code)
        key = (program, json.dumps([spec.kind, spec.fn_name, spec.cases], sort_keys=True, default=repr))
        batch.add(i, key, program, spec)
    for i, result in batch.run(lambda code, spec: _safe_run(code, spec, options, pool), pool, "code-outputs"):
        out[i] = result
    return out
