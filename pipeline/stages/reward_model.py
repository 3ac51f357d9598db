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
_TIE = "__tie__"


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


def to_pair(row: dict[str, Any], pair_format: str, mode: str, fmt: Any = None) -> dict[str, Any] | None:
    """A conversational pair ``{prompt, chosen, rejected}`` (messages), ``{_TIE: True}``, or None if unusable."""
    from pipeline.data.formatting import PLAIN, rl_prompt
    from pipeline.data.sources import is_messages, is_prompt, is_str

    fmt = fmt or PLAIN
    if pair_format == "auto":
        pair_format = "helpsteer3" if "overall_preference" in row else "chosen_rejected"
    if pair_format == "helpsteer3":
        pref, context = row.get("overall_preference"), row.get("context")
        if isinstance(pref, bool) or not isinstance(pref, (int, float)) or not is_prompt(context):
            return None
        if not (is_str(row.get("response1")) and is_str(row.get("response2"))):
            return None
        if pref == 0:
            return {_TIE: True}
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
            return None
        return {
            "prompt": rl_prompt(prompt, mode, fmt),
            "chosen": _messages(chosen),
            "rejected": _messages(rejected),
        }
    # No prompt column: two full conversations that share every turn but the last.
    if not (is_messages(chosen) and is_messages(rejected)) or len(chosen) < 2:
        return None
    if _messages(chosen[:-1]) != _messages(rejected[:-1]) or len(chosen) != len(rejected):
        return None
    return {
        "prompt": _messages(chosen[:-1]),
        "chosen": _messages(chosen[-1:]),
        "rejected": _messages(rejected[-1:]),
    }


def load_pairs(
    ctx: StageContext[Config], sources: list[DataSource], seed: int
) -> tuple[list[dict[str, Any]], int]:
    """The usable pairs of ``sources`` and the number of ties dropped.

    Ties are dropped here rather than as unusable rows, so that a data set with many of them does not
    trip the loader's guard against wrong column mappings.
    """
    from pipeline.data.sources import load_rows, row_mode

    cfg = ctx.config
    counter = iter(range(1 << 62))
    fmt = cfg.prompt.format()

    def transform(row: dict[str, Any]) -> dict[str, Any] | None:
        mode = row_mode(cfg.prompt_mode, cfg.think_fraction, next(counter), seed)
        return to_pair(row, cfg.pair_format, mode, fmt)

    data = load_rows(sources, {}, seed, transform=transform)
    pairs = [p for p in data.rows if _TIE not in p]
    ties = len(data.rows) - len(pairs)
    log.info(
        "stage %s: %d preference pairs, %d ties dropped (%s)", ctx.name, len(pairs), ties, data.describe()
    )
    return pairs, ties


def split_pairs(ctx: StageContext[Config]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Training pairs, held-out pairs and ties dropped (rows are shuffled by the loader already)."""
    cfg = ctx.config
    pairs, ties = load_pairs(ctx, cfg.data, ctx.seed)
    if cfg.eval_data:
        held_out, eval_ties = load_pairs(ctx, cfg.eval_data, ctx.seed + 1)
        return pairs, held_out, ties + eval_ties
    n = cfg.eval_size if cfg.eval_size is not None else round(cfg.eval_fraction * len(pairs))
    if cfg.eval_fraction > 0 and cfg.eval_size is None:
        n = max(1, n)
    if n >= len(pairs):
        raise ConfigError(
            f"key 'stages.{ctx.name}.eval_size' holds out {n} of {len(pairs)} pairs, leaving none to train on"
        )
    return (pairs[: len(pairs) - n], pairs[len(pairs) - n :], ties) if n else (pairs, [], ties)


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
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from pipeline.models import load_tokenizer, peft_config, weights_dtype

    cfg = ctx.config
    train_pairs, eval_pairs, ties = split_pairs(ctx)
    tokenizer = load_tokenizer(ctx.init_path)
    args = make_config(
        RewardConfig,
        {
            **trainer_kwargs(ctx),
            "max_length": cfg.train.max_length,
            "per_device_eval_batch_size": cfg.eval_batch_size or cfg.train.batch_size,
            "center_rewards_coefficient": cfg.center_rewards_coefficient,
            "model_init_kwargs": {
                "dtype": str(weights_dtype(ctx.recipe.run.precision, True, cfg.lora.enabled)).removeprefix(
                    "torch."
                )
            },
            "eval_strategy": "no",
            "dataset_num_proc": None,
            **cfg.train.extra,
        },
    )
    metrics = MetricsCallbackFactory.create(ctx)
    trainer = RewardTrainer(
        model=ctx.init_path,  # loaded as AutoModelForSequenceClassification with num_labels=1
        args=args,
        train_dataset=Dataset.from_list(train_pairs),
        eval_dataset=Dataset.from_list(eval_pairs) if eval_pairs else None,
        processing_class=tokenizer,
        peft_config=peft_config(cfg.lora, task_type="SEQ_CLS"),
        callbacks=[metrics],
    )
    t0 = time.monotonic()
    output = trainer.train(resume_from_checkpoint=resume_point(ctx))
    summary = train_summary(trainer, metrics, output, time.monotonic() - t0)
    summary.update(pairs=len(train_pairs), ties_dropped=ties, train_accuracy=metrics.last.get("accuracy"))
    if eval_pairs:
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
