"""The reward registry: names resolve (or say why not), errors suggest names, bound rewards pickle."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from rewards import REWARDS, build_reward, describe_rewards
from rewards.registry import BoundReward
from tests.conftest import subprocess_env


@pytest.mark.parametrize("name", list(REWARDS))
def test_every_name_resolves_or_is_marked_unavailable(name):
    # A reward either loads to a callable or describe_rewards says it is unavailable and why.
    described = {row[0]: row for row in describe_rewards()}
    try:
        fn = REWARDS[name]
    except ImportError:
        assert described[name][2].startswith("unavailable: ")
    else:
        assert callable(fn)
        assert described[name][1].startswith(REWARDS.spec(name).target)


def test_describe_rewards_lists_every_name_in_order():
    # The CLI's list and the docs table come from here, so it must cover the whole registry.
    assert [row[0] for row in describe_rewards()] == list(REWARDS)


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("mth", "math"),  # dropped letter
        ("think-format", "think_format"),  # dash for underscore
        ("languagemixing", "language_mixing"),  # missing separator
        ("instructions", "instruction"),  # plural
    ],
)
def test_unknown_name_suggests_the_close_one(typo, suggestion):
    with pytest.raises(KeyError, match=f"did you mean '{suggestion}'"):
        build_reward(typo)


def test_unknown_name_far_from_all_lists_known_rewards():
    # No close match: the message still lists what exists.
    with pytest.raises(KeyError, match="known rewards: .*math") as info:
        build_reward("zzzzzz")
    assert "did you mean" not in str(info.value)


def test_build_without_args_returns_the_function_itself():
    # Plain functions are handed to TRL as they are (their __name__ names the log column).
    assert build_reward("math") is REWARDS["math"]
    assert build_reward("think_format", {}) is REWARDS["think_format"]


def test_bound_reward_is_picklable_and_applies_its_args():
    # Recipe args are bound in a picklable object named after the reward.
    bound = build_reward("math", {"fallbacks": ["hash"]})
    assert isinstance(bound, BoundReward) and bound.__name__ == "math"
    restored = pickle.loads(pickle.dumps(bound))
    assert restored.kwargs == {"fallbacks": ["hash"]}
    assert restored(["Answer: 4", "#### 4"], answer=["4", "4"]) == [0.0, 1.0]


def test_bound_args_override_columns_of_the_same_name():
    # A recipe's argument wins over a dataset column that happens to share its name.
    bound = build_reward("think_format", {"require_think": False})
    assert bound(["plain answer"], require_think=[True]) == [1.0]


@pytest.mark.parametrize("name", ["reward_model", "if_rm"])
def test_factories_are_marked(name):
    # Factories build a reward from arguments (a model path); they are not rewards themselves.
    assert REWARDS.spec(name).factory is True


def test_registry_is_read_only():
    # Recipes name rewards; code does not add entries at run time.
    with pytest.raises(TypeError):
        REWARDS["new"] = lambda completions, **kw: []  # type: ignore[index]


def test_import_is_lazy():
    # "import rewards" must stay cheap: no reward module (sympy, torch, sandboxes) until asked for.
    code = "import sys, rewards; print(sorted(m for m in sys.modules if m.startswith('rewards.')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=subprocess_env()
    )
    assert out.stdout.strip() == "['rewards.registry']"
