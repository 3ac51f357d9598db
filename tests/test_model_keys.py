"""Every accepted ``model.*`` key is applied to the loads of the policy, or rejected at recipe load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.config import BuiltinModelConfig, ModelConfig
from pipeline.models import (
    CHAT_TEMPLATE,
    build_builtin_model,
    chat_template_text,
    load_causal_lm,
    load_tokenizer,
    model_kwargs,
)
from pipeline.schema import ConfigError, from_dict

SMALL = BuiltinModelConfig(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                           intermediate_size=64, tokenizer_corpus_rows=10)  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_builtin_model("builtin:tiny", SMALL, tmp_path_factory.mktemp("m") / "base", seed=0)


def model(path: str | Path, **keys: Any) -> ModelConfig:
    return ModelConfig(name_or_path=str(path), **keys)


# (model.* keys, the load: path and training, what from_pretrained gets)
KWARGS = [
    ({}, ("org/base", False), {"dtype": torch.float32}),  # nothing asked: transformers' defaults, fp32 on CPU
    ({}, ("org/base", True), {"dtype": torch.float32}),  # trained weights: fp32 master copy
    ({"dtype": "bfloat16"}, ("org/base", True), {"dtype": torch.bfloat16}),  # pure bf16 training
    ({"dtype": "float32"}, ("org/base", False), {"dtype": torch.float32}),
    ({"revision": "v1.1"}, ("org/base", False), {"revision": "v1.1", "dtype": torch.float32}),  # the named id
    ({"revision": "v1.1"}, ("runs/x/stages/01-sft/final", False), {"dtype": torch.float32}),  # not a later stage
    ({"trust_remote_code": True}, ("runs/x/final", True), {"trust_remote_code": True, "dtype": torch.float32}),
    ({"attn_implementation": "eager"}, ("org/base", False), {"attn_implementation": "eager", "dtype": torch.float32}),
]  # fmt: skip


@pytest.mark.parametrize(("keys", "load", "expected"), KWARGS)
def test_model_keys_become_from_pretrained_arguments(
    keys: dict[str, Any], load: tuple[str, bool], expected: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pipeline.hub.offline", lambda: False)  # online: no cache question
    path, training = load
    assert model_kwargs(path, "fp32", training, model=model("org/base", **keys)) == expected


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_attention_implementation_is_applied(checkpoint: Path, attention: str) -> None:
    lm = load_causal_lm(str(checkpoint), "fp32", model=model(checkpoint, attn_implementation=attention))
    assert lm.config._attn_implementation == attention


def test_dtype_is_applied(checkpoint: Path) -> None:
    lm = load_causal_lm(str(checkpoint), "fp32", training=True, model=model(checkpoint, dtype="bfloat16"))
    assert next(lm.parameters()).dtype == torch.bfloat16
    assert next(load_causal_lm(str(checkpoint), "fp32", training=True).parameters()).dtype == torch.float32


def test_chat_template_by_name_and_by_file(checkpoint: Path, tmp_path: Path) -> None:
    import trl

    qwen3 = (Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja").read_text()
    assert load_tokenizer(str(checkpoint), model(checkpoint, chat_template="qwen3")).chat_template == qwen3
    own = tmp_path / "mine.jinja"
    own.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    tok = load_tokenizer(str(checkpoint), model(checkpoint, chat_template=str(own)))
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == "[user] hi\n"
    assert load_tokenizer(str(checkpoint)).chat_template == CHAT_TEMPLATE  # the checkpoint's own
    assert chat_template_text("chatml") == CHAT_TEMPLATE


# (model.* keys, a fragment of the one sentence)
REJECTED = [
    ({"name_or_path": "builtin:tiny", "revision": "main"}, "'model.revision' applies to a hub id"),
    ({"name_or_path": "builtin:tiny", "trust_remote_code": True}, "'model.trust_remote_code' has nothing to run"),
    ({"name_or_path": "org/base", "attn_implementation": "sdpa2"}, "unknown attention 'sdpa2' (did you mean 'sdpa'"),
    ({"name_or_path": "org/base", "chat_template": "qwen33"}, "unknown chat template 'qwen33' (did you mean 'qwen3'"),
    ({"name_or_path": "org/base", "chat_template": "templates/none.jinja"}, "'templates/none.jinja' does not exist"),
    ({"name_or_path": "org/base", "dtype": "float16"}, "'model.dtype' must be one of 'auto', 'float32', 'bfloat16'"),
]  # fmt: skip


@pytest.mark.parametrize(("keys", "fragment"), REJECTED)
def test_unusable_model_keys_are_rejected_at_load(keys: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(ModelConfig, keys, "model")
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_hub_kernel_is_an_attention_name() -> None:
    cfg = from_dict(
        ModelConfig, {"name_or_path": "org/base", "attn_implementation": "kernels-community/flash-attn"}
    )
    assert cfg.attn_implementation == "kernels-community/flash-attn"
