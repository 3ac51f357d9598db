"""Beside a DeepSpeed ZeRO-3 stage, frozen models load whole and the stage's config ends with the stage.

A ZeRO-3 trainer's arguments register their config in transformers, which then partitions every model
``from_pretrained`` loads. These tests register such a config (as the arguments do) and check what loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.config import BuiltinModelConfig
from pipeline.models import build_builtin_model, end_deepspeed_stage, load_causal_lm, whole_weights
from pipeline.stages.grpo.config import MODE_COLUMN
from pipeline.stages.grpo.rewards import StageReward

TINY = BuiltinModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)


def zero3_enabled() -> bool:
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    return bool(is_deepspeed_zero3_enabled())


@pytest.fixture
def zero3_stage():
    """What a ZeRO-3 trainer's arguments leave behind: a registered ZeRO-3 config (kept alive here)."""
    from transformers.integrations.deepspeed import HfDeepSpeedConfig, unset_hf_deepspeed_config

    config = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    assert zero3_enabled()
    yield config
    unset_hf_deepspeed_config()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_builtin_model("builtin:tiny", TINY, tmp_path_factory.mktemp("model") / "base", seed=0)


def test_whole_weights_suspends_zero3_and_restores_it(zero3_stage: Any) -> None:
    with whole_weights():
        assert not zero3_enabled()
    assert zero3_enabled()


def test_whole_weights_restores_zero3_after_an_error(zero3_stage: Any) -> None:
    with pytest.raises(KeyError), whole_weights():
        raise KeyError("a reward failed")
    assert zero3_enabled()


def test_whole_weights_without_deepspeed_changes_nothing() -> None:
    with whole_weights():
        assert not zero3_enabled()
    assert not zero3_enabled()


def test_evaluation_replica_loads_whole_inside_a_zero3_stage(zero3_stage: Any, checkpoint: Path) -> None:
    reference = load_causal_lm(str(checkpoint), "fp32")
    zero3 = load_causal_lm(str(checkpoint), "fp32")  # training=False: an evaluation replica
    assert zero3_enabled()
    for (name, a), (_, b) in zip(reference.state_dict().items(), zero3.state_dict().items(), strict=True):
        assert a.shape == b.shape and a.equal(b), name
    assert zero3.get_input_embeddings().weight.dim() == 2


def test_rewards_are_called_with_zero3_suspended(zero3_stage: Any) -> None:
    seen: list[bool] = []

    def reward(completions: list[Any], **columns: Any) -> list[float]:
        seen.append(zero3_enabled())  # a reward model loaded here would be partitioned if this were True
        return [1.0] * len(completions)

    for mode in ("any", "think"):
        StageReward(reward, "r", mode)(["a", "b"], **{MODE_COLUMN: ["think", "no_think"]})
    assert seen == [False, False]  # called once per mode
    assert zero3_enabled()


def test_end_of_stage_forgets_the_config(zero3_stage: Any) -> None:
    end_deepspeed_stage()
    assert not zero3_enabled()
