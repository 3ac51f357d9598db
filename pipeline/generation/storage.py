"""Memory given back between uses while its tensors stay the same objects.

The GRPO stage trains between two generations, and the engine's inference copy and KV cache would
otherwise sit in GPU memory through the training step's activation peak. Resizing a tensor's storage
to zero bytes frees its memory (to PyTorch's caching allocator, where the training step can use it)
and keeps the tensor object — shape, dtype, identity — so a compiled forward that takes it runs again
without recompiling. Only the memory is new after :meth:`Storages.restore`, at a new address: a
captured CUDA graph that read the old one must be captured again. The contents are not kept; their
owner rewrites them (the inference copy syncs from the policy, the KV cache is zeroed).

Written by hand because no library offers this for inference tensors; FSDP frees its parameter shards
the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class Storages:
    """The distinct storages of some tensors (tied weights count once), freed and restored together."""

    def __init__(self, tensors: Iterable[Any]):
        held: dict[int, tuple[Any, int]] = {}
        for t in tensors:
            storage = t.untyped_storage()
            if storage.nbytes() and storage.data_ptr() not in held:
                held[storage.data_ptr()] = (t, storage.nbytes())
        self._held = list(held.values())
        self.freed = False

    @property
    def nbytes(self) -> int:
        """Bytes held while not freed."""
        return sum(n for _, n in self._held)

    def free(self) -> None:
        """Give the memory back; the tensors keep their shapes and must not be read until restored."""
        if not self.freed:
            for t, _ in self._held:
                t.untyped_storage().resize_(0)
            self.freed = True

    def restore(self) -> bool:
        """Allocate the memory again (contents undefined); whether it had been freed."""
        if not self.freed:
            return False
        for t, nbytes in self._held:
            t.untyped_storage().resize_(nbytes)
        self.freed = False
        return True
