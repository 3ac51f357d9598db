"""The builtin synthetic tasks: row shapes, determinism, split disjointness, flaws that really fail.

Generated code and patches are this package's own trusted output, so the tests run them in-process
with a runner written here (independent of the package's own) to prove that good rows pass their
tests and flawed rows fail them. Where the project's rewards import, rows are also scored by them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from pipeline.data.synthetic import COMMON_COLUMNS, TASKS, corpus, generate, task_columns
from pipeline.data.synthetic import chat as chat_task
from pipeline.data.synthetic.base import TEST_PERCENT, split_of
from pipeline.data.synthetic.execution import BUG_KINDS, assert_test, mutants, passes
from pipeline.data.synthetic.instruction import follows
from pipeline.data.synthetic.swe import apply_patch, make_patch

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def rows_of(task: str, split: str = "train", n: int = 120, seed: int = 0) -> tuple[dict[str, Any], ...]:
    """Rows shared by the read-only tests (generation is deterministic, so caching changes nothing)."""
    return tuple(generate(task, split, n, seed=seed))


def last_block(text: str, language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)
    assert blocks, f"no ```{language} block in {text!r}"
    return blocks[-1]


def last_boxed(text: str) -> str:
    boxed = re.findall(r"\\boxed\{([^{}]*)\}", text)
    assert boxed, f"no \\boxed{{}} in {text!r}"
    return boxed[-1]


def apply_search_replace(code: str, answer: str) -> str:
    """``code`` after the answer's SEARCH/REPLACE blocks, each replacing the one run of lines it searches for."""
    blocks = re.findall(r"<<<<<<< SEARCH\n(.*?)=======\n(.*?)>>>>>>> REPLACE", answer, re.DOTALL)
    assert blocks, answer
    lines = code.splitlines()
    for search, replace in blocks:
        old, new = search.splitlines(), replace.splitlines()
        hits = [i for i in range(len(lines)) if lines[i : i + len(old)] == old]
        assert len(hits) == 1, (search, code)
        lines[hits[0] : hits[0] + len(old)] = new
    return "".join(f"{line}\n" for line in lines)


def apply_answer(row: dict[str, Any]) -> str:
    """The code a SWE row's response turns its buggy code into, in whichever edit format it is written."""
    if "```diff" in row["response"]:
        return apply_patch(row["original_code"], last_block(row["response"], "diff"))
    return apply_search_replace(row["original_code"], row["response"])


def run_tests(code: str, tests: str) -> bool:
    """Whether trusted ``code`` passes ``tests`` (the project's code test format); exceptions fail."""
    spec = json.loads(tests)
    try:
        if spec["kind"] == "stdio":
            for case in spec["cases"]:
                out = io.StringIO()
                with contextlib.redirect_stdout(out), mock.patch("sys.stdin", io.StringIO(case["input"])):
                    exec(code, {"__name__": "__main__"})
                if out.getvalue().split("\n") != case["output"].split("\n"):
                    return False
            return True
        namespace: dict[str, Any] = {}
        exec(code, namespace)
        if spec["kind"] == "call":
            fn = namespace[spec["fn_name"]]
            return all(fn(*case["args"]) == case["expected"] for case in spec["cases"])
        checker: dict[str, Any] = {}
        exec(spec["test"], checker)
        checker["check"](namespace[spec["entry_point"]])
        return True
    except Exception:
        return False


# --- registry and row shapes ----------------------------------------------------------------------------


def test_registry_names_the_five_tasks() -> None:
    # The data loader and recipes refer to builtin:<task> by these names.
    assert set(TASKS) == {"math", "code", "instruction", "chat", "swe"}


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _dict_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def _test_json(value: Any) -> bool:
    return isinstance(value, str) and json.loads(value)["kind"] in ("stdio", "call", "assert")


