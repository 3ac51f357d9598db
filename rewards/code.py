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
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rewards import stats
from rewards.common import column, final_answer
from rewards.sandbox import Limits, SandboxConfig, SandboxPool, get_pool, probe_isolation
from rewards.sandbox_worker import TransferError, decode_value

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
_PYTHON_FENCES = {"python", "py", "python3", "py3"}


# ----------------------------------------------------------------------------------------------------
# Test format
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeTests:
    """A validated ``tests`` item."""

    kind: Literal["stdio", "call", "assert"]
    cases: tuple[dict[str, Any], ...] = ()  # stdio: {input, output}; call: {args, kwargs, expected}
    fn_name: str | None = None
    test: str | None = None
    entry_point: str | None = None
    prefix: str = ""  # code run before the answer's program (HumanEval's prompt)
    suffix: str = ""  # code run after it (e.g. exposing a method as the function a call test calls)

    def program(self, code: str) -> str:
        """The program that runs: the answer's code between the test's prefix and suffix."""
        if not (self.prefix or self.suffix):
            return code
        return f"{self.prefix}\n{code}\n{self.suffix}" if self.prefix else f"{code}\n{self.suffix}"

    @property
    def total(self) -> int:
        return 1 if self.kind == "assert" else len(self.cases)


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(v if v.endswith("\n") else v + "\n" for v in value)
    raise ValueError(f"{what} must be a string (or a list of lines), got {type(value).__name__}")


def parse_tests(item: Any) -> CodeTests:
    """Validate one ``tests`` item (a dict or its JSON string); raises ``ValueError`` naming the problem.

    A test with no cases is rejected: it would otherwise pass every program.
    """
    if isinstance(item, (str, bytes)):
        try:
            item = json.loads(item)
        except ValueError as exc:
            raise ValueError(f"tests is not valid JSON: {exc}") from None
    if not isinstance(item, dict):
        raise ValueError(f"tests must be a dict, got {type(item).__name__}")
    tests = _parse_kind(item)
    wrap = {k: item.get(k) or "" for k in ("prefix", "suffix")}
    if not all(isinstance(v, str) for v in wrap.values()):
        raise ValueError("tests 'prefix' and 'suffix' must be strings")
    return dataclasses.replace(tests, **wrap) if any(wrap.values()) else tests


def _parse_kind(item: dict[str, Any]) -> CodeTests:
    kind = item.get("kind")
    if kind == "stdio":
        cases = item.get("cases")
        if not isinstance(cases, list) or not cases:
            raise ValueError("stdio tests need a non-empty 'cases' list")
        parsed = []
        for i, case in enumerate(cases):
            if not isinstance(case, dict) or "input" not in case or "output" not in case:
                raise ValueError(f"stdio case {i} needs 'input' and 'output'")
            parsed.append(
                {
                    "input": _text(case["input"], f"case {i} input"),
                    "output": _text(case["output"], f"case {i} output"),
                }
            )
        return CodeTests("stdio", tuple(parsed))
    if kind == "call":
        fn_name, cases = item.get("fn_name"), item.get("cases")
        if not isinstance(fn_name, str) or not fn_name.isidentifier():
            raise ValueError("call tests need 'fn_name', a Python identifier")
        if not isinstance(cases, list) or not cases:
            raise ValueError("call tests need a non-empty 'cases' list")
        parsed = []
        for i, case in enumerate(cases):
            if not isinstance(case, dict) or "expected" not in case:
                raise ValueError(f"call case {i} needs 'args' and 'expected'")
            args, kwargs = case.get("args", []), case.get("kwargs", {})
            if isinstance(args, dict):
                args, kwargs = [], {**args, **kwargs}
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise ValueError(f"call case {i}: 'args' must be a list and 'kwargs' a dict")
            parsed.append({"args": args, "kwargs": kwargs, "expected": case["expected"]})
        return CodeTests("call", tuple(parsed), fn_name=fn_name)
    if kind == "assert":
        test, entry_point = item.get("test"), item.get("entry_point")
        if not isinstance(test, str) or "check" not in test:
            raise ValueError("assert tests need 'test', code that defines check(candidate)")
        if not isinstance(entry_point, str) or not entry_point.isidentifier():
            raise ValueError("assert tests need 'entry_point', a Python identifier")
        return CodeTests("assert", test=test, entry_point=entry_point)
    raise ValueError(f"unknown tests kind {kind!r} (expected 'stdio', 'call' or 'assert')")


# ----------------------------------------------------------------------------------------------------
# Extracting the program
# ----------------------------------------------------------------------------------------------------


def _fenced_blocks(answer: str) -> list[tuple[str, str, bool]]:
    """(language, body, closed) of every fenced block, in order; a fence left open runs to the end."""
    blocks: list[tuple[str, str, bool]] = []
    lang: str | None = None
    body: list[str] = []
    for line in answer.splitlines(keepends=True):
        stripped = line.strip()
        if lang is None:
            if stripped.startswith("```"):
                words = stripped[3:].strip().split()
                lang, body = (words[0].lower() if words else ""), []
        elif stripped.startswith("```") and not stripped.strip("`"):
            blocks.append((lang, "".join(body), True))
            lang = None
        else:
            body.append(line)
    if lang is not None:
        blocks.append((lang, "".join(body), False))
    return blocks


