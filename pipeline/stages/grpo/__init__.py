"""GRPO stage: one stage kind for every RL domain of the cascade (RLHF, IF-RL, math, code, SWE).

A stage is configured by its data, its rewards (a weighted list of registry rewards, each optionally
limited to thinking or non-thinking prompts, all optionally wrapped by the language-mixing penalty) and
the GRPO hyper-parameters. The defaults are Nemotron-Cascade's: strictly on-policy (one optimizer step
per rollout batch, ``num_iterations=1``), no KL term and no reference model (``beta=0``), token-level
loss (``dapo``), no entropy bonus, 8 rollouts per prompt, temperature 0.6 and top-p 0.95. Groups whose
rewards do not vary contribute exactly no gradient and are counted; math RL adds per-epoch difficulty
filtering (``epoch_filter``), see :mod:`pipeline.stages.grpo.filters`.

``phases`` turns a stage into a length curriculum: phases run in order, each a trainer run of
``steps`` steps from the previous phase's weights, with its own generation length, temperature,
overlong filtering and truncated-answer score. Each phase keeps its own trainer checkpoints under
``phases/<k>-<name>/``; a killed stage resumes the phase it was in, and finished phases are skipped.

The package, one concern a module, imported one way (config ← data, rewards ← phases ← this module;
the trainer and its filters are imported only when a phase trains, so validating a recipe stays fast):

- ``config``: the recipe schema and every check of it that needs no model;
- ``data``: the prompts table and the full rows the rewards read;
- ``rewards``: registry rewards as the trainer calls them (modes, language penalty, truncated answers);
- ``phases``: the length curriculum, the ``GRPOConfig`` of a phase, one phase's training and record;
- ``trainer``: ``GRPOTrainer`` with exact dynamic filtering, epoch filtering and the counters;
- ``filters``: the pure filtering logic the trainer feeds.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.stages.base import StageContext, StageResult
from pipeline.stages.grpo.config import Config
from pipeline.stages.grpo.data import build_dataset
from pipeline.stages.grpo.phases import finished_phase, fresh_start, merge_phases, resolve_phases, run_phase
from pipeline.stages.grpo.rewards import reward_labels

__all__ = ["Config", "run"]

log = logging.getLogger(__name__)


def run(ctx: StageContext[Config]) -> StageResult:
    """Train the stage's phases in order (skipping finished ones) and return the merged summary."""
    from accelerate import PartialState

    from pipeline.stages.grpo.filters import EpochFilterState

    cfg = ctx.config
    phases = resolve_phases(ctx)
    state = PartialState()
    if not ctx.resume and state.is_main_process:
        fresh_start(ctx)
    state.wait_for_everyone()
    dataset, rows = build_dataset(ctx)
    names = reward_labels(cfg)
    init, filter_state = ctx.init_path, EpochFilterState()
    records: list[dict[str, Any]] = []
    ledger = [p.record("pending") for p in phases]
    for phase in phases:
        done = finished_phase(phase)
        if done is not None:
            log.info("stage %s: phase %s already finished; skipped", ctx.name, phase.name)
        else:
            ledger[phase.index] = phase.record("running")
            ctx.record({"phases": ledger})
            log.info(
                "stage %s: phase %d/%d %s (%s steps, max_completion_length %d)",
                ctx.name,
                phase.index + 1,
                len(phases),
                phase.name,
                phase.steps if phase.steps > 0 else "epochs",
                phase.max_completion_length,
            )
            run_phase(ctx, phase, init, dataset, rows, filter_state)
            done = finished_phase(phase)
            if done is None:
                raise RuntimeError(f"phase {phase.name} of stage {ctx.name} finished without its record")
        records.append({"name": phase.name, **done})
        filter_state = EpochFilterState.from_dict(done.get("epoch_filter", {}))
        ledger[phase.index] = phase.record("done", done["summary"])
        ctx.record({"phases": ledger})
        init = str(phase.out)
    return StageResult(merge_phases(records, names, cfg.threshold()))
