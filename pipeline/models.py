"""Models and tokenizers: hub ids, local checkpoints, and the builtin tiny model; chat template; precision.

``builtin:tiny`` is a Qwen3-architecture model built from :class:`pipeline.config.BuiltinModelConfig`
with a byte-level BPE tokenizer trained on the synthetic tasks' text. It is written once into the run
directory in HF format, so every later step loads it exactly like any other checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.atomic import atomic_dir

if TYPE_CHECKING:  # pipeline.config may import this module (hub ids), so its classes are for typing only
    from pipeline.config import BuiltinModelConfig, LoraConfig, ModelConfig

log = logging.getLogger(__name__)

THINK_MARKER, NO_THINK_MARKER = " /think", " /no_think"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

# Qwen3-style ChatML. The {% generation %} markers let TRL compute the assistant-only loss mask, and the
# end-of-turn token sits inside them so the model learns to stop.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def is_hub_id(ref: str) -> bool:
    """Whether ``ref`` has the shape of a hub repository id (``owner/name``); nothing is looked up."""
    return HUB_ID.fullmatch(ref) is not None


def is_model_ref(ref: str) -> bool:
    """Whether ``ref`` names a model outside the run: an existing path or a hub id."""
    return Path(ref).exists() or is_hub_id(ref)


# --------------------------------------------------------------------------------------------------
# Precision and devices


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def precision_flags(precision: str) -> dict[str, bool]:
    """``{"bf16": …, "fp16": …}`` for the trainers; ``auto`` is bf16 on a GPU that has it, fp32 on CPU."""
    import torch

    if precision == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return {"bf16": True, "fp16": False}
        return {"bf16": False, "fp16": False}
    if precision in ("bf16", "fp16") and not torch.cuda.is_available():
        log.warning("precision %s asked for without a GPU; training in fp32", precision)
        return {"bf16": False, "fp16": False}
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def torch_dtype(precision: str) -> Any:
    import torch

    flags = precision_flags(precision)
    return torch.bfloat16 if flags["bf16"] else torch.float16 if flags["fp16"] else torch.float32


# --------------------------------------------------------------------------------------------------
# Builtin tiny model


def is_builtin(name_or_path: str) -> bool:
    return name_or_path.startswith("builtin:")


def build_tokenizer(cfg: BuiltinModelConfig, seed: int) -> Any:
    """A byte-level BPE tokenizer trained on the synthetic corpus; identical for identical inputs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from pipeline.data.synthetic import corpus

    tok = Tokenizer(models.BPE())
    # Digits are split one by one so arithmetic is learnable; bytes cover any text.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus(seed=seed, n_per_task=cfg.tokenizer_corpus_rows)), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_builtin_model(name: str, cfg: BuiltinModelConfig, out_dir: Path, seed: int) -> Path:
    """Write the builtin model ``name`` into ``out_dir`` (once; atomically) and return the directory."""
    if name != "builtin:tiny":
        raise ValueError(f"unknown builtin model '{name}' (known: builtin:tiny)")
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    tokenizer = build_tokenizer(cfg, seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.hidden_size // cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    n_params = sum(p.numel() for p in model.parameters())
    with atomic_dir(out_dir) as staged:
        model.save_pretrained(staged)
        tokenizer.save_pretrained(staged)
    log.info("built %s: %.2fM parameters, vocabulary %d → %s", name, n_params / 1e6, len(tokenizer), out_dir)
    return out_dir


# --------------------------------------------------------------------------------------------------
# Loading


def starting_model(model: ModelConfig, base_dir: Path, seed: int) -> str:
    """The checkpoint a run starts from: a path or hub id as it is; a builtin model built, or a GGUF file
    de-quantised, once into ``base_dir`` (the run's ``base/``), so every later use loads a plain checkpoint
    (and the cascade and ``cascade-evaluate checkpoint=base`` start from the same weights)."""
    from pipeline.gguf import is_gguf, materialise

    if is_gguf(model.name_or_path):
        return str(materialise(model.name_or_path, base_dir))
    if is_builtin(model.name_or_path):
        return str(build_builtin_model(model.name_or_path, model.builtin, base_dir, seed))
    return model.name_or_path


def pretrained_kwargs(path: str, model: ModelConfig | None = None) -> dict[str, Any]:
    """``from_pretrained`` arguments of a load of ``path`` that the recipe's ``model.*`` keys give.

    ``trust_remote_code`` applies to every load of the policy; ``revision`` to the hub id it names only
    (later stages load the run's own checkpoints).
    """
    kwargs: dict[str, Any] = {}
    if model is not None and model.trust_remote_code:
        kwargs["trust_remote_code"] = True
    if model is not None and model.revision and path == model.name_or_path:
        kwargs["revision"] = model.revision
    return kwargs


def load_tokenizer(path: str, model: ModelConfig | None = None) -> Any:
    """A tokenizer with a pad token and a chat template: ``model.chat_template`` when the recipe sets one,
    else the checkpoint's own, else Cascade's ChatML template."""
    from transformers import AutoTokenizer

    from pipeline.hub import loading

    kwargs = pretrained_kwargs(path, model)
    with loading(path, kwargs.get("revision")):  # a hub id out of reach: the cache, or one sentence
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if model is not None and model.chat_template:
        tok.chat_template = chat_template_text(model.chat_template)
    elif not getattr(tok, "chat_template", None):
        log.info("%s has no chat template; using Cascade's ChatML template", path)
        tok.chat_template = CHAT_TEMPLATE
    return tok


def weights_dtype(precision: str, training: bool, frozen_base: bool = False, dtype: str = "auto") -> Any:
    """The dtype to load weights in.

    ``auto``: trained weights stay fp32 (master weights; bf16/fp16 is the autocast compute precision
    chosen by ``precision_flags``): Adam on bf16 parameters loses small updates and can overflow to NaN.
    Frozen weights (a LoRA base) and evaluation use the compute precision itself. Any other ``dtype``
    (``model.dtype``) is what every load of the policy uses.
    """
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if training and not frozen_base:
        return torch.float32
    return torch_dtype(precision)


def model_kwargs(
    path: str, precision: str, training: bool, frozen_base: bool = False, model: ModelConfig | None = None
) -> dict[str, Any]:
    """Every ``from_pretrained`` argument of a load of the policy from ``path``: dtype, attention, hub keys."""
    kwargs = pretrained_kwargs(path, model)
    kwargs["dtype"] = weights_dtype(precision, training, frozen_base, model.dtype if model else "auto")
    if model is not None and model.attn_implementation:
        kwargs["attn_implementation"] = model.attn_implementation
    return kwargs


def load_causal_lm(
    path: str,
    precision: str = "auto",
    device: Any = None,
    training: bool = False,
    frozen_base: bool = False,
    model: ModelConfig | None = None,
) -> Any:
    """A causal LM from ``path``: partitioned while a ZeRO-3 stage is set up for training, whole otherwise."""
    from transformers import AutoModelForCausalLM

    from pipeline.hub import loading

    kwargs = model_kwargs(path, precision, training, frozen_base, model)
    with contextlib.nullcontext() if training else whole_weights(), loading(path, kwargs.get("revision")):
        lm = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    return lm.to(device) if device is not None else lm


# --------------------------------------------------------------------------------------------------
# Chat templates and attention


BUILTIN_TEMPLATES = {"chatml": CHAT_TEMPLATE}  # Cascade's own (with generation markers)


def template_names() -> dict[str, Path | str]:
    """Templates a recipe may name: Cascade's own, and every template the installed TRL ships."""
    names: dict[str, Path | str] = dict(BUILTIN_TEMPLATES)
    try:
        import trl

        folder = Path(trl.__file__).parent / "chat_templates"
        names.update({p.stem: p for p in sorted(folder.glob("*.jinja"))})
    except ImportError:  # pragma: no cover - TRL is a dependency
        pass
    return names


def chat_template_text(value: str) -> str:
    """The Jinja text of ``model.chat_template``: a file, or a template's name; ValueError if neither."""
    path = Path(value).expanduser()
    if path.suffix in (".jinja", ".j2", ".txt") or "/" in value:
        if not path.is_file():
            raise ValueError(f"'{value}' does not exist (a chat template file, or a template's name)")
        return path.read_text()
    names = template_names()
    if value not in names:
        from pipeline.schema import closest

        raise ValueError(
            f"unknown chat template '{value}'{closest(value, names)}; give a .jinja file or one of: "
            f"{', '.join(names)}"
        )
    found = names[value]
    return found.read_text() if isinstance(found, Path) else found


def known_attention() -> list[str]:
    """The attention implementations the installed transformers knows (``model.attn_implementation``)."""
    try:
        from transformers import AttentionInterface

        registered = list(AttentionInterface().valid_keys())
    except (ImportError, AttributeError):  # pragma: no cover - an old transformers
        registered = ["sdpa", "flash_attention_2", "flex_attention"]
    return ["eager", *registered]


# --------------------------------------------------------------------------------------------------
# DeepSpeed ZeRO-3 and models loaded beside the trained one
#
# Creating a trainer's arguments with a ZeRO-3 config registers it in transformers, and from then on every
# ``from_pretrained`` in the process partitions the weights across processes (``deepspeed.zero.Init``).
# That is what the trained model needs (a 14B model never exists whole in one process), and wrong for a
# frozen model each process runs alone: a reward model inside an RL stage, the evaluation replica after it,
# or the next stage's model when that stage does not use ZeRO-3.


@contextlib.contextmanager
def whole_weights() -> Iterator[None]:
    """Load models whole in this block, even inside a ZeRO-3 stage; the stage's config is restored after."""
    try:
        from transformers.integrations import deepspeed as hf_deepspeed
    except ImportError:  # pragma: no cover - transformers without its DeepSpeed integration
        yield
        return
    saved = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


def end_deepspeed_stage() -> None:
    """Forget the DeepSpeed config a finished stage registered, so nothing after it loads partitioned."""
    try:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config
    except ImportError:  # pragma: no cover
        return
    unset_hf_deepspeed_config()


def peft_config(lora: LoraConfig, task_type: str = "CAUSAL_LM") -> Any:
    """A PEFT LoraConfig for a stage, or None when LoRA is off."""
    if not lora.enabled:
        return None
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type=task_type,
    )


def save_final(model: Any, tokenizer: Any, final_dir: Path) -> Path:
    """Save a stage's final checkpoint atomically, merging LoRA adapters so later stages load a plain model."""
    if hasattr(model, "merge_and_unload") and hasattr(model, "peft_config"):
        model = model.merge_and_unload()
    with atomic_dir(final_dir) as staged:
        model.save_pretrained(staged, safe_serialization=True)
        tokenizer.save_pretrained(staged)
    return Path(final_dir)


def checkpoint_exists(path: str | Path) -> bool:
    """Whether ``path`` holds a complete HF checkpoint (config plus weights)."""
    p = Path(path)
    return (p / "config.json").exists() and (
        any(p.glob("*.safetensors")) or any(p.glob("*.bin")) or (p / "model.safetensors.index.json").exists()
    )


def prompt_messages(prompt: str, mode: str) -> list[dict[str, str]]:
    """The user turn of a prompt in thinking (`` /think``) or non-thinking (`` /no_think``) mode."""
    marker = THINK_MARKER if mode == "think" else NO_THINK_MARKER
    return [{"role": "user", "content": prompt.rstrip() + marker}]
