"""Supervised fine-tuning stage: TRL ``SFTTrainer`` on conversations, assistant-only loss by default.

Rows are ``messages`` conversations, or ``prompt`` + ``response`` (+ ``reasoning`` for thinking
mode), rendered with the chat template; ``prompt_mode`` chooses ``/think`` or ``/no_think`` prompts
(``mixed`` splits them by ``think_fraction``). LoRA trains adapters and saves a merged model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pipeline import varlen_attention
from pipeline.config import StageConfig, environment_problem
from pipeline.data.sources import load_rows, row_mode
from pipeline.stages.base import (
    MetricsCallbackFactory,
    StageContext,
    StageResult,
    half_precision,
    make_config,
    resume_point,
    save_trained,
    train_summary,
    trainer_kwargs,
)

log = logging.getLogger(__name__)


@dataclass
class Config(StageConfig):
    TRAINER_CONFIG: ClassVar[str] = "trl:SFTConfig"  # train.extra may hold its fields

    assistant_only_loss: bool = True  # loss on assistant tokens only
    # pack several conversations into each row up to max_length (TRL's BFD packing): many more conversations
    # per step, 14x the real tokens/s of padded batches on one H100 (docs/results/performance.md)
    packing: bool = False
    # a batch as one row of concatenated conversations (position ids restart per conversation): no padding
    # tokens computed, the same loss, 1.23x padded batches on one H100; auto: where the varlen FlashAttention
    # kernel runs (a half-precision run on an Ampere or later GPU), padded batches elsewhere (on CPU the exact
    # fallback attends conversation by conversation, slower than one padded batch)
    padding_free: bool | Literal["auto"] = "auto"
    liger: bool = False  # Liger kernels (fused norms, RoPE, SwiGLU, linear cross-entropy); GPU, liger-kernel

    def validate(self, key: str) -> None:
        super().validate(key)
        if self.liger and importlib.util.find_spec("liger_kernel") is None:
            environment_problem(
                f"key '{key}.liger' needs the liger-kernel package (pip install liger-kernel)"
            )


def build_dataset(ctx: StageContext[Config]) -> Any:
    """The stage's conversations as a ``datasets.Dataset`` with one ``messages`` column.

    Built once, by the main process, into the stage's ``data/`` folder; every process memory-maps it.
    """
    from datasets import DatasetDict

    from pipeline.data.formatting import sft_messages, sft_row
    from pipeline.data.table import STAGE_DATA, build_once, typed_map

    cfg = ctx.config
    fmt = cfg.prompt.format()

    def conversation(row: dict[str, Any], i: int) -> dict[str, Any]:
        return {
            "messages": sft_messages(row, row_mode(cfg.prompt_mode, cfg.think_fraction, i, ctx.seed), fmt)
        }

    def build(scratch: Path) -> Any:
        data = load_rows(cfg.data, {}, ctx.seed, transform=sft_row, scratch=scratch)
        table, _ = typed_map(
            data.dataset, conversation, desc=f"{ctx.name}: conversations", cache_file=scratch / "train.arrow"
        )
        log.info("stage %s: %d conversations (%s)", ctx.name, len(table), data.describe())
        return DatasetDict({"train": table}), {}

    return build_once(ctx.stage_dir / STAGE_DATA, build)[0]["train"]


def run(ctx: StageContext[Config]) -> StageResult:
    from trl import SFTConfig, SFTTrainer

    from pipeline.models import load_causal_lm, load_tokenizer, peft_config

    cfg = ctx.config
    dataset = build_dataset(ctx)
    tokenizer = load_tokenizer(ctx.init_path, ctx.recipe.model)
    assistant_only = cfg.assistant_only_loss
    if assistant_only:
        from pipeline.data.masks import tokenize_with_mask, trl_handles

        if not trl_handles(tokenizer):
            # the template has no {% generation %} markers and TRL ships no marked copy of it: the mask is
            # derived from the rendered conversations, and TRL takes the tokenized rows with their masks
            log.info(
                "stage %s: assistant-only loss from the rendered conversations (no generation markers)",
                ctx.name,
            )
            from pipeline.distributed import process_state

            with process_state().main_process_first():  # the others read the main process's cached result
                dataset = dataset.map(
                    lambda row: tokenize_with_mask(tokenizer, row["messages"], cfg.train.max_length),
                    remove_columns=dataset.column_names,
                )
            assistant_only = (
                False  # TRL's own masking needs markers; the assistant_masks column applies anyway
            )
    args = make_config(
        SFTConfig,
        {
            **trainer_kwargs(ctx),
            "max_length": cfg.train.max_length,
            "assistant_only_loss": assistant_only,
            "packing": cfg.packing,
            # TRL's own padding-free flag refuses a max_length (rows would go untruncated); TRL still
            # truncates the rows to max_length when the flag is off, and the collator below flattens them
            "padding_free": False,
            "use_liger_kernel": cfg.liger,
            "include_num_input_tokens_seen": "non_padding",  # the summary's tokens are real tokens
            "dataset_num_proc": None,
            **cfg.train.extra,
        },
    )
    # loaded after the arguments: under ZeRO-3 they make from_pretrained partition the weights as it loads
    model = load_causal_lm(
        ctx.init_path,
        ctx.recipe.run.precision,
        training=True,
        frozen_base=cfg.lora.enabled,
        model=ctx.recipe.model,
    )
    padding_free = _padding_free(cfg, model, args)
    metrics = MetricsCallbackFactory.create(ctx)
    trainer = SFTTrainer(
        model=model,
        args=args,
        data_collator=_padding_free_collator(tokenizer, args) if padding_free else None,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(cfg.lora),
        callbacks=[metrics, *ctx.callbacks],
    )
    flattened = cfg.packing or padding_free  # one row of conversations per batch: varlen attention
    t0 = time.monotonic()
    with varlen_attention.selected(model) if flattened else contextlib.nullcontext():
        output = trainer.train(resume_from_checkpoint=resume_point(ctx))
    summary = train_summary(trainer, metrics, output, time.monotonic() - t0)
    summary["rows"] = len(dataset)
    summary["batches"] = "packed" if cfg.packing else "padding-free" if padding_free else "padded"
    save_trained(trainer, tokenizer, ctx.final_dir)
    return StageResult(summary)


def _padding_free(cfg: Config, model: Any, args: Any) -> bool:
    """Whether batches go as one row of conversations: the recipe's choice, or under ``auto`` where the
    varlen kernel takes them (not with packing, whose rows are already full)."""
    if cfg.padding_free != "auto":
        return bool(cfg.padding_free)
    return not cfg.packing and varlen_attention.kernel_usable(model, half_precision(args))


def _padding_free_collator(tokenizer: Any, args: Any) -> Any:
    """TRL's collator in padding-free mode: a batch is one row of its conversations, position ids restarting
    at each, so attention stays within a conversation and no padding token is computed."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return DataCollatorForLanguageModeling(
        pad_token_id=pad, padding_free=True, pad_to_multiple_of=args.pad_to_multiple_of
    )
