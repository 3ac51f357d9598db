"""Sampling a token per row without reading anything back to the CPU, so a CUDA graph can hold it.

The distribution is HF's: temperature, then top-k, then the smallest head of the sorted distribution
whose mass reaches top-p (at least one token). The draw is the exponential race — argmax of p / E with
E ~ Exp(1) samples exactly from p — which needs one random tensor and no host synchronisation
(``torch.multinomial`` has both).

Top-p is the expensive part: finding the head exactly means sorting the vocabulary every step (about
1.6 ms for 64 rows of Qwen3's 151,936 logits on an H100, ``bench/profile_decode.py``; a sort-free pivot
search measured the same). :func:`sample_filtered` avoids the sort by rejection instead: the race's
``k`` leading keys are ``k`` draws from p without replacement, in draw order (Plackett–Luce), and the
first of them that lies in the head is a draw from p restricted to the head — exactly top-p's
distribution. A token lies in the head when the mass of the tokens more probable than it is below top-p,
one masked sum per candidate. Each candidate misses the head with probability at most 1 − top-p, so
all ``k`` miss with probability at most (1 − top-p)^k; :func:`head_candidates` picks ``k`` so that this
is below 10⁻⁹ per token, and the rare row where all miss takes its most probable token. Where that
would take more than :data:`MOST_CANDIDATES` candidates (top-p below about 0.5) the exact sort is used.
Tokens of equal probability at the head's edge are all kept (the sort keeps some of them, by index).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

MISS = 1e-9  # the largest chance per token that the rejection draw falls back to the most probable token
MOST_CANDIDATES = 32  # beyond this, masked sums cost more than the sort they replace


def head_candidates(top_p: float) -> int:
    """Candidates for :func:`sample_filtered`'s rejection draw at ``top_p``; 0 means sort instead."""
    if not 0.0 < top_p < 1.0:
        return 0
    k = math.ceil(math.log(MISS) / math.log1p(-top_p))
    return k if k <= MOST_CANDIDATES else 0


def _tempered(logits: Any, temperature: Any, top_k: int) -> Any:
    """Probabilities after temperature and top-k (k is static: it sets a tensor shape)."""
    import torch

    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits.softmax(-1)


def _race(probs: Any) -> Any:
    """The exponential race's keys: argmax is a draw from ``probs``, the top k a draw of k in order."""
    import torch

    return probs / torch.empty_like(probs).exponential_()


def mass_above(probs: Any, levels: Any) -> Any:
    """For each row and each of its ``levels`` [rows, k], the mass of the tokens more probable than it.

    One masked sum per level; ``torch.compile`` fuses them, so the compiled engine compiles it (the whole
    top-p draw for 256 rows of Qwen3's vocabulary on an H200: 1.24 ms with it compiled, 3.23 ms eager).
    """
    import torch

    sums = [torch.where(probs > levels[:, i : i + 1], probs, 0.0).sum(-1) for i in range(levels.shape[-1])]
    return torch.stack(sums, -1)


def sample_filtered(
    logits: Any,
    temperature: Any,
    top_p: Any,
    top_k: int = 0,
    candidates: int = 0,
    above: Callable[[Any, Any], Any] = mass_above,
) -> Any:
    """A draw from the tempered distribution restricted to its top-k and top-p head.

    ``candidates`` > 0 finds the head by rejection among that many draws (see the module docstring;
    :func:`head_candidates` gives the number for a top-p), with ``above`` (:func:`mass_above`, or a
    compiled copy of it); 0 sorts the vocabulary.
    """
    import torch

    probs = _tempered(logits, temperature, top_k)
    if candidates:
        candidates = min(candidates, probs.shape[-1])
        drawn = _race(probs).topk(candidates, dim=-1).indices  # [rows, k], in draw order
        inside = above(probs, probs.gather(-1, drawn)) < top_p
        first = drawn.gather(-1, inside.to(torch.uint8).argmax(-1, keepdim=True))[:, 0]
        return torch.where(inside.any(-1), first, probs.argmax(-1))
    ordered, order = probs.sort(dim=-1, descending=True)
    drop = (ordered.cumsum(-1) - ordered) >= top_p
    head = torch.zeros_like(probs).scatter(-1, order, ordered.masked_fill(drop, 0.0))
    return _race(head).argmax(-1)


def sample_plain(logits: Any, temperature: Any) -> Any:
    """A draw from the tempered distribution."""
    return _race((logits / temperature).softmax(-1)).argmax(-1)
