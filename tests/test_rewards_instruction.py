"""The instruction-following reward: every IFEval instruction type, strict vs loose, and the row shapes."""

from __future__ import annotations

import json
import pickle
import threading

import pytest

from rewards.ifeval import INSTRUCTIONS, count_sentences, split_sentences
from rewards.ifeval.text import DETECTOR, count_capital_words
from rewards.instruction import check_instructions, instruction_results, instruction_reward

IFEVAL_TYPES = {
    "keywords:existence",
    "keywords:frequency",
    "keywords:forbidden_words",
    "keywords:letter_frequency",
    "language:response_language",
    "length_constraints:number_sentences",
    "length_constraints:number_paragraphs",
    "length_constraints:number_words",
    "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders",
    "detectable_content:postscript",
    "detectable_format:number_bullet_lists",
    "detectable_format:constrained_response",
    "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections",
    "detectable_format:json_format",
    "detectable_format:title",
    "combination:two_responses",
    "combination:repeat_prompt",
    "startend:end_checker",
    "change_case:capital_word_frequency",
    "change_case:english_capital",
    "change_case:english_lowercase",
    "punctuation:no_comma",
    "startend:quotation",
}

EN = "The weather today is sunny and warm, and many people are walking in the park with their dogs."
FR = "Le temps est ensoleillé aujourd'hui et beaucoup de gens se promènent dans le parc avec leurs chiens."

# (instruction id, kwargs, response, followed in strict mode) — each with a comment saying why.
CASES = [
    # keywords:existence — every keyword must appear, case-insensitively, as a substring.
    ("keywords:existence", {"keywords": ["apple", "Pie"]}, "An APPLE pie recipe.", True),
    ("keywords:existence", {"keywords": ["apple", "pie"]}, "An apple tart.", False),  # "pie" missing
    ("keywords:existence", {"keywords": ["sun"]}, "It is sunny.", True),  # substring, as in IFEval
    # keywords:frequency — "less than" is strict (<), "at least" is >=.
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"}, "Cat and cat.", True),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"}, "One cat.", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "less than"}, "Cat, cat.", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "less than"}, "One cat.", True),
    # keywords:forbidden_words — whole words only, case-insensitive.
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "A badge is fine.", True),  # not a word
    ("keywords:forbidden_words", {"forbidden_words": ["bad", "evil"]}, "That was BAD.", False),
    # keywords:letter_frequency — counts one letter, case-insensitively.
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": "at least"},
     "Zebras zigzag in a maze.", True),  # z, z, z, z
    ("keywords:letter_frequency", {"letter": "Z", "let_frequency": 3, "let_relation": "less than"},
     "Zebras zigzag in a maze.", False),  # 4 is not < 3
    # language:response_language — langdetect's ISO 639-1 code must match.
    ("language:response_language", {"language": "fr"}, FR, True),
    ("language:response_language", {"language": "fr"}, EN, False),
    ("language:response_language", {"language": "en"}, "12345 !!! 678", True),  # no letters: passes
    # length_constraints:number_sentences — the rule-based splitter; "less than" / "at least".
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     "Mr. Smith arrived at 3.30 today. He left.", True),  # abbreviation and decimal do not split: 2
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     "One. Two! Three?", False),  # 3 is not < 3
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"},
     "One. Two! Three?", True),
    # length_constraints:number_paragraphs — exactly N paragraphs split by ***.
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First part.\n***\nSecond part.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A.\n***\nB.\n***\nC.", False),  # 3
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A.\n***\n***\nB.", False),  # empty one
    # length_constraints:number_words — runs of word characters.
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "one two three four five", True),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "one two three four five", False),
    # length_constraints:nth_paragraph_first_word — "\n\n" paragraphs, count and first word of the nth.
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Then"}, "Intro here.\n\n\"Then, we went.", True),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"}, "Intro here.\n\nAfter that.", False),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "then"}, "Intro.\n\nThen more.", False),  # 2 != 3
    # detectable_content:number_placeholders — at least N [bracketed] spans.
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at address.", False),
    # detectable_content:postscript — P.S. / P.P.S, case-insensitive, loose spacing.
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Bye.\n\np. s. see you", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Bye.\n\nP.S. see you", False),
    # detectable_format:number_bullet_lists — exactly N lines starting with "*" or "-".
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "Intro\n* one\n- two", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two\n* three", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 1}, "**bold** line\n* one", True),  # ** no bullet
    # detectable_format:constrained_response — one of the three fixed answers appears.
    ("detectable_format:constrained_response", {}, "My answer is maybe.", True),
    ("detectable_format:constrained_response", {}, "My answer is perhaps.", False),
    # detectable_format:number_highlighted_sections — *x* and **x** both count, empty ones do not.
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two**", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and ** **", False),
    # detectable_format:multiple_sections — at least N "<splitter> <number>" markers (case-sensitive).
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nfoo\nSection 2\nbar", True),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "Section 1\nfoo\nSection 2\nbar", False),
    # detectable_format:json_format — the whole response, fences allowed, must parse.
    ("detectable_format:json_format", {}, '```json\n{"a": [1, 2]}\n```', True),
    ("detectable_format:json_format", {}, 'Here it is: {"a": 1}', False),
    # detectable_format:title — <<title>> with a non-blank inside.
    ("detectable_format:title", {}, "<<Poem of Joy>>\nRoses are red.", True),
    ("detectable_format:title", {}, "<< >>\nRoses are red.", False),
    # combination:two_responses — exactly two different parts split by ******.
    ("combination:two_responses", {}, "First answer.\n******\nSecond answer.", True),
    ("combination:two_responses", {}, "Same.\n******\nSame.", False),
    ("combination:two_responses", {}, "A.\n******\n******\nB.", False),  # empty middle response
    # combination:repeat_prompt — the response starts with the prompt, case-insensitively.
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "write a POEM. Roses...", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Sure! Write a poem.", False),
    # startend:end_checker — ends with the phrase (surrounding quotes ignored).
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, 'Done. "Any other questions?"', True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Bye.", False),
    # change_case:capital_word_frequency — ALL-CAPS tokens, contractions split like NLTK.
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "at least"},
     "DON'T stop the WELL-KNOWN show", True),  # DO, N'T, WELL-KNOWN
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "less than"},
     "DON'T stop the WELL-KNOWN show", False),
    # change_case:english_capital — all capitals and English.
    ("change_case:english_capital", {}, EN.upper(), True),
    ("change_case:english_capital", {}, EN, False),
    ("change_case:english_capital", {}, FR.upper(), False),  # capitals but French
    # change_case:english_lowercase — all lowercase and English.
    ("change_case:english_lowercase", {}, EN.lower(), True),
    ("change_case:english_lowercase", {}, EN, False),
    # punctuation:no_comma — no ASCII comma anywhere.
    ("punctuation:no_comma", {}, "No commas here.", True),
    ("punctuation:no_comma", {}, "One, two.", False),
    # startend:quotation — wrapped in double quotes after stripping.
    ("startend:quotation", {}, '  "Quoted answer."  ', True),
    ("startend:quotation", {}, "'Single quotes.'", False),
    ("startend:quotation", {}, '"', False),  # a lone quote is not a wrapped response
]  # fmt: skip


