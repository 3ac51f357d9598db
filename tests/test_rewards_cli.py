"""``python -m rewards``: scoring a JSONL file, listing the registry, and clear errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rewards import REWARDS
from tests.conftest import ROOT, subprocess_env


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rewards", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=subprocess_env(),
        timeout=180,
    )


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_score_math_with_default_columns(tmp_path):
    # completion/answer columns by their own names; every row comes back with its score.
    rows = [
        {"id": 1, "completion": "<think>2+2</think>\\boxed{4}", "answer": "4"},
        {"id": 2, "completion": "\\boxed{5}", "answer": "4"},
        {"id": 3, "completion": "<think>never closed", "answer": "4"},
        {"id": 4, "completion": "The answer is 0.5", "answer": "\\frac{1}{2}"},
    ]
    out = tmp_path / "scored.jsonl"
    result = _run(
        "score", "--reward", "math", "--input", str(_write(tmp_path / "in.jsonl", rows)), "--output", str(out)
    )
    assert result.returncode == 0, result.stderr
    scored = _read(out)
    assert [r["id"] for r in scored] == [1, 2, 3, 4]
    assert [r["score"] for r in scored] == [1.0, 0.0, 0.0, 1.0]
    assert "n=4" in result.stdout and "mean=0.5000" in result.stdout
    assert "ones=2" in result.stdout and "zeros=2" in result.stdout and "parse_failures=1" in result.stdout
    assert "rows/s" in result.stdout


def test_score_with_column_mapping_and_args(tmp_path):
    # --column maps reward names onto file columns; --arg values are JSON (here: boxed answers only).
    rows = [
        {"response": "\\boxed{7}", "gold": "7"},
        {"response": "Answer: 7", "gold": "7"},
    ]
    src = _write(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = _run(
        "score", "--reward", "math", "--input", str(src), "--output", str(out),
        "--column", "completion=response", "--column", "answer=gold", "--arg", "fallbacks=[]",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [r["score"] for r in _read(out)] == [1.0, 0.0]


def test_score_passes_prompt_as_prompts(tmp_path):
    # A prompt column reaches rewards as TRL's "prompts".
    rows = [
        {"prompt": "What is the capital of France?", "completion": "<think>x</think>Paris"},
        {"prompt": "What is the capital of France?", "completion": "<think>x</think>巴黎"},
    ]
    out = tmp_path / "out.jsonl"
    result = _run(
        "score",
        "--reward",
        "language_mixing",
        "--input",
        str(_write(tmp_path / "in.jsonl", rows)),
        "--output",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert [r["score"] for r in _read(out)] == [1.0, 0.0]


def test_list_prints_every_registry_name():
    # The listing is generated from describe_rewards(), so every name appears.
    result = _run("list")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line and not line.startswith(" ")}
    assert listed == set(REWARDS)


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("missing", [], "does not exist"),  # input file absent
        ("not_json", [], "line 2 of"),  # a line that is not JSON
        ("not_object", [], "not an object"),  # a JSON line that is not an object
        ("ok", ["--reward", "mth"], "did you mean 'math'"),  # unknown reward (a repeated flag: the last wins)
        ("no_answer", [], "needs column 'answer'"),  # the reward's column is absent
        ("ok", ["--column", "answer=nope"], "no column 'nope'"),  # mapped onto a missing column
        ("ok", ["--arg", 'fallbacks=["bogus"]'], "unknown math fallback"),  # bad argument value
        ("ok", ["--arg", "novalue"], "--arg expects NAME=VALUE"),  # malformed --arg
    ],
)
def test_bad_input_exits_2_with_one_sentence(tmp_path, setup, extra, message):
    src = tmp_path / "in.jsonl"
    if setup == "not_json":
        src.write_text('{"completion": "x", "answer": "1"}\n{oops\n', encoding="utf-8")
    elif setup == "not_object":
        src.write_text("[1, 2]\n", encoding="utf-8")
    elif setup == "no_answer":
        _write(src, [{"completion": "\\boxed{1}"}])
    elif setup == "ok":
        _write(src, [{"completion": "\\boxed{1}", "answer": "1"}])
    args = ["score", "--reward", "math", "--input", str(src), "--output", str(tmp_path / "o.jsonl"), *extra]
    result = _run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
