"""Decoding attention over a static cache without copying grouped K/V heads.

transformers' SDPA path repeats every key/value head for its group of query heads whenever a mask is
passed (``repeat_kv``), and a static cache always passes one. With Qwen3's 16 query / 8 KV heads that
writes and re-reads twice the cache every step — the largest memory traffic of a decoding step at
long lengths. For one query token per row, attention is two small batched matmuls per KV head, which
read each cached head once: that is all :func:`grouped_decode_attention` does. Prompts (more than one
query token) keep the model's own implementation.

It is registered with transformers' attention and mask interfaces as ``cascade_decode`` (the mask is
SDPA's boolean mask) and only set on models that an engine owns.
"""

from __future__ import annotations

from typing import Any

NAME = "cascade_decode"


def grouped_decode_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, q_len, dim = query.shape
    if q_len != 1:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    import torch

    kv_heads = key.shape[1]
    scale = scaling if scaling is not None else dim**-0.5
    q = query.reshape(batch, kv_heads, heads // kv_heads, dim)  # query head h reads KV head h // group
    scores = torch.matmul(q, key.transpose(-1, -2)).float() * scale  # [batch, kv_heads, group, length]
    if attention_mask is not None:
        mask = attention_mask[..., : key.shape[-2]]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    out = torch.matmul(scores.softmax(-1).to(value.dtype), value)  # [batch, kv_heads, group, dim]
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def use_grouped_decode_attention(model: Any) -> bool:
    """Switch ``model`` to :func:`grouped_decode_attention` where it used SDPA; whether it did."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    AttentionInterface.register(NAME, grouped_decode_attention)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    model.set_attn_implementation(NAME)
    return True
