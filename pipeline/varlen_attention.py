"""Attention over flattened batches: each conversation attends only to itself, at the cost of its own length.

A padding-free or packed SFT batch is one row of concatenated conversations whose position ids restart at
each (TRL's collator also hands the boundaries over as ``cu_seq_lens_q``/``cu_seq_lens_k``). With SDPA,
transformers turns that row into a block-diagonal mask over the whole row and computes every masked
block: attention costs the square of the batch's tokens, not the sum of each conversation's square, and
the packed batches that would fill a GPU are slower than padded ones. FlashAttention's variable-length
kernel computes only the diagonal blocks; transformers reaches it through the flash-attn package or a
kernel downloaded from the Hub, neither of which a machine may have, while PyTorch (2.10 and later) ships
the same kernel as ``torch.nn.attention.varlen.varlen_attn`` — which nothing in transformers calls. This
module is that glue: an attention function registered with transformers' ``AttentionInterface`` and a
context manager that selects it for a training run.

Where the kernel cannot run (CPU, a GPU older than Ampere, float32 without autocast, an older PyTorch) the
same function attends conversation by conversation with SDPA: exact, and the reference the kernel is
tested against.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

NAME = "cascade_varlen"  # the name under transformers' AttentionInterface
_HALF = ("float16", "bfloat16")


@functools.cache
def _kernel() -> tuple[Any, frozenset[str]] | None:
    """PyTorch's varlen FlashAttention and the keyword arguments this version takes, or None without it."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


def _compute_dtype(query: Any) -> Any:
    """The dtype attention runs in: autocast's where it is on (SDPA is on its lower-precision list, and
    RoPE hands over float32 queries under autocast), else the queries' own."""
    import torch

    if query.is_cuda and torch.is_autocast_enabled("cuda"):
        return torch.get_autocast_dtype("cuda")
    return query.dtype


def flash_capable(capability: tuple[int, int]) -> bool:
    """Whether a GPU of this compute capability runs PyTorch's FlashAttention kernels (Ampere and later)."""
    return capability >= (8, 0)


@functools.cache
def _device_capable(index: int) -> bool:
    import torch

    return flash_capable(torch.cuda.get_device_capability(index))


def _runs(device_index: int | None, dtype: str | None) -> bool:
    """The kernel's one condition: present, on an Ampere or later GPU (None: no GPU), in half precision."""
    return (
        _kernel() is not None
        and device_index is not None
        and _device_capable(device_index)
        and dtype in _HALF
    )


def kernel_applies(query: Any) -> bool:
    """Whether the FlashAttention kernel can take these queries; elsewhere attention goes conversation by
    conversation."""
    index = (query.device.index or 0) if query.is_cuda else None
    return _runs(index, str(_compute_dtype(query)).rsplit(".", 1)[-1])


def kernel_usable(model: Any, half: str | None) -> bool:
    """Whether flattened batches of ``model``, trained in the half-precision dtype ``half`` (None: fp32),
    would reach the kernel on this process's GPU: the condition under which they are the default."""
    import torch

    index = torch.cuda.current_device() if torch.cuda.is_available() else None
    return _runs(index, half) and bool(getattr(model, "_supports_attention_backend", False))


def attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention signature: query ``(1, heads, tokens, dim)``, key/value ``(1, kv_heads,
    tokens, dim)``; returns ``(1, tokens, heads, dim)``. Causal within each conversation of the row."""
    import torch

    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or query.shape[0] != 1:
        raise RuntimeError(
            f"attention '{NAME}' takes flattened batches only (one row with cu_seq_lens_q); "
            "it is selected by pipeline.varlen_attention.selected() around such training"
        )
    if dropout or sliding_window or kwargs.get("softcap") is not None:
        raise ValueError(f"attention '{NAME}' supports no attention dropout, sliding window or soft-capping")
    groups = query.shape[1] // key.shape[1]
    if kernel_applies(query):
        fn, params = _kernel()  # type: ignore[misc]
        dtype = _compute_dtype(query)
        # (tokens, heads, dim) views of the (1, heads, tokens, dim) inputs
        q, k, v = (t[0].transpose(0, 1).to(dtype).contiguous() for t in (query, key, value))
        options: dict[str, Any] = {"scale": scaling} if "scale" in params else {}
        if "enable_gqa" in params:
            options["enable_gqa"] = groups > 1
        elif groups > 1:  # query head h reads key/value head h // groups
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        if "is_causal" in params:
            options["is_causal"] = True
        else:
            options["window_size"] = (-1, 0)  # causal
        top = int(kwargs.get("max_length_q") or int((bounds[1:] - bounds[:-1]).max()))
        out = fn(q, k, v, bounds, kwargs.get("cu_seq_lens_k", bounds), top, top, **options)
        return out.unsqueeze(0), None
    k, v = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    edges = bounds.tolist()
    parts = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=True, scale=scaling
        )
        for a, b in zip(edges[:-1], edges[1:], strict=True)
        if b > a
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def register() -> None:
    """Make ``NAME`` a valid ``attn_implementation`` (idempotent). No mask function is registered: the
    model then builds no block-diagonal mask, and the boundaries come from the batch."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, attention)


@contextlib.contextmanager
def selected(model: Any) -> Iterator[None]:
    """Run the model with ``NAME`` attention inside the block, restoring its implementation after (the
    saved checkpoint and later stages load with the usual one)."""
    register()
    config = model.config
    before = config._attn_implementation
    model.set_attn_implementation(NAME)
    log.info("attention: %s for flattened batches (was %s)", NAME, before)
    try:
        yield
    finally:
        model.set_attn_implementation(before)
