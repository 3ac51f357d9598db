"""Preference presets for the reward-model stage: HelpSteer3, UltraFeedback (binarized) and hh-rlhf.

All three become ``prompt`` (messages) + ``chosen`` / ``rejected`` (the final assistant turn each):

- HelpSteer3: ``context`` messages, ``response1``/``response2`` and ``overall_preference`` (-3…3; negative
  means response 1 is better). Ties are left out on purpose (counted, not dropped as bad rows).
- UltraFeedback binarized: ``chosen``/``rejected`` hold the *whole* conversation, user turn included;
  taking them as the answers would give the user turn twice, so only their last assistant turn is kept.
- hh-rlhf: two transcripts (``\\n\\nHuman: … \\n\\nAssistant: …``) that share every turn but the last.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipeline.data.presets.base import SKIP, Preset, RowError, as_list, messages, text


def _assistant(content: str) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": content}]


def helpsteer3(row: dict[str, Any], options: Mapping[str, Any]) -> Any:
    pref = row.get("overall_preference")
    if isinstance(pref, bool) or not isinstance(pref, (int, float)):
        raise RowError("overall_preference is not a number")
    context = messages(row.get("context"), "context")
    if context[-1]["role"] != "user":
        raise RowError("context does not end with a user turn")
    one, two = text(row, "response1"), text(row, "response2")
    if abs(pref) < options["min_margin"]:
        return SKIP  # a tie (or a margin below the asked one): no pair to learn from
    better, worse = (one, two) if pref < 0 else (two, one)
    return {
        "prompt": context,
        "chosen": _assistant(better),
        "rejected": _assistant(worse),
        "margin": abs(pref),
    }


def _last_assistant(value: Any, what: str) -> str:
    conversation = messages(value, what)
    if conversation[-1]["role"] != "assistant" or not conversation[-1]["content"].strip():
        raise RowError(f"{what} does not end with an assistant answer")
    return conversation[-1]["content"]


def ultrafeedback(row: dict[str, Any], options: Mapping[str, Any]) -> Any:
    chosen, rejected = row.get("chosen"), row.get("rejected")
    chosen = as_list(chosen)
    if isinstance(chosen, list) and chosen and len(chosen) > 1:
        turns = messages(chosen, "chosen")[:-1]  # the shared conversation before the answer
    else:
        turns = [{"role": "user", "content": text(row, "prompt")}]
    better, worse = _last_assistant(chosen, "chosen"), _last_assistant(rejected, "rejected")
    if better == worse:
        return SKIP  # some pairs hold the same answer twice (equal scores)
    return {"prompt": turns, "chosen": _assistant(better), "rejected": _assistant(worse)}


_TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_turns(transcript: str) -> list[dict[str, str]]:
    """An hh-rlhf transcript as messages (the text opens with ``\\n\\nHuman: ``)."""
    parts = _TURN.split("\n\n" + transcript.lstrip("\n") if not transcript.startswith("\n\n") else transcript)
    if parts[0].strip():
        raise RowError("the transcript does not open with a 'Human:' turn")
    turns = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        turns.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    if not turns:
        raise RowError("no Human/Assistant turns in the transcript")
    return turns


def hh_rlhf(row: dict[str, Any], options: Mapping[str, Any]) -> Any:
    chosen, rejected = hh_turns(text(row, "chosen")), hh_turns(text(row, "rejected"))
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise RowError("a transcript does not end with an Assistant turn")
    if chosen[:-1] != rejected[:-1]:
        raise RowError("chosen and rejected do not share their turns before the last answer")
    if chosen[-1]["content"] == rejected[-1]["content"]:
        return SKIP
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


PRESETS = [
    Preset(
        "helpsteer3",
        "NVIDIA HelpSteer3 preference pairs (ties left out)",
        "pairs",
        helpsteer3,
        ("context", "response1", "response2", "overall_preference"),
        hub="nvidia/HelpSteer3",
        config="preference",
        split="train",
        domain="chat",
        options={"min_margin": 1},
    ),
    Preset(
        "ultrafeedback",
        "UltraFeedback binarized (HuggingFaceH4): the last assistant turn of chosen / rejected",
        "pairs",
        ultrafeedback,
        ("prompt", "chosen", "rejected"),
        hub="HuggingFaceH4/ultrafeedback_binarized",
        split="train_prefs",
        domain="chat",
    ),
    Preset(
        "hh-rlhf",
        "Anthropic hh-rlhf: Human/Assistant transcripts split into turns",
        "pairs",
        hh_rlhf,
        ("chosen", "rejected"),
        hub="Anthropic/hh-rlhf",
        split="train",
        domain="chat",
    ),
]