# Column -> what every value of it must satisfy.
COLUMN_CHECKS: dict[str, Callable[[Any], bool]] = {
    "id": lambda v: isinstance(v, str) and bool(v),
    "prompt": lambda v: isinstance(v, str) and bool(v.strip()),
    "reasoning": lambda v: isinstance(v, str) and bool(v.strip()),
    "response": lambda v: isinstance(v, str) and bool(v.strip()),
    "flawed": lambda v: isinstance(v, bool),
    "answer": lambda v: isinstance(v, str) and re.fullmatch(r"-?\d+(/\d+)?", v) is not None,
    "tests": _test_json,
    "entry_point": lambda v: isinstance(v, str),
    "instruction_id_list": lambda v: _str_list(v) and 1 <= len(v) <= 3,
    "kwargs": _dict_list,
    "chosen": lambda v: isinstance(v, str) and bool(v),
    "rejected": lambda v: isinstance(v, str) and bool(v),
    "rejection": lambda v: v in chat_task.REJECTIONS,
    "original_code": lambda v: isinstance(v, str) and v.startswith("def "),
    "issue": lambda v: isinstance(v, str) and bool(v),
    "golden_patch": lambda v: (
        isinstance(v, str) and v.startswith("--- a/solution.py\n+++ b/solution.py\n@@ -")
    ),
    "fixed_code": lambda v: isinstance(v, str) and v.startswith("def "),
    "bug": lambda v: v in BUG_KINDS,
}


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("split", ["train", "test"])
def test_rows_have_exactly_the_task_columns_with_the_right_types(task: str, split: str) -> None:
    # Every row of every task and split carries the common columns plus its domain's, well typed.
    columns = task_columns(task)
    assert columns[: len(COMMON_COLUMNS)] == COMMON_COLUMNS
    rows = rows_of(task, split, 60)
    assert len(rows) == 60
    for row in rows:
        assert tuple(row) == columns
        for column in columns:
            assert COLUMN_CHECKS[column](row[column]), (column, row[column])
    assert len({row["id"] for row in rows}) == len(rows)  # ids are unique


@pytest.mark.parametrize("task", list(TASKS))
def test_rows_load_into_a_datasets_table(task: str) -> None:
    # The loader turns rows into a datasets.Dataset: column types must be consistent across rows.
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_list(list(rows_of(task)))
    assert table.column_names == list(task_columns(task))


@pytest.mark.parametrize("task", list(TASKS))
def test_prompts_and_answers_stay_short(task: str) -> None:
    # A tiny model must learn these fast: prompts and responses are a few dozen words, not pages.
    limits = {
        "math": 40,
        "code": 40,
        "instruction": 70,
        "chat": 60,
        "swe": 120,
    }  # words per prompt + response
    for row in rows_of(task):
        assert len((row["prompt"] + " " + row["response"]).split()) <= limits[task], row


def test_no_prompt_carries_a_thinking_mode_marker() -> None:
    # The data layer appends /think or /no_think itself.
    for task in TASKS:
        assert not any("/think" in r["prompt"] or "/no_think" in r["prompt"] for r in rows_of(task))


# --- determinism ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", list(TASKS))
def test_same_arguments_give_identical_rows(task: str) -> None:
    # Two calls with the same arguments (no caching involved) return equal rows.
    assert generate(task, "train", 40, seed=3) == generate(task, "train", 40, seed=3)


@pytest.mark.parametrize("task", list(TASKS))
def test_another_seed_gives_other_rows_and_a_problem_renders_the_same_under_any_seed(task: str) -> None:
    # Seeds pick different problems; a problem drawn under two seeds renders identically
    # (apart from whether it was chosen to be flawed).
    a, b = generate(task, "train", 200, seed=0), generate(task, "train", 200, seed=1)
    assert [r["id"] for r in a] != [r["id"] for r in b]
    by_id = {r["id"]: r for r in a}
    shared = [(by_id[r["id"]], r) for r in b if r["id"] in by_id and by_id[r["id"]]["flawed"] == r["flawed"]]
    assert shared, "expected some problems in common between two seeds"
    assert all(x == y for x, y in shared)


@pytest.mark.parametrize("task", list(TASKS))
def test_a_larger_call_starts_with_the_same_problems(task: str) -> None:
    # Asking for more rows adds problems after the ones a smaller call returned.
    small, large = generate(task, "test", 30, seed=5), generate(task, "test", 90, seed=5)
    assert [r["id"] for r in small] == [r["id"] for r in large[:30]]


