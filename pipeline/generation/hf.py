"""``hf``: transformers' ``generate``, eager, on the model as it is — the reference every engine matches.

It runs everywhere (CPU, any attention implementation, any cache type), which is why it is the engine
on CPU. On a GPU it is launch-bound: every decoded token costs a few hundred small kernel launches from
one Python thread, so the GPU idles most of the step (see docs/results/performance.md).
"""

from __future__ import annotations

from typing import Any

from pipeline.generation.base import Completions, Engine, OnFinished, Sampling, left_pad, seeded


class HFEngine(Engine):
    name = "hf"

    def _generate(
        self, prompts: list[list[int]], sampling: Sampling, seed: int, on_finished: OnFinished | None
    ) -> Completions:
        import torch

        ids, mask = left_pad(prompts, self.pad_id)
        device = self.device
        kwargs: dict[str, Any] = {"do_sample": False}
        if not sampling.greedy:
            kwargs = {
                "do_sample": True,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "top_k": sampling.top_k,
            }
        with seeded(device, seed), torch.no_grad():
            out = self.model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=sampling.max_new_tokens,
                num_return_sequences=sampling.n,
                pad_token_id=self.pad_id,
                eos_token_id=self.eos_ids,
                **kwargs,
            )
        return self.cut(out[:, ids.shape[1] :].tolist())
