"""Samples a scorer cannot score (None: a checker that cannot run) are left out of a benchmark's score and
of the gate's comparison — never counted as wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.config import recipe_from_dict
from pipeline.gates import compare_records, prompt_scores
from pipeline.scoring import aggregate, prompt_score


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


def every_other_unscored(completions: list[Any], **columns: Any) -> list[float | None]:
    """A scorer that cannot score every other sample and calls the rest correct."""
    return [None if i % 2 else 1.0 for i in range(len(completions))]


def test_selection_modes_keep_pass_at_1_over_the_scored_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With majority voting on, pass@1 (the headline) stays the plain record's score over scored samples."""
    from pipeline.config import load_recipe
    from pipeline.evaluation import evaluate_checkpoint
    from pipeline.models import build_builtin_model
    from rewards import registry

    # the math scorer's name (majority voting groups answers by it), this module's scores
    monkeypatch.setitem(
        registry._SPECS, "math", registry.RewardSpec("math", f"{__name__}:every_other_unscored")
    )

    overrides = [
        f"run.output_dir={tmp_path}", "tracking.mode=disabled", "model.builtin.tokenizer_corpus_rows=40",
        "benchmarks.math.data.size=4", "benchmarks.math.selection=[majority]",
        "benchmarks.math.generation.n=2", "benchmarks.math.generation.max_new_tokens=4",
        "benchmarks.math.generation.temperature=1.0", "benchmarks.math.max_unscored=1.0",
    ]  # fmt: skip
    recipe = load_recipe("tiny", overrides)
    model = build_builtin_model("builtin:tiny", recipe.model.builtin, tmp_path / "model", seed=0)
    out = evaluate_checkpoint(
        recipe, str(model), ["math"], out_file=tmp_path / "e.json", stage="base", index=0
    )
    math = out["benchmarks"]["math"]
    assert math["unscored"] == 4 and math["n"] == 4  # one of each prompt's two samples
    assert math["score"] == 1.0 and math["modes"]["pass@1"]["score"] == 1.0
    assert all(s["scores"] == [1.0, None] and s["correct"] == [True, None] for s in math["samples"])
