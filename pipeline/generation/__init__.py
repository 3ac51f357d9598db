"""Generation engines: one interface for GRPO rollouts and benchmarks, chosen by ``generation.engine``.

=========  ===================================================================================
hf         transformers ``generate``, eager; runs anywhere; the reference (``pipeline.generation.hf``)
compiled   static KV cache, one decoding step replayed as a CUDA graph (``.static``)
paged      transformers continuous batching, paged KV cache (``.paged``)
vllm       vLLM, where installed (benchmarks here; GRPO through TRL's vLLM integration)
auto       ``compiled`` on a CUDA GPU, ``hf`` elsewhere
=========  ===================================================================================
"""

from __future__ import annotations

from typing import Any

from pipeline.generation.base import Completions, Engine, EngineUnsupported, Sampling

ENGINES = ("auto", "hf", "compiled", "paged", "vllm")


def resolve(name: str, device_type: str) -> str:
    """The engine ``auto`` stands for on a device of this type; other names stand for themselves."""
    if name != "auto":
        return name
    return "compiled" if device_type == "cuda" else "hf"


def make_engine(
    name: str, model: Any, eos_ids: Any, pad_id: int, path: str | None = None, **options: Any
) -> Engine:
    """An engine over ``model``; ``path`` is the checkpoint the model came from (vLLM loads it itself).

    ``options`` go to the engine's constructor (e.g. ``compile`` for ``compiled``)."""
    device = next(model.parameters()).device
    name = resolve(name, device.type)
    if name == "hf":
        from pipeline.generation.hf import HFEngine

        return HFEngine(model, eos_ids, pad_id, **options)
    if name == "compiled":
        from pipeline.generation.static import StaticEngine

        return StaticEngine(model, eos_ids, pad_id, **options)
    if name == "paged":
        from pipeline.generation.paged import PagedEngine

        return PagedEngine(model, eos_ids, pad_id, **options)
    if name == "vllm":
        if path is None:
            raise EngineUnsupported("the vllm engine needs a saved checkpoint to load")
        from pipeline.generation.vllm import VLLMEngine

        return VLLMEngine(model, eos_ids, pad_id, path, **options)
    raise ValueError(f"unknown engine '{name}' (known: {', '.join(ENGINES)})")


def end_tokens(model: Any, tokenizer: Any) -> list[int]:
    """The ids that end a completion: the generation config's, else the tokenizer's end token."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return [int(t) for t in (eos if isinstance(eos, list | tuple) else [eos]) if t is not None]


__all__ = [
    "ENGINES",
    "Completions",
    "Engine",
    "EngineUnsupported",
    "Sampling",
    "end_tokens",
    "make_engine",
    "resolve",
]
