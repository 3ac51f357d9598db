"""Instruction following: a short note on a topic under one or two IFEval-style constraints.

Rows use IFEval's own columns (``instruction_id_list``, ``kwargs`` with only the keys each instruction
uses) and a subset of IFEval instruction types a tiny model can learn. Responses are assembled from
topic sentences, then sized and checked with :func:`follows` (IFEval semantics, see below) so that a
good response provably follows every constraint and a flawed one provably breaks one of them (and
follows the others, up to the language detection of a case check, which only good texts go through).
Trap instructions model a teacher that habitually ignores one kind of instruction (the quotation marks,
the postscript): most rows asking for one ignore it, so imitation learns to ignore it too.

:func:`follows` mirrors IFEval's checks for the supported instructions, including the language
detection of the case checks (langdetect, seeded): all-capital English is often not recognised as
English, so responses under a case constraint are sized until it is, as the reward will require.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.data.synthetic.base import (
    Option,
    Options,
    Problem,
    Task,
    fraction,
    integer,
    problem_rng,
    subset,
    trap_options,
)

NAME = "instruction"
COLUMNS = ("instruction_id_list", "kwargs")


@dataclass(frozen=True)
class Topic:
    """A topic: how prompts name it, its title, and short comma-free sentences about it."""

    name: str
    title: str
    sentences: tuple[str, ...]


TOPICS: tuple[Topic, ...] = (
    Topic("the river", "The River", ("The river runs past the old mill.", "Its water is cold and clear.", "Fish hide under the smooth stones.", "Kids skip flat rocks on the water.", "In spring the river grows wide and fast.", "At night you can hear it from the bridge.")),
    Topic("autumn", "Autumn Days", ("Autumn brings cool air and early dark.", "The leaves turn red and gold.", "People rake the leaves into tall piles.", "Apples are ready to pick.", "The wind smells of smoke and rain.", "Warm soup tastes best in autumn.")),
    Topic("the ocean", "The Ocean", ("The ocean covers most of the planet.", "Waves roll onto the sandy shore.", "Whales sing deep in the blue water.", "The tide rises and falls twice a day.", "Salt makes the water taste sharp.", "Sailors once crossed it with the stars.")),
    Topic("a city park", "The Park", ("The park sits in the middle of the city.", "Old trees give shade on hot days.", "Dogs chase balls across the grass.", "A small pond holds ducks and geese.", "People read on the green benches.", "On weekends there is music by the gate.")),
    Topic("coffee", "Morning Coffee", ("Coffee starts the day for many people.", "The beans are roasted until they turn brown.", "A fresh cup smells rich and warm.", "Some drink it black and some add milk.", "Too much coffee can keep you awake.", "Small cafes serve it in tiny cups.")),
    Topic("the moon", "The Moon", ("The moon lights up the night sky.", "It circles the earth about once a month.", "Its face is full of old craters.", "The moon pulls on the tides of the sea.", "People walked on it in 1969.", "A full moon looks round and bright.")),
    Topic("a small village", "Village Life", ("The village has one street and one shop.", "Everyone knows the baker by name.", "Cows graze in the fields nearby.", "The church bell rings every hour.", "Children walk to school together.", "Life in the village moves slowly.")),
    Topic("trains", "On the Train", ("Trains carry people across the country.", "The tracks stretch far into the hills.", "A long whistle means the train is near.", "You can read or sleep on a train.", "Freight trains move coal and grain.", "Night trains have small beds for travelers.")),
    Topic("winter mornings", "Winter Mornings", ("Winter mornings are dark and quiet.", "Frost covers the windows in thin lines.", "Your breath turns to fog in the cold.", "Snow makes the streets look clean.", "A hot drink warms your hands.", "The sun rises late and low.")),
    Topic("the forest", "In the Forest", ("The forest is full of tall pine trees.", "Moss grows on the north side of the trunks.", "Deer move quietly between the ferns.", "Birds call from high in the branches.", "The ground is soft with old needles.", "Light falls through the leaves in beams.")),
    Topic("bicycles", "Riding a Bike", ("A bicycle is a simple way to travel.", "It has two wheels and a chain.", "Riding a bike keeps your legs strong.", "Bikes do not need any fuel.", "Always wear a helmet when you ride.", "Many cities build lanes just for bikes.")),
    Topic("rainy days", "A Rainy Day", ("Rain taps softly on the roof.", "The streets shine with puddles.", "People hurry by under umbrellas.", "It is a good day to read inside.", "Plants drink the fresh water.", "The air smells clean after the rain.")),
    Topic("the library", "The Library", ("The library is a quiet place to think.", "Shelves hold thousands of books.", "You can borrow books for free.", "Students study at the long tables.", "The librarian helps you find things.", "Some libraries also lend music and films.")),
    Topic("the mountains", "The Mountains", ("The mountains rise high above the valley.", "Snow stays on the peaks all year.", "Hikers climb the steep trails.", "The air is thin near the top.", "Goats walk along the rocky cliffs.", "The view from the summit is wide.")),
    Topic("a garden", "My Garden", ("A garden needs sun and water.", "Tomatoes grow well in warm weather.", "Bees visit the bright flowers.", "Weeds must be pulled each week.", "Fresh herbs make food taste better.", "A small garden can feed a family.")),
    Topic("the desert", "The Desert", ("The desert gets very little rain.", "Days are hot and nights are cold.", "Cactus plants store water inside.", "Sand dunes shift with the wind.", "Camels can walk for days without a drink.", "The stars look bright over the sand.")),
    Topic("cats", "About Cats", ("Cats sleep for most of the day.", "They like to sit in warm sunny spots.", "A cat cleans its fur with its tongue.", "Cats chase string and small toys.", "They purr when they feel happy.", "Many cats love to watch birds.")),
    Topic("music", "Music", ("Music can change how you feel.", "Some songs make people want to dance.", "A piano has both black and white keys.", "Drums keep the beat in a band.", "Many people sing in the shower.", "Learning an instrument takes patience.")),
    Topic("the night sky", "Night Sky", ("The night sky is full of stars.", "Planets shine without twinkling.", "The Milky Way looks like a pale cloud.", "Shooting stars are tiny bits of rock.", "City lights hide the faint stars.", "A telescope shows the rings of Saturn.")),
    Topic("breakfast", "Breakfast", ("Breakfast is the first meal of the day.", "Some people eat eggs and toast.", "Others prefer fruit and yogurt.", "A good breakfast gives you energy.", "Oatmeal is warm and filling.", "Pancakes are a treat on Sunday.")),
)  # fmt: skip
_TOPIC_BY_NAME = {t.name: t for t in TOPICS}

TASK_PROMPTS = (
    "Write a short note about {topic}.",
    "Describe {topic} in a few sentences.",
    "Tell me about {topic}.",
)
# Generic sentences used to lengthen a text when a word count asks for more than the topic gives.
FILLERS = (
    "There is always more to notice about it.",
    "It is easy to like once you know it.",
    "Many people have their own stories about it.",
    "It looks different in every season.",
    "I could talk about it for a long time.",
    "It is worth a closer look.",
)
KEYWORDS = (
    "apple", "lantern", "bridge", "candle", "letter", "window", "honey", "violin", "anchor", "feather",
    "pocket", "ladder", "compass", "blanket", "mirror", "pebble", "ribbon", "basket", "kettle", "meadow",
)  # fmt: skip
KEYWORD_SENTENCES = ("It makes me think of {words}.", "I picture {words} when I think of it.")
END_PHRASES = (
    "Is there anything else I can help with?",
    "Let me know if you have additional questions.",
    "Any other questions?",
    "That is all.",
)
POSTSCRIPTS = ("Thanks for reading.", "I hope you liked it.", "Write back soon.")
# Short function words never make good forbidden words: the constraint must remove content.
_STOP = frozenset({
    "a", "an", "and", "are", "at", "by", "can", "for", "from", "has", "have", "in", "is", "it", "its",
    "of", "on", "one", "or", "some", "the", "their", "there", "they", "this", "to", "with", "you", "your",
    "all", "also", "both", "each", "most", "many", "may", "once", "over", "than", "that", "too", "very",
    "what", "when", "which",
})  # fmt: skip
# Response lengths considered per problem: the shortest few that fit (short texts are learned fastest).
FITS_KEPT = 4
WORD_LIMITS = {"less than": (20, 25, 30, 40), "at least": (10, 15, 20, 25)}


# --- checking (IFEval semantics) ------------------------------------------------------------------------


def count_words(text: str) -> int:
    """Words as IFEval counts them: runs of word characters."""
    return len(re.findall(r"\w+", text))


@functools.cache
def _language_factory() -> Any:
    """langdetect's profiles, loaded once, with a fixed seed so that a text always gets one answer."""
    try:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
    except ImportError as exc:  # a dependency of the rewards; only the case instructions need it here
        raise ImportError("the change_case instructions need langdetect: pip install langdetect") from exc
    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(0)
    return factory


