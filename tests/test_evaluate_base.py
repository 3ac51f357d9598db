"""``cascade-evaluate checkpoint=base``: the run's starting model, built as the cascade builds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_recipe
from pipeline.evaluation import resolve_checkpoint
from pipeline.schema import ConfigError


def test_base_of_a_builtin_model_is_the_cascades_starting_model(tmp_path: Path) -> None:
    from pipeline.models import build_builtin_model

    recipe = load_recipe("tiny-smoke", [f"run.output_dir={tmp_path}"])
    base = Path(resolve_checkpoint(recipe, "base"))
    assert base == tmp_path / recipe.run.name / "base" and (base / "config.json").exists()
    reference = build_builtin_model(
        recipe.model.name_or_path, recipe.model.builtin, tmp_path / "ref", recipe.run.seed
    )
    assert (base / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()


def test_base_of_a_hub_model_is_the_model_itself(tmp_path: Path) -> None:
    recipe = load_recipe("tiny-smoke", [f"run.output_dir={tmp_path}", "model.name_or_path=org/some-model"])
    assert resolve_checkpoint(recipe, "base") == "org/some-model"


def test_an_unknown_checkpoint_says_what_it_may_be(tmp_path: Path) -> None:
    recipe = load_recipe("tiny-smoke", [f"run.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="names 'nowhere', which is no stage, existing path or hub id"):
        resolve_checkpoint(recipe, "nowhere")
