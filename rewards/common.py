"""Helpers every reward shares: turning a completion into text, isolating the final answer, reading a
dataset column, and warning once about a bad row.

The reward contract (docs/rewards.md): a completion is a string or a list of chat messages; only the
text after the last ``</think>`` is scored; a completion that opens ``<think>`` and never closes it has
no answer at all (verifiable rewards give it 0).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def completion_text(completion: Any) -> str:
    """The text of one completion: a string as is, or the last assistant message's content."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        content = completion.get("content")
        return content if isinstance(content, str) else ""
    if isinstance(completion, Sequence):
        for message in reversed(completion):
            if isinstance(message, dict) and message.get("role", "assistant") == "assistant":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):  # multimodal-style content parts
                    return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return ""
    return ""


def final_answer(completion: Any) -> str | None:
    """The text after the last ``</think>``, or ``None`` when thinking was opened and never closed.

    A completion without any think tags is all answer.
    """
    text = completion_text(completion)
    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        return text[close + len(THINK_CLOSE) :].strip()
    if THINK_OPEN in text:
        return None
    return text.strip()


def response_for_judging(completion: Any) -> str:
    """What a reward model judges: the answer after ``</think>``, or the whole text if thinking never closed."""
    answer = final_answer(completion)
    return answer if answer is not None else completion_text(completion).strip()


def column(values: Any, n: int) -> list[Any]:
    """A dataset column as a list of length ``n`` (a scalar or a short list is broadcast)."""
    if values is None:
        return [None] * n
    if isinstance(values, (list, tuple)):
        if len(values) == n:
            return list(values)
        if len(values) == 1:
            return list(values) * n
        return [values[i] if i < len(values) else None for i in range(n)]
    return [values] * n


class WarnOnce:
    """Logs each distinct warning once per process: a broken dataset repeats one problem on every row,
    and one line says it. Bounded (``limit`` distinct warnings), so a stream of ever-different problems
    cannot fill memory. Call it with the message, and a ``key`` when the message varies for one problem.

    No lock: two threads meeting a new problem at the same instant may both log it, which is harmless,
    while a lock held by another thread when a process forks (``DataLoader`` workers) would never be
    released in the child.
    """

    def __init__(self, logger: logging.Logger, limit: int = 1000):
        self._logger, self._limit = logger, limit
        self._seen: set[str] = set()

    def __call__(self, message: str, key: str | None = None) -> None:
        key = message if key is None else key
        if key in self._seen or len(self._seen) >= self._limit:
            return
        self._seen.add(key)
        self._logger.warning(message)