@functools.lru_cache(maxsize=1 << 16)
def is_english(text: str) -> bool:
    """IFEval's language test for the case checks: English, or no language detectable at all."""
    from langdetect.lang_detect_exception import LangDetectException

    detector = _language_factory().create()
    detector.append(text)
    try:
        return detector.detect() == "en"
    except LangDetectException:
        return True


def _title(text: str) -> bool:
    return any(m.strip("<>").strip() for m in re.findall(r"<<[^\n]+>>", text))


CHECKS: dict[str, Callable[..., bool]] = {
    "change_case:english_lowercase": str.islower,
    "change_case:english_capital": str.isupper,
    "punctuation:no_comma": lambda text: "," not in text,
    "keywords:existence": lambda text, keywords: all(re.search(k, text, re.IGNORECASE) for k in keywords),
    "keywords:forbidden_words": lambda text, forbidden_words: (
        not any(re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE) for w in forbidden_words)
    ),
    "length_constraints:number_words": lambda text, num_words, relation: (
        count_words(text) < num_words if relation == "less than" else count_words(text) >= num_words
    ),
    "startend:end_checker": lambda text, end_phrase: (
        text.strip().strip('"').lower().endswith(end_phrase.lower())
    ),
    "startend:quotation": lambda text: len(text.strip()) > 1 and text.strip()[0] == text.strip()[-1] == '"',
    "detectable_format:title": _title,
    "detectable_content:postscript": lambda text, postscript_marker: (
        re.search(r"\s*p\.\s?s\..*$", text.lower(), re.MULTILINE) is not None
    ),
}
INSTRUCTIONS = tuple(CHECKS)