def test_every_ifeval_type_is_implemented_and_tested() -> None:
    # The registry holds exactly IFEval's 25 ids, and CASES has a passing and a failing case for each.
    assert set(INSTRUCTIONS) == IFEVAL_TYPES
    for outcome in (True, False):
        assert {case[0] for case in CASES if case[3] is outcome} == IFEVAL_TYPES


@pytest.mark.parametrize(("instruction_id", "kwargs", "response", "followed"), CASES)
def test_instruction_type(instruction_id: str, kwargs: dict, response: str, followed: bool) -> None:
    result = check_instructions(response, [instruction_id], [kwargs])[0]
    assert result.error is None
    assert result.followed is followed
    assert instruction_reward([response], [[instruction_id]], [[kwargs]]) == [float(followed)]


# (response, instruction, kwargs, strict, loose) — the loose variants of IFEval.
LOOSE_CASES = [
    # A preamble line breaks "starts with the prompt"; loose drops the first line.
    ("Sure, here you go:\nWrite a poem. Roses.", "combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."},
     False, True),
    # A closing remark breaks the end phrase; loose drops the last line.
    ("Bye. Any other questions?\nHope this helps!", "startend:end_checker", {"end_phrase": "Any other questions?"},
     False, True),
    # Markdown emphasis breaks the quotation; loose also tries the text without "*".
    ('*"Quoted."*', "startend:quotation", {}, False, True),
    # A comma in the body is not forgiven by any variant.
    ("Intro line\nOne, two.\nOutro line", "punctuation:no_comma", {}, False, False),
    # Strict success stays a success in loose mode.
    ("No commas.", "punctuation:no_comma", {}, True, True),
]  # fmt: skip