def test_rows_do_not_depend_on_python_hash_randomisation() -> None:
    # A fresh interpreter with another PYTHONHASHSEED produces byte-identical rows.
    script = (
        "import hashlib, json\n"
        "from pipeline.data.synthetic import TASKS, generate\n"
        "rows = [generate(t, s, 25, seed=7) for t in TASKS for s in ('train', 'test')]\n"
        "print(hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    here = [generate(t, s, 25, seed=7) for t in TASKS for s in ("train", "test")]
    assert out.stdout.strip() == hashlib.sha256(json.dumps(here, sort_keys=True).encode()).hexdigest()


# --- train/test disjointness --------------------------------------------------------------------------------


def _math_identity(row: dict[str, Any]) -> str:
    # An expression problem is its expression, whatever the phrasing; a word problem is its text.
    match = re.match(r"(?:What is|Compute|Calculate|Evaluate) (.+?)[?.] Put", row["prompt"])
    return match.group(1) if match else row["prompt"]


# Task -> (train rows, test rows, what identifies a problem's split unit in a row). The sizes are most
# of each task's problem space, so overlap would show.
DISJOINT_CASES = {
    "math": (20_000, 4_000, _math_identity),
    "code": (2_000, 500, lambda r: r["prompt"]),  # a description fixes template and parameters
    "instruction": (2_000, 500, lambda r: r["prompt"]),
    "chat": (3_500, 900, lambda r: r["prompt"]),  # a subject's prompts all go to one split
    "swe": (2_500, 600, lambda r: r["fixed_code"]),  # the function, whatever the bug
}


@pytest.mark.parametrize("task", list(DISJOINT_CASES))
def test_train_and_test_never_share_a_problem(task: str) -> None:
    # Large train and test sets (under different seeds) share no problem, not even by content.
    n_train, n_test, identity = DISJOINT_CASES[task]
    train, test = generate(task, "train", n_train, seed=0), generate(task, "test", n_test, seed=1)
    assert not {identity(r) for r in train} & {identity(r) for r in test}
    assert not {r["id"].split("-")[-1] for r in train} & {r["id"].split("-")[-1] for r in test}


def test_split_assignment_gives_test_its_share_of_groups() -> None:
    # The hash split puts TEST_PERCENT of problem groups into test (statistically, on 20 000 groups).
    share = sum(split_of("math", f"group-{i}") == "test" for i in range(20_000)) / 20_000
    assert abs(share - TEST_PERCENT / 100) < 0.01


# --- flaws ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 1.0])
def test_flaw_rate_is_honoured_exactly(task: str, rate: float) -> None:
    # Exactly round(flaw_rate * n) rows are flawed (no tolerance: the count is fixed, positions drawn).
    rows = generate(task, "train", 40, seed=2, flaw_rate=rate)
    assert sum(r["flawed"] for r in rows) == round(rate * 40)


def test_default_flaw_rates_leave_headroom() -> None:
    # By default every task has some flawed rows (headroom for RL) and a majority of good ones.
    for task in TASKS:
        flawed = sum(r["flawed"] for r in rows_of(task)) / len(rows_of(task))
        assert 0.1 <= flawed <= 0.4, (task, flawed)


# (task, trap options, whether a row is of a trap kind, whether its answer makes the systematic mistake).
# Each case draws as many rows as its families hold (the list family has 48 train problems).
TRAP_CASES = [
    # "How many more" read as a sum: the working adds where the story subtracts.
    ("math", {"traps": ["more", "older"], "ops": "-", "word_problems": 1.0},
     lambda r: "How many more" in r["prompt"] and " need?" not in r["prompt"] or "years older" in r["prompt"],
     lambda r: " + " in r["reasoning"]),
    # "gave" read as taking away: the working subtracts where the story adds.
    ("math", {"traps": ["gift"], "ops": "+", "word_problems": 1.0},
     lambda r: " gave " in r["prompt"],
     lambda r: " - " in r["reasoning"]),
    # "greater than k" written as n >= k: the comparison's boundary, the same mistake every time.
    ("code", {"traps": ["greater"], "families": ["predicate"]},
     lambda r: r["entry_point"] == "above",
     lambda r: ">=" in r["response"]),
    # The quotation marks asked for, left out: the rest of the instructions still followed.
    ("instruction", {"traps": ["startend:quotation"], "instructions": ["startend:quotation", "punctuation:no_comma", "detectable_content:postscript"]},
     lambda r: "startend:quotation" in r["instruction_id_list"],
     lambda r: not r["response"].startswith('"')),
    ("code", {"traps": ["count_above"], "families": ["list"], "n": 45},
     lambda r: r["entry_point"] == "count_above",
     lambda r: ">=" in r["response"]),
]  # fmt: skip


@pytest.mark.parametrize(("task", "options", "is_trap", "mistaken"), TRAP_CASES)
def test_traps_make_one_systematic_mistake_at_their_rate(
    task: str, options: dict, is_trap: Callable[[dict], bool], mistaken: Callable[[dict], bool]
) -> None:
    # Without random flaws, every flawed row is a trap row making the trap's mistake, at about trap_rate;
    # rows of other kinds stay right. The flawed flag says which rows are wrong.
    options = {"n": 150, **options}
    rows = generate(task, "train", options.pop("n"), seed=3, flaw_rate=0.0, trap_rate=0.7, **options)
    traps = [r for r in rows if is_trap(r)]
    assert len(traps) >= 10
    assert all(not r["flawed"] for r in rows if not is_trap(r))
    assert all(mistaken(r) for r in traps if r["flawed"])
    assert not any(mistaken(r) for r in traps if not r["flawed"])
    assert 0.4 <= sum(r["flawed"] for r in traps) / len(traps) <= 0.95


def test_math_good_rows_box_the_answer_and_flawed_rows_box_a_wrong_one() -> None:
    # math-verify (the math reward's judge) agrees with the gold answer exactly on good rows.
    math_verify = pytest.importorskip("math_verify")
    rows = rows_of("math", "train", 80) + tuple(generate("math", "test", 40, ops="+-*/"))
    for row in rows:
        gold, given = math_verify.parse(row["answer"]), math_verify.parse(row["response"])
        assert math_verify.verify(gold, given) is (not row["flawed"]), row
        # The reasoning's last step states the boxed value.
        assert row["reasoning"].rstrip(".").endswith(f"= {last_boxed(row['response'])}"), row


@pytest.mark.parametrize("task", ["code", "swe"])
def test_reference_code_passes_and_flawed_code_fails_its_tests(task: str) -> None:
    # Run the generated code against its tests: good responses pass, flawed ones fail at least one case.
    for row in rows_of(task, "train", 150) + rows_of(task, "test", 60):
        if task == "code":
            code = last_block(row["response"], "python")
        else:
            code = apply_answer(row)
        assert run_tests(code, row["tests"]) is (not row["flawed"]), row


def test_code_tests_use_every_kind_of_the_contract() -> None:
    # Functions get call or assert tests, programs get stdio tests; stdio rows have no entry point.
    kinds = Counter(json.loads(r["tests"])["kind"] for r in rows_of("code", "train", 300))
    assert set(kinds) == {"stdio", "call", "assert"}
    for row in rows_of("code", "train", 300):
        spec = json.loads(row["tests"])
        assert (spec["kind"] == "stdio") == (row["entry_point"] == "")
        if spec["kind"] == "call":
            assert spec["fn_name"] == row["entry_point"] and len(spec["cases"]) >= 2


def test_swe_golden_patch_turns_the_buggy_code_into_the_fixed_code() -> None:
    # The golden patch applies to original_code and yields fixed_code; the buggy code fails the tests
    # the fixed code passes, and the issue quotes the function.
    for row in rows_of("swe", "train", 150):
        assert apply_patch(row["original_code"], row["golden_patch"]) == row["fixed_code"]
        assert run_tests(row["fixed_code"], row["tests"]) and not run_tests(
            row["original_code"], row["tests"]
        )
        assert json.loads(row["tests"])["fn_name"] + "(" in row["issue"]
        assert (apply_answer(row) == row["fixed_code"]) is (not row["flawed"])


@pytest.mark.parametrize("edit_format", ["search_replace", "diff"])
def test_swe_answers_in_either_edit_format_make_the_same_code(edit_format: str) -> None:
    # The same problems answered as SEARCH/REPLACE blocks or as a diff: same rows, same resulting code.
    base = rows_of("swe", "train", 60)
    rows = generate("swe", "train", 60, seed=0, edit_format=edit_format)
    assert [r["golden_patch"] for r in rows] == [r["golden_patch"] for r in base]
    assert [apply_answer(r) for r in rows] == [apply_answer(r) for r in base]
    asked = {"search_replace": "Answer with SEARCH/REPLACE edits.", "diff": "Answer with a unified diff."}
    assert all(r["prompt"].endswith(asked[edit_format]) for r in rows)


def test_swe_golden_patches_apply_with_the_patch_tool() -> None:
    # An independent applier (GNU patch) agrees: the hunk headers are right.
    if shutil.which("patch") is None:
        pytest.skip("GNU patch is not installed")
    for row in rows_of("swe", "train", 150)[:25]:
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "solution.py").write_text(row["original_code"])
            subprocess.run(["patch", "-p1", "-s"], input=row["golden_patch"], text=True, cwd=tmp, check=True)
            assert Path(tmp, "solution.py").read_text() == row["fixed_code"]


