"""``model``: the starting model, how every load of the policy is made, and a stage's LoRA adapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from pipeline.config.checks import environment_problem, looks_local
from pipeline.models import is_hub_id
from pipeline.schema import (
    POSITIVE,
    ConfigError,
    Range,
    at_least,
    closest,
)

# the builtin tokenizer's 256 bytes and 5 special tokens: a smaller vocabulary would be silently raised
MIN_BUILTIN_VOCAB = 261


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"

    RANGES: ClassVar[dict[str, Range]] = {
        "r": POSITIVE,
        "alpha": POSITIVE,
        "dropout": Range(0, 1, high_open=True),
    }


@dataclass
class BuiltinModelConfig:
    """Size of the ``builtin:tiny`` model (a Qwen3 architecture built from this config)."""

    vocab_size: int = 2048
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 768
    max_position_embeddings: int = 1024
    tokenizer_corpus_rows: int = 400  # rows per synthetic task used to train the BPE tokenizer

    RANGES: ClassVar[dict[str, Range]] = {
        "vocab_size": at_least(MIN_BUILTIN_VOCAB),
        **dict.fromkeys(
            ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
             "max_position_embeddings", "tokenizer_corpus_rows"),
            POSITIVE,
        ),
    }  # fmt: skip

    def validate(self, key: str) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"key '{key}.hidden_size' ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})"
            )
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"key '{key}.num_heads' ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
            )


@dataclass
class ModelConfig:
    """The starting model and how every load of the policy is made (stages, evaluation)."""

    name_or_path: str  # hub id, local directory, builtin:tiny, or gguf:<file or package> (pipeline.gguf)
    revision: str | None = None  # a hub id's branch, tag or commit
    trust_remote_code: bool = False  # run the checkpoint's own modelling code (a hub model or a local one)
    attn_implementation: str | None = None  # eager, sdpa, flash_attention_2, … (None: transformers' choice)
    # the dtype of the policy's weights: auto keeps trained weights in fp32 (the optimizer's master copy)
    # and loads frozen or evaluated ones in the compute precision; bfloat16 holds them all in bf16 (half
    # the memory of fp32 weights and Adam states, at the cost of small updates lost to rounding)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    chat_template: str | None = None  # a .jinja file (relative to the recipe) or a template's name
    builtin: BuiltinModelConfig = field(default_factory=BuiltinModelConfig)

    def validate(self, key: str) -> None:
        from pipeline.models import chat_template_text, known_attention

        src = self.name_or_path
        if src.startswith("builtin:") and src != "builtin:tiny":
            raise ConfigError(
                f"key '{key}.name_or_path' names unknown builtin model '{src}' (known: builtin:tiny)"
            )
        if looks_local(src) and not Path(src).expanduser().exists():
            raise ConfigError(f"key '{key}.name_or_path' points to '{src}', which does not exist")
        if src.startswith("gguf:"):  # a GGUF file or a package shipping one (pipeline.gguf)
            from pipeline.gguf import GGUFSourceError, resolve

            try:
                resolve(src)
            except GGUFSourceError as exc:
                raise ConfigError(f"key '{key}.name_or_path': {exc}") from None
        from pipeline.hub import is_remote

        if self.revision is not None and not is_remote(src):
            raise ConfigError(
                f"key '{key}.revision' applies to a hub id, and '{src}' is a local or builtin model"
            )
        if self.trust_remote_code and src.startswith("builtin:"):
            raise ConfigError(f"key '{key}.trust_remote_code' has nothing to run: '{src}' ships no code")
        if self.attn_implementation is not None:
            known = known_attention()
            name = self.attn_implementation
            if name not in known and not is_hub_id(name.partition(":")[0]):
                raise ConfigError(
                    f"key '{key}.attn_implementation' names unknown attention '{name}'{closest(name, known)}; "
                    f"known: {', '.join(known)}, or a kernel repository on the hub (owner/name)"
                )
            package = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}.get(
                name
            )
            import importlib.util

            if package and importlib.util.find_spec(package) is None:
                environment_problem(
                    f"key '{key}.attn_implementation' is {name}, which needs the {package} package, "
                    "not installed here (or use sdpa)"
                )
        if self.chat_template is not None:
            try:
                chat_template_text(self.chat_template)
            except ValueError as exc:
                raise ConfigError(f"key '{key}.chat_template': {exc}") from None
