"""The policy's inference copy: what a fast engine generates from while the trainer owns the policy.

The trainer keeps fp32 master weights (bf16 only inside autocast), and the fast engines need weights
in the compute dtype at fixed addresses (a captured CUDA graph reads them in place). So rollouts come
from a copy in the compute dtype that is refreshed in place after every optimizer step: the master
weights never change dtype, and a refresh of a 0.6B model is one device-to-device copy per tensor.
LoRA adapters are merged into the copy (the policy is merged and unmerged around the read). Between
generations the copy can give its memory back for the training step (:meth:`InferenceCopy.free`); the
next sync allocates it again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from pipeline.generation.storage import Storages

log = logging.getLogger(__name__)


class InferenceCopy:
    def __init__(self, policy: Any, dtype: Any):
        import torch
        from transformers import AutoModelForCausalLM

        base = _base_model(_uncompiled(policy))
        self.device = next(base.parameters()).device
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(base.config, dtype=dtype)
        model.to_empty(device=self.device)
        model.tie_weights()
        model.eval().requires_grad_(False)
        model.generation_config = base.generation_config
        self.model = model
        self._targets = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        self._weights = Storages(model.parameters())  # every one is written by each sync (checked there)
        self.sync(policy)

    @property
    def freed(self) -> bool:
        return self._weights.freed

    def free(self) -> None:
        """Give the weights' memory back until the next :meth:`sync` (buffers, a few KiB, stay)."""
        self._weights.free()

    def sync(self, policy: Any) -> None:
        """Copy the policy's current weights (merged adapters included) into the copy, in place."""
        import torch

        self._weights.restore()
        seen = set()
        policy = _uncompiled(policy)
        with torch.no_grad(), _merged(policy):
            base = _base_model(policy)
            for name, tensor in [*base.named_parameters(), *base.named_buffers()]:
                key = _plain_name(name)
                if key is None:
                    continue
                target = self._targets.get(key)
                if target is None:
                    raise RuntimeError(
                        f"the inference copy has no tensor '{key}' (from the policy's '{name}')"
                    )
                target.copy_(tensor)
                seen.add(key)
        missing = {n for n, p in self.model.named_parameters() if n not in seen}
        if missing:
            raise RuntimeError(f"the policy has no weights for {sorted(missing)[:3]} of the inference copy")


def _uncompiled(policy: Any) -> Any:
    """The module inside ``torch.compile``'s wrapper (``train.extra: {torch_compile: true}`` compiles the
    policy), whose tensor names carry no ``_orig_mod.`` prefix."""
    return getattr(policy, "_orig_mod", policy)


def _base_model(policy: Any) -> Any:
    """The transformers model inside a PEFT wrapper (the model itself otherwise)."""
    get = getattr(policy, "get_base_model", None)
    return get() if callable(get) else policy


@contextlib.contextmanager
def _merged(policy: Any) -> Iterator[None]:
    if not hasattr(policy, "merge_adapter"):
        yield
        return
    policy.merge_adapter()
    try:
        yield
    finally:
        policy.unmerge_adapter()


def _plain_name(name: str) -> str | None:
    """A PEFT-wrapped tensor's name in the plain model, or None for adapter-only tensors."""
    if "lora_" in name or ".original_module." in name:
        return None
    return name.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")
