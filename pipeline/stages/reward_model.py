"""Reward-model stage: TRL ``RewardTrainer`` (Bradley–Terry) on preference pairs.

The model starts from the current policy checkpoint (or the stage's ``init``: another stage, a path
or a hub id) with a fresh scalar head, and is saved as an ``AutoModelForSequenceClassification``
(``num_labels=1``) checkpoint with its tokenizer, which later stages name for ``reward_model`` /
``if_rm`` rewards or as a judge. The policy itself is untouched (``PRODUCES_POLICY = False``).

Pairs come as ``prompt`` + ``chosen`` / ``rejected`` (strings or messages; without ``prompt`` the two
conversations share their prompt turns), or HelpSteer3-style as ``context`` (messages), ``response1``,
``response2`` and ``overall_preference`` (negative: response 1 is better, positive: response 2, 0: a
tie, which is dropped). After training, the pairwise accuracy on held-out pairs (a share of the data,
or ``eval_data``) goes into the stage summary.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pipeline.config import DataSource, StageConfig
from pipeline.schema import NON_NEGATIVE, ConfigError, Range
from pipeline.stages.base import (
    MetricsCallbackFactory,
    StageContext,
    StageResult,
    make_config,
    resume_point,
    save_trained,
    train_summary,
    trainer_kwargs,
)

log = logging.getLogger(__name__)

PRODUCES_POLICY = False  # the cascade goes on from the policy this stage started from

PairFormat = Literal["auto", "chosen_rejected", "helpsteer3"]


@dataclass
class Config(StageConfig):
    TRAINER_CONFIG: ClassVar[str] = "trl:RewardConfig"  # train.extra may hold its fields

    pair_format: PairFormat = "auto"  # auto: HelpSteer3 columns when present, else chosen/rejected
    eval_fraction: float = 0.05  # share of the pairs held out for pairwise accuracy (without eval_data)
    eval_size: int | None = None  # number of pairs held out (overrides eval_fraction)
    eval_data: list[DataSource] = field(default_factory=list)  # separate held-out pairs (e.g. a test split)
    eval_batch_size: int | None = None  # pairs per scoring batch (None: train.batch_size)
    center_rewards_coefficient: float | None = None  # TRL's auxiliary loss keeping scores centred on 0

    RANGES: ClassVar[dict[str, Range]] = {"center_rewards_coefficient": NON_NEGATIVE}

    def validate(self, key: str) -> None:
        super().validate(key)
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"key '{key}.eval_fraction' must be in [0, 1), got {self.eval_fraction}")
        if self.eval_size is not None and self.eval_size < 0:
            raise ConfigError(f"key '{key}.eval_size' must not be negative, got {self.eval_size}")
        if self.eval_batch_size is not None and self.eval_batch_size <= 0:
            raise ConfigError(f"key '{key}.eval_batch_size' must be positive, got {self.eval_batch_size}")


# --------------------------------------------------------------------------------------------------
# Pairs


def _messages(value: Any) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in value]


def to_pair(row: dict[str, Any], pair_format: str, mode: str, fmt: Any = None) -> Any:
    """A conversational pair ``{prompt, chosen, rejected}`` (messages), or SKIP for a tie.

    Raises RowError with the reason for a row that is no pair.
    """
    from pipeline.data.formatting import PLAIN, rl_prompt
    from pipeline.data.presets import SKIP, RowError
    from pipeline.data.sources import is_messages, is_prompt, is_str

    fmt = fmt or PLAIN
    if pair_format == "auto":
        pair_format = "helpsteer3" if "overall_preference" in row else "chosen_rejected"
    if pair_format == "helpsteer3":
        pref, context = row.get("overall_preference"), row.get("context")
        if isinstance(pref, bool) or not isinstance(pref, (int, float)):
            raise RowError("'overall_preference' is not a number")
        if not is_prompt(context):
            raise RowError("'context' is neither text nor a conversation")
        if not (is_str(row.get("response1")) and is_str(row.get("response2"))):
            raise RowError("'response1' or 'response2' is not text")
        if pref == 0:
            return SKIP  # a tie: counted apart from unusable rows
        better, worse = ("response1", "response2") if pref < 0 else ("response2", "response1")
        return {
            "prompt": rl_prompt(context, mode, fmt),
            "chosen": [{"role": "assistant", "content": row[better]}],
            "rejected": [{"role": "assistant", "content": row[worse]}],
        }
    chosen, rejected, prompt = row.get("chosen"), row.get("rejected"), row.get("prompt")
    if is_prompt(prompt):
        if is_str(chosen) and is_str(rejected):
            chosen = [{"role": "assistant", "content": chosen}]
            rejected = [{"role": "assistant", "content": rejected}]
        if not (is_messages(chosen) and is_messages(rejected)):
            raise RowError("'chosen' and 'rejected' are not both text or both conversations")
        return {
            "prompt": rl_prompt(prompt, mode, fmt),
            "chosen": _messages(chosen),
            "rejected": _messages(rejected),
        }
    # No prompt column: two full conversations that share every turn but the last.
    shared = (
        is_messages(chosen)
        and is_messages(rejected)
        and len(chosen) == len(rejected) >= 2
        and _messages(chosen[:-1]) == _messages(rejected[:-1])
    )
    if not shared:
        raise RowError(
            "no 'prompt', and 'chosen' / 'rejected' are not conversations that share every turn but the last"
        )
    return {
        "prompt": _messages(chosen[:-1]),
        "chosen": _messages(chosen[-1:]),
        "rejected": _messages(rejected[-1:]),
    }


def load_pairs(
    ctx: StageContext[Config], sources: list[DataSource], seed: int, scratch: Path, name: str
) -> Any:
    """The usable pairs of ``sources`` as a typed ``Dataset`` (prompt, chosen, rejected), and the ties left out.

    Ties are skipped rather than counted as unusable rows, so that a data set with many of them does not
    trip the loader's guard against wrong column mappings.
    """
    from pipeline.data.sources import load_rows, row_mode
    from pipeline.data.table import typed_map

    cfg = ctx.config
    counter = iter(range(1 << 62))
    fmt = cfg.prompt.format()

    def transform(row: dict[str, Any]) -> Any:
        mode = row_mode(cfg.prompt_mode, cfg.think_fraction, next(counter), seed)
        return to_pair(row, cfg.pair_format, mode, fmt)

    data = load_rows(sources, {}, seed, transform=transform, scratch=scratch / name)
    pairs, _ = typed_map(data.dataset, lambda row, i: row, desc=f"{ctx.name}: {name} pairs",
                         cache_file=scratch / f"{name}.arrow")  # fmt: skip
    ties = sum(r.skipped for r in data.reports)
    log.info(
        "stage %s: %d preference pairs, %d ties left out (%s)", ctx.name, len(pairs), ties, data.describe()
    )
    return pairs, ties


def split_pairs(ctx: StageContext[Config]) -> tuple[Any, Any, int]:
    """Training pairs, held-out pairs (None without any) and the ties left out, as memory-mapped ``Dataset``s.

    Built once, by the main process, into the stage's ``data/`` folder; every process memory-maps it.
    The rows are shuffled by the loader already, so the held-out pairs are the last ones.
    """
    from datasets import DatasetDict

    from pipeline.data.table import STAGE_DATA, build_once

    cfg = ctx.config

    def build(scratch: Path) -> Any:
        pairs, ties = load_pairs(ctx, cfg.data, ctx.seed, scratch, "train")
        if cfg.eval_data:
            held_out, eval_ties = load_pairs(ctx, cfg.eval_data, ctx.seed + 1, scratch, "eval")
            train, ties = pairs, ties + eval_ties
        else:
            n = cfg.eval_size if cfg.eval_size is not None else round(cfg.eval_fraction * len(pairs))
            if cfg.eval_fraction > 0 and cfg.eval_size is None:
                n = max(1, n)
            if n >= len(pairs):
                raise ConfigError(
                    f"key 'stages.{ctx.name}.eval_size' holds out {n} of {len(pairs)} pairs, leaving none to train on"
                )
            train, held_out = (
                pairs.select(range(len(pairs) - n)),
                pairs.select(range(len(pairs) - n, len(pairs))),
            )
        tables = {"train": train, "eval": held_out} if len(held_out) else {"train": train}
        return DatasetDict(tables), {"ties": ties}

    tables, counts = build_once(ctx.stage_dir / STAGE_DATA, build)
    return tables.get("train"), tables.get("eval"), counts["ties"]


# --------------------------------------------------------------------------------------------------
# Accuracy


def pairwise_accuracy(trainer: Any) -> tuple[int, int]:
    """(correct, total) over the trainer's eval pairs: chosen scored strictly above rejected.

    Every process scores its shard (collectively, as ZeRO-3 requires); ``gather_for_metrics`` drops
    the padding duplicates of the last batch, so the counts are exact.
    """
    import torch

    dataloader = trainer.get_eval_dataloader()
    model = trainer.model
    was_training = model.training
    model.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for batch in dataloader:
            scores = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
            chosen, rejected = scores.float().chunk(2)
            wins = trainer.accelerator.gather_for_metrics((chosen > rejected).long())
            correct += int(wins.sum())
            total += int(wins.numel())
    model.train(was_training)
    return correct, total


# --------------------------------------------------------------------------------------------------


def run(ctx: StageContext[Config]) -> StageResult:
    from trl import RewardConfig, RewardTrainer

    from pipeline.hub import loading
    from pipeline.models import load_tokenizer, model_kwargs, peft_config

    cfg = ctx.config
    train_pairs, eval_pairs, ties = split_pairs(ctx)
    tokenizer = load_tokenizer(ctx.init_path, ctx.recipe.model)
    # the model.* keys (dtype, attention, remote code, offline cache) as for the policy; TRL loads the model
    init_kwargs = model_kwargs(
        ctx.init_path, ctx.recipe.run.precision, True, cfg.lora.enabled, ctx.recipe.model
    )
    init_kwargs["dtype"] = str(init_kwargs["dtype"]).removeprefix("torch.")
    args = make_config(
        RewardConfig,
        {
            **trainer_kwargs(ctx),
            "max_length": cfg.train.max_length,
            "per_device_eval_batch_size": cfg.eval_batch_size or cfg.train.batch_size,
            "center_rewards_coefficient": cfg.center_rewards_coefficient,
            "model_init_kwargs": init_kwargs,
            "eval_strategy": "no",
            "dataset_num_proc": None,
            **cfg.train.extra,
        },
    )
    metrics = MetricsCallbackFactory.create(ctx)
    with loading(ctx.init_path, init_kwargs.get("revision")):  # a hub id out of reach: from the cache
        trainer = RewardTrainer(
            model=ctx.init_path,  # loaded as AutoModelForSequenceClassification with num_labels=1
            args=args,
            train_dataset=train_pairs,
            eval_dataset=eval_pairs,
            processing_class=tokenizer,
            peft_config=peft_config(cfg.lora, task_type="SEQ_CLS"),
            callbacks=[metrics, *ctx.callbacks],
        )
    t0 = time.monotonic()
    output = trainer.train(resume_from_checkpoint=resume_point(ctx))
    summary = train_summary(trainer, metrics, output, time.monotonic() - t0)
    summary.update(pairs=len(train_pairs), ties_dropped=ties, train_accuracy=metrics.last.get("accuracy"))
    if eval_pairs is not None:
        correct, total = pairwise_accuracy(trainer)
        summary.update(
            pairwise_accuracy=round(correct / total, 4) if total else None,
            eval_pairs=total,
            eval_pairs_too_long=len(eval_pairs) - total,
        )
        log.info("stage %s: held-out pairwise accuracy %d/%d", ctx.name, correct, total)
        ctx.tracker.log_stage(
            ctx.name, {"pairwise_accuracy": correct / max(total, 1)}, step=trainer.state.global_step
        )
    else:
        summary.update(pairwise_accuracy=None, eval_pairs=0)
    save_trained(trainer, tokenizer, ctx.final_dir)
    return StageResult(summary)
