"""Assistant-only loss on chat templates without ``{% generation %}`` markers.

TRL computes the assistant mask from ``{% generation %}`` markers in the chat template, and swaps in a
marked copy for the templates it knows (Qwen3, Llama 3, …). Most models' own templates (SmolLM2 and
most non-Qwen models) have neither, and TRL then refuses assistant-only loss. Here the mask is derived
from the rendered conversation instead, which needs nothing of the template but that it renders:

1. Each assistant turn's span is the difference between the conversation rendered up to the turn with a
   generation prompt and the conversation rendered through the turn; when those renders are prefixes of
   the whole conversation (true of ChatML-style templates), the span is exact and includes the
   template's end-of-turn token, so the model learns to stop (the whitespace after it is left out, as
   generation markers leave it out).
2. Templates that rewrite earlier turns (Qwen3 drops the thinking of past assistant turns) break that
   prefix property; then the turn's final answer is located in the rendered text, after the previous
   span, and extended by the end-of-turn text the template writes after an answer.
3. A turn that cannot be located stops with one sentence naming the ways out.

The tokens whose characters start inside a span are the assistant tokens (offsets of a fast tokenizer).
No library offers this for arbitrary templates, hence the code here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

Span = tuple[int, int]


class TemplateMaskError(ValueError):
    """The assistant turns of a conversation cannot be found in the template's rendering."""


def has_generation_markers(template: Any) -> bool:
    template = template.get("default", "") if isinstance(template, dict) else (template or "")
    return "generation" in template and "endgeneration" in template


def trl_handles(tokenizer: Any) -> bool:
    """Whether TRL can compute the assistant mask itself (markers present, or a marked copy it ships)."""
    if has_generation_markers(tokenizer.chat_template):
        return True
    try:
        from trl.chat_template_utils import get_training_chat_template
    except ImportError:  # an older TRL without marked copies
        return False
    try:
        return get_training_chat_template(tokenizer) is not None
    except (ValueError, NotImplementedError):  # a template TRL does not know
        return False


def _render(tokenizer: Any, messages: Sequence[dict[str, Any]], generation_prompt: bool) -> str:
    if not messages:
        return ""
    return tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=generation_prompt
    )


def _answer(content: str) -> str:
    """What a template keeps of a past assistant turn: the text after its thinking."""
    return content.split("</think>")[-1].strip()


def _trimmed_end(text: str, end: int) -> int:
    """The span's end without the whitespace a template writes after the end-of-turn token (as markers have it)."""
    return len(text[:end].rstrip())


def assistant_spans(tokenizer: Any, messages: Sequence[dict[str, Any]]) -> tuple[str, list[Span]]:
    """The rendered conversation and the character span of every assistant turn in it."""
    full = _render(tokenizer, messages, False)
    spans: list[Span] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], True)
        through = _render(tokenizer, messages[: i + 1], False)
        answer = _answer(message.get("content") or "")
        if (
            through.startswith(before)
            and full.startswith(through)
            and len(before) >= cursor
            and answer in through[len(before) :]
        ):
            spans.append((len(before), _trimmed_end(through, len(through))))
            cursor = len(through)
            continue
        start = full.find(answer, cursor) if answer else -1
        if start < 0:
            raise TemplateMaskError(
                f"assistant turn {i} cannot be found in the chat template's rendering, so no assistant-only "
                "mask can be derived; use a chat template with {% generation %} markers (chat_template:) "
                "or train on whole sequences (assistant_only_loss: false)"
            )
        end = start + len(answer)
        at = through.rfind(answer) if answer else -1
        closing = through[at + len(answer) :] if at >= 0 else ""
        if closing and full.startswith(closing, end):
            end += len(closing)
        spans.append((start, _trimmed_end(full, end)))
        cursor = end
    return full, spans


def tokenize_with_mask(
    tokenizer: Any, messages: Sequence[dict[str, Any]], max_length: int | None = None
) -> dict:
    """``input_ids`` and ``assistant_masks`` (1 on assistant tokens) of one conversation, as TRL reads them."""
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(
        text,
        add_special_tokens=False,
        return_offsets_mapping=True,
        truncation=max_length is not None,
        max_length=max_length,
    )
    mask = [int(any(s <= start < e for s, e in spans)) for start, _end in enc["offset_mapping"]]
    return {"input_ids": list(enc["input_ids"]), "assistant_masks": mask}