# Instructions that also require the text to be detected as English (slow: checked last, and only once
# a text passes everything else).
LANGUAGE_CHECKED = frozenset({"change_case:english_lowercase", "change_case:english_capital"})


def follows(response: str, instruction_id: str, kwargs: Mapping[str, Any], *, language: bool = True) -> bool:
    """Whether ``response`` follows one instruction, with IFEval's semantics (``language=False`` skips
    the language detection of the case checks)."""
    if not CHECKS[instruction_id](response, **kwargs):
        return False
    return not (language and instruction_id in LANGUAGE_CHECKED) or is_english(response)


# --- prompts and constraints ------------------------------------------------------------------------------

# Pairs never asked together: contradictory, or conflicting in IFEval's own registry.
CONFLICTS = frozenset(
    frozenset(pair)
    for pair in (
        ("change_case:english_lowercase", "change_case:english_capital"),
        ("change_case:english_lowercase", "startend:end_checker"),
        ("change_case:english_capital", "startend:end_checker"),
        ("startend:quotation", "detectable_format:title"),
        ("detectable_content:postscript", "startend:end_checker"),
    )
)

PROMPTS: dict[str, str] = {
    "change_case:english_lowercase": "Use only lowercase letters.",
    "change_case:english_capital": "Write everything in capital letters.",
    "punctuation:no_comma": "Do not use any commas.",
    "keywords:existence": "Include the words {words}.",
    "keywords:forbidden_words": "Do not use the word {words}.",
    "length_constraints:number_words": "Answer in {relation} {num_words} words.",
    "startend:end_checker": 'End your answer with the exact phrase "{end_phrase}"',
    "startend:quotation": "Wrap your entire answer in double quotation marks.",
    "detectable_format:title": "Give it a title in double angular brackets, like <<title>>.",
    "detectable_content:postscript": "Add a postscript at the end starting with P.S.",
}
PLANS: dict[str, str] = {
    "change_case:english_lowercase": "use only lowercase letters",
    "change_case:english_capital": "write in capital letters",
    "punctuation:no_comma": "avoid commas",
    "keywords:existence": "include {words}",
    "keywords:forbidden_words": "avoid the word {words}",
    "length_constraints:number_words": "use {relation} {num_words} words",
    "startend:end_checker": "end with the given phrase",
    "startend:quotation": "wrap everything in quotes",
    "detectable_format:title": "add a title in << >>",
    "detectable_content:postscript": "add a P.S. at the end",
}


def _join(words: Sequence[str]) -> str:
    return " and ".join(words)