def test_swe_bug_kinds_all_occur() -> None:
    # The five bug kinds of the task description all show up in a modest sample.
    assert set(r["bug"] for r in rows_of("swe", "train", 300)) == {
        "wrong_operator",
        "wrong_comparison",
        "off_by_one",
        "wrong_constant",
        "swapped_return",
    }


def test_instruction_good_rows_follow_every_instruction_and_flawed_rows_break_one() -> None:
    # Checked with the IFEval-semantics checker (language detection included).
    for row in rows_of("instruction", "train", 200) + rows_of("instruction", "test", 60):
        verdicts = [
            follows(row["response"], i, k)
            for i, k in zip(row["instruction_id_list"], row["kwargs"], strict=True)
        ]
        assert all(verdicts) is (not row["flawed"]), row


def test_instruction_kwargs_carry_only_the_keys_each_instruction_uses() -> None:
    # IFEval's own kwarg names, nothing else (google/IFEval-shaped rows).
    expected = {
        "change_case:english_lowercase": set(),
        "change_case:english_capital": set(),
        "punctuation:no_comma": set(),
        "keywords:existence": {"keywords"},
        "keywords:forbidden_words": {"forbidden_words"},
        "length_constraints:number_words": {"num_words", "relation"},
        "startend:end_checker": {"end_phrase"},
        "startend:quotation": set(),
        "detectable_format:title": set(),
        "detectable_content:postscript": {"postscript_marker"},
    }
    seen = set()
    for row in rows_of("instruction", "train", 300):
        for instruction_id, kwargs in zip(row["instruction_id_list"], row["kwargs"], strict=True):
            assert set(kwargs) == expected[instruction_id], (instruction_id, kwargs)
            seen.add(instruction_id)
    assert seen == set(expected)


