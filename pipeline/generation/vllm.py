"""``vllm``: vLLM's offline ``LLM`` for benchmarks (GRPO rollouts use TRL's own vLLM integration).

vLLM is not a dependency of Cascade: clusters that have it select it by name, and the recipe is
refused at load time where it is not installed. The engine loads the checkpoint itself (vLLM cannot
share a transformers model object), so it serves evaluation replicas, which are saved checkpoints.
"""

from __future__ import annotations

from typing import Any

from pipeline.generation.base import Completions, Engine, OnFinished, Sampling


class VLLMEngine(Engine):
    name = "vllm"

    def __init__(self, model: Any, eos_ids: Any, pad_id: int, path: str, gpu_memory_utilization: float = 0.5):
        super().__init__(model, eos_ids, pad_id)
        from vllm import LLM

        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        self.llm = LLM(model=path, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization, seed=0)

    def release(self) -> None:
        self.llm = None

    def _generate(
        self, prompts: list[list[int]], sampling: Sampling, seed: int, on_finished: OnFinished | None
    ) -> Completions:
        from vllm import SamplingParams, TokensPrompt

        params = [  # a seed per prompt: prompts must not share one random stream
            SamplingParams(
                n=sampling.n,
                max_tokens=sampling.max_new_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k if sampling.top_k > 0 else -1,
                seed=seed * 1_000_003 + i,
                stop_token_ids=self.eos_ids,
            )
            for i in range(len(prompts))
        ]
        results = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
        )
        return self.cut([list(c.token_ids) for r in results for c in r.outputs])
