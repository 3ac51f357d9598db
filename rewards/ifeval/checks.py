"""The 25 IFEval instruction checks, one table row each: id, arguments, check.

Semantics follow IFEval (Zhou et al., 2023, "Instruction-Following Evaluation for Large Language
Models") instruction by instruction, including its quirks (keywords match as substrings, a postscript
marker may appear anywhere, a text in which no language can be detected passes the language checks).
Where the reference draws a random argument because one is missing, this module refuses instead:
a check with a missing or malformed argument raises :class:`InvalidArguments`, which the reward turns
into "not followed". Every check runs in time linear in the response (no backtracking-prone regex on
model text), so a degenerate completion cannot stall a training step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rewards.ifeval.text import DETECTOR, count_capital_words, count_sentences, count_words

RELATIONS = ("less than", "at least")
CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


class InvalidArguments(ValueError):
    """An instruction's keyword arguments are missing or malformed."""


# --- argument converters: value -> normalised value, or InvalidArguments ------------------------------


def _count(value: Any) -> int:
    """A non-negative integer (integral floats and digit strings, as data loaders produce, are accepted)."""
    if isinstance(value, bool):
        raise InvalidArguments(f"expected a count, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value < 0:
        raise InvalidArguments(f"expected a non-negative integer, got {value!r}")
    return value


def _positive(value: Any) -> int:
    count = _count(value)
    if count == 0:
        raise InvalidArguments("expected a positive integer, got 0")
    return count


def _relation(value: Any) -> str:
    if value not in RELATIONS:
        raise InvalidArguments(f"relation must be one of {RELATIONS}, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArguments(f"expected a non-empty string, got {value!r}")
    return value.strip()


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidArguments(f"expected a non-empty list of words, got {value!r}")
    return [_text(word) for word in value]


def _letter(value: Any) -> str:
    letter = _text(value).lower()
    if len(letter) != 1 or not ("a" <= letter <= "z"):
        raise InvalidArguments(f"expected one ASCII letter, got {value!r}")
    return letter


def _compare(actual: int, relation: str, threshold: int) -> bool:
    return actual < threshold if relation == "less than" else actual >= threshold


# --- the checks: (response, **arguments) -> bool ------------------------------------------------------


def _keywords_exist(response: str, *, keywords: list[str]) -> bool:
    return all(re.search(re.escape(word), response, re.IGNORECASE) for word in keywords)


def _keyword_frequency(response: str, *, keyword: str, frequency: int, relation: str) -> bool:
    return _compare(len(re.findall(re.escape(keyword), response, re.IGNORECASE)), relation, frequency)


def _forbidden_words(response: str, *, forbidden_words: list[str]) -> bool:
    return not any(re.search(rf"\b{re.escape(word)}\b", response, re.IGNORECASE) for word in forbidden_words)


def _letter_frequency(response: str, *, letter: str, let_frequency: int, let_relation: str) -> bool:
    return _compare(response.lower().count(letter), let_relation, let_frequency)


def _response_language(response: str, *, language: str) -> bool:
    detected = DETECTOR.detect(response)
    if detected is None:  # no letters to judge: passes, as in the reference
        return True
    return language in (detected, detected.split("-")[0])  # "zh" accepts langdetect's "zh-cn"/"zh-tw"


def _number_sentences(response: str, *, num_sentences: int, relation: str) -> bool:
    return _compare(count_sentences(response), relation, num_sentences)


def _number_paragraphs(response: str, *, num_paragraphs: int) -> bool:
    # Paragraphs are separated by a markdown divider "***"; an empty paragraph is allowed only
    # before the first or after the last divider.
    parts = re.split(r"\s?\*\*\*\s?", response)
    empty = [i for i, part in enumerate(parts) if not part.strip()]
    if any(0 < i < len(parts) - 1 for i in empty):
        return False
    return len(parts) - len(empty) == num_paragraphs


def _number_words(response: str, *, num_words: int, relation: str) -> bool:
    return _compare(count_words(response), relation, num_words)


def _nth_paragraph_first_word(
    response: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str
) -> bool:
    # Paragraphs are separated by "\n\n"; empty ones do not count but still occupy their index.
    parts = response.split("\n\n")
    count = sum(1 for part in parts if part.strip())
    if nth_paragraph > count or not parts[nth_paragraph - 1].strip():
        return False
    word = parts[nth_paragraph - 1].split()[0].lstrip("'").lstrip('"')
    word = re.split(r"[.,?!'\"]", word, maxsplit=1)[0].lower()
    return count == num_paragraphs and word == first_word.lower()


def _number_placeholders(response: str, *, num_placeholders: int) -> bool:
    # Counts "[...]" spans within one line, each closed by the first "]" after its "[" (the
    # reference's r"\[.*?\]"), with a single scan.
    found, open_ = 0, False
    for char in response:
        if char == "[":
            open_ = True
        elif char == "]" and open_:
            found, open_ = found + 1, False
        elif char == "\n":
            open_ = False
    return found >= num_placeholders


_POSTSCRIPT_PATTERNS = {"P.P.S": r"p\.\s?p\.\s?s", "P.S.": r"p\.\s?s\."}


def _postscript(response: str, *, postscript_marker: str) -> bool:
    pattern = _POSTSCRIPT_PATTERNS.get(postscript_marker, re.escape(postscript_marker.lower()))
    return re.search(pattern, response.lower()) is not None


def _number_bullet_lists(response: str, *, num_bullets: int) -> bool:
    # Markdown bullets: lines whose first non-blank character is "*" (not "**") or "-". A lone "*"
    # at the end of a line swallows the next line, as the reference's r"^\s*\*[^\*].*$" does.
    lines = response.split("\n")
    stars = 0
    index = 0
    while index < len(lines):
        stripped = lines[index].lstrip()
        if stripped.startswith("*"):
            rest = stripped[1:]
            if rest and not rest.startswith("*"):
                stars += 1
            elif not rest and index + 1 < len(lines):
                stars += 1
                index += 1
        index += 1
    dashes = sum(1 for line in lines if line.lstrip().startswith("-"))
    return stars + dashes == num_bullets


def _constrained_response(response: str) -> bool:
    return any(option in response.strip() for option in CONSTRAINED_RESPONSES)


def _number_highlighted_sections(response: str, *, num_highlights: int) -> bool:
    single = [m for m in re.findall(r"\*[^\n*]*\*", response) if m.strip("*").strip()]
    double = [m for m in re.findall(r"\*\*[^\n*]*\*\*", response) if m[2:-2].strip()]
    return len(single) + len(double) >= num_highlights


def _multiple_sections(response: str, *, section_spliter: str, num_sections: int) -> bool:
    parts = re.split(rf"\s?{re.escape(section_spliter)}\s?\d+\s?", response)
    return len(parts) - 1 >= num_sections


def _json_format(response: str) -> bool:
    text = response.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):  # applied in turn, as the reference does
        text = text.removeprefix(prefix)
    text = text.removesuffix("```").strip()
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _title(response: str) -> bool:
    # A title is "<<...>>" on one line with something other than brackets and blanks inside; the
    # reference's greedy r"<<[^\n]+>>" runs from a line's first "<<" to its last ">>".
    for line in response.split("\n"):
        start, end = line.find("<<"), line.rfind(">>")
        if start >= 0 and end >= start + 3 and line[start : end + 2].lstrip("<").rstrip(">").strip():
            return True
    return False


def _two_responses(response: str) -> bool:
    parts = response.split("******")
    kept = []
    for index, part in enumerate(parts):
        if part.strip():
            kept.append(part.strip())
        elif 0 < index < len(parts) - 1:
            return False
    return len(kept) == 2 and kept[0] != kept[1]


def _repeat_prompt(response: str, *, prompt_to_repeat: str) -> bool:
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


def _end_checker(response: str, *, end_phrase: str) -> bool:
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def _capital_word_frequency(response: str, *, capital_frequency: int, capital_relation: str) -> bool:
    return _compare(count_capital_words(response), capital_relation, capital_frequency)


def _english_capital(response: str) -> bool:
    return response.isupper() and DETECTOR.detect(response) in ("en", None)


def _english_lowercase(response: str) -> bool:
    return response.islower() and DETECTOR.detect(response) in ("en", None)


def _no_comma(response: str) -> bool:
    return "," not in response


def _quotation(response: str) -> bool:
    text = response.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


# --- the table ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One IFEval instruction type: its id, its arguments (name -> converter) and its check."""

    id: str
    check: Callable[..., bool]
    arguments: Mapping[str, Callable[[Any], Any]]
    summary: str

    def parse(self, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
        """The check's arguments from a row's kwargs (``None`` values dropped, unknown keys ignored)."""
        given = {k: v for k, v in (kwargs or {}).items() if v is not None}
        missing = [name for name in self.arguments if name not in given]
        if missing:
            raise InvalidArguments(f"{self.id} needs {', '.join(missing)}")
        return {name: convert(given[name]) for name, convert in self.arguments.items()}


_ROWS: list[Instruction] = [
    Instruction("keywords:existence", _keywords_exist, {"keywords": _words},
                "every keyword appears (case-insensitive substring)"),
    Instruction("keywords:frequency", _keyword_frequency,
                {"keyword": _text, "frequency": _count, "relation": _relation},
                "the keyword appears `relation` `frequency` times (case-insensitive substring)"),
    Instruction("keywords:forbidden_words", _forbidden_words, {"forbidden_words": _words},
                "none of the words appears as a whole word (case-insensitive)"),
    Instruction("keywords:letter_frequency", _letter_frequency,
                {"letter": _letter, "let_frequency": _count, "let_relation": _relation},
                "the letter appears `let_relation` `let_frequency` times (case-insensitive)"),
    Instruction("language:response_language", _response_language, {"language": _text},
                "langdetect identifies the response as `language` (ISO 639-1)"),
    Instruction("length_constraints:number_sentences", _number_sentences,
                {"num_sentences": _count, "relation": _relation},
                "the sentence count is `relation` `num_sentences`"),
    Instruction("length_constraints:number_paragraphs", _number_paragraphs, {"num_paragraphs": _count},
                "exactly `num_paragraphs` paragraphs separated by ***"),
    Instruction("length_constraints:number_words", _number_words, {"num_words": _count, "relation": _relation},
                "the word count is `relation` `num_words`"),
    Instruction("length_constraints:nth_paragraph_first_word", _nth_paragraph_first_word,
                {"num_paragraphs": _count, "nth_paragraph": _positive, "first_word": _text},
                "exactly `num_paragraphs` paragraphs separated by blank lines, paragraph `nth_paragraph` "
                "starting with `first_word`"),
    Instruction("detectable_content:number_placeholders", _number_placeholders, {"num_placeholders": _count},
                "at least `num_placeholders` [placeholders]"),
    Instruction("detectable_content:postscript", _postscript, {"postscript_marker": _text},
                "a postscript starting with `postscript_marker` (P.S. / P.P.S match loosely)"),
    Instruction("detectable_format:number_bullet_lists", _number_bullet_lists, {"num_bullets": _count},
                "exactly `num_bullets` markdown bullets (* or -)"),
    Instruction("detectable_format:constrained_response", _constrained_response, {},
                "contains 'My answer is yes.', 'My answer is no.' or 'My answer is maybe.'"),
    Instruction("detectable_format:number_highlighted_sections", _number_highlighted_sections,
                {"num_highlights": _count}, "at least `num_highlights` *highlighted* sections"),
    Instruction("detectable_format:multiple_sections", _multiple_sections,
                {"section_spliter": _text, "num_sections": _count},
                "at least `num_sections` sections, each opened by `section_spliter` N"),
    Instruction("detectable_format:json_format", _json_format, {},
                "the whole response (optionally in a ``` fence) parses as JSON"),
    Instruction("detectable_format:title", _title, {}, "a non-empty title in <<double angular brackets>>"),
    Instruction("combination:two_responses", _two_responses, {},
                "exactly two different responses separated by ******"),
    Instruction("combination:repeat_prompt", _repeat_prompt, {"prompt_to_repeat": _text},
                "starts with `prompt_to_repeat` (case-insensitive)"),
    Instruction("startend:end_checker", _end_checker, {"end_phrase": _text},
                "ends with `end_phrase` (case-insensitive, surrounding quotes ignored)"),
    Instruction("change_case:capital_word_frequency", _capital_word_frequency,
                {"capital_frequency": _count, "capital_relation": _relation},
                "the number of ALL-CAPS words is `capital_relation` `capital_frequency`"),
    Instruction("change_case:english_capital", _english_capital, {}, "all capitals and in English"),
    Instruction("change_case:english_lowercase", _english_lowercase, {}, "all lowercase and in English"),
    Instruction("punctuation:no_comma", _no_comma, {}, "no comma"),
    Instruction("startend:quotation", _quotation, {}, 'wrapped in double quotation marks ("...")'),
]  # fmt: skip

INSTRUCTIONS: dict[str, Instruction] = {row.id: row for row in _ROWS}