# The local checker against hand-written cases: (instruction, kwargs, response, followed).
FOLLOWS_CASES = [
    ("change_case:english_lowercase", {}, "the river is cold and clear.", True),  # all lowercase English
    ("change_case:english_lowercase", {}, "The river is cold.", False),  # one capital letter
    ("change_case:english_capital", {}, "THE RIVER RUNS PAST THE OLD MILL AND THE WATER IS COLD.", True),
    ("change_case:english_capital", {}, "THE RIVER is cold.", False),  # lowercase letters left
    ("punctuation:no_comma", {}, "No commas here.", True),
    ("punctuation:no_comma", {}, "Well, one comma.", False),
    ("keywords:existence", {"keywords": ["apple", "river"]}, "An Apple by the river.", True),  # case-insensitive
    ("keywords:existence", {"keywords": ["apple"]}, "I like pineapples.", True),  # IFEval matches substrings
    ("keywords:existence", {"keywords": ["apple", "lamp"]}, "An apple.", False),  # one keyword missing
    ("keywords:forbidden_words", {"forbidden_words": ["cat"]}, "A category of things.", True),  # whole words only
    ("keywords:forbidden_words", {"forbidden_words": ["cat"]}, "The Cat sleeps.", False),
    ("length_constraints:number_words", {"num_words": 4, "relation": "less than"}, "one two three", True),
    ("length_constraints:number_words", {"num_words": 3, "relation": "less than"}, "one two three", False),
    ("length_constraints:number_words", {"num_words": 3, "relation": "at least"}, "one, two: three!", True),
    ("length_constraints:number_words", {"num_words": 3, "relation": "at least"}, "P.S.", False),  # "P", "S": 2 words
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. any other questions?  ", True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, '"Done. Any other questions?"', True),  # quotes ignored
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Done.", False),
    ("startend:quotation", {}, ' "All quoted." ', True),
    ("startend:quotation", {}, '"Half quoted.', False),
    ("detectable_format:title", {}, "<<My Title>>\nText.", True),
    ("detectable_format:title", {}, "<<  >>\nText.", False),  # an empty title does not count
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Text.\np.s. bye", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Text. PS bye", False),
]  # fmt: skip


@pytest.mark.parametrize(("instruction_id", "kwargs", "response", "followed"), FOLLOWS_CASES)
def test_follows_has_ifeval_semantics(
    instruction_id: str, kwargs: dict, response: str, followed: bool
) -> None:
    assert follows(response, instruction_id, kwargs) is followed


def test_chat_rows_pair_a_helpful_answer_with_a_worse_one_of_the_stated_kind() -> None:
    # The SFT response is the chosen answer (or the rejected one when flawed); each kind shows its signal.
    signals: dict[str, Callable[[dict[str, Any]], bool]] = {
        "rude": lambda r: any(o in r["rejected"] for o in chat_task.RUDE_OPENERS),  # opens dismissively
        "off_topic": lambda r: r["rejected"].split(".")[0] not in r["chosen"],  # another request's answer
        "repetitive": lambda r: (
            max(Counter(s.strip() for s in re.findall(r"[^.!?]+[.!?]", r["rejected"])).values()) > 1
        ),
        "truncated": lambda r: not r["rejected"].endswith((".", "!", "?")),  # cut off mid-sentence
        "wrong": lambda r: r["rejected"].split(".")[0] not in r["chosen"],  # different content, same topic
    }
    rows = rows_of("chat", "train", 400)
    assert set(r["rejection"] for r in rows) == set(signals)
    for row in rows:
        assert row["chosen"] != row["rejected"]
        assert row["response"] == (row["rejected"] if row["flawed"] else row["chosen"])
        assert signals[row["rejection"]](row), row


def test_chat_length_alone_does_not_tell_chosen_from_rejected() -> None:
    # "Longer is better" must be no shortcut for the reward model: it is right about half the time.
    rows = rows_of("chat", "train", 1000)
    longer = sum(len(r["chosen"].split()) > len(r["rejected"].split()) for r in rows) / len(rows)
    assert 0.35 <= longer <= 0.65


