"""Relative paths in a recipe are read from the recipe's folder; on the command line, from the current one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipeline.compose import resolve_paths
from pipeline.config import load_recipe
from pipeline.schema import ConfigError
from tests.conftest import PYTHON, ROOT, subprocess_env

FOLDER = Path("/recipes/team")

# (value at a path key, keys set on the command line, what the recipe gets)
CASES = [
    ("data/train.jsonl", set(), "/recipes/team/data/train.jsonl"),  # a file: from the recipe's folder
    ("./shards", set(), "/recipes/team/shards"),  # ./ and ../ are paths whatever exists
    ("../shared/ds.json", set(), "/recipes/shared/ds.json"),
    ("/abs/train.jsonl", set(), "/abs/train.jsonl"),  # absolute: as is
    ("openai/gsm8k", set(), "openai/gsm8k"),  # a hub id: as is
    ("builtin:math", set(), "builtin:math"),
    ("package", set(), "package"),  # a preset's packaged copy
    ("data/train.jsonl", {"stages.sft.data.0.source"}, "data/train.jsonl"),  # typed on the command line
    ("data/train.jsonl", {"stages.sft.data"}, "data/train.jsonl"),  # a key above it was
]


@pytest.mark.parametrize(("value", "overridden", "expected"), CASES)
def test_which_values_are_read_from_the_recipe_folder(
    value: str, overridden: set[str], expected: str
) -> None:
    data = {"stages": {"sft": {"kind": "sft", "data": [{"source": value}]}}}
    resolve_paths(data, FOLDER, overridden)
    assert data["stages"]["sft"]["data"][0]["source"] == expected


def test_every_path_key_is_resolved() -> None:
    data = {
        "model": {"name_or_path": "./base", "chat_template": "templates/chat.jinja"},
        "stages": {
            "sft": {"kind": "sft", "init": "sft0", "train": {"deepspeed": "ds/zero3.json"},
                    "data": [{"source": "a.jsonl"}, {"source": "b.parquet"}]},
            "sft0": {"kind": "sft", "data": []},
            "rm": {"kind": "reward_model", "eval_data": [{"source": "pairs.jsonl"}]},
        },
        "benchmarks": {"math": {"data": {"source": "math.jsonl"}}},
    }  # fmt: skip
    resolve_paths(data, FOLDER, set())
    assert data["model"] == {
        "name_or_path": "/recipes/team/base",
        "chat_template": "/recipes/team/templates/chat.jinja",
    }
    sft = data["stages"]["sft"]
    assert sft["init"] == "sft0"  # a stage's name is not a path
    assert sft["train"]["deepspeed"] == "/recipes/team/ds/zero3.json"
    assert [s["source"] for s in sft["data"]] == ["/recipes/team/a.jsonl", "/recipes/team/b.parquet"]
    assert data["stages"]["rm"]["eval_data"][0]["source"] == "/recipes/team/pairs.jsonl"
    assert data["benchmarks"]["math"]["data"]["source"] == "/recipes/team/math.jsonl"


@pytest.fixture
def team(tmp_path: Path) -> Path:
    """A recipe folder with its own data file, DeepSpeed config and chat template, away from the cwd."""
    folder = tmp_path / "team"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.jsonl").write_text(
        "".join(json.dumps({"prompt": f"q{i}", "response": f"a{i}"}) + "\n" for i in range(4))
    )
    (folder / "zero2.json").write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    (folder / "chat.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    (folder / "recipe.yaml").write_text(
        "# python launch/cascade.py recipe=recipe.yaml\n"
        "run: {name: team}\nmodel: {name_or_path: 'builtin:tiny', chat_template: chat.jinja}\n"
        "stages:\n  sft:\n    kind: sft\n    data: [{source: data/train.jsonl}]\n"
        "    train: {max_steps: 1, deepspeed: zero2.json}\n"
    )
    return folder


def test_a_recipe_loads_from_any_working_directory(
    team: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = load_recipe(str(team / "recipe.yaml"))
    stage = recipe.stages["sft"]
    assert stage.data[0].source == str(team / "data" / "train.jsonl")
    assert stage.train.deepspeed == str(team / "zero2.json") and stage.train.zero_stage() == 2
    assert recipe.model.chat_template == str(team / "chat.jinja")


def test_a_command_line_path_is_read_from_the_current_directory(
    team: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.jsonl").write_text(json.dumps({"prompt": "q", "response": "a"}) + "\n")
    recipe = load_recipe(str(team / "recipe.yaml"), ["stages.sft.data=[{source: mine.jsonl}]"])
    assert recipe.stages["sft"].data[0].source == "mine.jsonl"


def test_a_path_only_the_current_directory_has_names_both_readings(
    team: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cwd.jsonl").write_text("{}\n")
    text = (team / "recipe.yaml").read_text().replace("data/train.jsonl", "cwd.jsonl")
    (team / "recipe.yaml").write_text(text)
    with pytest.raises(
        ConfigError, match=r"key 'stages.sft.data.0.source' names 'cwd.jsonl', which the recipe's folder"
    ):
        load_recipe(str(team / "recipe.yaml"))


def test_the_presets_recipe_checks_its_data_from_another_directory(tmp_path: Path) -> None:
    proc = subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), f"recipe={ROOT / 'tests' / 'recipes' / 'presets.yaml'}",
         "dry_run=data"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "humaneval.jsonl" in proc.stdout
