"""What a code sandbox is asked for: how sandboxes are built (:class:`SandboxConfig`), the limits of one
program run (:class:`Limits`), and the two errors a sandbox raises.

Plain data, so that every other part of the sandbox (``sandbox_process``, ``sandbox_probe``, the pool in
``sandbox``) and its callers can import it without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rewards.hints import did_you_mean
from rewards.sandbox_layers import CHOICES, Choice

#: Modules the zygote imports once so that programs do not pay for them (the usual competitive
#: programming and HumanEval imports; heavy libraries such as numpy are imported on demand).
DEFAULT_PRELOAD: tuple[str, ...] = (
    "abc",
    "array",
    "bisect",
    "cmath",
    "collections",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "fractions",
    "functools",
    "hashlib",
    "heapq",
    "io",
    "itertools",
    "json",
    "math",
    "numbers",
    "operator",
    "queue",
    "random",
    "re",
    "socket",
    "statistics",
    "string",
    "struct",
    "textwrap",
    "threading",
    "time",
    "traceback",
    "typing",
)

NOBODY = 65534


class SandboxUnavailableError(RuntimeError):
    """No isolating layer works here, and running without isolation was not asked for by name."""


class SandboxStartError(RuntimeError):
    """A sandbox process did not come up."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one program run (a stdio case, all calls of a call test, or one check)."""

    wall_s: float = 10.0
    cpu_s: float | None = None  # default: the wall limit rounded up
    memory_mb: int = 1024  # address space per process, and resident memory of the whole run
    max_processes: int = 32  # processes and threads the run may create
    file_size_mb: int = 16  # largest file (and captured stdout) a process may write
    open_files: int = 256
    output_bytes: int = 8 << 20  # stdout returned for comparison; more than this fails the case

    def wire(self, mode: str) -> dict[str, Any]:
        """The limits as the zygote of an isolation ``mode`` reads them."""
        cpu = self.cpu_s if self.cpu_s is not None else self.wall_s
        # In a user namespace RLIMIT_NPROC counts the sandbox's own processes: bwrap's init, the zygote
        # and, for isolated asserts, the checker. Outside one it would count every process of the user
        # (the Landlock layer's seccomp filter allows threads only, no processes).
        nproc = self.max_processes + 3 if mode == "bwrap" else 0
        return {
            "wall_s": float(self.wall_s),
            "cpu_s": max(1, math.ceil(cpu)),
            "memory_bytes": int(self.memory_mb) << 20,
            "nproc": nproc,
            "fsize_bytes": int(self.file_size_mb) << 20,
            "nofile": int(self.open_files),
            "output_bytes": min(int(self.output_bytes), int(self.file_size_mb) << 20),
        }


@dataclass(frozen=True)
class SandboxConfig:
    """How sandboxes are built; programs' own limits travel with each request (:class:`Limits`)."""

    workers: int = 0  # 0: rewards.sandbox.default_workers()
    programs_per_sandbox: int = 256  # replace a sandbox after this many programs (1: fresh every time)
    isolation: Choice = "auto"  # auto (bubblewrap, else Landlock), bubblewrap, landlock, or none by name
    tmpfs_mb: int = 256  # size of the private /tmp (bubblewrap); scratch space cap (other layers)
    shm_mb: int = 64  # size of the private /dev/shm
    bwrap: str | None = None  # default: $CASCADE_SANDBOX_BWRAP, else `bwrap` on PATH
    extra_ro_binds: tuple[str, ...] = ()  # more host paths to expose read-only at the same place
    extra_python_paths: tuple[str, ...] = ()  # bound read-only and appended to sys.path inside
    preload: tuple[str, ...] = DEFAULT_PRELOAD
    unprivileged_uid: int = NOBODY
    landlock_abi: int = 0  # 0: the kernel's; N: at most ABI N (same guarantees on older kernels)
    start_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.isolation not in CHOICES:
            hint = did_you_mean(str(self.isolation), CHOICES)
            raise ValueError(
                f"sandbox isolation must be one of {', '.join(CHOICES)}, got {self.isolation!r}{hint}"
            )