@pytest.mark.parametrize(("response", "instruction_id", "kwargs", "strict", "loose"), LOOSE_CASES)
def test_strict_and_loose(
    response: str, instruction_id: str, kwargs: dict, strict: bool, loose: bool
) -> None:
    assert instruction_reward([response], [[instruction_id]], [[kwargs]], mode="strict") == [float(strict)]
    assert instruction_reward([response], [[instruction_id]], [[kwargs]], mode="loose") == [float(loose)]


HF_KWARGS_KEYS = [
    "num_highlights", "relation", "num_words", "num_placeholders", "prompt_to_repeat", "num_paragraphs",
    "num_sentences", "keywords", "forbidden_words", "keyword", "frequency", "end_phrase", "first_word",
    "nth_paragraph", "section_spliter", "num_sections", "postscript_marker", "language", "let_frequency",
    "let_relation", "letter", "capital_frequency", "capital_relation", "num_bullets",
]  # fmt: skip


def _hf_kwargs(**given: object) -> dict:
    """A kwargs dict shaped like google/IFEval's: every key present, None where unused."""
    return {key: given.get(key) for key in HF_KWARGS_KEYS}


IDS = ["punctuation:no_comma", "length_constraints:number_words"]
KWARGS = [_hf_kwargs(), _hf_kwargs(num_words=3, relation="at least")]

# (completions, instruction_id_list, kwargs, options, expected scores)
ROW_CASES = [
    # IFEval HF shape: None values are dropped; both instructions followed.
    (["one two three four"], [IDS], [KWARGS], {}, [1.0]),
    # One of two followed: 0 in all-or-nothing mode, 0.5 with partial credit.
    (["one, two three"], [IDS], [KWARGS], {}, [0.0]),
    (["one, two three"], [IDS], [KWARGS], {"partial_credit": True}, [0.5]),
    # kwargs as a JSON string, and the id list as a JSON string.
    (["one two three"], [json.dumps(IDS)], [json.dumps(KWARGS)], {}, [1.0]),
    # List items that are JSON strings.
    (["one two three"], [IDS], [[json.dumps(k) for k in KWARGS]], {}, [1.0]),
    # A bare dict for a single instruction.
    (["one two three"], [["length_constraints:number_words"]], [{"num_words": 3, "relation": "at least"}], {}, [1.0]),
    # An unknown id is not followed, never an exception.
    (["fine"], [["punctuation:no_comma", "made:up"]], [[{}, {}]], {"partial_credit": True}, [0.5]),
    # Missing required kwargs (IFEval would draw random ones) and a bad relation: not followed.
    (["one two"], [["length_constraints:number_words"]], [[{"num_words": 1}]], {}, [0.0]),
    (["one two"], [["length_constraints:number_words"]], [[{"num_words": 1, "relation": "most"}]], {}, [0.0]),
    # Unreadable kwargs JSON: not followed.
    (["one two"], [["length_constraints:number_words"]], ["{not json"], {}, [0.0]),
    # No instructions on a row: not this reward's sample.
    (["anything"], [None], [None], {}, [None]),
    # Thinking: only the answer after </think> is checked; an unclosed <think> scores 0.
    (["<think>a, b, c</think>No commas here"], [["punctuation:no_comma"]], [[{}]], {}, [1.0]),
    (["<think>No commas here"], [["punctuation:no_comma"]], [[{}]], {}, [0.0]),
    (["<think>x</think>a, b"], [["punctuation:no_comma"]], [[{}]], {}, [0.0]),
    # An empty answer follows nothing, even "less than" limits (as in IFEval).
    (["<think>x</think>"], [["length_constraints:number_words"]], [[{"num_words": 5, "relation": "less than"}]],
     {}, [0.0]),
    # Chat-message completions: the assistant message is scored.
    ([[{"role": "assistant", "content": "No commas"}]], [["punctuation:no_comma"]], [[{}]], {}, [1.0]),
]  # fmt: skip


@pytest.mark.parametrize(("completions", "ids", "kwargs", "options", "expected"), ROW_CASES)
def test_row_shapes(completions: list, ids: list, kwargs: list, options: dict, expected: list) -> None:
    assert instruction_reward(completions, ids, kwargs, **options) == expected


def test_extra_trl_columns_and_results_for_logging() -> None:
    # TRL passes prompts and other columns; they are ignored. instruction_results explains each score.
    completions = ["one, two", "<think>open"]
    ids = [IDS, IDS]
    scores = instruction_reward(completions, ids, [KWARGS, KWARGS], prompts=["p", "p"], trainer_state=None)
    assert scores == [0.0, 0.0]
    results = instruction_results(completions, ids, [KWARGS, KWARGS])
    assert [(r.instruction_id, r.followed) for r in results[0]] == [(IDS[0], False), (IDS[1], False)]
    assert all(r.error == "thinking never closed" for r in results[1])


