"""Model shapes the GPU benchmarks run at, built locally (random weights, nothing downloaded).

``qwen3-0.6b``       Qwen3-0.6B's exact architecture (596M parameters, vocabulary 151,936, head_dim 128);
                     for generation-only benchmarks, whose prompts are token ids.
``qwen3-0.6b-body``  Qwen3-0.6B's body (hidden 1024, 28 layers, 16/8 heads, MLP 3072) on the builtin
                     tokenizer (vocabulary ~2k, 354.5M parameters): text prompts from the synthetic tasks.
``tiny``             the builtin tiny model of ``recipe=tiny``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SHAPES = ("qwen3-0.6b", "qwen3-0.6b-body", "tiny")


def build(shape: str, out: Path, seed: int = 0) -> Path:
    """A model directory of ``shape`` under ``out`` (built once; reused when present)."""
    out = Path(out) / shape
    if (out / "config.json").exists():
        return out
    if shape == "qwen3-0.6b":
        import torch
        from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

        config = Qwen3Config(
            vocab_size=151_936,
            hidden_size=1024,
            intermediate_size=3072,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=128,
            max_position_embeddings=40_960,
            rope_theta=1_000_000,
            tie_word_embeddings=True,
            eos_token_id=151_645,
            pad_token_id=151_643,
        )
        torch.manual_seed(seed)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = Qwen3ForCausalLM(config).to(torch.bfloat16)
        model.generation_config = GenerationConfig(eos_token_id=151_645, pad_token_id=151_643)
        model.save_pretrained(out)
        return out
    from pipeline.config import BuiltinModelConfig
    from pipeline.models import build_builtin_model

    sizes = {}
    if shape == "qwen3-0.6b-body":
        sizes = dict(hidden_size=1024, num_layers=28, num_heads=16, num_kv_heads=8, intermediate_size=3072)
    elif shape != "tiny":
        raise SystemExit(f"unknown shape '{shape}' (known: {', '.join(SHAPES)})")
    return build_builtin_model("builtin:tiny", BuiltinModelConfig(**sizes), out, seed)


def describe(path: Path) -> str:
    cfg = json.loads((Path(path) / "config.json").read_text())
    return (
        f"{cfg.get('model_type')} hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, "
        f"{cfg['num_attention_heads']}/{cfg['num_key_value_heads']} heads, vocabulary {cfg['vocab_size']}"
    )


def machine() -> str:
    """The GPU (or CPU) and the library versions, for the record."""
    import platform

    import torch
    import transformers

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor()})"
    parts = [device, f"torch {torch.__version__}", f"transformers {transformers.__version__}"]
    try:
        import trl

        parts.append(f"TRL {trl.__version__}")
    except ImportError:
        pass
    return ", ".join(parts)


def add_model_arguments(ap: argparse.ArgumentParser, default_shape: str) -> None:
    """``--shape`` and ``--model-dir``, the same in every benchmark script."""
    ap.add_argument("--shape", default=default_shape, choices=SHAPES)
    ap.add_argument("--model-dir", default="/tmp/cascade-bench-models")
