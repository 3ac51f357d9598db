"""GRPO rollouts through a generation engine (``generation.engine``), from the policy's inference copy.

TRL generates with eager ``generate`` on the fp32 master weights, launch-bound on one CPU thread (or
with its continuous-batching flag, which casts the master weights to bf16 for good). Here the trainer's
generation goes to a :mod:`pipeline.generation` engine over an inference copy in the compute dtype,
refreshed in place after every optimizer step; sampling is seeded from the run's seed, the step and
the process, so a seed fixes the rollouts (and a resumed run draws what the uninterrupted one drew).

Completions that end while longer ones are still decoding are handed to a background thread that
scores them with the stage's rewards (code sandbox, math verifier pool: the work runs in worker
processes), so scoring overlaps generation; the trainer's scoring call then only waits for it.

With ``generation.free_for_training`` (the default) the copy's weights and the compiled engine's KV
cache give their memory back after each generation (``paged`` keeps its manager, whose CUDA graphs read
the weights in place), so the training step's activation peak is what it would be
without an engine; the next generation allocates them again, refreshes the copy (it does every step
anyway) and captures the decoding step anew.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pipeline.config import EngineConfig

log = logging.getLogger(__name__)


def rollout_seed(seed: int, step: int, process: int) -> int:
    """The sampling seed of one rollout batch: distinct per step and process, fixed by the run's seed."""
    return (seed * 1_000_003 + step * 7919 + process * 104_729) % (2**63 - 1)


class Rollouts:
    """The trainer's generation: an engine over an inference copy, synced once per optimizer step."""

    def __init__(self, trainer: Any, engine: str, options: EngineConfig):
        self.trainer, self.engine_name, self.options = trainer, engine, options
        self.engine: Any = None
        self.copy: Any = None
        self.synced_step: int | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="early-scoring")
        self.pending: list[Future] = []
        self.seconds = {"generation": 0.0, "sync": 0.0}

    def generate(self, prompt_ids: list[list[int]], inputs: list[dict[str, Any]] | None) -> list[list[int]]:
        from pipeline.generation import Sampling

        t = self.trainer
        t0 = time.perf_counter()
        if self.copy is None or self.copy.freed or t.state.global_step != self.synced_step:
            self._sync()
        t1 = time.perf_counter()
        args = t.args
        sampling = Sampling(args.max_completion_length, args.temperature, args.top_p, args.top_k or 0)
        seed = rollout_seed(args.seed, t.state.global_step, t.accelerator.process_index)
        early = self._early_scoring(inputs) if inputs is not None and len(inputs) == len(prompt_ids) else None
        out = self.engine.generate(prompt_ids, sampling, seed, on_finished=early)
        if self.options.free_for_training and self.engine.suspend():
            self.copy.free()
        self.seconds["sync"] += t1 - t0
        self.seconds["generation"] += time.perf_counter() - t1
        return out.ids

    def wait(self) -> None:
        """Let early scoring of this batch finish (before the trainer scores the rest)."""
        for future in self.pending:
            future.result()
        self.pending = []

    def close(self) -> None:
        self.wait()
        self.pool.shutdown(wait=True)
        if self.engine is not None:
            self.engine.release()
        self.engine = self.copy = None

    # ---------------------------------------------------------------------------------------------
    def _sync(self) -> None:
        """Create the inference copy and engine on first use; refresh the copy's weights afterwards."""
        import torch
        from trl.models import unwrap_model_for_generation

        from pipeline.generation import end_tokens, make_engine
        from pipeline.generation.mirror import InferenceCopy

        t = self.trainer
        dtype = torch.bfloat16 if t.args.bf16 else torch.float16 if t.args.fp16 else torch.float32
        with unwrap_model_for_generation(
            t.model_wrapped, t.accelerator, gather_deepspeed3_params=t.args.ds3_gather_for_generation
        ) as policy:
            if self.copy is None:
                self.copy = InferenceCopy(policy, dtype)
                tok = t.processing_class
                pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
                self.engine = make_engine(
                    self.engine_name,
                    self.copy.model,
                    end_tokens(self.copy.model, tok),
                    pad,
                    **self.options.engine_options(self.engine_name),
                )
                log.info("rollouts through the %s engine (%s inference copy)", self.engine.name, dtype)
            else:
                self.copy.sync(policy)
        self.synced_step = t.state.global_step

    def _early_scoring(self, inputs: list[dict[str, Any]]) -> Any:
        """The engine's ``on_finished``: finished completions go to the rewards on a background thread."""
        t = self.trainer
        rewards = [f for f in t.reward_funcs if getattr(f, "itemwise", False)]
        if not rewards:
            return None
        conversational = isinstance(inputs[0].get("prompt"), list)

        def on_finished(rows: list[int], ids: list[list[int]]) -> None:
            texts = t.processing_class.batch_decode(ids, skip_special_tokens=True)
            completions = [[{"role": "assistant", "content": x}] for x in texts] if conversational else texts
            batch = t._reward_inputs([inputs[i] for i in rows], [False] * len(rows))
            columns = {k: [r.get(k) for r in batch] for k in batch[0] if k not in ("prompt", "completion")}
            columns["prompts"] = [r.get("prompt") for r in batch]
            for reward in rewards:
                self.pending.append(self.pool.submit(reward.prefetch, completions, columns))

        return on_finished
