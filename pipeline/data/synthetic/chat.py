"""Chat preferences: everyday requests with a helpful answer and a worse one of a known kind.

Each family (plant care, studying, capitals…) has slot values, prompt phrasings, helpful answers and
wrong answers. A rejected answer is one of five kinds, each with its own surface signal a small reward
model can learn: ``rude`` (dismissive tone, sometimes with the right advice), ``off_topic`` (a fine
answer to another request), ``repetitive`` (one sentence over and over), ``truncated`` (cut off
mid-sentence) and ``wrong`` (the same style, wrong content). Lengths overlap across kinds on purpose,
so that "longer is better" is not a shortcut. The split unit is a family's slot value (e.g. "fern"):
every phrasing and rejection of it lands in the same split.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from pipeline.data.synthetic.base import Option, Options, Problem, Task, fraction, problem_rng, subset

NAME = "chat"
COLUMNS = ("chosen", "rejected", "rejection")
REJECTIONS = ("rude", "off_topic", "repetitive", "truncated", "wrong")


@dataclass(frozen=True)
class Family:
    """Requests about one subject; ``{x}`` in any text is the slot value (a tuple slot fills ``{x[0]}``…)."""

    name: str
    about: str
    slots: tuple[Any, ...]
    prompts: tuple[str, ...]
    chosen: tuple[str, ...]
    wrong: tuple[str, ...]


FAMILIES: tuple[Family, ...] = (
    Family("plant", "caring for a {x}",
           ("fern", "cactus", "basil plant", "orchid", "snake plant", "tomato plant", "peace lily", "spider plant", "aloe plant", "rose bush"),
           ("How do I keep my {x} healthy?", "Any tips for caring for a {x}?", "What does a {x} need to grow well?"),
           ("Give your {x} plenty of light and water it when the top of the soil feels dry. Use a pot with drainage holes so the roots never sit in water.",
            "A {x} likes bright light and soil that dries out a little between waterings. Check the leaves each week for pests."),
           ("Water your {x} with salt water every hour and keep it in a dark closet.",
            "A {x} grows best when you never water it and keep it away from all light.")),
    Family("language", "learning {x}",
           ("Spanish", "French", "German", "Italian", "Japanese", "Portuguese", "Korean", "Dutch", "Swedish", "Greek"),
           ("How can I learn {x} faster?", "What is a good way to practice {x}?", "Any advice for a beginner in {x}?"),
           ("Practice {x} a little every day and speak with native speakers when you can. Short daily reviews of new words work better than rare long sessions.",
            "Listen to {x} podcasts and read simple texts every day. Speaking early, even with mistakes, helps you learn faster."),
           ("You can learn {x} in one night by sleeping next to a dictionary.",
            "Never speak {x} until you know every word, because mistakes make you forget.")),
    Family("cooking", "cooking {x}",
           ("pasta", "potatoes", "lentils", "broccoli", "carrots", "green beans", "corn", "peas", "rice", "beets"),
           ("How do I cook {x}?", "What is an easy way to prepare {x}?", "Can you tell me how to make {x} for dinner?"),
           ("Cook the {x} in a pot of simmering salted water until tender. Drain it and season it to taste.",
            "Simmer the {x} in lightly salted water and taste it often so it does not overcook. A little butter or olive oil makes it even better."),
           ("Cook the {x} in a dry pan for three hours until it turns black.",
            "Eat the {x} raw and frozen, since cooking removes all of its taste.")),
    Family("exercise", "starting {x}",
           ("running", "swimming", "cycling", "hiking", "yoga", "rowing", "dancing", "skating", "climbing", "boxing"),
           ("How do I start {x}?", "What should a beginner know about {x}?", "Any tips for getting into {x}?"),
           ("Start {x} with short easy sessions two or three times a week and build up slowly. Warm up first and rest when something hurts.",
            "Begin {x} gently and focus on good form before speed. Drink water and give your body a day of rest between sessions."),
           ("Do {x} for five hours on your first day and never take a rest day.",
            "Skip the warm up before {x}, because pain is the best sign of progress.")),
    Family("money", "spending less on {x}",
           ("groceries", "rent", "travel", "clothes", "electricity", "coffee", "gifts", "my phone bill", "transport", "eating out"),
           ("How can I spend less on {x}?", "Any ideas to save money on {x}?", "What helps to cut costs on {x}?"),
           ("Set a monthly budget for {x} and track what you spend. Compare prices before you buy and skip what you do not need.",
            "Write down every expense on {x} for a month to see where the money goes. Then pick one or two easy changes to start with."),
           ("Spend as much as you can on {x} now, because spending more always saves money later.",
            "Stop checking prices for {x}, since every shop charges exactly the same.")),
    Family("study", "studying for a {x} test",
           ("math", "history", "biology", "chemistry", "physics", "geography", "music theory", "economics", "grammar", "art history"),
           ("How should I study for a {x} test?", "What is the best way to prepare for a {x} exam?", "Any study tips for {x}?"),
           ("Study {x} in short sessions spread over several days. Test yourself with practice questions and review your mistakes.",
            "Make a short summary of each {x} topic and quiz yourself on it. Sleep well the night before the test."),
           ("Study {x} only the night before and skip sleep to remember more.",
            "Reading your {x} notes once is enough, and practice questions only waste time.")),
    Family("pet", "caring for a {x}",
           ("dog", "cat", "rabbit", "hamster", "parrot", "goldfish", "turtle", "guinea pig", "horse", "ferret"),
           ("How do I take good care of my {x}?", "What does a happy {x} need?", "Any advice for a new {x} owner?"),
           ("Give your {x} fresh water every day and food made for its species. Regular visits to a vet keep it healthy.",
            "A {x} needs clean water, the right food and a safe place to rest. Spend time with it every day and take it to a vet once a year."),
           ("Feed your {x} chocolate every day, since all animals love sweets.",
            "A {x} never needs water if you give it enough dry food.")),
    Family("writing", "writing a {x}",
           ("email", "essay", "cover letter", "speech", "short story", "report", "poem", "blog post", "thank you note", "book review"),
           ("How do I write a good {x}?", "Any tips for writing a {x}?", "What makes a {x} good?"),
           ("Decide on the main point of your {x} before you start. Write a rough draft, then edit it to make it short and clear.",
            "Know who will read your {x} and what they need from it. Read it aloud once to catch mistakes."),
           ("Never plan a {x} and never read it again once it is written.",
            "A good {x} should be as long as possible and repeat every point three times.")),
    Family("clean", "cleaning a {x}",
           ("kitchen", "bathroom", "oven", "window", "carpet", "fridge", "desk", "car", "stove", "sink"),
           ("What is an easy way to clean my {x}?", "How do I clean a {x} quickly?", "Any tips for keeping my {x} clean?"),
           ("Clear everything off first, then wipe the {x} with warm soapy water. Dry it with a clean cloth.",
            "Use warm water with a little dish soap on the {x} and work from top to bottom. A quick wipe every day keeps it clean."),
           ("Mix bleach and ammonia to clean your {x} faster.",
            "Scrub the {x} with sand and motor oil to make it shine.")),
    Family("packing", "packing for a {x}",
           ("beach trip", "ski trip", "business trip", "camping trip", "city break", "hiking trip", "road trip", "family visit", "school trip", "wedding"),
           ("What should I pack for a {x}?", "Can you help me pack for a {x}?", "What do I need to bring on a {x}?"),
           ("Make a list a few days before the {x} and pack clothes for the weather. Bring your documents, a charger and any medicine you need.",
            "Check the weather for your {x} and pack light layers. Keep your ID, money and phone in one easy bag."),
           ("Pack nothing for a {x}, because you can always borrow clothes from strangers.",
            "Leave your ID at home on a {x}, since nobody ever asks for it.")),
    Family("instrument", "learning the {x}",
           ("guitar", "piano", "violin", "drums", "flute", "ukulele", "cello", "trumpet", "harp", "saxophone"),
           ("How do I get better at the {x}?", "What is a good way to practice the {x}?", "Any tips for learning the {x}?"),
           ("Practice the {x} a little every day and start with slow, simple pieces. Recording yourself helps you hear what to improve.",
            "Play the {x} slowly at first and speed up only when it sounds clean. A teacher can fix bad habits early."),
           ("Only practice the {x} once a year so your hands stay fresh.",
            "Always play the {x} as fast as you can, since speed matters more than the right notes.")),
    Family("stress", "feeling less stressed {x}",
           ("before exams", "at work", "during the holidays", "after moving", "before a job interview", "at night", "in traffic", "before a speech", "on busy days", "at school"),
           ("How can I feel less stressed {x}?", "Any tips for staying calm {x}?", "What helps with stress {x}?"),
           ("Take a few slow, deep breaths and go for a short walk. Talking to a friend about what worries you also helps.",
            "Plan the next small step and do just that. Regular sleep and a little exercise make stress easier to handle."),
           ("Drink five cups of coffee to calm down {x}.",
            "Hold your breath for as long as you can whenever you feel stressed {x}.")),
    Family("gift", "a gift for a {x}",
           ("friend", "mother", "father", "sister", "brother", "teacher", "grandmother", "coworker", "neighbor", "cousin"),
           ("What is a good gift for my {x}?", "Can you suggest a present for my {x}?", "What should I give my {x} for a birthday?"),
           ("Think about what your {x} enjoys, like a favorite book, a plant or a cooking class. A handwritten card makes any gift more personal.",
            "A small gift that fits your {x}'s hobbies works well. Spending time together is often the best present."),
           ("The best gift for your {x} is an empty box, since gifts never matter.",
            "Give your {x} something you want yourself and keep the receipt hidden.")),
    Family("capital", "the capital of {x[0]}",
           (("France", "Paris", "Rome"), ("Japan", "Tokyo", "Osaka"), ("Italy", "Rome", "Milan"), ("Spain", "Madrid", "Barcelona"), ("Germany", "Berlin", "Munich"),
            ("Egypt", "Cairo", "Alexandria"), ("Canada", "Ottawa", "Toronto"), ("Kenya", "Nairobi", "Mombasa"), ("Peru", "Lima", "Cusco"), ("Norway", "Oslo", "Bergen"),
            ("Australia", "Canberra", "Sydney"), ("Brazil", "Brasilia", "Rio de Janeiro"), ("Turkey", "Ankara", "Istanbul"), ("India", "New Delhi", "Mumbai"), ("Poland", "Warsaw", "Krakow")),
           ("What is the capital of {x[0]}?", "Which city is the capital of {x[0]}?", "Can you tell me the capital of {x[0]}?"),
           ("The capital of {x[0]} is {x[1]}.", "{x[1]} is the capital of {x[0]}. It is also home to the national government."),
           ("The capital of {x[0]} is {x[2]}.", "{x[2]} is the capital of {x[0]}. It is also home to the national government.")),
    Family("units", "how many {x[0]} are in {x[1]}",
           (("minutes", "an hour", "60", "100"), ("hours", "a day", "24", "12"), ("days", "a week", "7", "10"), ("months", "a year", "12", "10"),
            ("seconds", "a minute", "60", "100"), ("centimeters", "a meter", "100", "10"), ("grams", "a kilogram", "1000", "100"), ("meters", "a kilometer", "1000", "100"),
            ("days", "a leap year", "366", "365"), ("weeks", "a year", "52", "48")),
           ("How many {x[0]} are in {x[1]}?", "Can you tell me how many {x[0]} there are in {x[1]}?", "Quick question: how many {x[0]} make {x[1]}?"),
           ("There are {x[2]} {x[0]} in {x[1]}.", "{x[1]} has {x[2]} {x[0]}. That is a handy number to remember."),
           ("There are {x[3]} {x[0]} in {x[1]}.", "{x[1]} has {x[3]} {x[0]}. That is a handy number to remember.")),
    Family("colors", "mixing {x[0]} and {x[1]}",
           (("blue", "yellow", "green", "orange"), ("red", "blue", "purple", "green"), ("red", "yellow", "orange", "blue"), ("red", "white", "pink", "black"),
            ("black", "white", "gray", "red"), ("blue", "white", "light blue", "brown"), ("yellow", "white", "cream", "purple"), ("red", "green", "brown", "white")),
           ("What color do I get by mixing {x[0]} and {x[1]}?", "If I mix {x[0]} and {x[1]} paint, what color is it?", "Which color comes from {x[0]} and {x[1]}?"),
           ("Mixing {x[0]} and {x[1]} paint gives you {x[2]}.", "You get {x[2]}. Add more {x[0]} or {x[1]} to change the shade."),
           ("Mixing {x[0]} and {x[1]} paint gives you {x[3]}.", "You get {x[3]}. Add more {x[0]} or {x[1]} to change the shade.")),
)  # fmt: skip
_FAMILY_BY_NAME = {f.name: f for f in FAMILIES}

CLOSERS = ("", "", " I hope this helps!", " Good luck!", " Have fun with it!")
RUDE_OPENERS = (
    "Ugh, that is a silly question.",
    "Seriously? Figure it out yourself.",
    "Why would you even ask that?",
    "Obviously.",
    "Whatever.",
)
RUDE_CLOSERS = (
    "Stop wasting my time.",
    "Next time look it up yourself.",
    "Not that you will listen.",
    "Honestly, everyone knows this.",
)
THINKING = ("The user asks about {about}. A short, friendly and correct answer works best.",
            "This is about {about}. I will give clear, practical advice.")  # fmt: skip


def _fill(text: str, slot: Any) -> str:
    filled = text.format(x=slot)
    return filled[0].upper() + filled[1:]


def sample(rng: random.Random, options: Options) -> Problem:
    """A family's slot value (the split unit), a phrasing, a helpful answer and a rejection kind."""
    family = rng.choice(FAMILIES)
    slot = rng.randrange(len(family.slots))
    phrasing = rng.randrange(len(family.prompts))
    answer = rng.randrange(len(family.chosen))
    rejection = rng.choice(options["rejections"])
    group = f"{family.name}:{slot}"
    return Problem(
        key=f"{group}:{phrasing}:{answer}:{rejection}",
        group=group,
        params={
            "family": family.name,
            "slot": slot,
            "phrasing": phrasing,
            "answer": answer,
            "rejection": rejection,
        },
    )


