"""What the runner hands a stage, what a stage hands back, and the pieces every trainer-backed stage shares."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pipeline.config import Recipe, StageConfig
from pipeline.tracking import Tracker

log = logging.getLogger(__name__)

ConfigT = TypeVar("ConfigT", bound=StageConfig)


@dataclass
class StageContext(Generic[ConfigT]):
    """What the runner hands a stage; ``StageContext[sft.Config]`` types ``config`` as the kind's own class.

    The runner builds the stage directory from the ledger's index (:class:`pipeline.rundir.RunDir`); a
    stage finds its paths here and nowhere else.
    """

    recipe: Recipe
    name: str
    index: int
    config: ConfigT
    init_path: str  # the checkpoint this stage starts from (local directory or hub id)
    stage_dir: Path  # runs/<name>/stages/<NN>-<stage>
    resume: bool  # whether trainer checkpoints of an earlier attempt may be resumed
    tracker: Tracker
    stage_checkpoints: dict[str, str] = field(default_factory=dict)  # finished stage name → final checkpoint
    record: Callable[[dict[str, Any]], None] = lambda fields: None  # merge fields into the ledger entry
    callbacks: list[Any] = field(default_factory=list)  # added to every trainer of the stage (pre-emption)

    @property
    def final_dir(self) -> Path:
        return self.stage_dir / "final"

    @property
    def checkpoints_dir(self) -> Path:
        return self.stage_dir / "checkpoints"

    @property
    def seed(self) -> int:
        return self.recipe.run.seed + self.index

    def resolve_ref(self, ref: str) -> str:
        """A stage name → its final checkpoint; anything else (path, hub id) as is."""
        return self.stage_checkpoints.get(ref, ref)


@dataclass
class StageResult:
    summary: dict[str, Any]  # steps, final_loss, tokens, train_wall_s and kind-specific metrics


# --------------------------------------------------------------------------------------------------
# Trainer checkpoints


def _complete(ckpt: Path) -> bool:
    """A trainer checkpoint is complete once trainer_state.json (written last by HF) parses."""
    try:
        json.loads((ckpt / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return True


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N``; torn ones (a kill during a save) are removed."""
    if not checkpoints_dir.is_dir():
        return None
    found = []
    for ckpt in checkpoints_dir.glob("checkpoint-*"):
        step = ckpt.name.rsplit("-", 1)[-1]
        if not step.isdigit():
            continue
        if _complete(ckpt):
            found.append((int(step), ckpt))
        else:
            log.warning("removing incomplete trainer checkpoint %s (interrupted while saving)", ckpt)
            shutil.rmtree(ckpt, ignore_errors=True)
    return max(found)[1] if found else None


def resume_point(ctx: StageContext) -> str | None:
    """The checkpoint to resume from, or None (a fresh start wipes checkpoints of a changed config)."""
    if not ctx.resume:
        # every process runs this, on a filesystem they share: one may remove what another just found
        shutil.rmtree(ctx.checkpoints_dir, ignore_errors=True)
        return None
    ckpt = latest_checkpoint(ctx.checkpoints_dir)
    if ckpt is not None:
        log.info("stage %s resumes from %s", ctx.name, ckpt)
    return str(ckpt) if ckpt else None


# --------------------------------------------------------------------------------------------------
# Trainer arguments shared by SFT, reward-model and GRPO stages


def trainer_kwargs(ctx: StageContext) -> dict[str, Any]:
    """Keyword arguments for a TRL config (``SFTConfig``, ``RewardConfig``, ``GRPOConfig``)."""
    from pipeline.models import has_cuda, precision_flags

    t = ctx.config.train
    kwargs: dict[str, Any] = {
        "output_dir": str(ctx.checkpoints_dir),
        "max_steps": t.max_steps,
        "num_train_epochs": t.epochs,
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler,
        "warmup_ratio": t.warmup_ratio,
        "weight_decay": t.weight_decay,
        "per_device_train_batch_size": t.batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "max_grad_norm": t.max_grad_norm,
        "optim": t.optim,
        # always explicit: TRL's configs default to True (transformers 5.x also calls it activation_checkpointing)
        "gradient_checkpointing": t.gradient_checkpointing,
        "save_strategy": "steps",
        "save_steps": t.save_steps,
        "save_total_limit": t.save_total_limit,
        "logging_steps": t.logging_steps,
        "logging_first_step": True,
        "seed": ctx.seed,
        "data_seed": ctx.seed,
        "report_to": "none",  # metrics go through Cascade's tracker, namespaced by stage
        "run_name": f"{ctx.recipe.run.name}/{ctx.name}",
        "use_cpu": not has_cuda(),
        "dataloader_num_workers": 0,
        "disable_tqdm": False,
        "save_safetensors": True,
        **precision_flags(ctx.recipe.run.precision),
    }
    if t.deepspeed:
        kwargs["deepspeed"] = t.deepspeed
    kwargs.update(t.extra)
    return kwargs


