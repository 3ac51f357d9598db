r"""Where a math completion states its final answer, and what a dataset row's reference answer is.

The final answer is the last ``\boxed{…}`` (or ``\fbox{…}``, or ``\boxed 5``) of the text after the last
``</think>``; boxes that follow each other separated only by commas/"and"/"or" form one answer
(``\boxed{2}, \boxed{3}`` is the set {2, 3}, so hedging between two answers is wrong). Without a box,
the configured fallbacks are tried in order: an ``Answer: …`` / ``The final answer is …`` line, a
GSM8K-style ``#### …`` line, the last number. Pure text functions; :mod:`rewards.math` compares what
they find.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

DEFAULT_FALLBACKS = ("answer_line", "hash", "last_number")
MAX_GOLD_CHARS = 4000  # a full reference solution is fine: only its final answer is kept

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BOX_SEPARATOR = re.compile(r"[\s,;$]*(?:(?:and|or|\\text\{\s*(?:and|or)\s*\}|\\q?quad)[\s,;$]*)?")
_ANSWER_LINE = re.compile(r"(?i)\b(?:final\s+answer|answer)\b[*_]*\s*(?:is\b|[:：=])[\s*_:]*(.*)")
_ANSWER_HEADING = re.compile(r"(?i)^[\s#*_]*(?:the\s+)?(?:final\s+)?answer[\s*_:]*$")
_HASH = re.compile(r"####\s*(.+)")
_MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|(?<!\\)\$(.+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_LAST_NUMBER = re.compile(
    r"(?:(?<![\w)\]}])-)?\\[dt]?frac\{\d+\}\{\d+\}"
    r"|(?:(?<![\w)\]}.])-)?(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?(?:\s*\\?%)?"
)


def _match_brace(text: str, open_pos: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_pos`` (escaped braces skipped), or None."""
    depth, i = 0, open_pos
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _boxes(text: str) -> list[tuple[int, int, str | None]]:
    """Top-level boxes as (start, end, content); content None for a box whose brace never closes."""
    found: list[tuple[int, int, str | None]] = []
    pos = 0
    while True:
        match = _BOX.search(text, pos)
        if match is None:
            return found
        i = match.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            close = _match_brace(text, i)
            if close is None:
                found.append((match.start(), len(text), None))
                return found
            found.append((match.start(), close + 1, text[i + 1 : close]))
            pos = close + 1
        elif i > match.end() or (i < len(text) and text[i] not in "\n$"):
            token = re.match(r"[^\s$]*", text[i:]).group(0)  # "\boxed 5" form
            found.append((match.start(), i + len(token), token.rstrip(".,;")))
            pos = i + len(token)
        else:
            pos = match.end()


def last_boxed(text: str) -> str | None:
    r"""The last boxed answer (adjacent boxes joined with ", "), "" for an empty box, None if none.

    A last box whose brace never closes (a truncated completion) gives None: the answer is cut off.
    """
    boxes = _boxes(text)
    if not boxes:
        return None
    start, _, content = boxes[-1]
    if content is None:
        return None
    parts = [content]
    for prev_start, prev_end, prev_content in reversed(boxes[:-1]):
        if prev_content is None or not _BOX_SEPARATOR.fullmatch(text[prev_end:start]):
            break
        parts.insert(0, prev_content)
        start = prev_start
    return ", ".join(p.strip() for p in parts) if len(parts) > 1 else content.strip()


def _clean_sentence(text: str) -> str:
    """The answer inside a sentence: its last math span, else the text up to the first full stop."""
    spans = [next(g for g in m.groups() if g is not None) for m in _MATH_SPAN.finditer(text)]
    if spans:
        return spans[-1].strip()
    text = text.strip().strip("*_").strip()
    return re.split(r"\.(?:\s|$)", text, maxsplit=1)[0].strip()


def _answer_line(text: str) -> str | None:
    lines = text.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        match = _ANSWER_LINE.search(line)  # its group runs to the end of the line
        if match is not None and match.group(1).strip(" *_"):
            return _clean_sentence(match.group(1)) or None
        if match is not None or _ANSWER_HEADING.match(line):  # "**Final Answer**" then the answer below
            rest = [ln for ln in lines[index + 1 :] if ln.strip()]
            return _clean_sentence(rest[0]) if rest else None
    return None


def _hash_line(text: str) -> str | None:
    matches = _HASH.findall(text)
    return _clean_sentence(matches[-1]) if matches else None


def _last_number(text: str) -> str | None:
    matches = _LAST_NUMBER.findall(text)
    return matches[-1] if matches else None


FALLBACKS = {"answer_line": _answer_line, "hash": _hash_line, "last_number": _last_number}  # name → finder


def extract_answer(text: str, fallbacks: Sequence[str] = DEFAULT_FALLBACKS) -> str | None:
    r"""The final answer written in ``text`` (already past ``</think>``), or None when there is none.

    The last ``\boxed{}`` wins; without any box each named fallback is tried in order.
    """
    boxes = _boxes(text)
    if boxes:
        answer = last_boxed(text)
        return answer or None
    for name in fallbacks:
        answer = FALLBACKS[name](text)
        if answer:
            return answer
    return None


def gold_answer(gold: Any) -> str | None:
    r"""The reference answer of a dataset row: its last ``\boxed{}``, the text after ``####``, or itself."""
    if gold is None or isinstance(gold, bool):
        return None
    if isinstance(gold, (int, float, Fraction)):
        return str(gold)
    if not isinstance(gold, str):
        return None
    text = gold.strip()[:MAX_GOLD_CHARS]
    if _BOX.search(text):
        return last_boxed(text) or None
    if "####" in text:
        return _hash_line(text)
    return text or None