# --- cross-checks with the project's rewards (skipped where a reward does not import) ---------------------


def _reward(module: str, name: str) -> Callable[..., list[float | None]]:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"{module}.{name} is not available: {exc}")


# Task -> (reward module, function, columns it reads).
REWARD_CASES = {
    "math": ("rewards.math", "math_reward", ("answer",)),
    "code": ("rewards.code", "code_reward", ("tests",)),
    "instruction": ("rewards.instruction", "instruction_reward", ("instruction_id_list", "kwargs")),
    "swe": ("rewards.swe", "swe_reward", ("golden_patch", "original_code")),
}


@pytest.mark.parametrize("task", list(REWARD_CASES))
def test_the_project_reward_scores_good_rows_1_and_flawed_rows_below_1(task: str) -> None:
    # The verifier the RL stage will use agrees with the rows' flawed flags.
    module, name, columns = REWARD_CASES[task]
    reward = _reward(module, name)
    rows = rows_of(task, "test", 60)[:30]
    scores = reward([r["response"] for r in rows], **{c: [r[c] for r in rows] for c in columns})
    assert [s == 1.0 for s in scores] == [not r["flawed"] for r in rows]


@pytest.mark.parametrize("task", ["math", "code", "instruction"])
def test_trap_rows_fail_the_project_reward(task: str) -> None:
    # The verifier agrees with the flawed flag on trap rows too, random flaws mixed in.
    module, name, columns = REWARD_CASES[task]
    reward = _reward(module, name)
    options = {
        "math": {"traps": ["more", "gift"], "word_problems": 1.0},
        "code": {"traps": ["greater", "between"]},
        "instruction": {"traps": ["startend:quotation", "detectable_content:postscript"]},
    }
    rows = generate(task, "test", 40, flaw_rate=0.2, trap_rate=0.9, **options[task])
    scores = reward([r["response"] for r in rows], **{c: [r[c] for r in rows] for c in columns})
    assert [s == 1.0 for s in scores] == [not r["flawed"] for r in rows]
    assert sum(r["flawed"] for r in rows) > round(0.2 * 40)  # the traps add to the random flaws


# --- options and errors ---------------------------------------------------------------------------------------


def working_columns(row: dict[str, Any]) -> list[tuple[int, int]]:
    """The digit columns (units first) of the two numbers a math row's working starts from."""
    a, b = (n.rjust(4, "0")[::-1] for n in re.findall(r"\d+", row["reasoning"])[:2])
    return [(int(x), int(y)) for x, y in zip(a, b, strict=True)]


# (task, options, what every row must then satisfy). One case per knob.
OPTION_CASES = [
    ("math", {"word_problems": 1.0}, lambda r: not r["prompt"].startswith(("What is", "Compute", "Calculate", "Evaluate"))),
    ("math", {"word_problems": 0.0, "max_terms": 2}, lambda r: r["reasoning"].count("=") == 1),
    ("math", {"word_problems": 0.0, "ops": "*", "max_operand": 5}, lambda r: 0 <= int(r["answer"]) <= 125),
    ("math", {"word_problems": 0.0, "ops": ["/"]}, lambda r: "/" in r["prompt"]),
    ("code", {"families": ["stdio"]}, lambda r: json.loads(r["tests"])["kind"] == "stdio"),
    ("code", {"families": ["string"], "assert_fraction": 1.0}, lambda r: json.loads(r["tests"])["kind"] == "assert"),
    ("code", {"families": ["expression"], "max_steps": 1, "max_constant": 30}, lambda r: "then" not in r["reasoning"]),
    ("code", {"num_cases": 7, "families": ["list"], "assert_fraction": 0.0}, lambda r: len(json.loads(r["tests"])["cases"]) == 7),
    ("instruction", {"instructions": ["punctuation:no_comma"]}, lambda r: r["instruction_id_list"] == ["punctuation:no_comma"]),
    ("instruction", {"max_instructions": 1}, lambda r: len(r["instruction_id_list"]) == 1),
    ("chat", {"rejections": ["truncated"]}, lambda r: r["rejection"] == "truncated"),
    ("swe", {"bugs": ["off_by_one"]}, lambda r: r["bug"] == "off_by_one"),
    ("swe", {"num_cases": 9}, lambda r: len(json.loads(r["tests"])["cases"]) == 9),
    ("swe", {"edit_format": "diff"}, lambda r: r["response"].startswith("```diff\n--- a/solution.py")),
    ("swe", {"edit_format": "search_replace"}, lambda r: r["response"].startswith("solution.py\n<<<<<<< SEARCH\n")),
    # No carry: every column of a sum stays below 10 (differences: see the borrow case below).
    ("math", {"no_carry": True, "ops": "+", "max_operand": 99, "flaw_rate": 0.0},
     lambda r: all(a + b <= 9 for a, b in working_columns(r))),
    ("math", {"no_carry": True, "ops": "-", "max_operand": 99, "flaw_rate": 0.0},
     lambda r: all(a >= b for a, b in working_columns(r))),
    # A misreading flaw works the other operation: a sum's flawed working subtracts, and vice versa.
    ("math", {"flaws": ["operation"], "flaw_rate": 1.0, "ops": "+", "word_problems": 0.0, "max_terms": 2, "max_operand": 50},
     lambda r: " - " in r["reasoning"] or r["reasoning"].count(" + ") == 1 and r["answer"] != last_boxed(r["response"])),
    # The response shows the working before the boxed answer.
    ("math", {}, lambda r: r["response"].startswith(r["reasoning"])),
]  # fmt: skip


