"""The reward contract, checked on every plain-function reward of the registry.

Each reward must be picklable, callable from a worker thread, ignore extra keyword arguments, and never
raise for None, empty or garbage completions and columns (it scores them). Factories (rewards built
from a model) are covered by their own tests.
"""

from __future__ import annotations

import importlib
import pickle
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewards import REWARDS

# Minimal valid columns for one completion, per reward name.
VALID_COLUMNS: dict[str, dict[str, list[Any]]] = {
    "math": {"answer": ["4"]},
    "code": {"tests": [{"kind": "stdio", "cases": [{"input": "", "output": "4\n"}]}]},
    "instruction": {"instruction_id_list": [["punctuation:no_comma"]], "kwargs": [[{}]]},
    "ifbench": {
        "instruction_id_list": [["count:word_count_range"]],
        "kwargs": [[{"min_words": 1, "max_words": 50}]],
    },
    "swe": {"golden_patch": ["--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n"]},
    "think_format": {},
    "language_mixing": {},
}

# A completion that every reward can score, valid or not for its task.
VALID_COMPLETION = "<think>2+2</think>\\boxed{4}\n```python\nprint(4)\n```"

PLAIN = [name for name in REWARDS if not REWARDS.spec(name).factory]


def _reward(name: str):
    """The reward, or a skip when its module is not in this checkout yet."""
    module = REWARDS.spec(name).target.partition(":")[0]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            pytest.skip(f"{module} is not in this checkout")
        raise
    return REWARDS[name]


def _check_scores(scores: Any, n: int) -> None:
    assert isinstance(scores, list) and len(scores) == n
    assert all(s is None or isinstance(s, float) for s in scores)


def test_every_plain_reward_has_a_column_table():
    # A new reward in the registry needs an entry in VALID_COLUMNS to be covered here.
    assert set(PLAIN) <= set(VALID_COLUMNS)


@pytest.mark.parametrize("name", PLAIN)
def test_picklable(name):
    fn = _reward(name)
    assert pickle.loads(pickle.dumps(fn)) is fn


@pytest.mark.parametrize("name", PLAIN)
def test_valid_call_from_a_worker_thread(name):
    # TRL may call rewards from threads; nothing may depend on being the main thread.
    fn = _reward(name)
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(fn([VALID_COMPLETION], prompts=["What is 2+2?"], **VALID_COLUMNS[name]))
    )
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert len(result) == 1
    _check_scores(result[0], 1)


@pytest.mark.parametrize("name", PLAIN)
def test_ignores_extra_kwargs(name):
    # GRPOTrainer passes every dataset column plus trainer_state, completion_ids and more.
    fn = _reward(name)
    scores = fn(
        [VALID_COMPLETION],
        prompts=["What is 2+2?"],
        completion_ids=[[1, 2, 3]],
        trainer_state=object(),
        some_other_column=["x"],
        **VALID_COLUMNS[name],
    )
    _check_scores(scores, 1)


@pytest.mark.parametrize("name", PLAIN)
def test_empty_batch(name):
    fn = _reward(name)
    assert fn([], **{column: [] for column in VALID_COLUMNS[name]}) == []


@pytest.mark.parametrize("name", PLAIN)
def test_none_columns(name):
    # A column that is None altogether (missing data) scores, it does not raise.
    fn = _reward(name)
    _check_scores(fn([VALID_COMPLETION, None], **{column: None for column in VALID_COLUMNS[name]}), 2)


_text = st.text(max_size=60) | st.sampled_from(["<think>", "</think>", "\\boxed{", "```python\n", "####"])
_junk = st.none() | st.integers() | st.floats(allow_nan=True) | _text | st.booleans()
_completion = (
    _junk
    | st.lists(_text, max_size=3).map("".join)
    | st.lists(st.dictionaries(st.sampled_from(["role", "content"]), _junk, max_size=2), max_size=2)
)
_column_item = _junk | st.lists(_junk, max_size=2) | st.dictionaries(_text, _junk, max_size=2)


@pytest.mark.parametrize("name", PLAIN)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_never_raises_on_garbage(name, data):
    fn = _reward(name)
    completions = data.draw(st.lists(_completion, max_size=3), label="completions")
    columns = {
        column: data.draw(
            st.lists(_column_item, min_size=len(completions), max_size=len(completions)), label=column
        )
        for column in VALID_COLUMNS[name]
    }
    _check_scores(fn(completions, **columns), len(completions))
