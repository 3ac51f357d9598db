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
    ("bad", "skipped"),
    [(None, False), (float("nan"), True), (float("inf"), True), (-float("inf"), True), (1e30, False)],
)
def test_a_step_with_a_non_finite_gradient_is_skipped_and_counted(
    tmp_path: Path, device: str, bad: float | None, skipped: bool
) -> None:
    """One non-finite element anywhere skips the whole optimizer step: weights, Adam's moments and its step
    count stay as they were. Finite gradients, however large, reach the optimizer untouched."""
    import torch

    from pipeline.stages.base import MetricsCallbackFactory

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    callback = MetricsCallbackFactory.create(context(tmp_path))
    for step in range(2):  # a clean step first, so that Adam has momentum a zeroed gradient would apply
        model(torch.ones(2, 3, device=device)).sum().backward()
        if step == 1 and bad is not None:
            model[1].weight.grad[1, 2] = bad
        weights = [p.detach().clone() for p in model.parameters()]
        moments = [optimizer.state[p]["exp_avg"].clone() for p in model.parameters()] if step else []
        grads = [p.grad.clone() for p in model.parameters()]
        callback.on_pre_optimizer_step(None, type("State", (), {"global_step": step})(), None, model=model)
        if step == 0 or not skipped:
            assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
        optimizer.step()
        optimizer.zero_grad()
    assert callback.skipped_steps == int(skipped)
    unchanged = all(torch.equal(p, w) for p, w in zip(model.parameters(), weights, strict=True))
    still = all(
        torch.equal(optimizer.state[p]["exp_avg"], m)
        for p, m in zip(model.parameters(), moments, strict=True)
    )
    assert unchanged is still is skipped
    assert all(int(optimizer.state[p]["step"]) == 2 - skipped for p in model.parameters())


def test_a_loss_scaler_sees_the_overflowing_gradients_itself(tmp_path: Path) -> None:
    """Under fp16 the loss scaler skips an overflowing step and lowers its scale; it needs the gradients."""
    import torch

    from pipeline.stages.base import MetricsCallbackFactory

    model = torch.nn.Linear(3, 2)
    model(torch.ones(2, 3)).sum().backward()
    model.weight.grad[0, 0] = float("inf")
    optimizer = type("AcceleratedOptimizer", (), {"scaler": torch.amp.GradScaler("cpu")})()
    callback = MetricsCallbackFactory.create(context(tmp_path))
    callback.on_pre_optimizer_step(None, None, None, model=model, optimizer=optimizer)
    assert callback.skipped_steps == 0 and model.weight.grad is not None
