"""Rendering rows as conversations: SFT turns with or without thinking, RL prompts with mode markers."""

from __future__ import annotations

from typing import Any

from pipeline.models import prompt_messages


def assistant_text(reasoning: str | None, response: str, mode: str) -> str:
    """The assistant turn: ``<think>…</think>`` then the answer in thinking mode, the answer alone otherwise."""
    if mode == "think":
        return f"<think>\n{(reasoning or '').strip()}\n</think>\n\n{response.strip()}"
    return response.strip()


def sft_messages(row: dict[str, Any], mode: str) -> list[dict[str, str]]:
    """A conversation for SFT: a ``messages`` column as is, else ``prompt`` + ``reasoning``/``response``."""
    if row.get("messages"):
        return [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    return [
        *prompt_messages(row["prompt"], mode),
        {"role": "assistant", "content": assistant_text(row.get("reasoning"), row["response"], mode)},
    ]


def rl_prompt(prompt: Any, mode: str) -> list[dict[str, str]]:
    """A conversational prompt: a string gets the mode marker; a message list is used as is."""
    if isinstance(prompt, list):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    return prompt_messages(prompt, mode)
