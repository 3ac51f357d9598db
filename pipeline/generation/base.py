"""What every generation engine takes and returns, and the pieces they share.

An engine turns token-id prompts into completions. Rollouts (the GRPO stage) and benchmarks
(evaluation) both go through one, chosen by the recipe's ``generation.engine``, so a faster engine
speeds up both and a benchmark measures the policy with the same sampler that trained it.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

OnFinished = Callable[[list[int], list[list[int]]], None]


@dataclass(frozen=True)
class Sampling:
    """How to sample: ``temperature`` 0 is greedy; ``top_k`` 0 and ``top_p`` 1 switch those filters off."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1  # completions per prompt, returned next to each other

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    @property
    def filtered(self) -> bool:
        return self.top_p < 1.0 or self.top_k > 0


@dataclass
class Completions:
    """Completion token ids, ``n`` per prompt in prompt order, each cut after its first end token."""

    ids: list[list[int]]
    truncated: list[bool]  # True: the completion reached max_new_tokens without an end token
    seconds: float = 0.0

    @property
    def tokens(self) -> int:
        """Generated tokens, end tokens included."""
        return sum(len(c) for c in self.ids)


class EngineUnsupported(RuntimeError):
    """The engine cannot serve this model or machine; the message says which engine can."""


class Engine(ABC):
    """Generates completions from the model it was built on (weights may change between calls)."""

    name: str = "?"

    def __init__(self, model: Any, eos_ids: Sequence[int], pad_id: int):
        if not eos_ids:
            raise EngineUnsupported("the model's generation config names no end token")
        self.model = model
        self.eos_ids = [int(t) for t in eos_ids]
        self.pad_id = int(pad_id)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        sampling: Sampling,
        seed: int,
        on_finished: OnFinished | None = None,
    ) -> Completions:
        """``sampling.n`` completions of every prompt; the same seed gives the same completions.

        ``on_finished(rows, ids)``, where an engine supports it, is called with completions that ended
        while others are still being generated (row indices into the result, ids cut after the end
        token), so that scoring them overlaps the rest of the generation. It runs on this thread.
        """
        if not prompts:
            return Completions([], [])
        t0 = time.perf_counter()
        out = self._generate([list(p) for p in prompts], sampling, seed, on_finished)
        out.seconds = time.perf_counter() - t0
        return out

    @abstractmethod
    def _generate(
        self, prompts: list[list[int]], sampling: Sampling, seed: int, on_finished: OnFinished | None
    ) -> Completions: ...

    def release(self) -> None:  # noqa: B027 - engines without caches have nothing to free
        """Free the caches this engine holds (the model stays); the next call allocates them again."""

    def suspend(self) -> bool:
        """Give memory held between calls back for other work (a training step) where the engine can;
        unlike :meth:`release` it keeps every object the next call needs, so that call only allocates.
        Whether the model's weights may be freed (and re-allocated elsewhere) until the next call: not
        where the engine keeps work captured on their addresses (``paged``'s CUDA graphs)."""
        return False

    def cut(self, rows: Iterator[list[int]] | list[list[int]]) -> Completions:
        """Rows of generated ids → completions cut after the first end token (which is kept)."""
        eos = set(self.eos_ids)
        ids, truncated = [], []
        for row in rows:
            end = next((i for i, t in enumerate(row) if t in eos), None)
            ids.append(row if end is None else row[: end + 1])
            truncated.append(end is None)
        return Completions(ids, truncated)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """(input_ids, attention_mask) tensors of left-padded prompts, as ``generate`` expects them."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
    return ids, mask


@contextlib.contextmanager
def seeded(device: Any, seed: int) -> Iterator[None]:
    """Sample from ``seed`` on ``device`` and leave the process's random state as it was.

    The trainer's own random stream (data order, dropout) must not depend on how many tokens were
    sampled, and a seed must fix the completions whatever ran before.
    """
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        state = torch.cuda.get_rng_state(device)
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)
        try:
            yield
        finally:
            torch.cuda.set_rng_state(state, device)
    else:
        state = torch.get_rng_state()
        torch.manual_seed(seed)
        try:
            yield
        finally:
            torch.set_rng_state(state)
