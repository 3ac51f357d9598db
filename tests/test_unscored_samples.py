"""Samples a scorer cannot score (None: a checker that cannot run) are left out of a benchmark's score and
of the gate's comparison — never counted as wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.config import recipe_from_dict
from pipeline.evaluation import aggregate, prompt_score
from pipeline.gates import compare_records, prompt_scores


def _bench(tmp_path: Path, n: int, metric: str = "accuracy") -> Any:
    recipe = recipe_from_dict(
        {
            "run": {"name": "u", "output_dir": str(tmp_path)},
            "model": {"name_or_path": "builtin:tiny"},
            "stages": {"s": {"kind": "sft", "data": [{"source": "builtin:math", "size": 4}]}},
            "benchmarks": {
                "b": {
                    "domain": "math",
                    "data": {"source": "builtin:math", "size": 8},
                    "generation": {"n": n},
                    "scorer": {"reward": "math", "metric": metric},
                    "max_unscored": 1.0,
                }
            },
        }
    )
    return recipe.benchmarks["b"]


@pytest.mark.parametrize(
    ("per_prompt", "score", "n", "unscored"),
    [
        ([[1.0], [0.0], [1.0], [0.0]], 0.5, 4, None),  # all scored: as before
        ([[1.0], [None], [1.0], [0.0]], 2 / 3, 3, 1),  # the unscored prompt leaves the score and n
        ([[None], [None]], None, 0, 2),  # nothing scored: no score, not a zero
    ],
)
def test_unscored_samples_leave_the_score_and_n(
    tmp_path: Path, per_prompt: list[list[float | None]], score: float | None, n: int, unscored: int | None
) -> None:
    record = aggregate(_bench(tmp_path, 1), per_prompt)
    assert record["n"] == n
    assert record.get("unscored") == unscored
    assert record["score"] == (pytest.approx(score) if score is not None else None)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([1.0, 0.0, 1.0, 1.0], 0.75),
        ([1.0, None, 0.0, None], 0.5),  # over the two scored samples
        ([None, None, None, None], None),
    ],
)
def test_a_prompt_scores_over_its_scored_samples(
    tmp_path: Path, scores: list[float | None], expected: float | None
) -> None:
    assert prompt_score(_bench(tmp_path, 4), scores) == expected


def test_pass_at_k_counts_prompts_with_enough_scored_samples(tmp_path: Path) -> None:
    record = aggregate(_bench(tmp_path, 2), [[1.0, 0.0], [None, 1.0], [0.0, 0.0]])
    assert record["n"] == 3
    assert record["unscored"] == 1
    assert record["pass_at_k"]["1"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert record["pass_at_k"]["2"] == pytest.approx((1.0 + 0.0) / 2)  # the half-scored prompt has no pass@2


def _record(scores: list[float | None]) -> dict[str, Any]:
    return {
        "score": None,
        "samples_per_prompt": 1,
        "samples": [
            {"id": str(i), "scores": [s], "correct": [None if s is None else s >= 1.0], "score": s}
            for i, s in enumerate(scores)
        ],
    }


def test_the_gate_pairs_only_prompts_scored_in_both(caplog: pytest.LogCaptureFixture) -> None:
    before = _record([1.0, None, 0.0, 1.0])
    after = _record([1.0, 1.0, None, 0.0])
    assert prompt_scores(before) == {"0": 1.0, "2": 0.0, "3": 1.0}
    assert "ignored" not in caplog.text  # unscored prompts are expected, not malformed
    comparison = compare_records(before, after)
    assert comparison.n_paired == 2  # prompts 0 and 3
