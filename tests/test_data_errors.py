"""Data errors name the file, the line or row, and the reason, in one sentence.

Each case is a file a user could hand Cascade: a JSON Lines file with a broken line, an empty file, SFT
rows that fit no conversation layout, a missing value, a Parquet column of the wrong type.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import DataSource
from pipeline.data.formatting import sft_row
from pipeline.data.sources import DataError, is_str, load_rows

NEED = {"prompt": is_str, "answer": is_str}


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def load(path: Path, **source: object) -> None:
    load_rows([DataSource(source=str(path), **source)], NEED, seed=0)  # type: ignore[arg-type]


# (file content, what the sentence must say)
BROKEN_FILES = [
    ('{"prompt": "a", "answer": "1"}\n{"prompt": "b", "answer": \n{"prompt": "c", "answer": "3"}\n',
     r"line 2 is not valid JSON \(.* at column \d+\)"),  # a line cut short
    ('{"prompt": "a", "answer": "1"}\n\n["prompt", "answer"]\n', r"line 3 is a JSON list, not an object"),
    ("", r"is an empty file"),  # nothing at all
    ("\n  \n", r"is an empty file"),  # white space only
]  # fmt: skip


@pytest.mark.parametrize(("content", "said"), BROKEN_FILES)
def test_a_file_that_does_not_read_names_the_line_and_why(tmp_path: Path, content: str, said: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=said) as info:
        load(path)
    message = str(info.value)
    assert "train.jsonl" in message and "\n" not in message
    assert "An error occurred while generating" not in message


def test_a_json_array_file_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text('[\n  {"prompt": "a", "answer": "1"},\n  {"prompt": "b" "answer": "2"}\n]\n')
    with pytest.raises(
        DataError, match=r"train.json' could not be read: line 3 column \d+ is not valid JSON"
    ):
        load(path)


def test_a_corrupt_parquet_file_names_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    path.write_bytes(b"not a parquet file at all")
    with pytest.raises(DataError, match=r"train.parquet' could not be read: \w+: .+") as info:
        load(path)
    assert not str(info.value).endswith(": ")


def test_sft_rows_that_fit_no_layout_say_what_a_row_needs(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "sft.jsonl", [{"question": f"q{i}", "reply": "r"} for i in range(10)])
    with pytest.raises(DataError) as info:
        load_rows([DataSource(source=str(path))], {}, seed=0, transform=sft_row)
    message = str(info.value)
    assert "no 'messages' conversation and no 'prompt' + 'response' text" in message
    assert "(needed: )" not in message and "check its 'columns:' mapping" in message


def test_a_missing_value_is_shown_as_null_not_as_the_text_none(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "answer": None if i < 5 else str(i)} for i in range(10)]
    with pytest.raises(DataError) as info:
        load(jsonl(tmp_path / "math.jsonl", rows))
    message = str(info.value)
    assert "answer (missing)" in message
    assert '"answer": null' in message and "'None'" not in message and '"None"' not in message
    assert "e.g. row 1 " in message  # which row: its number in the file


def test_a_missing_id_stays_missing(tmp_path: Path) -> None:
    """IFEval's 'key' (or any id column) left null: the row gets no id, not the id 'None'."""
    row = {"key": None, "prompt": "Write two words.", "instruction_id_list": ["punctuation:no_comma"],
           "kwargs": [{}]}  # fmt: skip
    path = jsonl(tmp_path / "ifeval.jsonl", [row])
    data = load_rows([DataSource(source=str(path), preset="ifeval")], {}, seed=0)
    assert data.rows[0]["id"] is None


def test_benchmark_rows_without_ids_are_numbered(tmp_path: Path) -> None:
    from pipeline.config import BenchmarkConfig, ScorerConfig
    from pipeline.evaluation import load_benchmark_rows

    rows = [{"id": None, "prompt": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(4)]
    source = DataSource(source=str(jsonl(tmp_path / "bench.jsonl", rows)))
    source.validate("benchmarks.b.data")
    bench = BenchmarkConfig(data=source, domain="math", scorer=ScorerConfig(reward="math"))
    ids = [r["id"] for r in load_benchmark_rows(bench, seed=0)]
    assert len(set(ids)) == 4 and "None" not in ids


def parquet(path: Path, columns: dict[str, list]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def test_a_parquet_column_of_the_wrong_type_is_reported_not_stringified(tmp_path: Path) -> None:
    """MATH-500 with its problems stored as numbers: before, the prompt was the number's text."""
    path = parquet(tmp_path / "math500.parquet", {"problem": list(range(10)), "answer": ["1"] * 10})
    with pytest.raises(DataError, match=r"column 'problem' holds int, not text"):
        load_rows([DataSource(source=str(path), preset="math500")], {}, seed=0)


def test_numeric_answers_are_still_read(tmp_path: Path) -> None:
    """AIME copies store the answer as an integer: that one is text for the math reward."""
    path = parquet(tmp_path / "aime.parquet", {"problem": ["Find x."] * 3, "answer": [204, 25, 7]})
    data = load_rows([DataSource(source=str(path), preset="aime")], {}, seed=0)
    assert sorted(r["answer"] for r in data.rows) == ["204", "25", "7"]


def test_a_mapped_column_of_the_wrong_type_names_its_type(tmp_path: Path) -> None:
    path = parquet(tmp_path / "qa.parquet", {"q": list(range(10)), "a": ["1"] * 10})
    with pytest.raises(DataError, match=r"missing or invalid column\(s\) prompt \(a number\)"):
        load(path, columns={"prompt": "q", "answer": "a"})