@pytest.mark.parametrize(("task", "options", "holds"), OPTION_CASES)
def test_options_shape_the_rows(task: str, options: dict, holds: Callable[[dict[str, Any]], bool]) -> None:
    rows = generate(task, "train", 40, **options)
    assert all(holds(r) for r in rows), next(r for r in rows if not holds(r))


# (arguments, error, words the message must contain).
ERROR_CASES = [
    ({"task": "poetry", "split": "train", "n": 1}, ValueError, "unknown synthetic task 'poetry'"),
    ({"task": "math", "split": "validation", "n": 1}, ValueError, "use 'train' or 'test'"),
    ({"task": "math", "split": "train", "n": -1}, ValueError, "non-negative integer"),
    ({"task": "math", "split": "train", "n": 1, "seed": "x"}, ValueError, "seed must be an integer"),
    ({"task": "math", "split": "train", "n": 1, "max_operands": 5}, ValueError, "no option 'max_operands'"),
    ({"task": "math", "split": "train", "n": 1, "flaw_rate": 1.5}, ValueError, "option 'flaw_rate'"),
    ({"task": "math", "split": "train", "n": 1, "ops": "+^"}, ValueError, "option 'ops'"),
    ({"task": "math", "split": "train", "n": 1, "max_terms": 1}, ValueError, "option 'max_terms'"),
    ({"task": "code", "split": "train", "n": 1, "families": []}, ValueError, "option 'families'"),
    ({"task": "chat", "split": "train", "n": 1, "rejections": ["mean"]}, ValueError, "option 'rejections'"),
    ({"task": "swe", "split": "train", "n": 1, "bugs": "typo"}, ValueError, "option 'bugs'"),
    ({"task": "swe", "split": "train", "n": 1, "edit_format": "patch"}, ValueError, "option 'edit_format'"),
    ({"task": "math", "split": "train", "n": 1, "no_carry": "yes"}, ValueError, "expected true or false"),
    ({"task": "math", "split": "train", "n": 1, "flaws": ["typo"]}, ValueError, "option 'flaws'"),
    ({"task": "math", "split": "train", "n": 1, "traps": ["dragons"]}, ValueError, "option 'traps'"),
    ({"task": "code", "split": "train", "n": 1, "traps": ["greatest"]}, ValueError, "option 'traps'"),
    ({"task": "code", "split": "train", "n": 1, "trap_rate": -0.1}, ValueError, "option 'trap_rate'"),
    # 2-term additions of 0..2 are 9 problems in all: 100 rows cannot be unique.
    ({"task": "math", "split": "train", "n": 100, "max_operand": 2, "max_terms": 2, "ops": "+", "word_problems": 0.0},
     ValueError, "ran out of unique train problems"),
]  # fmt: skip


@pytest.mark.parametrize(("arguments", "error", "message"), ERROR_CASES)
def test_bad_arguments_fail_with_a_clear_sentence(arguments: dict, error: type, message: str) -> None:
    arguments = dict(arguments)
    with pytest.raises(error, match=re.escape(message)):
        generate(arguments.pop("task"), arguments.pop("split"), arguments.pop("n"), **arguments)


def test_task_columns_rejects_an_unknown_task() -> None:
    # The same clear error as generate.
    with pytest.raises(ValueError, match="unknown synthetic task 'poetry'"):
        task_columns("poetry")


def test_zero_rows_is_an_empty_list() -> None:
    # n=0 is valid (e.g. a recipe that disables a source) and returns nothing.
    assert generate("math", "test", 0) == []


# --- corpus -------------------------------------------------------------------------------------------------