def make_config(config_cls: type, kwargs: dict[str, Any]) -> Any:
    """A TRL/HF config, dropping keys this installed version does not know (ranges of versions are supported)."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(k for k in kwargs if k not in known)
    if unknown:
        log.debug("%s does not take %s; ignored", config_cls.__name__, ", ".join(unknown))
    return config_cls(**{k: v for k, v in kwargs.items() if k in known})


class MetricsCallbackFactory:
    """Builds a ``TrainerCallback`` that forwards trainer logs to the tracker and keeps the last values."""

    @staticmethod
    def create(ctx: StageContext) -> Any:
        from transformers import TrainerCallback

        class StageMetrics(TrainerCallback):
            def __init__(self) -> None:
                self.last: dict[str, float] = {}
                self.history: list[dict[str, float]] = []
                self.skipped_steps = 0
                self.t0 = time.monotonic()

            def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                # A non-finite gradient (a degenerate batch, an overflow) would turn every weight into NaN and
                # crash the next generation: skip that optimizer step, as a loss scaler does, and count it.
                # Without gradients the optimizer leaves a parameter alone (no update, no momentum, no weight
                # decay, its step count unchanged); zeroed gradients would still move every weight by Adam's
                # momentum. One fused max-norm over all gradients (non-finite exactly when an element is: no
                # squares to overflow) and one device sync, not two kernels per parameter.
                import torch

                if getattr(kw.get("optimizer"), "scaler", None) is not None:
                    return  # fp16: the loss scaler skips such a step itself and lowers its scale; it must see them
                model = kw.get("model")
                params = [p for p in model.parameters() if p.grad is not None] if model is not None else []
                grads = [p.grad for p in params]
                largest = torch.nn.utils.get_total_norm(grads, norm_type=math.inf) if grads else None
                if largest is not None and not bool(torch.isfinite(largest)):
                    for p in params:
                        p.grad = None
                    self.skipped_steps += 1
                    log.warning(
                        "stage %s step %d: non-finite gradient, optimizer step skipped",
                        ctx.name,
                        state.global_step + 1,
                    )

            def on_log(
                self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
            ) -> None:
                if not state.is_world_process_zero or not logs:
                    return
                numeric = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}
                # the rewards' own counters since the last log: timeouts, sandbox errors, fraction zero, …
                from rewards.stats import flat_snapshot

                numeric.update(
                    {
                        f"verifier/{k.removeprefix('rewards/')}": v
                        for k, v in flat_snapshot(reset=True).items()
                    }
                )
                self.last.update(numeric)
                self.history.append({"step": state.global_step, **numeric})
                ctx.tracker.log_stage(ctx.name, numeric, step=state.global_step)

        return StageMetrics()


def train_summary(trainer: Any, metrics_cb: Any, train_output: Any, wall_s: float) -> dict[str, Any]:
    """The ledger's training summary of a finished trainer run."""
    state = trainer.state
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    summary = {
        "steps": state.global_step,
        "final_loss": round(losses[-1], 5) if losses else None,
        "tokens": int(getattr(state, "num_input_tokens_seen", 0) or 0),
        "train_wall_s": round(wall_s, 2),
        "train_loss": round(float(train_output.training_loss), 5) if train_output is not None else None,
    }
    if getattr(metrics_cb, "skipped_steps", 0):
        summary["nonfinite_grad_steps"] = metrics_cb.skipped_steps
    for key in ("train_samples_per_second", "train_steps_per_second"):
        if train_output is not None and key in train_output.metrics:
            summary[key] = round(float(train_output.metrics[key]), 3)
    return summary


def save_trained(trainer: Any, tokenizer: Any, final_dir: Path) -> None:
    """Save the trained model as a plain HF checkpoint (LoRA merged), atomically, from every process.

    ``trainer.save_model`` is called by all processes because under DeepSpeed ZeRO-3 the parameters
    must be gathered collectively; only the main process writes the tokenizer and renames the folder.
    """
    from pipeline.atomic import clear_staging, commit_dir, staging_dir
    from pipeline.models import save_final

    acc = trainer.accelerator
    model = acc.unwrap_model(trainer.model)
    if hasattr(model, "peft_config"):  # merge adapters so later stages load a plain model
        if acc.is_main_process:  # the frozen base is in the compute dtype already (models.weights_dtype)
            save_final(model, tokenizer, final_dir)
    else:
        if acc.is_main_process:
            clear_staging(final_dir)
        acc.wait_for_everyone()
        trainer.save_model(str(staging_dir(final_dir)))
        if acc.is_main_process:
            half = half_precision(trainer.args)
            if half is not None:
                cast_checkpoint(staging_dir(final_dir), half)
            tokenizer.save_pretrained(staging_dir(final_dir))
            commit_dir(staging_dir(final_dir), final_dir)
    acc.wait_for_everyone()


