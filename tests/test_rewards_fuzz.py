"""Rewards never raise, whatever a completion, a prompt or a column holds: every registered reward, the two
reward-model factories included, on hostile input (unpaired UTF-16 surrogates, null bytes, 1 MB strings,
deeply nested structures, None, numbers where text belongs, columns of the wrong length) and on input
hypothesis draws. A reward that raised would fail the whole batch, and an RL step with it.

``reward_model`` and ``if_rm`` raised ``TypeError`` on a lone surrogate (the tokenizers' Rust core cannot
encode one); ``test_rewards_contract.py`` covers the plain rewards' other promises (pickling, threads).
Kept bounded for CI: the hostile tables are scored in one batch per reward, hypothesis draws few examples.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewards import REWARDS
from rewards.preference import clean_text, instruction_with_rm_reward, reward_model_reward
from tests.conftest import ROOT, subprocess_env
from tests.test_rewards_contract import VALID_COLUMNS, VALID_COMPLETION
from tests.test_rewards_preference import TEMPLATE, _save_tiny_rm

IF_COLUMNS = {"instruction_id_list": [["punctuation:no_comma"]], "kwargs": [[{}]]}
COLUMNS = {**VALID_COLUMNS, "reward_model": {}, "if_rm": IF_COLUMNS}

ONE_MB = 1_000_000
HOSTILE_TEXT = [
    "\ud800",  # a lone high surrogate
    "answer \udfff here",  # a lone low surrogate
    "\ude00\ud83d",  # a pair in the wrong order
    "\ud83d\ude00",  # a well-formed pair (an emoji as JSON's \\u escapes give it)
    "\x00",
    "<think>\x00</think>\\boxed{\x00}",
    "```python\nprint('\ud800')\n```",  # a program holding a surrogate
    ("<think>a</think>\\boxed{4} " + "x" * ONE_MB)[:ONE_MB],  # 1 MB of answer
    "```python\n" + "print(1)\n" * (ONE_MB // 9) + "```",  # a 1 MB program
    "<think>" * 10_000,  # thinking that never closes
    "\\boxed{" * 10_000,
    "",
    "\u202e\u200b\ufeff",  # direction and zero-width marks
]
NESTED: Any = "leaf"  # 200 levels of lists and messages (a tree, as JSON gives it: no shared branches)
for depth in range(200):
    NESTED = [NESTED] if depth % 2 else {"role": "assistant", "content": NESTED}
HOSTILE_VALUES = [
    None, 0, -1, 2**200, float("nan"), float("inf"), True, b"\xff\xfe", [], {}, [[[[[]]]]],
    {"role": "assistant", "content": {"nested": ["\ud800"]}}, NESTED, object(),
]  # fmt: skip
HOSTILE_MESSAGES = [
    [{"role": "assistant", "content": "\ud800 lone"}],
    [{"role": None, "content": None}],
    [{"role": 7, "content": ["\x00", {"text": "\udfff"}]}],
    [{"content": [{"type": "text", "text": "\ud800"}]}],
    ["not a message", 3, None],
    [{"role": "tool", "content": "x" * ONE_MB}],
]


@pytest.fixture(scope="module")
def rm_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(_save_tiny_rm(tmp_path_factory.mktemp("rm"), TEMPLATE))


@pytest.fixture(scope="module")
def rewards_by_name(rm_path: str) -> dict[str, Callable[..., list]]:
    """Every registered reward as a recipe would build it (factories on a tiny reward model)."""
    built: dict[str, Callable[..., list]] = {}
    for name in REWARDS:
        spec = REWARDS.spec(name)
        if name == "reward_model":
            built[name] = reward_model_reward(rm_path, device="cpu", max_length=256)
        elif name == "if_rm":
            built[name] = instruction_with_rm_reward(rm_path, device="cpu", max_length=256)
        else:
            assert not spec.factory, f"factory reward {name} needs a way to be built here"
            built[name] = REWARDS[name]
    return built


def check(scores: Any, n: int) -> None:
    assert isinstance(scores, list) and len(scores) == n, scores
    assert all(s is None or isinstance(s, float) for s in scores), scores


def columns_for(name: str, n: int) -> dict[str, list[Any]]:
    return {column: values * n for column, values in COLUMNS[name].items()}


def test_every_registered_reward_is_fuzzed() -> None:
    assert set(REWARDS) == set(COLUMNS)


@pytest.mark.parametrize("name", list(REWARDS))
def test_hostile_completions(name: str, rewards_by_name: dict) -> None:
    completions = HOSTILE_TEXT + HOSTILE_VALUES + HOSTILE_MESSAGES
    n = len(completions)
    check(rewards_by_name[name](completions, prompts=["What is 2+2?"] * n, **columns_for(name, n)), n)


@pytest.mark.parametrize("name", list(REWARDS))
def test_hostile_prompts_and_columns(name: str, rewards_by_name: dict) -> None:
    fn, hostile = rewards_by_name[name], HOSTILE_TEXT[:7] + HOSTILE_VALUES + HOSTILE_MESSAGES[:5]
    n = len(hostile)
    check(fn([VALID_COMPLETION] * n, prompts=hostile, **columns_for(name, n)), n)
    for column in COLUMNS[name]:
        check(fn([VALID_COMPLETION] * n, **{**columns_for(name, n), column: hostile}), n)


@pytest.mark.parametrize("name", list(REWARDS))
@pytest.mark.parametrize(
    "shape",
    [
        lambda values, n: values[0],  # a scalar for the whole batch
        lambda values, n: values[: max(n - 2, 0)],  # too short
        lambda values, n: values * 2,  # too long
        lambda values, n: None,  # missing altogether
        lambda values, n: {"a": values},  # not a list at all
    ],
    ids=["scalar", "short", "long", "none", "mapping"],
)
def test_columns_of_the_wrong_shape(name: str, shape: Callable, rewards_by_name: dict) -> None:
    n = 3
    columns = {column: shape(values * n, n) for column, values in COLUMNS[name].items()}
    check(rewards_by_name[name]([VALID_COMPLETION] * n, prompts=shape(["q"] * n, n), **columns), n)


_char = st.characters() | st.characters(categories=["Cs"]) | st.sampled_from(["\x00", "\ufffd", "\U0001f600"])
_text = st.text(alphabet=_char, max_size=40) | st.sampled_from(
    ["<think>", "</think>", "\\boxed{", "```python\n"]
)
_junk = st.none() | st.integers() | st.floats(allow_nan=True) | st.booleans() | _text | st.binary(max_size=8)
_nested = st.recursive(
    _junk, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3)
)
_completion = (
    _nested
    | st.lists(_text, max_size=4).map("".join)
    | st.lists(st.fixed_dictionaries({"role": _junk, "content": _nested}), max_size=3)
)


@pytest.mark.parametrize("name", list(REWARDS))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_never_raises_on_drawn_input(name: str, rewards_by_name: dict, data: st.DataObject) -> None:
    completions = data.draw(st.lists(_completion, min_size=1, max_size=4), label="completions")
    n = len(completions)
    prompts = data.draw(st.lists(_completion, min_size=n, max_size=n) | _junk, label="prompts")
    columns = {
        column: data.draw(st.lists(_nested, min_size=n, max_size=n) | _nested, label=column)
        for column in COLUMNS[name]
    }
    check(rewards_by_name[name](completions, prompts=prompts, **columns), n)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        ("\ud800x", "\ufffdx"),
        ("\ud83d\ude00", "\U0001f600"),  # a well-formed pair is its character
        ("\ude00\ud83d", "\ufffd\ufffd"),
        (None, ""),
        (3, "3"),
    ],
)
def test_clean_text(value: Any, text: str) -> None:
    assert clean_text(value) == text


# --------------------------------------------------------------------------------------------------
# python -m rewards score on such rows


def score(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rewards", "score", *args],
        capture_output=True, text=True, cwd=ROOT, env=subprocess_env(), timeout=300,
    )  # fmt: skip


def test_score_keeps_rows_with_lone_surrogates(tmp_path: Path, rm_path: str) -> None:
    # It crashed writing such a row (UTF-8 cannot encode a lone surrogate) and left an empty file.
    rows = [
        {"completion": "the cat \ud800 sat", "prompt": "a \udfff cat", "answer": "4"},
        {"completion": "\\boxed{4}", "prompt": "2+2", "answer": "4"},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="ascii")  # \ud800 escapes
    out = tmp_path / "out.jsonl"
    for reward, extra in (
        ("math", []),
        ("reward_model", ["--arg", f"model_path={rm_path}", "--arg", "device=cpu"]),
    ):
        proc = score("--reward", reward, "--input", str(source), "--output", str(out), *extra)
        assert proc.returncode == 0, proc.stderr
        back = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert [b["completion"] for b in back] == [r["completion"] for r in rows]  # kept exactly
        assert all(isinstance(b["score"], float) for b in back)


def test_score_names_a_line_that_is_not_utf8(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"completion": "4", "answer": "4"}\n{"completion": "\xff\xfe", "answer": "4"}\n')
    proc = score("--reward", "math", "--input", str(source), "--output", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: line 2 of '{source}' is not UTF-8 (invalid start byte at byte 16)"


def raising_reward(completions: list, **kwargs: Any) -> list:
    """A user's ``module:function`` reward with a bug."""
    raise RuntimeError("user reward bug")


def test_score_a_raising_reward_is_one_sentence_and_no_partial_file(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"completion": "4"}\n' * 3)
    out = tmp_path / "out.jsonl"
    proc = score(
        "--reward", "tests.test_rewards_fuzz:raising_reward", "--input", str(source), "--output", str(out)
    )
    assert proc.returncode == 1
    expected = "error: reward 'tests.test_rewards_fuzz:raising_reward' raised on rows 1-3 (RuntimeError: user reward bug)"
    assert proc.stderr.strip() == expected
    assert not out.exists() and list(tmp_path.iterdir()) == [source]
