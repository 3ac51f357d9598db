"""Math presets: MATH-500, AIME 2024/2025, GSM8K and Nemotron-Cascade's math RL set, as ``prompt`` + ``answer``.

The prompt asks for the final answer in ``\\boxed{}`` (what the math reward reads first). GSM8K's
reference is the text after ``####`` in its worked answer, with thousands separators removed; AIME
answers come as integers in some copies and strings in others.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipeline.data.presets.base import Preset, RowError, Scorer, ident, text

BOXED = "Put the final answer in \\boxed{}."


def _answer(value: str) -> str:
    answer = value.strip()
    if not answer:
        raise RowError("the answer is empty")
    return answer


def _row(row: Mapping[str, Any], question: str, answer: str, options: Mapping[str, Any], *ids: str) -> dict:
    suffix = options["instruction"]
    return {
        "id": ident(row, *ids),
        "prompt": f"{question.strip()}\n\n{suffix}".strip() if suffix else question.strip(),
        "answer": _answer(answer),
    }


def math500(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    return _row(row, text(row, "problem"), text(row, "answer", numbers=True), options, "unique_id")


def aime(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    return _row(
        row,
        text(row, "problem", "question", "Problem"),
        text(row, "answer", "Answer", numbers=True),
        options,
        "id",
        "ID",
    )


_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    worked = text(row, "answer")
    match = _GSM8K_FINAL.search(worked)
    if match is None:
        raise RowError("the answer has no '#### <number>' line")
    return _row(row, text(row, "question"), match.group(1).replace(",", "").strip(), options)


def cascade_math(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    question = text(row, "problem", "question", "prompt")
    return _row(row, question, text(row, "answer", "expected_answer", numbers=True), options, "id", "uuid")


def _math(name: str, description: str, fn: Any, reads: tuple[str, ...], **defaults: Any) -> Preset:
    return Preset(
        name, description, "rl", fn, reads, domain="math", scorer=Scorer("math"),
        options={"instruction": BOXED}, **defaults,
    )  # fmt: skip


PRESETS = [
    _math("math500", "MATH-500 (HuggingFaceH4)", math500, ("problem", "answer", "unique_id"),
          hub="HuggingFaceH4/MATH-500", split="test"),
    _math("aime", "AIME 2024 (HuggingFaceH4/aime_2024); AIME 2025 with source: math-ai/aime25, split: test",
          aime, ("problem|question", "answer"), hub="HuggingFaceH4/aime_2024", split="train"),
    _math("gsm8k", "GSM8K: the reference is the number after '####'", gsm8k, ("question", "answer"),
          hub="openai/gsm8k", config="main", split="test"),
    _math("nemotron-cascade-rl-math", "Nemotron-Cascade's math RL prompts with short answers", cascade_math,
          ("problem|question", "answer|expected_answer"), hub="nvidia/Nemotron-Cascade-RL-Math", split="train"),
]  # fmt: skip
