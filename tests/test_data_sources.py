"""Data sources: local files and hub-shaped folders, column mapping, bad rows, mixing by weight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import DataSource
from pipeline.data.formatting import assistant_text, sft_messages
from pipeline.data.sources import DataError, is_str, load_rows, row_mode

ROWS = [{"question": f"What is {i} + 1?", "gold": str(i + 1), "extra": i} for i in range(200)]
NEED = {"prompt": is_str, "answer": is_str}
MAPPING = {"prompt": "question", "answer": "gold"}


def write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_local_files_with_column_mapping(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path / f"data{suffix}", ROWS)
    data = load_rows([DataSource(source=str(path), columns=MAPPING)], NEED, seed=0)
    assert len(data.rows) == 200
    row = next(r for r in data.rows if r["extra"] == 7)
    assert row["prompt"] == "What is 7 + 1?" and row["answer"] == "8"  # mapped: stage column ← source column
    assert "question" not in row  # the source's name is replaced, not duplicated


def test_hub_shaped_folder_loads_through_the_hub_path(tmp_path: Path) -> None:
    """A folder laid out like a hub dataset repository (data/<split>-*.parquet) goes through load_dataset(id)."""
    repo = tmp_path / "org-dataset"
    write(repo / "data" / "train-00000-of-00001.parquet", ROWS[:150])
    write(repo / "data" / "test-00000-of-00001.parquet", ROWS[150:])
    train = load_rows([DataSource(source=str(repo), split="train", columns=MAPPING)], NEED, seed=0)
    test = load_rows([DataSource(source=str(repo), split="test", columns=MAPPING)], NEED, seed=0)
    assert len(train.rows) == 150 and len(test.rows) == 50
    assert {r["extra"] for r in test.rows} == set(range(150, 200))
    sized = load_rows([DataSource(source=str(repo), split="train", size=20, columns=MAPPING)], NEED, seed=0)
    assert len(sized.rows) == 20


# (bad rows among 200, whether loading fails) — more than 1% dropped is an error
BAD_ROWS = [
    (0, False),  # clean data
    (2, False),  # 1%: dropped and counted
    (3, True),  # 1.5%: an error naming the source and an example row
]


@pytest.mark.parametrize(("bad", "fails"), BAD_ROWS)
def test_bad_rows_are_dropped_and_counted(tmp_path: Path, bad: int, fails: bool) -> None:
    rows = [dict(r) for r in ROWS]
    for i in range(bad):
        rows[i * 10]["gold"] = None if i % 2 else ""  # a missing or empty field
    path = write(tmp_path / "data.jsonl", rows)
    source = DataSource(source=str(path), columns=MAPPING)
    if fails:
        with pytest.raises(DataError, match=r"dropped 3 of 200 rows.*answer.*columns"):
            load_rows([source], NEED, seed=0)
    else:
        data = load_rows([source], NEED, seed=0)
        assert len(data.rows) == 200 - bad and data.reports[0].dropped == bad


def test_wrong_mapping_names_the_needed_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "data.jsonl", ROWS)
    with pytest.raises(DataError, match="needed: prompt, answer"):
        load_rows([DataSource(source=str(path), columns={"prompt": "q"})], NEED, seed=0)


def test_missing_hub_dataset_is_one_sentence() -> None:
    with pytest.raises(DataError, match="not in the local cache.*HF_HUB_OFFLINE.*dry_run=data") as info:
        load_rows([DataSource(source="no-such-org/no-such-dataset")], NEED, seed=0)
    assert "\n" not in str(info.value)


# (weights of two sources of 100 rows, rows used from each)
WEIGHTS = [
    ((1.0, 1.0), (100, 100)),  # all rows of both
    ((0.5, 1.0), (50, 100)),  # half of the first
    ((2.0, 0.25), (200, 25)),  # every row of the first twice, a quarter of the second
]


@pytest.mark.parametrize(("weights", "used"), WEIGHTS)
def test_mixing_by_weight(tmp_path: Path, weights: tuple[float, float], used: tuple[int, int]) -> None:
    a = write(tmp_path / "a.jsonl", [dict(r, src="a") for r in ROWS[:100]])
    b = write(tmp_path / "b.jsonl", [dict(r, src="b") for r in ROWS[100:]])
    sources = [
        DataSource(source=str(p), columns=MAPPING, weight=w) for p, w in zip((a, b), weights, strict=True)
    ]
    data = load_rows(sources, NEED, seed=1)
    counts = (sum(r["src"] == "a" for r in data.rows), sum(r["src"] == "b" for r in data.rows))
    assert counts == used and tuple(r.used for r in data.reports) == used
    assert list(load_rows(sources, NEED, seed=1).rows) == list(data.rows)  # deterministic for a seed


def test_builtin_sources_are_deterministic_and_sized() -> None:
    source = DataSource(source="builtin:math", size=50)
    first = list(load_rows([source], {"prompt": is_str}, seed=3).rows)
    assert len(first) == 50 and first == list(load_rows([source], {"prompt": is_str}, seed=3).rows)


def test_thinking_and_non_thinking_rendering() -> None:
    row = {"prompt": "Evaluate 2 + 3.", "reasoning": "2 + 3 = 5.", "response": "\\boxed{5}"}
    think = sft_messages(row, "think")
    assert think[0]["content"].endswith(" /think")
    assert think[1]["content"] == "<think>\n2 + 3 = 5.\n</think>\n\n\\boxed{5}"
    plain = sft_messages(row, "no_think")
    assert plain[0]["content"].endswith(" /no_think") and plain[1]["content"] == assistant_text(
        None, "\\boxed{5}", "x"
    )
    modes = [row_mode("mixed", 0.5, i, seed=0) for i in range(1000)]
    assert 400 < modes.count("think") < 600  # mixed prompts split by think_fraction
    assert modes == [row_mode("mixed", 0.5, i, seed=0) for i in range(1000)]