def _sentences(text: str) -> list[str]:
    return [s if s.endswith((".", "!", "?")) else s + "." for s in text.split(". ")]


def _rejected(kind: str, family: Family, slot: Any, helpful: str, other: str, rng: random.Random) -> str:
    """A worse answer of ``kind`` to the same request.

    ``helpful`` is the chosen answer without its closing pleasantry, ``other`` the family's other one.

    Each kind comes in short and long forms so that length alone does not tell chosen from rejected.
    """
    if kind == "rude":
        middle = rng.choice(("", _sentences(helpful)[0], helpful))
        return " ".join(part for part in (rng.choice(RUDE_OPENERS), middle, rng.choice(RUDE_CLOSERS)) if part)
    if kind == "off_topic":
        elsewhere = rng.choice([f for f in FAMILIES if f is not family])
        return _fill(rng.choice(elsewhere.chosen), rng.choice(elsewhere.slots)) + rng.choice(CLOSERS)
    if kind == "repetitive":
        return " ".join([rng.choice(_sentences(helpful))] * rng.randint(2, 3))
    if kind == "truncated":  # a long answer (both helpful ones) cut off mid-sentence
        words = f"{helpful} {other}".split()
        cut = max(2, int(len(words) * rng.uniform(0.3, 0.9)))
        if words[cut - 1].endswith((".", "!", "?")):  # never stop at a sentence's end
            cut += 1
        return " ".join(words[:cut]).rstrip(".,!?")
    if kind == "wrong":  # wrong advice, sometimes wrapped in a correct-sounding sentence
        wrong = _fill(rng.choice(family.wrong), slot)
        extra = rng.choice(("", _sentences(other)[-1]))
        return " ".join(part for part in (wrong, extra) if part) + rng.choice(CLOSERS)
    raise ValueError(f"unknown rejection kind {kind!r}")