# --------------------------------------------------------------------------------------------------
# Disk: final checkpoints in half precision, trainer checkpoints pruned when a stage is over


def half_precision(args: Any) -> str | None:
    """The half-precision dtype a stage trained in (``bfloat16`` / ``float16``), None for fp32 training.

    Weights train as fp32 master copies (``pipeline.models.weights_dtype``); the final checkpoint keeps
    the precision the model computed in, which halves it on disk and is what the next stage and the
    evaluation replicas run in anyway.
    """
    if getattr(args, "bf16", False):
        return "bfloat16"
    if getattr(args, "fp16", False):
        return "float16"
    return None


def cast_checkpoint(folder: Path, dtype: str) -> int:
    """Cast the floating-point tensors of a checkpoint folder's safetensors files to ``dtype``, in place.

    Files already in ``dtype`` (ZeRO-3 gathers 16-bit weights itself) are left untouched; the config's
    dtype and the shard index's total size follow. Returns the number of files rewritten. Done on the
    saved files rather than on the model so that every way a trainer saves (DDP, ZeRO, FSDP) is covered
    by one code path.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    target = getattr(torch, dtype)
    rewritten = 0
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata()
        tensors = load_file(str(path))
        if all(not t.is_floating_point() or t.dtype == target for t in tensors.values()):
            continue
        cast = {k: t.to(target) if t.is_floating_point() else t for k, t in tensors.items()}
        save_file(cast, str(path), metadata=metadata or {"format": "pt"})
        rewritten += 1
    _set_config_dtype(Path(folder), dtype)  # also where ZeRO-3 saved 16-bit weights from an fp32-loaded model
    if rewritten:
        _update_index_size(Path(folder))
    return rewritten


def _set_config_dtype(folder: Path, dtype: str) -> None:
    config = folder / "config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        if any(data.get(key) not in (None, dtype) for key in ("dtype", "torch_dtype")):
            for key in ("dtype", "torch_dtype"):
                if key in data:
                    data[key] = dtype
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _update_index_size(folder: Path) -> None:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text())
        shards = {folder / name for name in data.get("weight_map", {}).values()}
        data.setdefault("metadata", {})["total_size"] = sum(p.stat().st_size for p in shards if p.is_file())
        index.write_text(json.dumps(data, indent=2) + "\n")


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def intermediate_weights(stage_dir: Path, final_dir: Path) -> list[Path]:
    """What a finished stage no longer needs: trainer checkpoints (``checkpoints/`` at any depth), the
    weights of its intermediate phases (``final/`` folders other than the stage's own) and staging folders
    a kill left behind."""
    found = []
    for path in sorted(Path(stage_dir).rglob("*")):
        if not path.is_dir() or any(parent in found for parent in path.parents):
            continue
        stale_staging = path.name.endswith((".tmp", ".old"))  # pipeline.atomic's, left by a kill
        if path.name == "checkpoints" or stale_staging or (path.name == "final" and path != Path(final_dir)):
            found.append(path)
    return found


def settle_stage_files(ctx: StageContext) -> dict[str, Any]:
    """Once a stage is over (kept, rolled back or stopped): prune what only a resume of it needed, unless
    ``train.keep_checkpoints``, and record the sizes in its ledger entry (``disk``). Main process only."""
    extra = intermediate_weights(ctx.stage_dir, ctx.final_dir)
    extra_bytes = sum(folder_bytes(p) for p in extra)
    keep = ctx.config.train.keep_checkpoints
    if not keep:
        for path in extra:
            shutil.rmtree(path, ignore_errors=True)
        if extra:
            log.info("stage %s: removed its trainer checkpoints (%.2f GB)", ctx.name, extra_bytes / 1e9)
    disk = {
        "final_bytes": folder_bytes(ctx.final_dir),
        "checkpoints_bytes": extra_bytes,
        "checkpoints_kept": keep,
        "stage_bytes": folder_bytes(ctx.stage_dir),
    }
    ctx.record({"disk": disk})
    return disk
