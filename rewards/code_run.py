"""Running one answer's program on its tests in the sandbox, one way per test kind, into a score.

* ``stdio`` -- one sandbox run per case (stdin in, stdout out), compared here with the expected output.
* ``call`` -- one run imports the program and calls the function on every case's arguments; the
  returned values come back as plain data and are compared here with the expected ones.
* ``assert`` -- one run: the test's ``check(candidate)`` runs in a checker process the program cannot
  touch (``isolated``), or next to it with a nonce-signed verdict (``inprocess``).

Every failure becomes a :class:`CaseResult` status (``wrong_answer``, ``runtime_error``, ``timeout``,
``memory_limit``, ``output_limit``, ...), never an exception: a bug here costs one completion its
score, not the training step.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from rewards.code_compare import outputs_match, safe_repr, values_match
from rewards.code_tests import CodeTests
from rewards.common import WarnOnce
from rewards.sandbox import Limits, SandboxPool
from rewards.sandbox_worker import TransferError, decode_value

# The code reward's messages keep one logger name, whichever of its modules logs them.
logger = logging.getLogger("rewards.code")
_warn_once = WarnOnce(logger)


@dataclass
class CaseResult:
    """One test case (an ``assert`` test is a single case)."""

    index: int
    passed: bool
    status: str  # passed, wrong_answer, runtime_error, timeout, memory_limit, output_limit, killed, ...
    detail: str = ""
    wall_s: float | None = None


@dataclass
class CodeResult:
    """Everything about one completion's score, for logging and debugging."""

    score: float
    status: str  # passed, failed, no_answer, no_code, bad_tests, sandbox_error, internal_error
    passed: int = 0
    total: int = 0
    isolation: str = ""
    cases: list[CaseResult] = field(default_factory=list)
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunOptions:
    """How the programs of one reward call run and are judged (from the reward's keyword options)."""

    partial_credit: bool
    limits: Limits
    float_tol: float | None
    stdio_compare: str
    assert_isolated: bool


R = TypeVar("R")


@dataclass
class DistinctPrograms:
    """The distinct (program, tests) pairs of a batch: samples that repeat one (common in GRPO groups and
    heavy-mode samples) run it once, on as many threads as the sandbox pool has sandboxes."""

    indices: dict[Hashable, list[int]] = field(default_factory=dict)
    programs: dict[Hashable, tuple[str, CodeTests]] = field(default_factory=dict)

    def add(self, index: int, key: Hashable, program: str, tests: CodeTests) -> None:
        self.indices.setdefault(key, []).append(index)
        self.programs[key] = (program, tests)

    def run(
        self, run: Callable[[str, CodeTests], R], pool: SandboxPool, name: str
    ) -> Iterator[tuple[int, R]]:
        """(index, result) for every sample added, each distinct program run once."""
        keys = list(self.indices)
        if not keys:
            return
        with ThreadPoolExecutor(max_workers=min(pool.size, len(keys)), thread_name_prefix=name) as executor:
            results = list(executor.map(lambda key: run(*self.programs[key]), keys))
        for key, result in zip(keys, results, strict=True):
            for index in self.indices[key]:
                yield index, result


def _failure_status(response: dict[str, Any]) -> str:
    status = str(response.get("status", "sandbox_error"))
    if status == "runtime_error" and "MemoryError" in str(response.get("stderr", "")):
        return "memory_limit"
    if status == "runtime_error" and "File too large" in str(response.get("stderr", "")):
        return "output_limit"
    return status


def _tail(text: Any, limit: int = 500) -> str:
    text = str(text or "")
    return text[-limit:]


def _run_stdio(code: str, tests: CodeTests, options: RunOptions, pool: SandboxPool) -> list[CaseResult]:
    results = []
    for index, case in enumerate(tests.cases):
        response = pool.run({"mode": "stdio", "code": code, "stdin": case["input"]}, options.limits)
        wall = response.get("wall_s")
        if response.get("status") != "ok":
            results.append(
                CaseResult(
                    index,
                    False,
                    _failure_status(response),
                    _tail(response.get("stderr") or response.get("error")),
                    wall,
                )
            )
        elif response.get("stdout_truncated"):
            results.append(CaseResult(index, False, "output_limit", "stdout exceeded the output limit", wall))
        elif outputs_match(
            str((response.get("attachments") or {}).get("stdout", "")),
            case["output"],
            float_tol=options.float_tol,
            compare=options.stdio_compare,
        ):  # type: ignore[arg-type]
            results.append(CaseResult(index, True, "passed", "", wall))
        else:
            stdout = (response.get("attachments") or {}).get("stdout")
            results.append(CaseResult(index, False, "wrong_answer", _tail(stdout, 200), wall))
        if not results[-1].passed and not options.partial_credit:
            break  # one failure already decides a pass/fail score
    results += [CaseResult(i, False, "not_run") for i in range(len(results), len(tests.cases))]
    return results


