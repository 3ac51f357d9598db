"""``dry_run=true`` needs no GPU, no vLLM and no hub: what this machine cannot check, it lists."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pipeline.cli import main

RECIPE = """\
# python launch/cascade.py recipe={path}
run: {{name: dry, output_dir: {out}}}
model: {{name_or_path: {model}}}
tracking: {{mode: disabled}}
stages:
  math_rl:
    kind: grpo
    data: [{{preset: gsm8k}}]
    rewards: [{{name: math}}]
    train: {{max_steps: 1}}
"""


@pytest.fixture
def recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # empty caches
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))

    def no_network() -> bool:
        raise AssertionError("a dry run asked the hub")

    monkeypatch.setattr("pipeline.hub.hub_reachable", no_network)
    path = tmp_path / "dry.yaml"
    path.write_text(RECIPE.format(path=path, out=tmp_path / "runs", model="Qwen/Qwen3-0.6B"))
    return path


def test_hub_ids_not_in_the_caches_are_listed(recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([f"recipe={recipe}", "dry_run=true"]) == 0
    out = capsys.readouterr().out
    assert "not checked here" in out
    assert "dataset 'openai/gsm8k' (stage 'math_rl') is not in the datasets cache" in out
    assert "model 'Qwen/Qwen3-0.6B' (model.name_or_path) is not in the hub cache" in out
    assert not (recipe.parent / "runs").exists()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_missing_is_listed_by_a_dry_run_and_refused_by_a_launch(
    recipe: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([f"recipe={recipe}", "dry_run=true", "generation.engine=vllm"]) == 0
    assert "key 'generation.engine' is vllm but vLLM is not installed here" in capsys.readouterr().out
    assert main([f"recipe={recipe}", "generation.engine=vllm"]) == 2  # a real launch stops at recipe load


def test_nothing_is_listed_when_everything_was_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "local.yaml"
    path.write_text(RECIPE.format(path=path, out=tmp_path / "runs", model="builtin:tiny").replace(
        "{preset: gsm8k}", "{source: 'builtin:math', size: 8}"))  # fmt: skip
    assert main([f"recipe={path}", "dry_run=true"]) == 0
    assert "not checked here" not in capsys.readouterr().out