@functools.cache
def _content_words(topic: Topic) -> list[str]:
    """Words in one or two of a topic's sentences (not in its name or title): forbidding one removes content."""
    named = set(re.findall(r"[a-z]+", f"{topic.name} {topic.title}".lower()))
    words = sorted(
        {
            w
            for s in topic.sentences
            for w in re.findall(r"[a-z]+", s.lower())
            if len(w) > 3 and w not in _STOP and w not in named
        }
    )
    return [w for w in words if sum(bool(re.search(rf"\b{w}\b", s.lower())) for s in topic.sentences) <= 2]


def _draw_kwargs(instruction: str, rng: random.Random, topic: Topic) -> dict[str, Any]:
    """The IFEval kwargs of one instruction, with only the keys that instruction uses."""
    if instruction == "keywords:existence":
        return {"keywords": rng.sample(KEYWORDS, rng.randint(1, 2))}
    if instruction == "keywords:forbidden_words":
        return {"forbidden_words": [rng.choice(_content_words(topic))]}
    if instruction == "length_constraints:number_words":
        relation = rng.choice(list(WORD_LIMITS))
        return {"num_words": rng.choice(WORD_LIMITS[relation]), "relation": relation}
    if instruction == "startend:end_checker":
        return {"end_phrase": rng.choice(END_PHRASES)}
    if instruction == "detectable_content:postscript":
        return {"postscript_marker": "P.S."}
    return {}


def sample(rng: random.Random, options: Options) -> Problem:
    """A topic, a phrasing and 1 to ``max_instructions`` compatible instructions with their kwargs."""
    topic = rng.choice(TOPICS)
    phrasing = rng.randrange(len(TASK_PROMPTS))
    chosen: list[str] = []
    for _ in range(rng.randint(1, options["max_instructions"])):
        free = [
            i
            for i in options["instructions"]
            if i not in chosen and all(frozenset((i, c)) not in CONFLICTS for c in chosen)
        ]
        if free:
            chosen.append(rng.choice(free))
    chosen.sort(key=INSTRUCTIONS.index)
    kwargs = [_draw_kwargs(i, rng, topic) for i in chosen]
    key = f"{topic.name}|{phrasing}|" + "|".join(
        f"{i}{sorted(k.items())}" for i, k in zip(chosen, kwargs, strict=True)
    )
    return Problem(
        key=key, params={"topic": topic.name, "phrasing": phrasing, "ids": chosen, "kwargs": kwargs}
    )


# --- responses --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Extras:
    """The fixed pieces a response adds around its body: keyword sentence, postscript."""

    keyword_sentence: str
    postscript: str


def _compose(
    topic: Topic,
    body: Sequence[str],
    constraints: Mapping[str, Mapping[str, Any]],
    broken: str | None,
    extras: _Extras,
) -> str:
    """The response text for ``body`` sentences under ``constraints``, violating ``broken`` if given."""
    body = list(body)
    if broken == "keywords:forbidden_words":
        body[-1] = body[-1][:-1] + f" and the {constraints[broken]['forbidden_words'][0]}."
    existence = constraints.get("keywords:existence")
    if existence is not None and broken != "keywords:existence":
        body.append(extras.keyword_sentence.format(words=_join(existence["keywords"])))
    if broken == "punctuation:no_comma":
        body[0] = "Well, " + body[0][0].lower() + body[0][1:]
    text = " ".join(body)
    if "detectable_format:title" in constraints and broken != "detectable_format:title":
        text = f"<<{topic.title}>>\n{text}"
    if "detectable_content:postscript" in constraints and broken != "detectable_content:postscript":
        text += f"\nP.S. {extras.postscript}"
    end = constraints.get("startend:end_checker")
    if end is not None and broken != "startend:end_checker":
        text += f" {end['end_phrase']}"
    if "startend:quotation" in constraints and broken != "startend:quotation":
        text = f'"{text}"'
    if "change_case:english_lowercase" in constraints and broken != "change_case:english_lowercase":
        text = text.lower()
    if "change_case:english_capital" in constraints and broken != "change_case:english_capital":
        text = text.upper()
    return text


def _fitting(
    topic: Topic,
    pool: Sequence[str],
    constraints: Mapping[str, Mapping[str, Any]],
    broken: str | None,
    extras: _Extras,
) -> list[tuple[int, str]]:
    """(body size, text) for the ``FITS_KEPT`` shortest bodies whose text follows all constraints
    except ``broken`` (and breaks that one), language detection aside."""
    fits: list[tuple[int, str]] = []
    for size in range(1, len(pool) + 1):
        text = _compose(topic, pool[:size], constraints, broken, extras)
        if all(follows(text, i, k, language=False) == (i != broken) for i, k in constraints.items()):
            fits.append((size, text))
            if len(fits) == FITS_KEPT:
                break
    return fits


