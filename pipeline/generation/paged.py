"""``paged``: transformers' continuous batching (paged KV cache, CUDA graphs) through ``generate_batch``.

Rows that end early free their cache blocks for others, which pays off when completion lengths vary a
lot. The manager — and its KV cache, sized once from the free GPU memory — is kept between calls and
freed by :meth:`release`, so a GRPO stage allocates it once rather than every step. Sampling is seeded
through the manager's own seed.
"""

from __future__ import annotations

from typing import Any

from pipeline.generation.base import Completions, Engine, EngineUnsupported, OnFinished, Sampling


class PagedEngine(Engine):
    name = "paged"

    def __init__(self, model: Any, eos_ids: Any, pad_id: int, memory_fraction: float = 0.4):
        super().__init__(model, eos_ids, pad_id)
        if not hasattr(model, "generate_batch"):
            raise EngineUnsupported(
                "this transformers has no continuous batching (generate_batch); use generation.engine=hf"
            )
        self.memory_fraction = memory_fraction
        self._shape: tuple[int, int] | None = None

    def release(self) -> None:
        destroy = getattr(self.model, "destroy_cached_continuous_batching_manager", None)
        if destroy is not None:
            destroy()
        self._shape = None

    def _generate(
        self, prompts: list[list[int]], sampling: Sampling, seed: int, on_finished: OnFinished | None
    ) -> Completions:
        from transformers import ContinuousBatchingConfig, GenerationConfig

        shape = (len(prompts) * sampling.n, max(len(p) for p in prompts) + sampling.max_new_tokens)
        if self._shape is not None and (shape[0] > self._shape[0] or shape[1] > self._shape[1]):
            self.release()  # the kept manager was sized for a smaller workload
        gen = GenerationConfig(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not sampling.greedy,
            temperature=sampling.temperature if not sampling.greedy else None,
            top_p=sampling.top_p if not sampling.greedy else None,
            top_k=sampling.top_k if not sampling.greedy else None,
            num_return_sequences=sampling.n,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
        )
        batching = ContinuousBatchingConfig(seed=seed, max_memory_percent=self.memory_fraction)
        results = self.model.generate_batch(
            prompts,
            generation_config=gen,
            continuous_batching_config=batching,
            persistent_manager=True,
            progress_bar=False,
        )
        old = self._shape or shape
        self._shape = (max(old[0], shape[0]), max(old[1], shape[1]))
        outputs = list(results.values())
        missing = len(prompts) * sampling.n - len(outputs)
        failed = [o for o in outputs if getattr(o, "error", None)]
        if missing or failed:
            raise RuntimeError(
                f"continuous batching lost {missing} of {len(prompts) * sampling.n} requests "
                f"and {len(failed)} failed ({failed[0].error if failed else 'no error given'})"
            )
        return self.cut([list(o.generated_tokens) for o in outputs])
