"""Disk: final checkpoints in the training's half precision, a finished stage's trainer checkpoints pruned
(unless kept), and the sizes in its ledger entry."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from pipeline.config import recipe_from_dict
from pipeline.stages.base import (
    StageContext,
    cast_checkpoint,
    folder_bytes,
    half_precision,
    intermediate_weights,
    settle_stage_files,
)


def tiny_model() -> Any:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, tie_word_embeddings=True,
    )  # fmt: skip
    return Qwen3ForCausalLM(config)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"bf16": True, "fp16": False}, "bfloat16"),
        ({"bf16": False, "fp16": True}, "float16"),
        ({"bf16": False, "fp16": False}, None),  # fp32 training (CPU): the checkpoint stays fp32
    ],
)
def test_half_precision_is_the_training_precision(args: dict, expected: str | None) -> None:
    assert half_precision(SimpleNamespace(**args)) == expected


@pytest.mark.parametrize("shard", [None, "20KB"])
def test_cast_checkpoint_to_bf16(tmp_path: Path, shard: str | None) -> None:
    from transformers import AutoModelForCausalLM

    model = tiny_model()
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(tmp_path, **kwargs)
    before = folder_bytes(tmp_path)
    files = sorted(tmp_path.glob("*.safetensors"))
    assert cast_checkpoint(tmp_path, "bfloat16") == len(files) >= 1
    assert folder_bytes(tmp_path) < 0.6 * before
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.dtype == torch.bfloat16
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a.to(torch.bfloat16), b), name
    if shard:
        index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
        assert index["metadata"]["total_size"] == sum(p.stat().st_size for p in files)
    assert cast_checkpoint(tmp_path, "bfloat16") == 0  # already in bf16: left as it is


def stage_layout(root: Path) -> Path:
    """A GRPO stage with two phases, as a finished run leaves it."""
    stage = root / "stages" / "06-math_rl"
    for path in (
        "checkpoints/checkpoint-10/model.safetensors",
        "phases/1-short/checkpoints/checkpoint-5/optimizer.pt",
        "phases/1-short/final/model.safetensors",
        "phases/2-long/checkpoints/checkpoint-3/optimizer.pt",
        "final/model.safetensors",
        "final.old/model.safetensors",
    ):
        (stage / path).parent.mkdir(parents=True, exist_ok=True)
        (stage / path).write_bytes(b"x" * 100)
    (stage / "phases" / "1-short" / "phase.json").write_text("{}")
    return stage


def test_what_a_finished_stage_no_longer_needs(tmp_path: Path) -> None:
    stage = stage_layout(tmp_path)
    found = {p.relative_to(stage).as_posix() for p in intermediate_weights(stage, stage / "final")}
    assert found == {
        "checkpoints",
        "final.old",
        "phases/1-short/checkpoints",
        "phases/1-short/final",
        "phases/2-long/checkpoints",
    }


def make_ctx(tmp_path: Path, keep: bool) -> tuple[StageContext, list[dict]]:
    recipe = recipe_from_dict(
        {
            "run": {"name": "r", "output_dir": str(tmp_path)},
            "model": {"name_or_path": "builtin:tiny"},
            "stages": {
                "math_rl": {
                    "kind": "grpo",
                    "data": [{"source": "builtin:math", "size": 8}],
                    "rewards": [{"name": "math"}],
                    "train": {"max_steps": 1, "keep_checkpoints": keep},
                }
            },
        }
    )
    recorded: list[dict] = []
    ctx = StageContext(
        recipe=recipe,
        name="math_rl",
        index=6,
        config=recipe.stages["math_rl"],
        init_path="base",
        stage_dir=stage_layout(tmp_path),
        resume=False,
        tracker=None,
        record=recorded.append,
    )
    return ctx, recorded


def test_a_finished_stage_is_pruned_and_its_sizes_recorded(tmp_path: Path) -> None:
    ctx, recorded = make_ctx(tmp_path, keep=False)
    disk = settle_stage_files(ctx)
    assert recorded == [{"disk": disk}]
    assert disk == {
        "final_bytes": 100,
        "checkpoints_bytes": 500,
        "checkpoints_kept": False,
        "stage_bytes": 102,
    }
    left = sorted(p.relative_to(ctx.stage_dir).as_posix() for p in ctx.stage_dir.rglob("*") if p.is_file())
    assert left == ["final/model.safetensors", "phases/1-short/phase.json"]


def test_keep_checkpoints_keeps_them(tmp_path: Path) -> None:
    ctx, recorded = make_ctx(tmp_path, keep=True)
    disk = settle_stage_files(ctx)
    assert disk["checkpoints_kept"] and disk["checkpoints_bytes"] == 500 and disk["stage_bytes"] == 602
    assert (ctx.stage_dir / "checkpoints" / "checkpoint-10").is_dir()


def test_keep_checkpoints_does_not_change_the_stage_hash() -> None:
    from pipeline.config import stage_hashes

    def hashes(keep: bool) -> dict[str, str]:
        return stage_hashes(
            recipe_from_dict(
                {
                    "run": {"name": "r"},
                    "model": {"name_or_path": "builtin:tiny"},
                    "stages": {"s": {"kind": "sft", "data": [{"source": "builtin:math", "size": 4}],
                                     "train": {"keep_checkpoints": keep}}},
                }
            )
        )  # fmt: skip

    assert hashes(True) == hashes(False)


class FakeAccelerator:
    is_main_process = True

    def unwrap_model(self, model: Any) -> Any:
        return model

    def wait_for_everyone(self) -> None:
        pass


@pytest.mark.parametrize(("bf16", "dtype"), [(True, torch.bfloat16), (False, torch.float32)])
def test_save_trained_writes_the_training_half_precision(
    tmp_path: Path, bf16: bool, dtype: torch.dtype
) -> None:
    """A trainer's save (fp32 master weights) ends as a bf16 checkpoint when the stage trained in bf16."""
    from tokenizers import Tokenizer, models
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from pipeline.stages.base import save_trained

    model = tiny_model()
    trainer = SimpleNamespace(
        model=model,
        accelerator=FakeAccelerator(),
        args=SimpleNamespace(bf16=bf16, fp16=False),
        save_model=lambda path: model.save_pretrained(path),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, "<unk>"))
    )
    save_trained(trainer, tokenizer, tmp_path / "final")
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "final").dtype == dtype
    assert not (tmp_path / "final.tmp").exists()


def test_16_bit_weights_from_zero3_get_a_matching_config(tmp_path: Path) -> None:
    """ZeRO-3 gathers 16-bit weights itself: nothing to rewrite, but the config must not say float32."""
    model = tiny_model()
    model.save_pretrained(
        tmp_path, state_dict={k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    )
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "float32"
    assert cast_checkpoint(tmp_path, "bfloat16") == 0
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
