"""Conversation presets for SFT: chat ``messages`` (Tulu, Nemotron), ShareGPT and Llama-Nemotron SFT rows.

Each yields ``messages`` (every key a chat template reads kept: tool calls, tool answers, names) and,
when the data says so, ``thinking`` (``think`` / ``no_think``), which the SFT stage honours over the
stage's ``prompt_mode`` for that row. Llama-Nemotron rows are ``input`` messages + an ``output`` string
whose ``reasoning`` column (``on``/``off``) is the thinking mode; its system prompt ("detailed thinking
on/off") is how that model family switched modes and is replaced by the recipe's own mode handling.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.data.presets.base import Preset, RowError, as_list, messages, text

THINKING = "thinking"  # the per-row mode column
_SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
    "bard": "assistant", "model": "assistant", "system": "system", "function_call": "assistant",
    "observation": "tool", "tool": "tool", "function_response": "tool",
}  # fmt: skip
_MODE_SYSTEM_PROMPTS = ("detailed thinking on", "detailed thinking off")


def _mode(value: Any) -> str | None:
    if isinstance(value, bool):
        return "think" if value else "no_think"
    if isinstance(value, str) and value.strip().lower() in ("on", "off", "think", "no_think"):
        return "think" if value.strip().lower() in ("on", "think") else "no_think"
    return None


def _checked(conversation: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not any(
        m["role"] == "assistant" and (m["content"].strip() or m.get("tool_calls")) for m in conversation
    ):
        raise RowError("the conversation has no assistant turn")
    return conversation


def chat_messages(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.get("id"),
        "messages": _checked(messages(row.get(options["column"]), options["column"])),
    }
    mode = _mode(row.get("reasoning", row.get(THINKING)))  # Nemotron-Cascade SFT rows: `thinking: true/false`
    if mode:
        out[THINKING] = mode
    return out


def sharegpt(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    turns = as_list(row.get("conversations"))
    if not isinstance(turns, list) or not turns:
        raise RowError("conversations is not a non-empty list")
    conversation = []
    system = text(row, "system", required=False)
    if system:
        conversation.append({"role": "system", "content": system})
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping):
            raise RowError(f"conversations[{i}] is not a {{from, value}} item")
        role = _SHAREGPT_ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            raise RowError(f"conversations[{i}] has an unknown speaker {turn.get('from')!r}")
        value = turn.get("value")
        if not isinstance(value, str):
            raise RowError(f"conversations[{i}] has no text value")
        conversation.append({"role": role, "content": value})
    return {"id": row.get("id"), "messages": _checked(conversation)}


def llama_nemotron(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    conversation = messages(row.get("input"), "input")
    conversation = [
        m for m in conversation
        if not (m["role"] == "system" and m["content"].strip().lower() in _MODE_SYSTEM_PROMPTS)
    ]  # fmt: skip
    system = text(row, "system_prompt", required=False)
    if system and system.strip().lower() not in _MODE_SYSTEM_PROMPTS and conversation[0]["role"] != "system":
        conversation.insert(0, {"role": "system", "content": system})
    conversation.append({"role": "assistant", "content": text(row, "output")})
    mode = _mode(row.get("reasoning"))
    if mode is None:
        raise RowError("reasoning is neither 'on' nor 'off'")
    return {"messages": conversation, THINKING: mode}


PRESETS = [
    Preset(
        "messages",
        "chat rows with a messages column (Tulu 3, Nemotron post-training; tool calls kept)",
        "sft",
        chat_messages,
        ("messages",),
        hub="allenai/tulu-3-sft-mixture",
        split="train",
        options={"column": "messages"},
    ),
    Preset(
        "sharegpt",
        "ShareGPT conversations ({from, value} turns)",
        "sft",
        sharegpt,
        ("conversations",),
        split="train",
    ),
    Preset(
        "llama-nemotron-sft",
        "Llama-Nemotron post-training SFT: input messages + output, reasoning on/off as the thinking mode",
        "sft",
        llama_nemotron,
        ("input", "output", "reasoning"),
        hub="nvidia/Llama-Nemotron-Post-Training-Dataset",
        config="SFT",
        split="math",
    ),
]