def _run_call(code: str, tests: CodeTests, options: RunOptions, pool: SandboxPool) -> list[CaseResult]:
    cases = [{"args": c["args"], "kwargs": c["kwargs"]} for c in tests.cases]  # never the expected values
    response = pool.run(
        {"mode": "call", "code": code, "fn_name": tests.fn_name, "cases": cases}, options.limits
    )
    records: dict[int, dict[str, Any]] = {}
    fatal = ""
    for line in str(response.get("records", "")).splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # the program can write to its report: anything may be here
            continue
        if isinstance(record, dict) and "fatal" in record:
            fatal = str(record["fatal"])
        elif isinstance(record, dict) and isinstance(record.get("i"), int):
            records[record["i"]] = record
    missing_status = "runtime_error" if fatal else _failure_status(response)
    if missing_status == "ok":
        missing_status = "no_result"
    results = []
    for index, case in enumerate(tests.cases):
        record = records.get(index)
        if record is None:
            detail = fatal or _tail(response.get("stderr") or response.get("error"))
            results.append(CaseResult(index, False, missing_status, detail, response.get("wall_s")))
            continue
        if record.get("ok") is not True:
            results.append(CaseResult(index, False, "runtime_error", _tail(record.get("error"))))
            continue
        try:
            value = decode_value(record.get("v"))
        except (TransferError, RecursionError) as exc:
            results.append(CaseResult(index, False, "wrong_answer", str(exc)))
            continue
        if values_match(value, case["expected"], float_tol=options.float_tol):
            results.append(CaseResult(index, True, "passed"))
        else:
            results.append(CaseResult(index, False, "wrong_answer", safe_repr(value)))
    return results


def _run_assert(code: str, tests: CodeTests, options: RunOptions, pool: SandboxPool) -> list[CaseResult]:
    nonce = secrets.token_hex(16)
    request = {
        "mode": "assert",
        "code": code,
        "entry_point": tests.entry_point,
        "isolated": options.assert_isolated,
    }
    if not options.assert_isolated:
        request["nonce"] = nonce
    response = pool.run(request, options.limits, payload=str(tests.test).encode())
    attachments = response.get("attachments") or {}
    wall = response.get("wall_s")
    raw_verdict = str(attachments.get("verdict", ""))
    if options.assert_isolated:
        try:
            verdict = json.loads(raw_verdict) if raw_verdict else {}
        except ValueError:
            verdict = {}
        verdict = verdict if isinstance(verdict, dict) else {}
        passed = verdict.get("passed") is True
        error = str(verdict.get("error") or "")
    else:
        passed = raw_verdict == f"PASS {nonce}"
        error = raw_verdict[5:] if raw_verdict.startswith("FAIL ") else ""
        verdict = {}
    status = _failure_status(response)
    if passed and status == "ok":
        return [CaseResult(0, True, "passed", "", wall)]
    if verdict.get("unsupported"):
        _warn_once(
            "An assert test passes a value that cannot be sent to the isolated solution process "
            f"({verdict['unsupported']}); such tests need assert_mode='inprocess'."
        )
        return [CaseResult(0, False, "unsupported", str(verdict["unsupported"]), wall)]
    if status == "ok":
        status = "runtime_error" if verdict.get("load_error") else "wrong_answer"
    detail = error or response.get("stderr") or attachments.get("checker_stderr") or response.get("error")
    return [CaseResult(0, False, status, _tail(detail), wall)]


_RUNNERS = {"stdio": _run_stdio, "call": _run_call, "assert": _run_assert}


def score_program(code: str, tests: CodeTests, options: RunOptions, pool: SandboxPool) -> CodeResult:
    """One program's score on its tests: 1.0 when every case passes (the fraction with partial credit)."""
    try:
        cases = _RUNNERS[tests.kind](code, tests, options, pool)
    except Exception as exc:  # a bug here must cost one completion, not the training step
        logger.exception("Code reward failed on one program")
        return CodeResult(0.0, "internal_error", 0, tests.total, pool.isolation.mode, error=str(exc))
    passed = sum(c.passed for c in cases)
    total = tests.total
    if options.partial_credit:
        score = passed / total if total else 0.0
    else:
        score = 1.0 if total and passed == total else 0.0
    status = "passed" if passed == total else "failed"
    if any(c.status in ("sandbox_error", "sandbox_died") for c in cases) and passed < total:
        status = "sandbox_error" if any(c.status == "sandbox_error" for c in cases) else status
    error = next((f"case {c.index}: {c.status} {c.detail}".strip() for c in cases if not c.passed), "")
    return CodeResult(score, status, passed, total, pool.isolation.mode, cases, error)