def render(problem: Problem, flawed: bool, options: Options) -> dict[str, Any]:
    """Prompt, a short plan, the chosen and rejected answers; the response is the rejected one when flawed."""
    rng = problem_rng(NAME, problem.key)
    family = _FAMILY_BY_NAME[problem.params["family"]]
    slot = family.slots[problem.params["slot"]]
    answer = problem.params["answer"]
    helpful = _fill(family.chosen[answer], slot)
    chosen = helpful + rng.choice(CLOSERS)
    other = _fill(family.chosen[(answer + 1) % len(family.chosen)], slot)
    rejection = problem.params["rejection"]
    rejected = _rejected(rejection, family, slot, helpful, other, rng)
    return {
        "prompt": _fill(family.prompts[problem.params["phrasing"]], slot),
        "reasoning": rng.choice(THINKING).format(about=family.about.format(x=slot)),
        "response": rejected if flawed else chosen,
        "chosen": chosen,
        "rejected": rejected,
        "rejection": rejection,
    }


TASK = Task(
    name=NAME,
    columns=COLUMNS,
    options={
        "flaw_rate": Option(0.2, fraction, "share of rows whose SFT response is the rejected answer"),
        "rejections": Option(REJECTIONS, subset(REJECTIONS), "kinds of rejected answers to draw from"),
    },
    sample=sample,
    render=render,
    widen="add rejections",
    description="everyday requests with a chosen and a rejected answer (reward-model pairs)",
)
