"""``compiled``: a static KV cache and one decoding step replayed as a CUDA graph.

Eager ``generate`` spends almost all of a step launching kernels: a 0.6B model issues several hundred
per decoded token from one Python thread, so the GPU waits on the CPU. Here the cache, the inputs,
the sampler's state and the output live in tensors allocated once, and a whole decoding step — the
model's forward, temperature, top-k/top-p, sampling, the end-token bookkeeping — is captured once as a
CUDA graph and replayed: one launch per token. Nothing in a step reads back to the CPU; whether every
row has ended is checked every ``check_every`` steps.

Written by hand because transformers offers this only inside ``generate`` (its compiled static-cache
path), whose per-token Python work — logits processors, stopping criteria that synchronise with the
GPU every step — is what remains once the forward is compiled; continuous batching is the ``paged``
engine. On CPU the same step runs eagerly (no graphs), which is how it is tested against ``hf``.

Buffers grow and never shrink: a call with more rows or a longer sequence than any before allocates a
larger cache and captures again; smaller calls reuse it (spare rows are filled with the first prompt
and dropped). Positions the current call does not use are masked out or lie in the causal future.
Between GRPO generations the engine can give the cache's memory back for the training step
(:meth:`StaticEngine.suspend`); the next call allocates it again and captures its step anew.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

from pipeline.generation.attention import SPAN, use_grouped_decode_attention
from pipeline.generation.base import Completions, Engine, EngineUnsupported, OnFinished, Sampling, seeded
from pipeline.generation.sampler import head_candidates, mass_above, sample_filtered, sample_plain
from pipeline.generation.storage import Storages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Plan:
    """What a captured step does after the forward (top-k and the top-p candidates set tensor shapes)."""

    greedy: bool
    filtered: bool = False
    top_k: int = 0
    candidates: int = 0  # top-p by rejection among this many draws; 0 sorts (``sampler``)

    @classmethod
    def of(cls, sampling: Sampling) -> _Plan:
        if sampling.greedy:
            return cls(True)
        return cls(False, sampling.filtered, sampling.top_k, head_candidates(sampling.top_p))


@dataclass
class _Buffers:
    """Everything a captured step reads or writes: fixed addresses for the graph's lifetime."""

    rows: int
    length: int  # cache length: prompt + new tokens of the longest call so far
    cache: Any
    kv: Any  # the cache's key/value storages (``storage.Storages``): freed by ``suspend``
    mask: Any  # [rows, length] 1 where a key may be attended (prompt padding is 0)
    token: Any  # [rows, 1] the token fed to the next step
    position: Any  # [rows, 1] its position id
    step: Any  # [1] index of the next output column
    out: Any  # [rows, length] generated tokens
    done: Any  # [rows] the row has produced an end token
    eos: Any  # end token ids
    pad: Any  # pad id, written after a row's end
    temperature: Any
    top_p: Any


