"""The plan a recipe makes, as ``dry_run=true`` prints it: stages in order with their data and main
hyper-parameters, the benchmarks, the gate; then what it will cost (tokens, GPU-hours, disk) from
:mod:`pipeline.estimate`, with a warning when the run directory's disk cannot hold the checkpoints."""

from __future__ import annotations

from pipeline.config import Recipe
from pipeline.estimate import DiskPlan, PlanEstimate, StageEstimate, Tokens, estimate_plan, plan_disk


def describe_plan(recipe: Recipe, world: int | None = None) -> str:
    """A human-readable plan: stages with kind, data, steps, hyper-parameters and cost; benchmarks; disk.

    ``world`` is the number of processes the run will have (default: the launch's ``WORLD_SIZE``, 1 for a
    plain ``python``): per-device batch sizes make the tokens of a stage depend on it.
    """
    from pipeline.stages.grpo.config import launched_world_size

    world = world or launched_world_size()
    estimate = estimate_plan(recipe, world)
    lines = [
        f"recipe {recipe.source or '?'} → run directory {recipe.run_dir}",
        f"model: {recipe.model.name_or_path} ({_params(estimate)})",
    ]
    lines.append(f"seed {recipe.run.seed}, precision {recipe.run.precision}, tracking {recipe.tracking.mode}")
    lines.append(f"stages ({world} process{'es' if world > 1 else ''}):")
    for i, ((name, s), cost) in enumerate(zip(recipe.stages.items(), estimate.stages, strict=True), start=1):
        t = s.train
        phases = getattr(s, "phases", None)
        if phases:
            steps = f"{sum(p.steps for p in phases)} steps in {len(phases)} phases"
        else:
            steps = f"{t.max_steps} steps" if t.max_steps > 0 else f"{t.epochs:g} epochs"
        lines.append(
            f"  {i:02d} {name:<10} kind={s.kind:<12} domain={s.domain or '-':<11} {steps}, lr {t.learning_rate:g}, "
            f"batch {t.batch_size}×{t.grad_accum}, max_length {t.max_length}, prompts {s.prompt_mode}"
            + (f", LoRA r={s.lora.r}" if s.lora.enabled else "")
            + (f", init {s.init}" if s.init else "")
            + (f", ZeRO-{t.zero_stage()}" if t.deepspeed else "")
        )
        for src in s.data:
            size = f"{src.size} rows" if src.size else "all rows"
            preset = f" (preset {src.preset})" if src.preset else ""
            lines.append(f"       data {src.source}{preset} [{src.split}] {size}, weight {src.weight:g}")
        extra = getattr(s, "describe", None)
        if callable(extra):
            lines.extend(f"       {line}" for line in extra())
        lines.append(f"       cost: {_stage_cost(cost, estimate)}")
    lines.append(f"benchmarks (evaluated after: {recipe.eval.after if recipe.eval.enabled else 'never'}):")
    for name, b in recipe.benchmarks.items():
        g = b.generation
        lines.append(
            f"  {name:<14} domain={b.domain:<11} {b.data.source} [{b.data.split}] {b.data.size or 'all'} prompts, "
            f"scorer {b.scorer.reward} ({b.scorer.metric}), n={g.n}, max_new_tokens {g.max_new_tokens}, "
            f"T={g.temperature:g}, top-p {g.top_p:g}, {b.prompt_mode}" + (", always" if b.always else "")
        )
    gate = recipe.gate
    lines.append(f"gate: policy {gate.policy}, tolerance {gate.tolerance:g}, alpha {gate.alpha:g}")
    lines.extend(_totals(estimate))
    if estimate.params is not None:
        lines.extend(_disk(plan_disk(recipe, estimate.params, world)))
    lines.extend(unchecked_lines(recipe))
    return "\n".join(lines)


def unchecked_lines(recipe: Recipe) -> list[str]:
    """What a dry run could not check on this machine: its missing packages, hub ids not in the caches."""
    from pipeline.hub import uncached

    problems = [*recipe.unchecked, *uncached(recipe)]
    if not problems:
        return []
    return [
        "not checked here (the run needs these; dry_run=data loads the data sets):",
        *(f"  - {p}" for p in problems),
    ]


def _params(estimate: PlanEstimate) -> str:
    if estimate.params is None:
        return f"parameters unknown: {estimate.params_source}"
    return f"{_count(estimate.params)} parameters, from the {estimate.params_source}"


def _count(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def _tokens(tokens: Tokens, unknown: bool = True) -> str:
    parts = [
        f"{label} ≤ {_count(value)} tokens"
        for label, value in (
            ("trains on", tokens.trained + tokens.packed + tokens.rl_trained),
            ("generates", tokens.generated),
            ("judge reads", tokens.scored),
        )
        if value
    ]
    if unknown and tokens.unknown:
        parts.append("not counted: " + "; ".join(tokens.unknown))
    return ", ".join(parts) or "no tokens"


def _h(hours: float) -> str:
    return f"{hours:,.0f}" if hours >= 100 else f"{hours:.3g}"


def _hours(hours: float | None, gpu: str) -> str:
    return "GPU-hours unknown" if hours is None else f"≈ {_h(hours)} GPU-h ({gpu})"


def _stage_cost(cost: StageEstimate, estimate: PlanEstimate) -> str:
    steps = "? steps" if cost.steps is None else f"{cost.steps} steps"
    return (
        f"{steps}, {_tokens(cost.train)}; evaluation after it {_tokens(cost.evaluation, unknown=False)} → "
        f"{_hours(cost.hours, estimate.gpu.name)}"
    )


def _totals(estimate: PlanEstimate) -> list[str]:
    gpu = estimate.gpu
    shares = gpu.shares(estimate.params or 0)
    lines = [
        f"estimate on {gpu.name} ({gpu.peak_flops / 1e12:.0f} TFLOP/s peak; shares of it at this model's size: "
        f"{shares.train:.1%} training ({shares.packed_train:.1%} packed), {shares.rl_train:.1%} RL training, "
        f"{shares.generate:.1%} generating — "
        f"{shares.source}; pipeline/estimate.py):",
        f"  baseline evaluation: {_tokens(estimate.baseline)} → {_hours(estimate.baseline_hours, gpu.name)}",
    ]
    total = estimate.hours
    if total is None:
        lines.append("  total: unknown (the model's parameters are unknown here)")
        return lines
    counted = "" if not estimate.unknown else " of what is counted"
    lines.append(
        f"  total{counted} ≈ {_h(total)} GPU-h, ≈ {_h(total / estimate.world)} h of wall time on {estimate.world} "
        f"GPU{'s' if estimate.world > 1 else ''} (prompt tokens of RL stages not counted)"
    )
    if estimate.unknown:
        lines.append("  not counted: " + "; ".join(estimate.unknown))
    return lines


def _disk(disk: DiskPlan) -> list[str]:
    gb = 1e9
    lines = [
        f"disk: ≈ {disk.total / gb:.3g} GB at the fullest (starting model {disk.base / gb:.3g}, final checkpoints "
        f"{disk.finals / gb:.3g}, trainer checkpoints {disk.checkpoints / gb:.3g}); "
        f"{disk.free / gb:.3g} GB available at {disk.where}"
    ]
    if disk.short:
        lines.append(
            f"WARNING: the run directory's disk cannot hold the planned checkpoints: it needs ≈ {disk.total / gb:.3g} GB "
            f"and {disk.free / gb:.3g} GB are available; free space, set run.output_dir to a larger disk, or lower "
            "train.save_total_limit"
        )
    return lines
