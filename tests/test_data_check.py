"""No silent zero: data that the rewards or the scorer cannot read stops the launch with one sentence, exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import recipe_from_dict
from pipeline.data.check import check_data, describe_checks
from pipeline.data.sources import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "presets"
ROOT = Path(__file__).resolve().parent.parent


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def recipe(
    tmp_path: Path, data: dict[str, Any], rewards: list[str], bench: dict[str, Any] | None = None
) -> dict:
    out: dict[str, Any] = {
        "run": {"name": "check", "output_dir": str(tmp_path / "runs")},
        "model": {"name_or_path": "builtin:tiny"},
        "stages": {"rl": {"kind": "grpo", "data": [data], "rewards": [{"name": r} for r in rewards]}},
    }
    if bench:
        out["benchmarks"] = {"bench": bench}
    return out


def humaneval_naive(tmp_path: Path) -> dict:
    """HumanEval mapped by renaming only: its test is no Cascade tests item."""
    return {"source": str(FIXTURES / "humaneval.jsonl"), "columns": {"tests": "test"}}


def math_without_answer(tmp_path: Path) -> dict:
    rows = [{"prompt": f"What is {i} + 1?"} for i in range(20)]
    return {"source": write_jsonl(tmp_path / "math.jsonl", rows)}


def wrong_instruction_ids(tmp_path: Path) -> dict:
    rows = [{"prompt": "Hi", "instruction_id_list": ["punctuation:no_commas"], "kwargs": [{}]}] * 5
    return {"source": write_jsonl(tmp_path / "if.jsonl", rows)}


def swe_without_patch(tmp_path: Path) -> dict:
    rows = [{"prompt": "Fix it", "patch": "not a diff"}] * 5
    return {"source": write_jsonl(tmp_path / "swe.jsonl", rows)}


# (data source, rewards, column named in the error) — the failure modes of issue 17
FAILURES = [
    (humaneval_naive, ["code"], "tests"),
    (math_without_answer, ["math"], "answer"),
    (wrong_instruction_ids, ["instruction"], "instruction_id_list"),
    (swe_without_patch, ["swe"], "golden_patch"),
]


@pytest.mark.parametrize(("make", "rewards", "column"), FAILURES)
def test_unreadable_reward_columns_stop_before_any_model(
    tmp_path: Path, make: Any, rewards: list, column: str
) -> None:
    r = recipe_from_dict(recipe(tmp_path, make(tmp_path), rewards))
    with pytest.raises(DataError) as info:
        check_data(r)
    message = str(info.value)
    assert message.startswith("stage 'rl': ") and column in message and "e.g. row" in message
    assert "\n" not in message


def test_benchmark_on_a_preset_takes_its_scorer_and_passes(tmp_path: Path) -> None:
    bench = {"data": {"source": str(FIXTURES / "humaneval.jsonl"), "preset": "humaneval"}}
    r = recipe_from_dict(recipe(tmp_path, {"source": "builtin:math", "size": 8}, ["math"], bench))
    assert r.benchmarks["bench"].scorer.reward == "code" and r.benchmarks["bench"].domain == "code"
    text = describe_checks(check_data(r))
    assert "benchmark 'bench'" in text and "4 rows, 0 dropped" in text and "assert" in text


def test_launch_exits_2_with_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: Any
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(recipe(tmp_path, math_without_answer(tmp_path), ["math"])))
    monkeypatch.syspath_prepend(str(ROOT / "launch"))
    sys.modules.pop("cascade", None)
    import cascade as launcher  # launch/cascade.py

    for mode in ("dry_run=data", "dry_run=false"):
        assert launcher.main([f"recipe={path}", mode, "tracking.backend=none"]) == 2
        errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "missing or invalid column(s) answer" in errors[0]
    assert not (tmp_path / "runs" / "check" / "ledger.json").exists()  # nothing ran