def test_bad_mode_is_a_configuration_error() -> None:
    # A misspelt mode is reported, not silently scored.
    with pytest.raises(ValueError, match="mode"):
        instruction_reward(["x"], [IDS], [KWARGS], mode="lenient")


# (text, sentences) — the offline splitter.
SENTENCE_CASES = [
    ("Hello world. This is a test! Is it? Yes.", 4),  # . ! ?
    ("Mr. Smith paid $3.50 at 5 p.m. Then he left.", 2),  # title, decimal, a.m./p.m. before a capital
    ("Use tools, e.g. hammers. They work.", 2),  # e.g. never ends a sentence
    ("J. R. R. Tolkien wrote books.", 1),  # initials
    ("1. First item\n2. Second item", 1),  # list numbers are not sentence ends
    ('She said "Hi." Then she left.', 2),  # closing quote after the period
    ("Wait... what? I see... Maybe.", 3),  # ellipsis before lowercase continues the sentence
    ("Visit www.example.com today", 1),  # dots inside a token
    ("", 0),
]


@pytest.mark.parametrize(("text", "count"), SENTENCE_CASES)
def test_sentence_splitter(text: str, count: int) -> None:
    assert count_sentences(text) == count
    assert len(split_sentences(text)) == count


def test_capital_words_follow_treebank_tokens() -> None:
    # Contractions split in two, hyphenated words stay whole, numbers are not capital words.
    assert count_capital_words("DON'T panic: WELL-KNOWN 42 OK") == 4


def test_language_detection_is_deterministic_and_offline() -> None:
    # Short, ambiguous texts are where an unseeded langdetect flips between answers.
    texts = ["Hola", "Ciao bella", "Guten Tag", "ok ok ok", FR, EN]
    first = [DETECTOR.detect(t) for t in texts]
    for _ in range(5):
        assert [DETECTOR.detect(t) for t in texts] == first
    assert first[-2:] == ["fr", "en"]
    # A fresh copy (as in a worker process) gives the same answers.
    copy = pickle.loads(pickle.dumps(DETECTOR))
    assert [copy.detect(t) for t in texts] == first


def test_linear_time_on_degenerate_text() -> None:
    # Long runs that make backtracking regexes quadratic finish quickly (the test would time out otherwise).
    import time

    ids = sorted(IFEVAL_TYPES)
    kwargs = [
        {"keywords": ["x"], "keyword": "x", "frequency": 1, "relation": "at least", "forbidden_words": ["x"],
         "letter": "x", "let_frequency": 1, "let_relation": "at least", "language": "en", "num_sentences": 1,
         "num_paragraphs": 1, "num_words": 1, "nth_paragraph": 1, "first_word": "x", "num_placeholders": 1,
         "postscript_marker": "P.S.", "num_bullets": 1, "num_highlights": 1, "section_spliter": "Section",
         "num_sections": 1, "prompt_to_repeat": "x", "end_phrase": "x", "capital_frequency": 1,
         "capital_relation": "at least"}
    ] * len(ids)  # fmt: skip
    for text in ["\n" * 60_000 + "x", "[" * 60_000, "." * 60_000 + "x", " " * 60_000 + "p", "<<" * 30_000]:
        start = time.perf_counter()
        instruction_reward([text], [ids], [kwargs], mode="loose")
        assert time.perf_counter() - start < 10.0


def test_picklable_and_thread_safe() -> None:
    # The reward is a module-level function, and concurrent calls agree with a sequential one.
    assert pickle.loads(pickle.dumps(instruction_reward)) is instruction_reward
    completions = [case[2] for case in CASES]
    ids = [[case[0]] for case in CASES]
    kwargs = [[case[1]] for case in CASES]
    expected = instruction_reward(completions, ids, kwargs)
    got: list = []

    def work() -> None:
        got.append(instruction_reward(completions, ids, kwargs))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == [expected] * 4


def test_reports_statistics() -> None:
    # Unclosed thinking counts as a parse failure, an unknown id or bad kwargs as a data error.
    from rewards import stats

    before = stats.snapshot().get("instruction", {})
    instruction_reward(
        ["<think>open", "fine", "fine"],
        [["punctuation:no_comma"], ["made:up"], ["punctuation:no_comma"]],
        [[{}], [{}], [{}]],
    )
    after = stats.snapshot()["instruction"]
    assert after["parse_failures"] - before.get("parse_failures", 0.0) == 1.0
    assert after["errors"] - before.get("errors", 0.0) == 1.0
    assert after["samples"] - before.get("samples", 0.0) == 3.0
