"""The code reward's test format and the program in an answer.

A ``tests`` item is a dict (or its JSON string) of kind ``stdio``, ``call`` or ``assert``, with optional
``prefix`` and ``suffix`` code (examples in ``rewards/code.py``, the contract in docs/rewards-code.md).
:func:`parse_tests` validates one into :class:`CodeTests`; :func:`extract_code` finds the program (the
last fenced python block). The data check before a run uses these too, so a malformed row is found
before any model is trained on it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

_PYTHON_FENCES = {"python", "py", "python3", "py3"}


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
