"""Varlen attention over flattened batches: each conversation attends only to itself, as if run alone."""

from __future__ import annotations

import pytest
import torch

from pipeline import varlen_attention


def _model(heads: int, kv_heads: int) -> torch.nn.Module:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=16,
    )
    return Qwen3ForCausalLM(config).eval()


def _flattened(lengths: list[int]) -> tuple[list[torch.Tensor], dict[str, torch.Tensor | int]]:
    generator = torch.Generator().manual_seed(sum(lengths))
    seqs = [torch.randint(0, 97, (n,), generator=generator) for n in lengths]
    bounds = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    batch = {
        "input_ids": torch.cat(seqs)[None],
        "position_ids": torch.cat([torch.arange(n) for n in lengths])[None],
        "cu_seq_lens_q": bounds,
        "cu_seq_lens_k": bounds,
        "max_length_q": max(lengths),
        "max_length_k": max(lengths),
    }
    return seqs, batch


@pytest.mark.parametrize(
    ("lengths", "heads", "kv_heads"),
    [
        ([7], 4, 4),  # one conversation: plain causal attention
        ([5, 9, 3], 4, 2),  # grouped-query attention
        ([1, 1, 12, 1], 4, 1),  # one-token rows (the padding a collator leaves at the end is such rows)
        ([16, 16], 2, 2),
    ],
)
def test_flattened_row_matches_each_conversation_alone(lengths: list[int], heads: int, kv_heads: int) -> None:
    model = _model(heads, kv_heads)
    seqs, batch = _flattened(lengths)
    with torch.no_grad():
        alone = torch.cat([model(input_ids=s[None]).logits[0] for s in seqs])
        with varlen_attention.selected(model):
            flat = model(**batch).logits[0]
    torch.testing.assert_close(flat, alone, rtol=1e-5, atol=1e-5)


def test_selection_is_undone_after_the_block_and_never_saved(tmp_path) -> None:
    model = _model(4, 2)
    before = model.config._attn_implementation
    with varlen_attention.selected(model):
        assert model.config._attn_implementation == varlen_attention.NAME
    assert model.config._attn_implementation == before
    model.save_pretrained(tmp_path)
    assert varlen_attention.NAME not in (tmp_path / "config.json").read_text()


def test_a_batch_without_boundaries_is_refused_not_attended_across() -> None:
    model = _model(4, 2)
    with varlen_attention.selected(model), pytest.raises(RuntimeError, match="flattened batches only"):
        model(input_ids=torch.tensor([[1, 2, 3]]))


@pytest.mark.parametrize(
    ("capability", "capable"),
    [((7, 0), False), ((7, 5), False), ((8, 0), True), ((8, 9), True), ((9, 0), True), ((10, 0), True)],
)
def test_the_kernel_needs_ampere_or_later(capability: tuple[int, int], capable: bool) -> None:
    assert varlen_attention.flash_capable(capability) is capable


@pytest.mark.parametrize("half", ["bfloat16", "float16", None])
def test_flattened_batches_are_never_the_default_without_a_gpu(half: str | None) -> None:
    """On CPU the exact fallback loops over conversations: padded batches stay the default there."""
    if torch.cuda.is_available():
        pytest.skip("checks the CPU default")
    assert varlen_attention.kernel_usable(_model(4, 2), half) is False


@pytest.mark.gpu
@pytest.mark.parametrize(("half", "usable"), [("bfloat16", True), ("float16", True), (None, False)])
def test_flattened_batches_are_the_default_of_half_precision_runs_on_a_gpu(
    half: str | None, usable: bool
) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    expected = usable and varlen_attention.flash_capable(torch.cuda.get_device_capability())
    assert varlen_attention.kernel_usable(_model(4, 2).cuda(), half) is expected


@pytest.mark.gpu
@pytest.mark.parametrize(("dtype", "autocast"), [(torch.bfloat16, False), (torch.float32, True)])
def test_kernel_matches_the_reference(dtype: torch.dtype, autocast: bool) -> None:
    """The FlashAttention kernel, forward and backward, against conversation-by-conversation SDPA in float32;
    under autocast (float32 queries, as RoPE hands them over) it runs in bf16 as SDPA would."""
    lengths, heads, kv_heads, dim = [37, 200, 5, 90], 8, 2, 64
    total = sum(lengths)
    bounds = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    torch.manual_seed(0)
    q = torch.randn(1, heads, total, dim, device="cuda", dtype=dtype, requires_grad=True)
    k = torch.randn(1, kv_heads, total, dim, device="cuda", dtype=dtype, requires_grad=True)
    v = torch.randn(1, kv_heads, total, dim, device="cuda", dtype=dtype, requires_grad=True)
    kw = {"cu_seq_lens_q": bounds, "cu_seq_lens_k": bounds, "max_length_q": 200, "max_length_k": 200}
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        assert varlen_attention.kernel_applies(q)
        fast, _ = varlen_attention.attention(None, q, k, v, None, scaling=dim**-0.5, **kw)
    assert fast.dtype == torch.bfloat16
    fast.float().square().sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    slow, _ = varlen_attention.attention(None, q32, k32, v32, None, scaling=dim**-0.5, **kw)
    slow.square().sum().backward()
    for got, want in zip((fast, *grads), (slow, q32.grad, k32.grad, v32.grad), strict=True):
        assert got.shape == want.shape
        assert ((got.float() - want).norm() / want.norm()).item() < 2e-2  # bf16 rounding, not a wrong mask
