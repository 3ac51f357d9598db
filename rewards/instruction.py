"""The instruction-following reward: IFEval's verifiable instructions, on IFEval's own columns.

A row carries ``instruction_id_list`` (e.g. ``["punctuation:no_comma", "length_constraints:number_words"]``)
and ``kwargs`` (one dict per instruction), so ``google/IFEval``-shaped data works unchanged. The answer
after the last ``</think>`` is checked against every instruction; the reward is 1.0 when all are
followed (or the fraction followed, with ``partial_credit``). ``mode="loose"`` is IFEval's loose
accuracy: an instruction also counts as followed when a variant of the response follows it (first
line, last line or both removed, each with and without ``*``), which forgives a preamble such as
"Sure, here is ..." and markdown emphasis. The checks themselves live in :mod:`rewards.ifeval`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rewards import stats
from rewards.common import WarnOnce, column, final_answer
from rewards.ifeval import INSTRUCTIONS, InvalidArguments

logger = logging.getLogger(__name__)
_warn_once = WarnOnce(logger)  # unknown ids and malformed kwargs are logged once each

Mode = Literal["strict", "loose"]
_MODES = ("strict", "loose")
_UNCLOSED = "thinking never closed"


@dataclass(frozen=True)
class InstructionResult:
    """Whether one instruction was followed, and why not when its arguments were unusable."""

    instruction_id: str
    followed: bool
    error: str | None = None


def _as_list(value: Any) -> Any:
    """numpy arrays and tuples (as some dataset formats return) as plain lists."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    return list(value) if isinstance(value, tuple) else value


def _instruction_ids(value: Any) -> list[str] | None:
    """A row's instruction ids: a list, a JSON list string or a single id; ``None`` when absent."""
    value = _as_list(value)
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                return [text]
        else:
            return [text] if text else []
    if not isinstance(value, list):
        return [str(value)]
    return [str(item) for item in value]


def _instruction_kwargs(value: Any, n: int) -> list[Mapping[str, Any] | str]:
    """One kwargs dict per instruction, or an error string where a row's kwargs cannot be read.

    Accepts IFEval's list of dicts (``None`` values are dropped later), a JSON string of that list,
    list items that are JSON strings, and a bare dict for a single instruction.
    """
    value = _as_list(value)
    if value is None:
        return [{}] * n
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else None
        except ValueError:
            return ["kwargs is not valid JSON"] * n
        return _instruction_kwargs(value, n)
    if isinstance(value, Mapping):
        return [value] if n == 1 else ["one kwargs dict given for several instructions"] * n
    if not isinstance(value, list):
        return [f"kwargs must be a list of dicts, got {type(value).__name__}"] * n
    out: list[Mapping[str, Any] | str] = []
    for item in (value + [None] * n)[:n]:
        if isinstance(item, str):
            try:
                item = json.loads(item) if item.strip() else None
            except ValueError:
                out.append("kwargs item is not valid JSON")
                continue
        if item is None:
            out.append({})
        elif isinstance(item, Mapping):
            out.append(item)
        else:
            out.append(f"kwargs item must be a dict, got {type(item).__name__}")
    return out


def response_variants(response: str, mode: Mode) -> list[str]:
    """The texts an instruction may be checked on: the response alone (strict) or IFEval's 8 (loose)."""
    if mode == "strict":
        return [response]
    lines = response.split("\n")
    trimmed = [
        "\n".join(lines[1:]).strip(),
        "\n".join(lines[:-1]).strip(),
        "\n".join(lines[1:-1]).strip(),
    ]
    return [response, response.replace("*", ""), *trimmed, *(t.replace("*", "") for t in trimmed)]


def check_instructions(
    response: str,
    instruction_id_list: Sequence[str],
    kwargs: Any = None,
    *,
    mode: Mode = "strict",
) -> list[InstructionResult]:
    """Check one response (already stripped of its thinking) against each of its instructions.

    An unknown id or unusable arguments make that instruction "not followed" with ``error`` set;
    an empty response follows nothing, as in IFEval.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    ids = _instruction_ids(instruction_id_list) or []
    variants = [v for v in response_variants(response, mode) if v.strip()]
    results = []
    for instruction_id, raw in zip(ids, _instruction_kwargs(kwargs, len(ids)), strict=True):
        instruction = INSTRUCTIONS.get(instruction_id)
        if instruction is None:
            _warn_once(
                f"unknown instruction id {instruction_id!r}: scored as not followed", key=instruction_id
            )
            results.append(InstructionResult(instruction_id, False, "unknown instruction id"))
            continue
        try:
            if isinstance(raw, str):
                raise InvalidArguments(raw)
            arguments = instruction.parse(raw)
            followed = any(instruction.check(variant, **arguments) for variant in variants)
        except InvalidArguments as exc:
            _warn_once(f"bad kwargs for {instruction_id}: {exc}", key=f"{instruction_id}:{exc}")
            results.append(InstructionResult(instruction_id, False, str(exc)))
            continue
        results.append(InstructionResult(instruction_id, followed))
    return results


def instruction_results(
    completions: list[Any],
    instruction_id_list: list[Any],
    kwargs: list[Any] | None = None,
    *,
    mode: Mode = "strict",
    **_: Any,
) -> list[list[InstructionResult] | None]:
    """Per-instruction results for every completion (for logs and evaluation); ``None`` for rows
    without instructions. A completion whose thinking never closes follows nothing."""
    n = len(completions)
    rows = []
    for completion, ids, row_kwargs in zip(
        completions, column(instruction_id_list, n), column(kwargs, n), strict=True
    ):
        id_list = _instruction_ids(ids)
        if not id_list:
            rows.append(None)
            continue
        answer = final_answer(completion)
        if answer is None:
            rows.append([InstructionResult(i, False, _UNCLOSED) for i in id_list])
            continue
        rows.append(check_instructions(answer, id_list, row_kwargs, mode=mode))
    return rows


def instruction_reward(
    completions: list[Any],
    instruction_id_list: list[Any] | None = None,
    kwargs: list[Any] | None = None,
    *,
    mode: Mode = "strict",
    partial_credit: bool = False,
    **_: Any,
) -> list[float | None]:
    """IFEval instruction following: 1.0 when every instruction is followed (strict or loose), else 0.0.

    With ``partial_credit`` the score is the fraction of instructions followed. Rows without
    instructions score ``None`` (not this reward's sample); an unclosed ``<think>`` scores 0.0.
    Reports to ``rewards.stats`` under ``"instruction"`` (unknown ids and unusable kwargs as errors).
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    started = time.perf_counter()
    n = len(completions)
    scores: list[float | None] = []
    errors = unclosed = 0
    for completion, ids, row_kwargs in zip(
        completions, column(instruction_id_list, n), column(kwargs, n), strict=True
    ):
        try:
            rows = instruction_results([completion], [ids], [row_kwargs], mode=mode)[0]
        except Exception:  # a bug must not take the training step down: score it and say so
            logger.exception("instruction reward failed on one completion; scored 0.0")
            scores.append(0.0)
            errors += 1
            continue
        if rows is None:
            scores.append(None)
            continue
        if any(r.error == _UNCLOSED for r in rows):
            unclosed += 1
        elif any(r.error is not None for r in rows):
            errors += 1
        followed = [r.followed for r in rows]
        scores.append(sum(followed) / len(followed) if partial_credit else float(all(followed)))
    stats.record(
        "instruction",
        scores,
        errors=errors,
        parse_failures=unclosed,
        seconds=time.perf_counter() - started,
    )
    return scores