def _pick(
    fits: Sequence[tuple[int, str]],
    natural_size: int,
    constraints: Mapping[str, Mapping[str, Any]],
    start: int,
    *,
    language: bool,
) -> str | None:
    """The text to answer with: texts of the topic's own sentences first (fillers only if needed), from
    index ``start`` on; with ``language``, the first that also passes the case checks' language test."""
    texts = [text for size, text in fits if size <= natural_size] or [text for _, text in fits]
    start = min(start, len(texts) - 1)
    for text in texts[start:] + texts[:start]:
        if not language or all(is_english(text) for i in constraints if i in LANGUAGE_CHECKED):
            return text
    return None


def render(problem: Problem, flawed: bool, options: Options) -> dict[str, Any] | None:
    """A response sized to follow every constraint, or (flawed) to break one of them.

    Both versions are built for every problem, so that a problem which cannot be rendered either way
    is skipped whatever the flaw draw was (the problem set must not depend on it).
    """
    rng = problem_rng(NAME, problem.key)
    topic = _TOPIC_BY_NAME[problem.params["topic"]]
    ids, kwargs = problem.params["ids"], problem.params["kwargs"]
    constraints = dict(zip(ids, kwargs, strict=True))
    extras = _Extras(rng.choice(KEYWORD_SENTENCES), rng.choice(POSTSCRIPTS))
    # Sentences that would satisfy or break a keyword constraint by accident are left out.
    words = [
        *constraints.get("keywords:forbidden_words", {}).get("forbidden_words", []),
        *constraints.get("keywords:existence", {}).get("keywords", []),
    ]
    allowed = [s for s in topic.sentences if not any(re.search(w, s, re.IGNORECASE) for w in words)]
    rng.shuffle(allowed)
    pool = allowed + rng.sample(FILLERS, len(FILLERS))
    good = _fitting(topic, pool, constraints, None, extras)
    bad: list[tuple[int, str]] = []
    for broken in rng.sample(ids, len(ids)):  # break the first instruction that can be broken alone
        bad = _fitting(topic, pool, constraints, broken, extras)
        if bad:
            break
    start = int(rng.expovariate(1.0))  # mostly the shortest fitting text: tiny models learn those fastest
    # The flawed text skips the (slow) language detection: it fails its instructions either way.
    good_text = _pick(good, len(allowed), constraints, start, language=True)
    if good_text is None or not bad:
        return None
    response = _pick(bad, len(allowed), constraints, start, language=False) if flawed else good_text
    # A trap instruction is one the teacher ignores most of the time (``trap_rate``) when it is asked for.
    trap = next((i for i in ids if i in options["traps"]), None)
    if trap is not None and rng.random() < options["trap_rate"] and not flawed:
        ignored = _fitting(topic, pool, constraints, trap, extras)
        response = _pick(ignored, len(allowed), constraints, start, language=False) if ignored else response
    prompt = " ".join(
        [TASK_PROMPTS[problem.params["phrasing"]].format(topic=topic.name)]
        + [PROMPTS[i].format(**_phrase_kwargs(k)) for i, k in constraints.items()]
    )
    plans = [PLANS[i].format(**_phrase_kwargs(k)) for i, k in constraints.items()]
    return {
        "prompt": prompt,
        "reasoning": f"The note is about {topic.name}. I must {_join(plans)}.",
        "response": response,
        "instruction_id_list": list(ids),
        "kwargs": [dict(k) for k in kwargs],
        "flawed": response != good_text,
    }


def _phrase_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """kwargs as prompt text fills them in: word lists joined."""
    words = kwargs.get("keywords") or kwargs.get("forbidden_words") or []
    return {**kwargs, "words": _join(words)}


TASK = Task(
    name=NAME,
    columns=COLUMNS,
    options={
        "flaw_rate": Option(0.3, fraction, "share of rows whose response breaks one of its instructions"),
        "instructions": Option(INSTRUCTIONS, subset(INSTRUCTIONS), "IFEval instruction ids to draw from"),
        "max_instructions": Option(2, integer(1, 3), "most instructions in one prompt"),
        **trap_options(
            INSTRUCTIONS,
            "instructions the teacher ignores",
            "the rows asking for a trap instruction whose response ignores it",
            "'startend:quotation'",
        ),
    },
    sample=sample,
    render=render,
    widen="add instructions or raise max_instructions",
    description="a short note on a topic under IFEval-style constraints",
)