class StaticEngine(Engine):
    name = "compiled"

    def __init__(
        self,
        model: Any,
        eos_ids: Any,
        pad_id: int,
        cuda_graphs: bool | None = None,
        compile: str = "auto",
        grouped_attention: bool = True,
        check_every: int = 16,
        span_bucket: int = 0,
    ):
        """``compile``: ``full`` compiles the decoding forward with ``torch.compile`` (fewer, fused kernels
        inside the graph; about 30 s once per process and shape), ``none`` does not, ``auto`` compiles
        on a GPU for models of 100M parameters or more, where it pays (docs/results/performance.md).

        ``span_bucket``: a decoding step attends over the cache positions written so far, rounded up to
        a multiple of this (one captured step per multiple); 0 attends over the whole cache. It needs
        the grouped decoding attention (``attention``), which reads the span; elsewhere it is off."""
        super().__init__(model, eos_ids, pad_id)
        config = model.config.get_text_config(decoder=True)
        kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
        if kinds != {"full_attention"}:
            raise EngineUnsupported(
                f"the compiled engine supports full-attention models only (this one has {sorted(kinds)}); "
                "use generation.engine=hf or paged"
            )
        on_gpu = self.device.type == "cuda"
        self.cuda_graphs = on_gpu if cuda_graphs is None else cuda_graphs
        self.check_every = check_every
        # transformers renamed ``past_key_values`` to ``cache`` (5.2x); take whichever the model has
        self._cache_key = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )
        if span_bucket < 0:
            raise ValueError(f"span_bucket must be 0 (off) or positive, got {span_bucket}")
        grouped = grouped_attention and use_grouped_decode_attention(model)
        self.span_bucket = span_bucket if grouped else 0
        self._spans: dict[int, Any] = {}  # span → the tensor whose length passes it (``attention.SPAN``)
        if compile == "auto":
            big = sum(p.numel() for p in model.parameters()) >= 100_000_000
            compile = "full" if on_gpu and big else "none"
        if compile not in ("full", "none"):
            raise ValueError(f"compile must be auto, full or none, got '{compile}'")
        self.compiled = compile == "full"
        self._decode = self.model  # what a decoding step calls: the model, or its compiled forward
        self._above = mass_above  # the top-p head's test (``sampler``), compiled with the forward
        if self.compiled:
            import torch

            # spans are a dynamic size (one compilation for all); without them every shape is fixed
            self._decode = torch.compile(self.model, dynamic=None if self.span_bucket else False)
            self._above = torch.compile(mass_above, dynamic=False)
        self._buffers: _Buffers | None = None
        self._graphs: dict[tuple[_Plan, int], Any] = {}
        self._pool: Any = None

    def reserve(self, rows: int, length: int) -> None:
        """Allocate (and capture for) ``rows`` × ``length`` now, so calls up to that size never regrow."""
        self._ensure(rows, length)

    def release(self) -> None:
        self._buffers, self._graphs, self._pool = None, {}, None
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def suspend(self) -> bool:
        """Give the KV cache's memory back until the next call. The captured steps read its old address
        (and the weights'), so they go too; the next call captures them again before its prefill (a few
        decoding steps' time). The compiled forward sees the same tensors and is not compiled again."""
        self._graphs, self._pool = {}, None
        if self._buffers is not None:
            self._buffers.kv.free()
        return True

    # ---------------------------------------------------------------------------------------------
    def _generate(
        self, prompts: list[list[int]], sampling: Sampling, seed: int, on_finished: OnFinished | None
    ) -> Completions:
        import torch

        rows = [p for p in prompts for _ in range(sampling.n)]
        width = max(len(p) for p in rows)
        b = self._ensure(len(rows), width + sampling.max_new_tokens)
        if b.kv.restore():  # suspended: fresh memory, whose garbage could be NaN under a zero weight
            for layer in b.cache.layers:
                layer.keys.zero_()
                layer.values.zero_()
        plan = _Plan.of(sampling)
        reported = [False] * len(rows)
        with torch.no_grad():
            ids, positions = self._load(b, rows, width)
            b.temperature.fill_(max(sampling.temperature, 1e-6))
            b.top_p.fill_(sampling.top_p)
            spans = [self._span(b, width + step) for step in range(sampling.max_new_tokens)]
            # captured before the prefill: capturing runs steps on the buffers
            graphs = {span: self._graph(plan, span) for span in set(spans)} if self.cuda_graphs else {}
            with seeded(self.device, seed):
                self._prefill(b, ids, positions, plan)
                steps = 1
                while steps < sampling.max_new_tokens:
                    if graphs:
                        graphs[spans[steps]].replay()
                    else:
                        self._step(b, plan, spans[steps])
                    steps += 1
                    if steps % self.check_every == 0:
                        done = b.done[: len(rows)].tolist()
                        if all(done):
                            break
                        if on_finished is not None:
                            self._hand_off(b, done, reported, steps, on_finished)
            out = b.out[: len(rows), :steps].tolist()
        return self.cut(out)

    def _hand_off(
        self, b: _Buffers, done: list[bool], reported: list[bool], steps: int, on_finished: OnFinished
    ) -> None:
        """Pass the rows that ended since the last check to ``on_finished``."""
        new = [i for i, d in enumerate(done) if d and not reported[i]]
        if not new:
            return
        for i in new:
            reported[i] = True
        rows = b.out[new, :steps].tolist()
        on_finished(new, self.cut(rows).ids)

    # ---------------------------------------------------------------------------------------------
    def _ensure(self, rows: int, length: int) -> _Buffers:
        """Buffers for at least ``rows`` × ``length``; larger ones replace smaller ones (graphs recaptured)."""
        import torch
        from transformers import StaticCache

        b = self._buffers
        if b is not None and b.rows >= rows and b.length >= length:
            return b
        if b is not None:
            rows, length = max(rows, b.rows), max(length, b.length)
        self.release()
        length = -(-length // 64) * 64  # round up: fewer regrowths while prompt lengths wander
        device, long = self.device, torch.long
        cache = StaticCache(config=self.model.config, max_cache_len=length)
        b = _Buffers(
            rows=rows,
            length=length,
            cache=cache,
            kv=None,
            mask=torch.ones((rows, length), dtype=long, device=device),
            token=torch.zeros((rows, 1), dtype=long, device=device),
            position=torch.zeros((rows, 1), dtype=long, device=device),
            step=torch.zeros((1,), dtype=long, device=device),
            out=torch.zeros((rows, length), dtype=long, device=device),
            done=torch.zeros((rows,), dtype=torch.bool, device=device),
            eos=torch.tensor(self.eos_ids, dtype=long, device=device),
            pad=torch.tensor(self.pad_id, dtype=long, device=device),
            temperature=torch.ones((), dtype=torch.float32, device=device),
            top_p=torch.ones((), dtype=torch.float32, device=device),
        )
        with torch.no_grad():  # the cache allocates its layers on first use: do it now, outside any graph
            self.model(
                input_ids=b.token,
                attention_mask=b.mask,
                position_ids=b.position,
                **{self._cache_key: cache},
                use_cache=True,
            )
        b.kv = Storages(t for layer in cache.layers for t in (layer.keys, layer.values))
        self._buffers = b
        log.debug("compiled engine: buffers for %d rows × %d tokens", rows, length)
        return b

    def _load(self, b: _Buffers, rows: list[list[int]], width: int) -> tuple[Any, Any]:
        """Left-padded prompts (spare rows repeat the first prompt) and their position ids."""
        import torch

        ids = torch.full((b.rows, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((b.rows, width), dtype=torch.long)
        for i in range(b.rows):
            p = rows[i] if i < len(rows) else rows[0]
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
        b.mask.fill_(1)
        b.mask[:, :width].copy_(mask)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), positions.to(self.device)

    def _rewind(self, b: _Buffers) -> None:
        for layer in b.cache.layers:
            layer.cumulative_length.zero_()

    def _prefill(self, b: _Buffers, ids: Any, positions: Any, plan: _Plan) -> None:
        """The prompts through the model (eager: their length varies), and the first sampled token."""
        import torch

        self._rewind(b)
        out = self.model(
            input_ids=ids,
            attention_mask=b.mask,
            position_ids=positions,
            **{self._cache_key: b.cache},
            use_cache=True,
            logits_to_keep=1,
        )
        token = self._sample(b, out.logits[:, -1].float(), plan)
        b.done.copy_(torch.isin(token, b.eos))
        b.out[:, 0].copy_(token)
        b.token.copy_(token.unsqueeze(1))
        b.position.copy_(positions[:, -1:] + 1)
        b.step.fill_(1)

    def _span(self, b: _Buffers, attended: int) -> int:
        """The span a step attending over ``attended`` cache positions uses (0: the whole cache)."""
        if not self.span_bucket:
            return 0
        return min(-(-attended // self.span_bucket) * self.span_bucket, b.length)

    def _step(self, b: _Buffers, plan: _Plan, span: int = 0) -> None:
        """One token for every row; only tensor operations on fixed buffers, so it can be captured."""
        import torch

        extra = {}
        if span:
            if span not in self._spans:
                marker = torch.empty((span,), dtype=torch.int8, device=self.device)
                torch._dynamo.mark_dynamic(marker, 0)
                self._spans[span] = marker
            extra[SPAN] = self._spans[span]
        out = self._decode(
            input_ids=b.token,
            attention_mask=b.mask,
            position_ids=b.position,
            **{self._cache_key: b.cache},
            use_cache=True,
            **extra,
        )
        token = self._sample(b, out.logits[:, -1].float(), plan)
        token = torch.where(b.done, b.pad, token)
        b.out.index_copy_(1, b.step, token.unsqueeze(1))
        b.done.logical_or_(torch.isin(token, b.eos))
        b.token.copy_(token.unsqueeze(1))
        b.position.add_(1)
        b.step.add_(1)

    def _sample(self, b: _Buffers, logits: Any, plan: _Plan) -> Any:
        """Greedy, or a draw from the tempered (top-k/top-p filtered) distribution (``sampler``)."""
        if plan.greedy:
            return logits.argmax(-1)
        if plan.filtered:
            return sample_filtered(logits, b.temperature, b.top_p, plan.top_k, plan.candidates, self._above)
        return sample_plain(logits, b.temperature)

    def _graph(self, plan: _Plan, span: int) -> Any:
        """The captured step for ``plan`` and ``span`` on the current buffers (captured on first use).

        The graphs share one memory pool: they are replayed one at a time, and nothing a step allocates
        outlives it (every result goes to the fixed buffers)."""
        import torch

        if (plan, span) in self._graphs:
            return self._graphs[plan, span]
        b = self._buffers
        assert b is not None
        stream = torch.cuda.Stream(device=self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):  # warm-up on a side stream, as capture requires
            for _ in range(2):
                self._rewind(b)
                b.step.zero_()
                self._step(b, plan, span)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        self._rewind(b)
        b.step.zero_()
        graph = torch.cuda.CUDAGraph()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        with torch.cuda.graph(graph, pool=self._pool):
            self._step(b, plan, span)
        self._graphs[plan, span] = graph
        log.debug(
            "compiled engine: captured the %s step for %d rows × %d tokens (span %s)",
            plan, b.rows, b.length, span or "all",
        )  # fmt: skip
        return graph
