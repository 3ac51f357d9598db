"""How the GRPO stage calls a reward: one prompt mode per term, truncated answers' scores fixed unscored."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.stages.grpo.config import MODE_COLUMN, TRUNCATED_COLUMN
from pipeline.stages.grpo.rewards import StageReward
from rewards.format import with_language_penalty


class Recorder:
    """A reward scoring each completion by its length, remembering which completions it was given."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def __call__(self, completions: list[str], **columns: Any) -> list[float]:
        self.seen.append(list(completions))
        assert all(len(v) == len(completions) for v in columns.values() if isinstance(v, list))
        return [float(len(c)) for c in completions]


COMPLETIONS = ["a", "bb", "ccc", "dddd"]
MODES = ["think", "no_think", "think", "no_think"]

# (term mode, truncated scores column (None: absent), expected scores, completions the reward was run on)
CASES = [
    ("any", None, [1.0, 2.0, 3.0, 4.0], ["a", "bb", "ccc", "dddd"]),  # everything scored
    ("think", None, [1.0, None, 3.0, None], ["a", "ccc"]),  # the other mode is None, not run
    ("any", [None, 0.0, None, None], [1.0, 0.0, 3.0, 4.0], ["a", "ccc", "dddd"]),  # truncated: fixed, not run
    ("no_think", [0.0, None, None, -1.0], [0.0, 2.0, None, -1.0], ["bb"]),  # a fixed score whatever the mode
    ("any", [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], []),  # all truncated: the reward never runs
    ("any", [None, None, None, None], [1.0, 2.0, 3.0, 4.0], ["a", "bb", "ccc", "dddd"]),  # none truncated
]


@pytest.mark.parametrize(("mode", "fixed", "expected", "run_on"), CASES)
def test_stage_reward_scores_only_what_it_must(mode, fixed, expected, run_on) -> None:
    fn = Recorder()
    columns: dict[str, Any] = {MODE_COLUMN: MODES, "prompts": ["p"] * 4}
    if fixed is not None:
        columns[TRUNCATED_COLUMN] = fixed
    assert StageReward(fn, "len", mode)(COMPLETIONS, **columns) == expected
    assert [c for call in fn.seen for c in call] == run_on


def test_batch_relative_penalty_compares_the_scored_completions_only() -> None:
    # batch_min_minus_k takes the minimum over the completions the reward scored, not the fixed scores
    penalised = with_language_penalty(Recorder(), "batch_min_minus_10")
    completions = ["hello", "ab", "привет", "abcdefgh"]
    columns = {
        MODE_COLUMN: ["no_think"] * 4,
        "prompts": ["hi"] * 4,
        TRUNCATED_COLUMN: [None, -5.0, None, None],
    }
    scores = StageReward(penalised, "len")(completions, **columns)
    assert scores == [5.0, -5.0, 5.0 - 10, 8.0]  # the mixed-language answer: min(5, 8) - 10
