"""The plan a recipe makes, as ``dry_run=true`` prints it: stages in order with their data and main
hyper-parameters, the benchmarks, the gate."""

from __future__ import annotations

from pipeline.config import Recipe


def describe_plan(recipe: Recipe) -> str:
    """A human-readable plan: stages in order with kind, data, steps, main hyper-parameters; benchmarks."""
    lines = [
        f"recipe {recipe.source or '?'} → run directory {recipe.run_dir}",
        f"model: {recipe.model.name_or_path}",
    ]
    lines.append(f"seed {recipe.run.seed}, precision {recipe.run.precision}, tracking {recipe.tracking.mode}")
    lines.append("stages:")
    for i, (name, s) in enumerate(recipe.stages.items(), start=1):
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
        )
        for src in s.data:
            size = f"{src.size} rows" if src.size else "all rows"
            lines.append(f"       data {src.source} [{src.split}] {size}, weight {src.weight:g}")
        extra = getattr(s, "describe", None)
        if callable(extra):
            lines.extend(f"       {line}" for line in extra())
    lines.append(f"benchmarks (evaluated after: {recipe.eval.after if recipe.eval.enabled else 'never'}):")
    for name, b in recipe.benchmarks.items():
        g = b.generation
        lines.append(
            f"  {name:<14} domain={b.domain:<11} {b.data.source} [{b.data.split}] {b.data.size or 'all'} prompts, "
            f"scorer {b.scorer.reward} ({b.scorer.metric}), n={g.n}, max_new_tokens {g.max_new_tokens}, "
            f"T={g.temperature:g}, {b.prompt_mode}" + (", always" if b.always else "")
        )
    gate = recipe.gate
    lines.append(f"gate: policy {gate.policy}, tolerance {gate.tolerance:g}, alpha {gate.alpha:g}")
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
