"""The policy's inference copy follows the policy: same weights after a sync, master weights untouched,
LoRA adapters merged into it — the weights rollouts are generated from are always the current policy's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.config import BuiltinModelConfig
from pipeline.generation.mirror import InferenceCopy

TINY = BuiltinModelConfig(vocab_size=256, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                          intermediate_size=64, tokenizer_corpus_rows=40)  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.models import build_builtin_model

    return build_builtin_model("builtin:tiny", TINY, tmp_path_factory.mktemp("copy") / "m", seed=0)


def _policy(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def _same(copy: InferenceCopy, weights: dict[str, torch.Tensor]) -> bool:
    got = dict(copy.model.named_parameters())
    return all(torch.equal(got[name], w.to(got[name].dtype)) for name, w in weights.items())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_sync_after_an_optimizer_step_brings_the_new_weights(model_dir: Path, dtype: torch.dtype) -> None:
    policy = _policy(model_dir)
    copy = InferenceCopy(policy, dtype)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    assert _same(copy, before)
    addresses = {n: p.data_ptr() for n, p in copy.model.named_parameters()}

    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    policy(input_ids=torch.tensor([[1, 2, 3, 4]]), labels=torch.tensor([[1, 2, 3, 4]])).loss.backward()
    optimizer.step()
    after = {n: p.detach().clone() for n, p in policy.named_parameters()}
    assert not _same(copy, after)  # stale until synced
    copy.sync(policy)
    assert _same(copy, after)
    assert {
        n: p.data_ptr() for n, p in copy.model.named_parameters()
    } == addresses  # in place: graphs stay valid
    assert all(p.dtype == torch.float32 for p in policy.parameters())  # master weights keep their dtype
    assert all(p.dtype == dtype for p in copy.model.parameters())


def test_lora_adapters_are_merged_into_the_copy(model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(_policy(model_dir), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # B starts at zero: make the adapter change the weights
    copy = InferenceCopy(policy, torch.float32)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        want = policy(input_ids=ids).logits
        got = copy.model(input_ids=ids).logits
        plain = policy.get_base_model()
        with policy.disable_adapter():
            without = plain(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, without, atol=1e-3)
    assert not any("lora" in n for n, _ in copy.model.named_parameters())


def test_a_compiled_policy_is_read_through_its_wrapper(model_dir: Path) -> None:
    """``train.extra: {torch_compile: true}`` hands the trainer's model over wrapped by ``torch.compile``,
    whose tensor names start with ``_orig_mod.``; the copy reads the module inside."""
    policy = _policy(model_dir)
    compiled = torch.compile(policy)  # nothing is compiled until it is called
    assert any(n.startswith("_orig_mod.") for n, _ in compiled.named_parameters())
    copy = InferenceCopy(compiled, torch.float32)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1.0)
    copy.sync(compiled)
    assert _same(copy, {n: p.detach() for n, p in policy.named_parameters()})


def test_a_freed_copy_holds_no_weights_until_the_next_sync(model_dir: Path) -> None:
    """Between generations the copy gives its memory back for the training step; the sync that precedes
    the next generation allocates it again and writes the policy's current weights."""
    policy = _policy(model_dir)
    copy = InferenceCopy(policy, torch.bfloat16)
    shapes = {n: p.shape for n, p in copy.model.named_parameters()}
    copy.free()
    assert copy.freed
    assert all(p.untyped_storage().nbytes() == 0 for p in copy.model.parameters())
    assert {n: p.shape for n, p in copy.model.named_parameters()} == shapes  # same tensors: no recompiling
    with torch.no_grad():
        for p in policy.parameters():
            p.mul_(0.5)
    copy.sync(policy)
    assert not copy.freed
    assert _same(copy, {n: p.detach() for n, p in policy.named_parameters()})
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert torch.isfinite(copy.model(input_ids=ids).logits).all()
