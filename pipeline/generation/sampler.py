"""Sampling a token per row without reading anything back to the CPU, so a CUDA graph can hold it.

The distribution is HF's: temperature, then top-k, then the smallest head of the sorted distribution
whose mass reaches top-p (at least one token). The draw is the exponential race — argmax of p / E with
E ~ Exp(1) samples exactly from p — which needs one random tensor and no host synchronisation
(``torch.multinomial`` has both). Sorting the vocabulary for top-p costs about 1.6 ms per step for
64 rows of Qwen3's 151,936 logits on an H100 (``bench/profile_decode.py``); a sorting-free pivot search
measured the same, so the exact sort stays.
"""

from __future__ import annotations

from typing import Any


def _tempered(logits: Any, temperature: Any, top_k: int) -> Any:
    """Probabilities after temperature and top-k (k is static: it sets a tensor shape)."""
    import torch

    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits.softmax(-1)


def sample_filtered(logits: Any, temperature: Any, top_p: Any, top_k: int = 0) -> Any:
    """A draw from the tempered distribution restricted to its top-k and top-p head."""
    import torch

    probs = _tempered(logits, temperature, top_k)
    ordered, order = probs.sort(dim=-1, descending=True)
    drop = (ordered.cumsum(-1) - ordered) >= top_p
    head = torch.zeros_like(probs).scatter(-1, order, ordered.masked_fill(drop, 0.0))
    return (head / torch.empty_like(head).exponential_()).argmax(-1)


def sample_plain(logits: Any, temperature: Any) -> Any:
    """A draw from the tempered distribution."""
    import torch

    probs = (logits / temperature).softmax(-1)
    return (probs / torch.empty_like(probs).exponential_()).argmax(-1)
