"""Format rewards and the language-mixing penalty.

- ``think_format_reward``: is the completion "reasoning in ``<think>…</think>``, then an answer"?
- ``language_mixing_reward``: is the answer written in the prompt's script(s) only?
- ``with_language_penalty(reward_fn, penalty)``: any reward, with mixed-language completions' scores
  replaced by a penalty. Nemotron-Cascade's values: RLHF ``"batch_min_minus_10"`` (the batch's lowest
  score minus 10), math ``-1``, code ``0``.

Scripts are told apart with ``unicodedata`` (a letter's Unicode name starts with its script:
LATIN, CJK, CYRILLIC, HIRAGANA, …), so there is no language-identification model and no dependency.
Only letters count: digits, punctuation, symbols and mathematical alphanumerics (ℝ, 𝑥) never do,
and code blocks, inline code and LaTeX math are removed before looking.
"""

from __future__ import annotations

import functools
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from rewards import stats
from rewards.common import THINK_CLOSE, THINK_OPEN, completion_text, final_answer

logger = logging.getLogger(__name__)

# -- think format ----------------------------------------------------------------------------------


def _think_format_ok(text: str, require_think: bool) -> bool:
    stripped = text.strip()
    opens, closes = stripped.count(THINK_OPEN), stripped.count(THINK_CLOSE)
    if closes == 0:
        # No reasoning block at all; an opened-but-never-closed one is always wrong.
        return not require_think and opens == 0 and bool(stripped)
    if closes > 1 or opens > 1:
        return False
    reasoning, _, answer = stripped.partition(THINK_CLOSE)
    if opens == 1:
        # "<think>" must open the completion (a chat template may also put it in the prompt: then
        # the completion starts inside the reasoning and has no "<think>" of its own).
        if not reasoning.startswith(THINK_OPEN):
            return False
        reasoning = reasoning[len(THINK_OPEN) :]
    if require_think and not reasoning.strip():
        return False
    return bool(answer.strip())


def think_format_reward(
    completions: Sequence[Any], *, require_think: bool = True, **kwargs: Any
) -> list[float]:
    """1.0 for ``<think>reasoning</think>`` followed by a non-empty answer, else 0.0.

    The opening ``<think>`` may be absent (chat templates that end the prompt with it). Any second
    ``<think>``/``</think>``, text before ``<think>``, or an empty answer scores 0.

    Args:
        require_think: True: the reasoning block is required and must not be empty. False: a plain
            answer without tags also scores 1.0, and so does an empty ``<think></think>`` ("no-think"
            mode); an opened but unclosed ``<think>`` still scores 0.
    """
    started = time.perf_counter()
    scores = [
        1.0 if _think_format_ok(completion_text(c), bool(require_think)) else 0.0 for c in completions or []
    ]
    stats.record("think_format", scores, seconds=time.perf_counter() - started)
    return scores


# -- scripts ---------------------------------------------------------------------------------------

# Unicode-name prefixes of the writing systems we tell apart; any other letter (mathematical
# alphanumerics, letterlike symbols, modifier letters) is neutral.
_SCRIPTS = {
    "LATIN": "Latin", "GREEK": "Greek", "COPTIC": "Greek", "CYRILLIC": "Cyrillic", "ARMENIAN": "Armenian",
    "HEBREW": "Hebrew", "ARABIC": "Arabic", "SYRIAC": "Syriac", "THAANA": "Thaana",
    "DEVANAGARI": "Devanagari", "BENGALI": "Bengali", "GURMUKHI": "Gurmukhi", "GUJARATI": "Gujarati",
    "ORIYA": "Oriya", "TAMIL": "Tamil", "TELUGU": "Telugu", "KANNADA": "Kannada", "MALAYALAM": "Malayalam",
    "SINHALA": "Sinhala", "THAI": "Thai", "LAO": "Lao", "TIBETAN": "Tibetan", "MYANMAR": "Myanmar",
    "GEORGIAN": "Georgian", "HANGUL": "Hangul", "ETHIOPIC": "Ethiopic", "CHEROKEE": "Cherokee",
    "KHMER": "Khmer", "MONGOLIAN": "Mongolian", "HIRAGANA": "Kana", "KATAKANA": "Kana", "CJK": "Han",
    "BOPOMOFO": "Bopomofo", "YI": "Yi",
}  # fmt: skip

