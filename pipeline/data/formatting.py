"""Rendering rows as conversations: SFT turns with or without thinking, RL prompts with mode markers.

A :class:`PromptFormat` holds what a recipe says about prompts: a system prompt, a prompt template
(``"{prompt}"`` placed in a larger text) or a suffix ("Put the final answer in \\boxed{}."), and whether
the ``/think`` / ``/no_think`` markers are written at all (``prompt_mode: none`` for models that have no
such switch). The mode of a row is the stage's (``think``, ``no_think``, ``none``), unless the row
carries its own in a ``thinking`` column (Llama-Nemotron's reasoning on/off).

Message lists keep every key a chat template reads (tool calls, tool answers, names); the marker and
the template go on the last user turn, the one the model answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

THINK_MARKER, NO_THINK_MARKER = " /think", " /no_think"
ROW_MODE = "thinking"  # a row's own mode (think / no_think), over the stage's
_KEYS = ("role", "content", "tool_calls", "name", "tool_call_id", "reasoning_content")


@dataclass(frozen=True)
class PromptFormat:
    """How a stage or a benchmark turns its prompts into a user turn."""

    system_prompt: str | None = None
    template: str | None = None  # a text with one "{prompt}"
    suffix: str | None = None  # appended to the prompt after a blank line

    def user_text(self, prompt: str, mode: str) -> str:
        text = self.template.replace("{prompt}", prompt) if self.template else prompt
        if self.suffix:
            text = f"{text.rstrip()}\n\n{self.suffix.strip()}"
        if mode == "none":
            return text
        return text.rstrip() + (THINK_MARKER if mode == "think" else NO_THINK_MARKER)


PLAIN = PromptFormat()


def assistant_text(reasoning: str | None, response: str, mode: str) -> str:
    """The assistant turn: ``<think>…</think>`` then the answer in thinking mode, the answer alone otherwise."""
    if mode == "think":
        return f"<think>\n{(reasoning or '').strip()}\n</think>\n\n{response.strip()}"
    return response.strip()


def _copy(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: m[k] for k in _KEYS if k in m and m[k] is not None} for m in messages]


def _formatted(messages: list[dict[str, Any]], mode: str, fmt: PromptFormat, upto: int | None = None) -> list:
    """``messages`` with the system prompt (if none is there) and the last user turn before ``upto`` formatted."""
    out = _copy(messages)
    users = [i for i, m in enumerate(out[:upto]) if m["role"] == "user"]
    if users:
        last = out[users[-1]]
        last["content"] = fmt.user_text(last.get("content") or "", mode)
    if fmt.system_prompt and not (out and out[0]["role"] == "system"):
        out.insert(0, {"role": "system", "content": fmt.system_prompt})
    return out


def sft_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` if SFT can use it (a ``messages`` conversation, or ``prompt`` + ``response`` text); RowError if not."""
    from pipeline.data.presets.base import RowError
    from pipeline.data.sources import is_messages, is_str

    if is_messages(row.get("messages")) or (is_str(row.get("prompt")) and is_str(row.get("response"))):
        return row
    raise RowError("no 'messages' conversation and no 'prompt' + 'response' text")


def row_mode_of(row: dict[str, Any], mode: str) -> str:
    """The row's own thinking mode when it has one (and the stage writes markers), else the stage's."""
    own = row.get(ROW_MODE)
    return own if own in ("think", "no_think") and mode != "none" else mode


def sft_messages(row: dict[str, Any], mode: str, fmt: PromptFormat = PLAIN) -> list[dict[str, Any]]:
    """A conversation for SFT: a ``messages`` column (formatted), else ``prompt`` + ``reasoning``/``response``."""
    mode = row_mode_of(row, mode)
    if row.get("messages"):
        messages = row["messages"]
        answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        return _formatted(messages, mode, fmt, upto=answers[-1] if answers else None)
    return [
        *rl_prompt(row["prompt"], mode, fmt),
        {"role": "assistant", "content": assistant_text(row.get("reasoning"), row["response"], mode)},
    ]


def rl_prompt(prompt: Any, mode: str, fmt: PromptFormat = PLAIN) -> list[dict[str, Any]]:
    """A conversational prompt: a string becomes a user turn, a message list has its last user turn formatted."""
    if isinstance(prompt, list):
        return _formatted(prompt, mode, fmt)
    return _formatted([{"role": "user", "content": prompt}], mode, fmt)
