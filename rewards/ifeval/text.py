"""Text measurements the IFEval checks share: words, sentences, capitalised words, language.

Everything here runs offline and in time linear in the text. IFEval's reference counts sentences with
NLTK's Punkt model, which has to be downloaded at run time (``nltk.download("punkt_tab")``) and so fails
on the offline nodes training runs on; the rule-based splitter below needs no data files. Language
detection uses ``langdetect``, which ships its language profiles inside the wheel, with a fixed seed so
that the same text always gets the same answer.
"""

from __future__ import annotations

import re
import threading
from typing import Any

# Words whose trailing period never ends a sentence: titles, Latin abbreviations and similar.
# fmt: off
_NEVER_FINAL = frozenset([
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "rev", "gen", "col", "capt", "cpt", "lt", "sgt",
    "hon", "gov", "pres", "messrs", "mme", "mlle", "e.g", "i.e", "cf", "vs", "viz", "al", "approx", "fig",
    "figs", "vol", "vols", "pp", "eds", "dept", "univ", "assn", "bros",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
])
# Abbreviations that often close a sentence: a boundary only when the next word is capitalised.
_SOMETIMES_FINAL = frozenset(["etc", "inc", "ltd", "co", "corp", "llc", "plc", "ph.d", "a.m", "p.m"])
# fmt: on

# A run of terminators, then closing quotes/brackets, then whitespace or the end of the text.
# Possessive quantifiers and the look-behind (a run starts only once) keep the scan linear.
_BOUNDARY = re.compile(r"(?<![.!?\u2026])[.!?\u2026]++[\"'\u201d\u2019)\]\u00bb]*+(?=\s|$)")
_NON_SPACE = re.compile(r"\S")
_ACRONYM = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")  # U.S / e.g / Ph.D without the final period
_LIST_NUMBER = re.compile(r"^(?:\d{1,3}|[ivx]{1,4}|[a-z])$", re.IGNORECASE)
_WORD = re.compile(r"\w+")
_CASED_TOKEN = re.compile(r"[^\W_]+(?:[-.][^\W_]+)*(?:['\u2019][^\W_]+)?")
_CONTRACTION = re.compile(r"^(.+?)(n['\u2019]t|['\u2019](?:s|re|ve|ll|d|m))$", re.IGNORECASE)


def count_words(text: str) -> int:
    """Runs of word characters (the reference's ``RegexpTokenizer(r"\\w+")``)."""
    return len(_WORD.findall(text))


def _token_before(text: str, stop: int) -> tuple[str, int]:
    """The whitespace-delimited token ending at ``stop`` and its start index."""
    start = stop
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:stop], start


def _starts_line(text: str, index: int) -> bool:
    """Whether only spaces or tabs stand between the previous newline (or the start) and ``index``."""
    while index > 0 and text[index - 1] in " \t":
        index -= 1
    return index == 0 or text[index - 1] == "\n"


def _is_boundary(text: str, start: int, end: int) -> bool:
    """Whether the terminator run ``text[start:end]`` ends a sentence."""
    run = text[start:end]
    after = _NON_SPACE.search(text, end)
    next_upper = after is not None and (after.group().isupper() or after.group().isdigit())
    if "!" in run or "?" in run:
        return True
    if "..." in run or "\u2026" in run:  # an ellipsis ends a sentence only before a capital
        return after is None or next_upper
    if after is None:
        return True
    raw, token_start = _token_before(text, start)
    token = raw.lstrip("\"'(\u201c\u2018[")
    word = token.lower()
    if not token:  # a detached terminator, as in "Done ."
        return True
    if word in _NEVER_FINAL:
        return False
    if word in _SOMETIMES_FINAL or _ACRONYM.match(token):
        return next_upper
    if len(token) == 1 and token.isupper() and next_upper:  # an initial, as in "J. R. R. Tolkien"
        return False
    # "1." / "iv." / "b." opening a line numbers a list item rather than ending a sentence.
    return not (_LIST_NUMBER.match(token) and _starts_line(text, token_start))


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences with rules for abbreviations, initials, decimals and list numbers.

    Like Punkt, a newline alone does not end a sentence; a terminator must be followed by whitespace,
    so decimals ("3.14"), versions and URLs stay whole.
    """
    sentences: list[str] = []
    begin = 0
    for match in _BOUNDARY.finditer(text):
        if _is_boundary(text, match.start(), match.end()):
            piece = text[begin : match.end()].strip()
            if piece:
                sentences.append(piece)
            begin = match.end()
    tail = text[begin:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def count_sentences(text: str) -> int:
    """The number of sentences in ``text`` (see :func:`split_sentences`)."""
    return len(split_sentences(text))


def word_tokens(text: str) -> list[str]:
    """Word tokens the way a Treebank tokenizer sees cased words.

    Hyphenated words and acronyms stay whole ("WELL-KNOWN", "U.S"); contractions are split
    ("DON'T" -> "DO", "N'T"), as NLTK's ``word_tokenize`` does, which the reference uses.
    """
    tokens: list[str] = []
    for token in _CASED_TOKEN.findall(text):
        match = _CONTRACTION.match(token)
        tokens.extend(match.groups() if match else (token,))
    return tokens


def count_capital_words(text: str) -> int:
    """Words written entirely in capitals (``str.isupper``)."""
    return sum(1 for token in word_tokens(text) if token.isupper())


class LanguageDetector:
    """Deterministic, thread-safe language identification with langdetect's bundled profiles.

    langdetect's module-level ``detect`` initialises a global factory without a lock and draws from
    an unseeded random generator; this class owns its factory (loaded once, under a lock) with a
    fixed seed, and every call builds its own detector, so concurrent calls do not interfere.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._factory: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._factory is None:
                from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

                factory = DetectorFactory()
                factory.load_profile(PROFILES_DIRECTORY)
                factory.set_seed(self.seed)
                self._factory = factory
        return self._factory

    def detect(self, text: str) -> str | None:
        """The ISO 639-1 code of ``text``'s language, or ``None`` when the text has no letters to judge."""
        from langdetect.lang_detect_exception import LangDetectException

        detector = (self._factory or self._load()).create()
        detector.append(text)
        try:
            return detector.detect()
        except LangDetectException:
            return None

    def __getstate__(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["seed"])


DETECTOR = LanguageDetector(seed=0)
