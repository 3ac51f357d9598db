"""The plan's cost before a run: parameters from a config, tokens per stage kind, GPU-hours, disk."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from pipeline.config import recipe_from_dict
from pipeline.estimate import (
    THROUGHPUT,
    Tokens,
    count_rows,
    estimate_plan,
    gpu_hours,
    parameters_from_config,
    plan_disk,
    stage_tokens,
)

QWEN3_8B = {  # the dimensions of Qwen/Qwen3-8B-Base's config.json
    "model_type": "qwen3", "hidden_size": 4096, "num_hidden_layers": 36, "intermediate_size": 12288,
    "vocab_size": 151936, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
    "tie_word_embeddings": False,
}  # fmt: skip


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 96, "vocab_size": 300,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": True},
        {"model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 3, "intermediate_size": 80, "vocab_size": 300,
         "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 32, "tie_word_embeddings": False},
        {"model_type": "llama", "hidden_size": 48, "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 200,
         "num_attention_heads": 3, "num_key_value_heads": 1, "tie_word_embeddings": True, "attention_bias": True},
        {"model_type": "mistral", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 100, "vocab_size": 256,
         "num_attention_heads": 8, "num_key_value_heads": 2, "tie_word_embeddings": False},
        {"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 100, "vocab_size": 256,
         "num_attention_heads": 8, "num_key_value_heads": 2, "tie_word_embeddings": True},
    ],
)  # fmt: skip
def test_parameters_from_config_match_the_built_model(config: dict) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    assert parameters_from_config(config) == sum(p.numel() for p in model.parameters())


def test_qwen3_8b_has_the_parameters_its_model_card_gives() -> None:
    assert round(parameters_from_config(QWEN3_8B) / 1e9, 1) == 8.2  # model card: 8.2B


def test_configs_the_arithmetic_does_not_describe() -> None:
    assert parameters_from_config({**QWEN3_8B, "num_experts": 128}) is None
    assert parameters_from_config({"hidden_size": 4}) is None


def recipe(stages: dict, benchmarks: dict | None = None, **run: object) -> object:
    return recipe_from_dict(
        {
            "run": {"name": "r", **run},
            "model": {"name_or_path": "builtin:tiny"},
            "stages": stages,
            "benchmarks": benchmarks or {},
        }
    )


MATH = {"source": "builtin:math", "size": 64}


@pytest.mark.parametrize(
    ("stage", "world", "expected"),
    [
        # SFT: steps × batch × accumulation × processes sequences of at most max_length tokens
        ({"kind": "sft", "train": {"max_steps": 10, "batch_size": 4, "grad_accum": 2, "max_length": 100}}, 1,
         Tokens(trained=10 * 4 * 2 * 100)),
        ({"kind": "sft", "train": {"max_steps": 10, "batch_size": 4, "grad_accum": 2, "max_length": 100}}, 8,
         Tokens(trained=10 * 4 * 2 * 8 * 100)),
        # packed rows are full: max_length tokens each, at the packed share
        ({"kind": "sft", "packing": True, "train": {"max_steps": 10, "batch_size": 4, "max_length": 100}}, 1,
         Tokens(packed=10 * 4 * 100)),
        # epochs over 64 rows at 16 rows per step: 4 steps an epoch
        ({"kind": "sft", "train": {"epochs": 2, "batch_size": 16, "max_length": 10}}, 1, Tokens(trained=8 * 16 * 10)),
        # a reward model reads two answers per pair
        ({"kind": "reward_model", "train": {"max_steps": 5, "batch_size": 4, "max_length": 50}}, 1,
         Tokens(trained=5 * 4 * 2 * 50)),
        # GRPO: completions per step × completion length, judged when a reward model scores them
        ({"kind": "grpo", "rewards": [{"name": "math"}], "max_completion_length": 32,
          "train": {"max_steps": 3, "batch_size": 16}}, 1, Tokens(rl_trained=3 * 16 * 32, generated=3 * 16 * 32)),
        ({"kind": "grpo", "rewards": [{"name": "reward_model", "args": {"model_path": "x/y"}}],
          "max_completion_length": 32, "train": {"max_steps": 3, "batch_size": 16}}, 1,
         Tokens(rl_trained=3 * 16 * 32, generated=3 * 16 * 32, scored=3 * 16 * 32)),
        # phases: each phase's steps at its own length
        ({"kind": "grpo", "rewards": [{"name": "math"}], "train": {"batch_size": 8},
          "phases": [{"name": "a", "steps": 2, "max_completion_length": 10},
                     {"name": "b", "steps": 1, "max_completion_length": 30}]}, 1,
         Tokens(rl_trained=8 * (2 * 10 + 1 * 30), generated=8 * (2 * 10 + 1 * 30))),
    ],
)  # fmt: skip
def test_stage_tokens(stage: dict, world: int, expected: Tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", str(world))
    r = recipe({"s": {**stage, "data": [MATH]}})
    assert stage_tokens("s", r.stages["s"], world) == expected


def test_epochs_over_a_hub_dataset_are_not_counted() -> None:
    r = recipe({"s": {"kind": "sft", "data": [{"source": "org/data"}], "train": {"epochs": 1}}})
    tokens = stage_tokens("s", r.stages["s"], 1)
    assert tokens.trained == 0 and tokens.unknown == [
        "stage s (1 epochs of data whose size is read at run time)"
    ]


def test_gpu_hours_follow_the_flop_counts() -> None:
    gpu = THROUGHPUT["H100"]
    params, tokens = (
        1_000_000_000,
        Tokens(trained=1000, packed=700, rl_trained=500, generated=2000, scored=3000),
    )
    own, judge = gpu.shares(params), gpu.shares(5 * params)
    expected = (
        6 * params * 1000 / (gpu.peak_flops * own.train)
        + 6 * params * 700 / (gpu.peak_flops * own.packed_train)
        + 6 * params * 500 / (gpu.peak_flops * own.rl_train)
        + 2 * params * 2000 / (gpu.peak_flops * own.generate)
        + 2 * 5 * params * 3000 / (gpu.peak_flops * judge.train)
    ) / 3600
    assert gpu_hours(tokens, params, 5 * params, gpu) == pytest.approx(expected)


def test_shares_come_from_the_measured_and_assumed_points() -> None:
    gpu = THROUGHPUT["H100"]
    small, large = gpu.points[0], gpu.points[-1]
    assert "measured" in small.source and small.params == 354.5e6  # docs/results/performance.md
    assert gpu.shares(1e6) == small and gpu.shares(70e9) == large  # the nearest point outside them
    middle = gpu.shares(math.sqrt(small.params * large.params))  # half-way in log(params)
    assert middle.train == pytest.approx((small.train + large.train) / 2)
    assert middle.generate == pytest.approx((small.generate + large.generate) / 2)
    assert "interpolated" in middle.source


def test_benchmark_rows_come_from_sizes_files_and_known_splits(tmp_path: Path) -> None:
    rows = tmp_path / "b.jsonl"
    rows.write_text("\n".join(json.dumps({"prompt": f"p{i}", "answer": "1"}) for i in range(7)) + "\n")
    r = recipe(
        {"s": {"kind": "sft", "data": [MATH], "train": {"max_steps": 1}}},
        {
            "local": {"domain": "math", "data": {"source": str(rows)}, "scorer": {"reward": "math"},
                      "generation": {"max_new_tokens": 10, "n": 2}},
            "known": {"data": {"preset": "math500"}, "generation": {"max_new_tokens": 10}},
            "hub": {"domain": "math", "data": {"source": "org/unknown"}, "scorer": {"reward": "math"}},
        },
    )  # fmt: skip
    plan = estimate_plan(r)
    assert plan.baseline.generated == 7 * 2 * 10 + 500 * 10
    assert plan.unknown == ["benchmark hub (rows of org/unknown)"]
    assert count_rows(rows) == 7


def test_a_plan_estimates_every_stage_and_its_evaluations() -> None:
    r = recipe(
        {
            "sft": {"kind": "sft", "data": [MATH], "train": {"max_steps": 2, "batch_size": 4, "max_length": 64}},
            "math_rl": {"kind": "grpo", "domain": "math", "data": [MATH], "rewards": [{"name": "math"}],
                        "max_completion_length": 16, "train": {"max_steps": 2, "batch_size": 8}},
        },
        {"math": {"domain": "math", "data": {"source": "builtin:math", "split": "test", "size": 10},
                  "scorer": {"reward": "math"}, "generation": {"max_new_tokens": 8}}},
    )  # fmt: skip
    plan = estimate_plan(r)
    assert plan.params and plan.params_source == "builtin model config"
    assert [s.name for s in plan.stages] == ["sft", "math_rl"]
    assert plan.stages[1].evaluation.generated == 10 * 8  # eval.after trained: math after math_rl
    assert plan.hours == pytest.approx(plan.baseline_hours + sum(s.hours for s in plan.stages))


def test_disk_plan_counts_finals_and_the_largest_stage_checkpoints(tmp_path: Path) -> None:
    stages = {
        "a": {
            "kind": "sft",
            "data": [MATH],
            "train": {"max_steps": 10, "save_steps": 5, "save_total_limit": 3},
        },
        "b": {
            "kind": "sft",
            "data": [MATH],
            "train": {"max_steps": 10, "save_steps": 2, "save_total_limit": 3},
        },
    }
    r = recipe(stages, output_dir=str(tmp_path / "runs"), precision="fp32")
    disk = plan_disk(r, params=1000)
    assert disk.base == 4000 and disk.finals == 2 * 4000
    assert disk.checkpoints == 3 * 1000 * 12  # b: 3 kept; a: 2 saves; pruned after each stage
    r = recipe(
        {k: {**v, "train": {**v["train"], "keep_checkpoints": True}} for k, v in stages.items()},
        output_dir=str(tmp_path / "runs"),
        precision="fp32",
    )
    assert plan_disk(r, params=1000).checkpoints == (2 + 3) * 1000 * 12  # kept: they add up


def test_dry_run_warns_when_the_disk_cannot_hold_the_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.describe import describe_plan

    r = recipe(
        {"a": {"kind": "sft", "data": [MATH], "train": {"max_steps": 2}}}, output_dir=str(tmp_path / "runs")
    )
    assert "WARNING" not in describe_plan(r, world=1)
    monkeypatch.setattr(
        shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000)
    )
    text = describe_plan(r, world=1)
    assert "WARNING: the run directory's disk cannot hold the planned checkpoints" in text
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing
