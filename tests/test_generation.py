"""Generation engines: the samplers draw HF's distribution exactly, and every engine matches ``hf``.

Samplers are checked against the distribution HF's own logits processors define (temperature, top-k,
top-p) by drawing many rows at once; engines against ``hf`` on the builtin model: same greedy
completions, the same completions for the same seed, other completions for another.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pipeline.config import BuiltinModelConfig
from pipeline.generation import Sampling, end_tokens, make_engine, resolve
from pipeline.generation.sampler import head_candidates, sample_filtered, sample_plain

TINY = BuiltinModelConfig(vocab_size=512, hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                          intermediate_size=128, tokenizer_corpus_rows=60)  # fmt: skip


def hf_distribution(logits: torch.Tensor, temperature: float, top_p: float, top_k: int) -> torch.Tensor:
    """The sampling distribution of HF's processors: temperature → top-k → top-p → softmax."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    scores = TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_k:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p < 1:
        scores = TopPLogitsWarper(top_p)(None, scores)
    return scores.softmax(-1)


def frequencies(draws: torch.Tensor, vocab: int) -> torch.Tensor:
    return torch.bincount(draws, minlength=vocab).float() / draws.numel()


# (temperature, top_p, top_k): the filters alone and together, a sharp and a flat temperature
CASES = [
    (1.0, 1.0, 0),
    (0.6, 0.95, 0),
    (1.0, 0.5, 0),
    (1.0, 0.3, 0),
    (0.7, 1.0, 5),
    (1.3, 0.8, 12),
]


@pytest.mark.parametrize("how", ["sort", "rejection"])
@pytest.mark.parametrize("temperature,top_p,top_k", CASES)
def test_samplers_draw_hf_distribution(temperature: float, top_p: float, top_k: int, how: str) -> None:
    vocab, draws = 40, 200_000
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1, vocab, generator=gen) * 2
    target = hf_distribution(logits, temperature, top_p, top_k)[0]
    torch.manual_seed(1)
    rows = logits.expand(draws, vocab)
    t, p = torch.tensor(temperature), torch.tensor(top_p)
    candidates = (head_candidates(top_p) or 60) if how == "rejection" else 0  # 0.7^60: no fallback
    if top_p < 1 or top_k:
        got = sample_filtered(rows, t, p, top_k, candidates)
    else:
        got = sample_plain(rows, t)
    freq = frequencies(got, vocab)
    assert freq[target == 0].sum() == 0, "a token outside the top-k/top-p head was drawn"
    assert 0.5 * (freq - target).abs().sum() < 0.01  # total variation; sampling noise is ~0.003


def test_rejection_falls_back_to_the_most_probable_token() -> None:
    """With one candidate, a draw outside the head becomes the argmax: the head's probabilities, plus
    the tail's mass on the most probable token — the fallback that enough candidates make negligible."""
    vocab, draws, top_p = 40, 200_000, 0.5
    logits = torch.randn(1, vocab, generator=torch.Generator().manual_seed(0)) * 2
    probs = logits.softmax(-1)[0]
    head = hf_distribution(logits, 1.0, top_p, 0)[0] > 0
    expected = torch.where(head, probs, 0.0)
    expected[probs.argmax()] += probs[~head].sum()
    torch.manual_seed(1)
    got = sample_filtered(logits.expand(draws, vocab), torch.tensor(1.0), torch.tensor(top_p), 0, 1)
    assert 0.5 * (frequencies(got, vocab) - expected).abs().sum() < 0.01


@pytest.mark.parametrize(
    "top_p,candidates",
    [(1.0, 0), (0.0, 0), (0.99, 5), (0.95, 7), (0.9, 9), (0.8, 13), (0.5, 30), (0.45, 0), (0.3, 0)],
)
def test_head_candidates_bound_the_miss(top_p: float, candidates: int) -> None:
    """Enough candidates that all miss the head with chance below 1e-9; none (sort) past 32."""
    assert head_candidates(top_p) == candidates
    if candidates:
        assert (1 - top_p) ** candidates <= 1e-9 < (1 - top_p) ** (candidates - 1)


def test_grouped_decode_attention_matches_sdpa() -> None:
    """One query token per row: the grouped matmuls give SDPA's output with repeated K/V heads."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from pipeline.generation.attention import grouped_decode_attention

    class Layer:
        num_key_value_groups, is_causal = 2, True

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*s, generator=gen) for s in ((3, 4, 1, 8), (3, 2, 10, 8), (3, 2, 10, 8)))
    mask = torch.rand(3, 1, 1, 10, generator=gen) > 0.3
    mask[..., 0] = True
    expected, _ = sdpa_attention_forward(Layer(), q, k, v, mask, scaling=0.3)
    got, _ = grouped_decode_attention(Layer(), q, k, v, mask, scaling=0.3)
    assert torch.allclose(got, expected, atol=1e-6)


def test_auto_is_compiled_on_gpu_only() -> None:
    assert resolve("auto", "cuda") == "compiled"
    assert resolve("auto", "cpu") == "hf"
    assert resolve("paged", "cpu") == "paged"


# --------------------------------------------------------------------------------------------------
# Engines on the builtin model


@pytest.fixture(scope="module")
def model_and_prompts(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoModelForCausalLM

    from pipeline.models import build_builtin_model, load_tokenizer

    path: Path = build_builtin_model("builtin:tiny", TINY, tmp_path_factory.mktemp("gen") / "m", seed=0)
    tok = load_tokenizer(str(path))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
    texts = ["What is 12+7?", "Write a function that adds two numbers.", "hi", "Spell 'cascade' backwards."]
    prompts = [
        tok(tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True),
            add_special_tokens=False)["input_ids"]
        for t in texts
    ]  # fmt: skip
    return model, tok, prompts


def engine(name: str, model_and_prompts):
    model, tok, _ = model_and_prompts
    return make_engine(name, model, end_tokens(model, tok), tok.pad_token_id)


def test_compiled_matches_hf_greedy(model_and_prompts) -> None:
    prompts = model_and_prompts[2]
    greedy = Sampling(max_new_tokens=24)
    reference = engine("hf", model_and_prompts).generate(prompts, greedy, seed=0)
    got = engine("compiled", model_and_prompts).generate(prompts, greedy, seed=0)
    assert got.ids == reference.ids
    assert got.truncated == reference.truncated


def test_compiled_seeds_fix_samples(model_and_prompts) -> None:
    prompts = model_and_prompts[2]
    e = engine("compiled", model_and_prompts)
    sampling = Sampling(max_new_tokens=16, temperature=1.0, top_p=0.9, n=3)
    first, again, other = (e.generate(prompts, sampling, seed=s) for s in (7, 7, 8))
    assert len(first.ids) == len(prompts) * 3
    assert first.ids == again.ids
    assert first.ids != other.ids
    state = torch.get_rng_state()
    e.generate(prompts, sampling, seed=9)
    assert torch.equal(state, torch.get_rng_state()), "generation must leave the process's random state alone"


def test_compiled_reuses_and_regrows_buffers(model_and_prompts) -> None:
    """A larger call regrows the cache; later smaller calls reuse it and still match hf."""
    prompts = model_and_prompts[2]
    e, hf = engine("compiled", model_and_prompts), engine("hf", model_and_prompts)
    short, long = Sampling(max_new_tokens=8), Sampling(max_new_tokens=30)
    assert e.generate(prompts[:1], short, 0).ids == hf.generate(prompts[:1], short, 0).ids
    assert e.generate(prompts * 3, long, 0).ids == hf.generate(prompts * 3, long, 0).ids
    assert e.generate(prompts[1:3], short, 0).ids == hf.generate(prompts[1:3], short, 0).ids


def test_a_suspended_compiled_engine_holds_no_cache_and_draws_the_same(model_and_prompts) -> None:
    """Suspended for a training step, the engine gives its KV cache's memory back; the next call
    allocates it again (zeroed: masked positions must not hold NaN) and draws what it would have."""
    prompts = model_and_prompts[2]
    e, hf = engine("compiled", model_and_prompts), engine("hf", model_and_prompts)
    sampling = Sampling(max_new_tokens=16, temperature=1.0, top_p=0.9, n=2)
    first = e.generate(prompts, sampling, seed=5).ids
    assert e.suspend()  # and its captured steps are gone: the weights may move too
    assert not hf.suspend()  # the weights may move only where an engine says so
    layers = e._buffers.cache.layers
    assert all(t.untyped_storage().nbytes() == 0 for layer in layers for t in (layer.keys, layer.values))
    assert e.generate(prompts, sampling, seed=5).ids == first
    assert all(t.untyped_storage().nbytes() > 0 for layer in layers for t in (layer.keys, layer.values))
    e.suspend()
    greedy = Sampling(max_new_tokens=24)
    assert e.generate(prompts, greedy, 0).ids == hf.generate(prompts, greedy, 0).ids


def test_a_compiled_forward_reads_freed_and_restored_weights_without_compiling_again(
    model_and_prompts,
) -> None:
    """The inference copy's weights are freed for training and re-allocated (elsewhere) for the next
    generation: the decoding forward under ``torch.compile`` must read the new memory, not recompile."""
    import torch._dynamo.utils

    from pipeline.generation.mirror import InferenceCopy

    policy, tok, prompts = model_and_prompts
    policy = copy.deepcopy(policy)
    mirror = InferenceCopy(policy, torch.float32)
    eos = end_tokens(policy, tok)
    compiled = make_engine("compiled", mirror.model, eos, tok.pad_token_id, compile="full")
    greedy = Sampling(max_new_tokens=12)
    before = compiled.generate(prompts, greedy, 0).ids
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled.suspend()
    mirror.free()
    torch.full((1 << 22,), 7.0, device=policy.device)  # the freed memory is reused meanwhile
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p), alpha=0.5)
    mirror.sync(policy)
    after = compiled.generate(prompts, greedy, 0).ids
    assert after == make_engine("hf", policy, eos, tok.pad_token_id).generate(prompts, greedy, 0).ids
    assert after != before
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs


@pytest.mark.parametrize(
    ("bucket", "attended", "length", "span"),
    [
        (0, 5, 64, 0),  # off: the whole cache, no span passed
        (8, 1, 64, 8),
        (8, 8, 64, 8),
        (8, 9, 64, 16),
        (64, 65, 100, 100),  # never past the cache
        (64, 100, 100, 100),
    ],
)
def test_a_step_attends_over_the_written_positions_rounded_up(
    model_and_prompts, bucket, attended, length, span
):
    from pipeline.generation.static import StaticEngine

    model, tok, _ = model_and_prompts
    e = StaticEngine(model, end_tokens(model, tok), tok.pad_token_id, span_bucket=bucket)
    assert e._span(SimpleNamespace(length=length), attended) == span


def test_a_span_reads_the_attended_positions_and_nothing_past_them() -> None:
    from pipeline.generation.attention import SPAN, grouped_decode_attention

    torch.manual_seed(0)
    query, key, value = torch.randn(2, 4, 1, 8), torch.randn(2, 2, 16, 8), torch.randn(2, 2, 16, 8)
    mask = torch.zeros(2, 1, 1, 16, dtype=torch.bool)
    mask[0, ..., 3:12] = True  # left padding, then the written positions: the last is index 11
    mask[1, ..., :12] = True
    whole, _ = grouped_decode_attention(None, query, key, value, mask)
    key[:, :, 12:], value[:, :, 12:] = float("nan"), float("nan")  # unwritten: must not be read
    spanned, _ = grouped_decode_attention(None, query, key, value, mask, **{SPAN: torch.empty(12)})
    assert torch.allclose(spanned, whole, atol=1e-6)
    short, _ = grouped_decode_attention(None, query, key, value, mask, **{SPAN: torch.empty(11)})
    assert not torch.allclose(short, whole, atol=1e-3)  # one position short is another attention


@pytest.mark.parametrize("compile", ["none", "full"])
def test_attending_over_spans_changes_no_completion(model_and_prompts, compile: str) -> None:
    """Positions past the span are not written yet (masked out), so reading only the span gives the
    same greedy completions as hf and the same samples as the whole cache; compiled, the span is a
    dynamic size: crossing spans compiles nothing more."""
    import torch._dynamo.utils

    model, tok, prompts = model_and_prompts
    eos = end_tokens(model, tok)
    spans = make_engine("compiled", model, eos, tok.pad_token_id, compile=compile, span_bucket=8)
    whole = make_engine("compiled", model, eos, tok.pad_token_id, compile="none")
    greedy, sampled = (
        Sampling(max_new_tokens=40),
        Sampling(max_new_tokens=40, temperature=1.0, top_p=0.9, n=2),
    )
    assert (
        spans.generate(prompts, greedy, 0).ids
        == engine("hf", model_and_prompts).generate(prompts, greedy, 0).ids
    )
    assert spans.generate(prompts, sampled, 3).ids == whole.generate(prompts, sampled, 3).ids
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert spans.generate(prompts[:2], greedy, 1).ids == whole.generate(prompts[:2], greedy, 1).ids
    assert len(spans._spans) >= 5  # spans of 8 over prompts and 40 new tokens
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs


def test_storages_count_tied_weights_once_and_keep_the_tensors() -> None:
    from pipeline.generation.storage import Storages

    embed, head = torch.nn.Embedding(8, 4), torch.nn.Linear(4, 8, bias=True)
    head.weight = embed.weight  # tied, as a causal LM's head and embeddings often are
    memory = Storages([embed.weight, head.weight, head.bias])
    assert memory.nbytes == (8 * 4 + 8) * 4
    memory.free()
    assert memory.freed and embed.weight.untyped_storage().nbytes() == 0 and head.bias.shape == (8,)
    memory.free()  # twice is once
    assert memory.restore() and not memory.restore()
    with torch.no_grad():
        head.weight.fill_(1.0)
    assert embed.weight.sum().item() == 32.0  # still one tensor


def test_completions_are_cut_after_the_end_token(model_and_prompts) -> None:
    e = engine("hf", model_and_prompts)
    eos = e.eos_ids[0]
    out = e.cut([[5, 6, eos, e.pad_id, e.pad_id], [5, 6, 7]])
    assert out.ids == [[5, 6, eos], [5, 6, 7]]
    assert out.truncated == [False, True]
    assert out.tokens == 6


@pytest.mark.gpu
def test_cuda_graph_step_matches_eager(model_and_prompts) -> None:
    """On a GPU the captured step gives the eager step's greedy tokens."""
    from pipeline.generation.static import StaticEngine

    model, tok, prompts = model_and_prompts
    eos = end_tokens(model, tok)
    greedy = Sampling(max_new_tokens=32)
    graphed = StaticEngine(model, eos, tok.pad_token_id, cuda_graphs=True).generate(prompts, greedy, 0)
    eager = StaticEngine(model, eos, tok.pad_token_id, cuda_graphs=False).generate(prompts, greedy, 0)
    assert graphed.ids == eager.ids


@pytest.mark.gpu
def test_compiled_top_p_is_seeded(model_and_prompts) -> None:
    """On a GPU, top-p by rejection with the head test compiled, inside the captured step: one seed
    gives one set of completions, another seed others."""
    from pipeline.generation.static import StaticEngine

    model, tok, prompts = model_and_prompts
    top_p = Sampling(max_new_tokens=32, temperature=1.0, top_p=0.9, n=2)
    e = StaticEngine(model, end_tokens(model, tok), tok.pad_token_id, cuda_graphs=True, compile="full")
    first, again, other = (e.generate(prompts, top_p, seed).ids for seed in (3, 3, 4))
    assert first == again
    assert first != other
    assert all(0 <= t < model.config.vocab_size for row in first for t in row)