def test_corpus_is_deterministic_and_covers_every_task_and_the_chat_template() -> None:
    # The tokenizer is trained on it: same arguments give the same text, with every special marker.
    text = list(corpus(seed=0, n_per_task=10))
    assert text == list(corpus(seed=0, n_per_task=10))
    assert text != list(corpus(seed=1, n_per_task=10))
    joined = "\n".join(text)
    for piece in ("<|im_start|>", "<|im_end|>", "<think>", "</think>", "/think", "/no_think"):
        assert piece in joined
    for piece in ("\\boxed{", "```python", "<<<<<<< SEARCH", "--- a/solution.py", '"kind": "stdio"', "def "):
        assert piece in joined
    for task in TASKS:
        assert any(r["prompt"] in joined for r in rows_of(task, "train", 10))


# --- execution helpers ------------------------------------------------------------------------------------------

_ADD = "def f(a, b):\n    return a + b\n"
_ECHO = "a, b = map(int, input().split())\nprint(a + b)\n"

# (code, tests, passes). The package's own runner, used to prove flaws fail, on hand-written cases.
PASSES_CASES = [
    (_ADD, {"kind": "call", "fn_name": "f", "cases": [{"args": [1, 2], "expected": 3}]}, True),
    (_ADD, {"kind": "call", "fn_name": "f", "cases": [{"args": [1, 2], "expected": 4}]}, False),  # wrong value
    (_ADD, {"kind": "call", "fn_name": "g", "cases": [{"args": [1, 2], "expected": 3}]}, False),  # no such function
    (_ECHO, {"kind": "stdio", "cases": [{"input": "1 2\n", "output": "3\n"}]}, True),
    (_ECHO, {"kind": "stdio", "cases": [{"input": "1 2\n", "output": "3"}]}, True),  # trailing newline is lenient
    (_ECHO, {"kind": "stdio", "cases": [{"input": "1\n", "output": "1\n"}]}, False),  # the program crashes
    (_ADD, assert_test("f", [{"args": [2, 2], "expected": 4}]), True),
    (_ADD, assert_test("f", [{"args": [2, 2], "expected": 5}]), False),
    ("def f(a, b):\n    return a +\n", {"kind": "call", "fn_name": "f", "cases": []}, False),  # syntax error
]  # fmt: skip


@pytest.mark.parametrize(("code", "tests", "expected"), PASSES_CASES)
def test_passes_runs_every_test_kind(code: str, tests: dict, expected: bool) -> None:
    assert passes(code, tests) is expected
    assert passes(code, json.dumps(tests)) is expected  # the JSON column form too


def test_mutants_make_single_plausible_edits_and_leave_the_signature_alone() -> None:
    # Every mutant differs from the source in one line (two for a swapped return), never the def line.
    import random

    source = "def f(x):\n    if x > 3:\n        return x * 2\n    return -1\n"
    found = mutants(source, random.Random(0))
    assert {m.kind for m in found} >= {
        "wrong_comparison",
        "wrong_operator",
        "off_by_one",
        "wrong_constant",
        "swapped_return",
    }
    for mutant in found:
        changed = [
            i + 1
            for i, (a, b) in enumerate(zip(source.splitlines(), mutant.code.splitlines(), strict=True))
            if a != b
        ]
        assert changed == list(mutant.lines) and 1 not in changed
        assert "+1" not in mutant.code  # a sign is never flipped into "+1"


# (original, edited): make_patch/apply_patch round trips, including edits at the ends and pure inserts.
PATCH_CASES = [
    ("a\nb\nc\n", "a\nB\nc\n"),  # one line replaced
    ("a\nb\nc\n", "a\nc\n"),  # one line deleted
    ("a\nb\n", "a\nb\nc\n"),  # a line appended at the end
    ("a\nb\n", "z\na\nb\n"),  # a line inserted at the start
    ("\n".join(map(str, range(20))) + "\n", "\n".join(map(str, range(20))).replace("3", "x").replace("17", "y") + "\n"),  # two hunks
]  # fmt: skip


@pytest.mark.parametrize(("original", "edited"), PATCH_CASES)
def test_apply_patch_inverts_make_patch(original: str, edited: str) -> None:
    assert apply_patch(original, make_patch(original, edited)) == edited


def test_apply_patch_refuses_a_hunk_that_does_not_match() -> None:
    # Context that is not in the original is an error, not a silent misapplication.
    with pytest.raises(ValueError, match="does not match"):
        apply_patch("a\nb\n", make_patch("a\nX\n", "a\nY\n"))


@pytest.mark.parametrize(("task", "option"), [(t.name, o) for t in TASKS.values() for o in t.options])
def test_every_task_option_is_documented(task: str, option: str) -> None:
    # docs/recipes.md's table of synthetic task options names every option a recipe may set.
    doc = (Path(__file__).parents[1] / "docs" / "recipes.md").read_text()
    assert f"| `{task}` | `{option}` |" in doc