_CODE_OR_MATH = re.compile(
    r"```.*?(?:```|$)|`[^`\n]*`|\$\$.*?\$\$|(?<!\\)\$[^$\n]*?(?<!\\)\$|\\\(.*?\\\)|\\\[.*?\\\]", re.DOTALL
)
_ASCII_LETTER = re.compile(r"[A-Za-z]")


@functools.lru_cache(maxsize=8192)
def script_of(char: str) -> str | None:
    """The writing system of one letter ("Latin", "Han", "Cyrillic", …); None for anything else."""
    if char.isascii():
        return "Latin" if char.isalpha() else None
    if not unicodedata.category(char).startswith("L"):
        return None
    words = unicodedata.name(char, "").split()
    if words[:1] in (["FULLWIDTH"], ["HALFWIDTH"]):
        words = words[1:]
    return _SCRIPTS.get(words[0]) if words else None


def _letter_runs(text: str) -> list[tuple[str, int]]:
    """(script, length) of each maximal run of same-script letters, code and LaTeX math removed.

    ASCII text is reported as one Latin run without counting.
    """
    text = _CODE_OR_MATH.sub(" ", text)
    if text.isascii():  # the common case, without a Python-level loop over characters
        return [("Latin", 1)] if _ASCII_LETTER.search(text) else []
    runs: list[tuple[str, int]] = []
    current, length = None, 0
    for char in text:
        script = script_of(char)
        if script is not None and script == current:
            length += 1
            continue
        if current is not None:
            runs.append((current, length))
        current, length = script, 1
    if current is not None:
        runs.append((current, length))
    return runs


def scripts_in(text: str) -> set[str]:
    """The writing systems ``text`` uses (single Greek letters, math symbols in prose, not counted)."""
    return {script for script, length in _letter_runs(text) if not (script == "Greek" and length == 1)}


def detect_mixed_language(
    text: str,
    reference_text: str | None,
    *,
    always_allowed: Sequence[str] = ("Latin",),
    min_foreign_chars: int = 1,
) -> bool:
    """Whether ``text`` contains letters of a script the reference text does not use.

    Args:
        text: the response to check.
        reference_text: usually the prompt; None or a text without letters means Latin script.
        always_allowed: scripts never counted as mixing; Latin by default, since variable names,
            code identifiers, units and product names are Latin in every language.
        min_foreign_chars: how many foreign letters it takes to call the text mixed.
    """
    allowed = set(always_allowed) | (scripts_in(reference_text or "") or {"Latin"})
    foreign = sum(
        length
        for script, length in _letter_runs(text or "")
        if script not in allowed and not (script == "Greek" and length == 1)
    )
    return foreign >= max(1, int(min_foreign_chars))


