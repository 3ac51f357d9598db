"""What the stages hand to TRL: the recipe's settings, not TRL's own defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import recipe_from_dict
from pipeline.stages.base import StageContext, make_config, trainer_kwargs
from pipeline.tracking import Tracker


def context(tmp_path: Path, **train: object) -> StageContext:
    recipe = recipe_from_dict(
        {
            "run": {"name": "args", "output_dir": str(tmp_path)},
            "model": {"name_or_path": "builtin:tiny"},
            "stages": {"s": {"kind": "sft", "data": [{"source": "builtin:math", "size": 4}], "train": train}},
        }
    )
    return StageContext(
        recipe=recipe, name="s", index=1, config=recipe.stages["s"], init_path="x",
        stage_dir=tmp_path / "s", resume=False, tracker=Tracker(recipe, tmp_path, is_main=False),
    )  # fmt: skip


@pytest.mark.parametrize("config_name", ["SFTConfig", "RewardConfig", "GRPOConfig"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradient_checkpointing_follows_the_recipe(
    tmp_path: Path, config_name: str, checkpointing: bool
) -> None:
    """TRL's configs turn gradient checkpointing on by default; a stage must get what the recipe says."""
    import trl

    args = make_config(
        getattr(trl, config_name), trainer_kwargs(context(tmp_path, gradient_checkpointing=checkpointing))
    )
    assert args.gradient_checkpointing is checkpointing


def test_training_settings_reach_the_trainer(tmp_path: Path) -> None:
    import trl

    ctx = context(tmp_path, max_steps=7, learning_rate=3e-4, batch_size=4, grad_accum=2, save_steps=5)
    args = make_config(trl.SFTConfig, trainer_kwargs(ctx))
    assert (args.max_steps, args.learning_rate, args.per_device_train_batch_size) == (7, 3e-4, 4)
    assert (args.gradient_accumulation_steps, args.save_steps, args.seed) == (2, 5, ctx.seed)
    assert args.report_to == [] or args.report_to == "none" or args.report_to == ["none"]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize(
    ("bad", "dropped"),
    [(None, False), (float("nan"), True), (float("inf"), True), (-float("inf"), True), (1e30, False)],
)
def test_a_non_finite_gradient_is_dropped_and_counted(
    tmp_path: Path, device: str, bad: float | None, dropped: bool
) -> None:
    """One non-finite element anywhere zeroes every gradient of that step (the optimizer then moves nothing
    but its own state); finite gradients, however large, reach the optimizer untouched."""
    import torch

    from pipeline.stages.base import MetricsCallbackFactory

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)).to(device)
    model(torch.ones(2, 3, device=device)).sum().backward()
    if bad is not None:
        model[1].weight.grad[1, 2] = bad
    before = [p.grad.clone() for p in model.parameters()]
    callback = MetricsCallbackFactory.create(context(tmp_path))
    callback.on_pre_optimizer_step(None, type("State", (), {"global_step": 0})(), None, model=model)
    after = [p.grad for p in model.parameters()]
    assert callback.skipped_steps == int(dropped)
    if dropped:
        assert all(not g.any() for g in after)
    else:
        assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))
