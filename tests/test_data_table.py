"""Stage rows in Arrow: exact rows, one type per trainer table, the list loader's order, one build per launch."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import DataSource
from pipeline.data.sources import load_rows
from pipeline.data.table import BATCH, Rows, rows_dataset, typed_map
from tests.conftest import PYTHON, ROOT, free_port, subprocess_env


def test_mapped_rows_come_back_exactly_as_mapped(tmp_path: Path) -> None:
    """Nested reward columns that differ from row to row are not padded, widened or retyped by Arrow."""
    rows = [
        {"prompt": "a", "kwargs": [{"num_words": 5}], "tests": {"kind": "stdio", "cases": []}, "blob": b"\x00\x01"},
        {"prompt": "b", "kwargs": [{"language": "fr"}, {}], "tests": ["assert f(1) == 2"], "blob": None},
        {"prompt": "c", "kwargs": [{"num_words": 5.5}], "tests": "{}", "extra": (1, 2)},
    ]  # fmt: skip
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"prompt": r["prompt"]}) + "\n" for r in rows))
    by_prompt = {r["prompt"]: r for r in rows}
    data = load_rows(
        [DataSource(source=str(path))], {}, seed=0, transform=lambda row: by_prompt[row["prompt"]]
    )
    assert sorted(data.rows, key=lambda r: r["prompt"]) == rows  # ints stay ints, no None-padded keys
    first = next(r for r in data.rows if r["prompt"] == "a")
    assert type(first["kwargs"][0]["num_words"]) is int and first["blob"] == b"\x00\x01"
    assert data.rows[-1] == list(data.rows)[-1] and data.rows[:2] == list(data.rows)[:2]


def _conversation(i: int) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = [{"role": "user", "content": f"q{i}"}]
    if i % 700 == 3:
        turns.insert(0, {"role": "system", "content": "be brief", "name": "sys"})
    if i > BATCH + 500 and i % 100 == 0:  # only a later batch has tool calls
        call = {"type": "function", "function": {"name": "f", "arguments": {"x": i}}}
        turns.append({"role": "assistant", "content": "", "tool_calls": [call]})
    turns.append({"role": "assistant", "content": f"a{i}"})
    return turns


def test_typed_tables_have_one_type_for_every_batch() -> None:
    """What Dataset.from_list over all rows gives, built batch by batch (a plain batched map would fail)."""
    from datasets import Dataset

    n = 2 * BATCH + 300
    rows = rows_dataset([{"i": i} for i in range(n)])
    table, dropped = typed_map(
        rows, lambda row, i: None if i % 10 == 9 else {"messages": _conversation(i)}, desc="t"
    )
    expected = Dataset.from_list([{"messages": _conversation(i)} for i in range(n) if i % 10 != 9])
    assert dropped == n // 10 and table.features == expected.features
    assert table.to_list() == expected.to_list()


def _list_loader_order(sizes: list[int], weights: list[float], seed: int) -> list[tuple[int, int]]:
    """The order the loader gave when it mixed Python lists (kept here as the reference)."""
    rng = random.Random(seed)
    mixed: list[tuple[int, int]] = []
    for s, (n, w) in enumerate(zip(sizes, weights, strict=True)):
        rows = [(s, j) for j in range(n)]
        want = max(1, round(n * w))
        repeats, rest = divmod(want, n)
        mixed.extend(rows * repeats + rng.sample(rows, rest))
    rng.shuffle(mixed)
    return mixed


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (0.5, 2.0, 1.0), (0.25, 1.5, 3.0)])
def test_the_mix_is_the_list_loaders_order(tmp_path: Path, weights: tuple[float, float, float]) -> None:
    """Same seed, same rows in the same order as before the rows moved to Arrow."""
    sizes = [40, 25, 7]
    sources = []
    for s, n in enumerate(sizes):
        path = tmp_path / f"s{s}.jsonl"
        path.write_text("".join(json.dumps({"src": s, "j": j}) + "\n" for j in range(n)))
        sources.append(DataSource(source=str(path), weight=weights[s]))
    got = [(r["src"], r["j"]) for r in load_rows(sources, {}, seed=11).rows]
    assert got == _list_loader_order(sizes, list(weights), seed=11)


def test_rows_view_indexes_like_a_list() -> None:
    rows = Rows(rows_dataset([{"k": k} for k in range(5)]))
    assert len(rows) == 5 and rows[-1] == {"k": 4} and rows[1:3] == [{"k": 1}, {"k": 2}]
    with pytest.raises(IndexError):
        rows[5]


PROGRAM = """
import json, sys
from pathlib import Path
from datasets import DatasetDict
from pipeline.data.table import build_once, rows_dataset
from pipeline.distributed import leave_process_group, process_state
from pipeline.schema import ConfigError

out = Path(sys.argv[1])
state = process_state()

def build(scratch):
    with open(out / "builds.txt", "a") as f:
        f.write(f"{state.process_index}\\n")
    return DatasetDict({"rows": rows_dataset([{"k": k} for k in range(50)])}), {"n": 50}

tables, counts = build_once(out / "data", build)
from pipeline.data.table import Rows
(out / f"seen-{state.process_index}.json").write_text(json.dumps([list(Rows(tables["rows"])), counts]))

def broken(scratch):
    raise ConfigError("data source 'x.jsonl' dropped 3 of 3 rows")

try:
    build_once(out / "broken", broken)
except ConfigError as exc:
    (out / f"error-{state.process_index}.txt").write_text(str(exc))
state.wait_for_everyone()
leave_process_group()  # as a command's end does (pipeline.cli)
"""


def test_two_processes_build_once_and_share_a_failure(tmp_path: Path) -> None:
    """Only the main process builds; both read the same rows; a failed build reaches both (no hang)."""
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    res = subprocess.run(
        [PYTHON, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", free_port(),
         "--mixed_precision", "no", "--dynamo_backend", "no", str(program), str(tmp_path)],
        cwd=ROOT, env=subprocess_env(), timeout=600, capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "builds.txt").read_text().split() == ["0"]
    seen = [json.loads((tmp_path / f"seen-{p}.json").read_text()) for p in (0, 1)]
    assert seen[0] == seen[1] == [[{"k": k} for k in range(50)], {"n": 50}]
    errors = {(tmp_path / f"error-{p}.txt").read_text() for p in (0, 1)}
    assert errors == {"data source 'x.jsonl' dropped 3 of 3 rows"}