def _prompt_text(prompt: Any) -> str:
    """The user-written text of a prompt: a string, or the user turns of a chat-message list."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        parts = []
        for message in prompt:
            if isinstance(message, dict) and message.get("role", "user") == "user":
                content = message.get("content")
                if isinstance(content, list):  # multimodal-style content parts
                    content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
                parts.append(content if isinstance(content, str) else "")
        return "\n".join(parts)
    return ""


def _checked_text(completion: Any, include_thinking: bool) -> str | None:
    if include_thinking:
        return completion_text(completion).replace(THINK_OPEN, " ").replace(THINK_CLOSE, " ")
    return final_answer(completion)


def mixed_language_flags(
    completions: Sequence[Any],
    prompts: Sequence[Any] | None = None,
    *,
    include_thinking: bool = False,
    **kwargs: Any,
) -> list[bool | None]:
    """Per completion: True if mixed, False if not, None when there is no answer to check (unclosed think)."""
    completions = list(completions or [])
    prompt_list = list(prompts) if isinstance(prompts, (list, tuple)) else [prompts] * len(completions)
    prompt_list += [None] * (len(completions) - len(prompt_list))
    flags: list[bool | None] = []
    for completion, prompt in zip(completions, prompt_list, strict=False):
        text = _checked_text(completion, include_thinking)
        flags.append(None if text is None else detect_mixed_language(text, _prompt_text(prompt), **kwargs))
    return flags


def language_mixing_reward(
    completions: Sequence[Any],
    prompts: Sequence[Any] | None = None,
    *,
    include_thinking: bool = False,
    always_allowed: Sequence[str] = ("Latin",),
    **kwargs: Any,
) -> list[float]:
    """1.0 if the answer uses only the prompt's scripts (plus Latin), 0.0 if it mixes in another one.

    Example: CJK characters in the answer to an English prompt score 0. Digits, punctuation, math
    symbols, code blocks and LaTeX are ignored. Without prompts the reference script is Latin. A
    completion whose ``<think>`` never closes scores 0. ``include_thinking=True`` checks the
    reasoning as well as the answer.
    """
    started = time.perf_counter()
    flags = mixed_language_flags(
        completions, prompts, include_thinking=bool(include_thinking), always_allowed=tuple(always_allowed)
    )
    scores = [0.0 if flag is None or flag else 1.0 for flag in flags]
    stats.record(
        "language_mixing",
        scores,
        parse_failures=sum(flag is None for flag in flags),
        seconds=time.perf_counter() - started,
    )
    return scores


# -- penalty wrapper -------------------------------------------------------------------------------

_BATCH_MIN = re.compile(r"batch_min_minus_(\d+(?:\.\d+)?)")


def _penalty_rule(penalty: float | str) -> float | str:
    if isinstance(penalty, bool):
        raise ValueError("a language penalty is a number or 'batch_min_minus_<k>', not a boolean")
    if isinstance(penalty, (int, float)):
        return float(penalty)
    if isinstance(penalty, str):
        if _BATCH_MIN.fullmatch(penalty.strip()):
            return penalty.strip()
        try:
            return float(penalty)
        except ValueError:
            pass
    raise ValueError(f"language penalty must be a number or 'batch_min_minus_<k>', got {penalty!r}")


class LanguagePenalty:
    """A reward whose mixed-language completions score ``penalty`` instead (picklable, thread-safe).

    ``penalty`` is a number, or ``"batch_min_minus_<k>"``: the lowest score the wrapped reward gave in
    this batch, minus ``k``. Completions the wrapped reward scores ``None`` (not applicable) stay
    ``None``. Mixing is judged on the answer (``include_thinking=False``) or on the whole text.
    """

    def __init__(
        self,
        reward_fn: Callable[..., list[float | None]],
        penalty: float | str = "batch_min_minus_10",
        *,
        include_thinking: bool = False,
        always_allowed: Sequence[str] = ("Latin",),
        name: str | None = None,
    ):
        self.reward_fn = reward_fn
        self.penalty = _penalty_rule(penalty)
        self.include_thinking = bool(include_thinking)
        self.always_allowed = tuple(always_allowed)
        self.__name__ = name or getattr(reward_fn, "__name__", type(reward_fn).__name__)

    def __call__(self, completions: Sequence[Any], prompts: Sequence[Any] | None = None, **kwargs: Any):
        scores = list(self.reward_fn(completions, prompts=prompts, **kwargs))
        flags = mixed_language_flags(
            completions, prompts, include_thinking=self.include_thinking, always_allowed=self.always_allowed
        )
        if not any(flags):
            return scores
        if isinstance(self.penalty, float):
            value = self.penalty
        else:
            margin = float(_BATCH_MIN.fullmatch(self.penalty).group(1))
            present = [s for s in scores if s is not None]
            value = (min(present) if present else 0.0) - margin
        flags += [False] * (len(scores) - len(flags))
        return [
            value if flag and score is not None else score for score, flag in zip(scores, flags, strict=False)
        ]

    def __repr__(self) -> str:
        return f"LanguagePenalty({self.__name__}, penalty={self.penalty!r})"


def with_language_penalty(
    reward_fn: Callable[..., list[float | None]],
    penalty: float | str = "batch_min_minus_10",
    **options: Any,
) -> LanguagePenalty:
    """``reward_fn`` with mixed-language completions scored ``penalty`` (see ``LanguagePenalty``)."""
    return LanguagePenalty(reward_fn, penalty, **options)
