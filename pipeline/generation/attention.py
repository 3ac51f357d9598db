"""Decoding attention over a static cache without copying grouped K/V heads.

transformers' SDPA path repeats every key/value head for its group of query heads whenever a mask is
passed (``repeat_kv``), and a static cache always passes one. With Qwen3's 16 query / 8 KV heads that
writes and re-reads twice the cache every step — the largest memory traffic of a decoding step at
long lengths. For one query token per row, attention is two small batched matmuls per KV head, which
read each cached head once: that is all :func:`grouped_decode_attention` does. Prompts (more than one
query token) keep the model's own implementation.

It is registered with transformers' attention and mask interfaces as ``cascade_decode`` (the mask is
SDPA's boolean mask) and only set on models that an engine owns.

A static cache is as long as the longest call needs, and a decoding step would attend over all of it
(positions not yet written are masked out). An engine may pass ``cascade_span``, a tensor whose length
says how many leading cache positions can be attended at this step; the step then reads only those.
Its length, not its contents, carries the number, so a compiled forward sees it as a dynamic size
(one compilation for every span) and a captured step per span is one graph each.
"""

from __future__ import annotations

from typing import Any

NAME = "cascade_decode"
SPAN = "cascade_span"  # keyword of a decoding step: a tensor as long as the cache positions to attend


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

    span = kwargs.pop(SPAN, None)
    batch, heads, q_len, dim = query.shape
    if q_len != 1:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    import torch

    if span is not None:  # the positions past it are not written yet: masked out, so not read at all
        key, value = key[:, :, : span.shape[0]], value[:, :, : span.shape[0]]
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
    """Switch ``model`` to :func:`grouped_decode_attention` where it used SDPA; whether it uses it now."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    implementation = getattr(model.config, "_attn_implementation", None)
    if implementation != "sdpa":
        return implementation == NAME  # an engine built on this model before switched it
    AttentionInterface.register(NAME, grouped_decode_attention)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    model.set_attn_implementation(NAME)
    return True