def extract_code(answer: str) -> str:
    """The program in an answer: the last ```python (``py``, ``python3``) block, else the last bare ```
    block, else the whole answer when it has no fence at all. An answer whose only fences are other
    languages has no program. A python fence left open at the end (a truncated answer) counts too.
    """
    blocks = _fenced_blocks(answer)
    for lang, body, _closed in reversed(blocks):
        if lang in _PYTHON_FENCES:
            return body
    for lang, body, closed in reversed(blocks):
        if lang == "" and closed:
            return body
    return "" if blocks else answer


# ----------------------------------------------------------------------------------------------------
# Comparisons (done here, never inside the sandbox)
# ----------------------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _tokens_match(a: list[str], b: list[str], float_tol: float | None) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        if float_tol is None:
            return False
        try:
            fx, fy = float(x), float(y)
        except ValueError:
            return False
        if not math.isclose(fx, fy, rel_tol=float_tol, abs_tol=float_tol):
            return False
    return True


def outputs_match(
    actual: str,
    expected: str,
    *,
    float_tol: float | None = None,
    compare: Literal["lines", "tokens"] = "lines",
) -> bool:
    """Whitespace-insensitive comparison of program output with the expected output.

    ``lines``: same lines, each compared token by token (runs of spaces, trailing spaces and trailing
    blank lines do not matter). ``tokens``: same whitespace-separated tokens, line breaks ignored.
    ``float_tol`` lets numeric tokens differ by that relative or absolute amount.
    """
    if compare == "tokens":
        return _tokens_match(actual.split(), expected.split(), float_tol)
    a, b = _lines(actual), _lines(expected)
    return len(a) == len(b) and all(
        _tokens_match(x.split(), y.split(), float_tol) for x, y in zip(a, b, strict=True)
    )


def _canonical(value: Any) -> Any:
    """JSON's view of a value: tuples and iterators are lists, set elements are sorted, keys are strings."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, Iterator)):
        return [_canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(v) for v in value), key=_sort_key)
    if isinstance(value, dict):
        return {
            k if isinstance(k, str) else json.dumps(_canonical(k)): _canonical(v) for k, v in value.items()
        }
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    if isinstance(value, complex):
        return [value.real, value.imag]
    raise TransferError(f"cannot compare a value of type {type(value).__name__}")


def _sort_key(value: Any) -> tuple[str, Any]:
    """Orders set elements of any types (numbers by value; no repr of a huge int)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ("number", value)
    return (type(value).__name__, _safe_repr(value))


def _safe_repr(value: Any, limit: int = 200) -> str:
    """``repr`` for messages: bounded, and never failing (an int too long for decimal conversion)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _equal(a: Any, b: Any, float_tol: float | None) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        if float_tol is None or (isinstance(a, int) and isinstance(b, int)):
            return a == b
        return math.isclose(a, b, rel_tol=float_tol, abs_tol=float_tol)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y, float_tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k], float_tol) for k in a)
    return type(a) is type(b) and a == b


def values_match(actual: Any, expected: Any, *, float_tol: float | None = None) -> bool:
    """Compare a returned value with the expected one as JSON would see them (``(1, 2) == [1, 2]``,
    ``True != 1``, ``2 == 2.0``); floats within ``float_tol`` when given. Both are plain built-ins."""
    try:
        return _equal(_canonical(actual), _canonical(expected), float_tol)
    except (TransferError, RecursionError, ValueError, TypeError, OverflowError):
        return False


# ----------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------


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
class _Options:
    partial_credit: bool
    limits: Limits
    float_tol: float | None
    stdio_compare: str
    assert_isolated: bool


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


# ----------------------------------------------------------------------------------------------------
# Running one program
# ----------------------------------------------------------------------------------------------------


def _run_stdio(code: str, tests: CodeTests, options: _Options, pool: SandboxPool) -> list[CaseResult]:
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


def _run_call(code: str, tests: CodeTests, options: _Options, pool: SandboxPool) -> list[CaseResult]:
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
            results.append(CaseResult(index, False, "wrong_answer", _safe_repr(value)))
    return results


def _run_assert(code: str, tests: CodeTests, options: _Options, pool: SandboxPool) -> list[CaseResult]:
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


def _score_program(code: str, tests: CodeTests, options: _Options, pool: SandboxPool) -> CodeResult:
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


# ----------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(message: str) -> None:
    with _warned_lock:
        if message in _warned or len(_warned) > 1000:
            return
        _warned.add(message)
    logger.warning(message)


def _options(
    partial_credit: bool,
    timeout_s: float,
    memory_mb: int,
    float_tol: float | None,
    stdio_compare: str,
    assert_mode: str,
) -> _Options:
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
    return _Options(bool(partial_credit), limits, float_tol, stdio_compare, assert_mode == "isolated")


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
    jobs: dict[tuple[str, str], list[int]] = {}  # identical (program, tests) pairs run once
    parsed: dict[tuple[str, str], tuple[str, CodeTests]] = {}
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
            key = (code, json.dumps(asdict(spec), sort_keys=True, default=repr))
            jobs.setdefault(key, []).append(i)
            parsed[key] = (code, spec)
        except Exception as exc:  # a completion or tests item of an unexpected shape
            results[i] = CodeResult(0.0, "internal_error", error=f"{type(exc).__name__}: {exc}")
    if jobs:
        keys = list(jobs)
        with ThreadPoolExecutor(
            max_workers=min(pool.size, len(keys)), thread_name_prefix="code-reward"
        ) as executor:
            scored = list(executor.map(lambda k: _score_program(*parsed[k], options, pool), keys))
        for key, result in zip(keys, scored, strict=True):
            for i in jobs[key]:
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
