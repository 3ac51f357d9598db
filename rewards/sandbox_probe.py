"""Which isolation this host gives the code sandbox: the ladder of layers, each checked by a self-test.

:func:`probe_isolation` walks the layers a configuration allows (``sandbox_layers.CHOICES``), strongest
first, and keeps the first whose sandbox passes its self-test: a probe program started in a real
sandbox reports what it can see and do (uid, hostname, network interfaces, the project directory,
secrets in the environment, sockets, fork, signals to its parent), and the answer must match what the
layer promises (``sandbox_layers.expected_probe``). A layer that is installed but does not hold is
passed over just like one that is missing. The result is cached per process and configuration and
recorded with every score (:class:`Isolation`); when no layer works, the refusal
(:class:`SandboxUnavailableError`) names the ways out, and running unisolated stays a choice made by
name (``isolation: none``), never a fallback.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from rewards.sandbox_config import Limits, SandboxConfig, SandboxStartError, SandboxUnavailableError
from rewards.sandbox_layers import CHOICES, PROBE, Mode, candidates, expected_probe, resolve_bwrap
from rewards.sandbox_process import SandboxProcess

# The sandbox's messages keep one logger name, whichever of its modules logs them.
logger = logging.getLogger("rewards.sandbox")


@dataclass(frozen=True)
class Isolation:
    """What the sandboxes of a pool provide, as found by the self-test; recorded with every score."""

    mode: Mode  # bwrap, bwrap-root, landlock, none
    detail: str  # one line for logs, ledgers and reports
    landlock_abi: int = 0

    @property
    def isolated(self) -> bool:
        return self.mode != "none"

    def record(self) -> dict[str, str]:
        """The fields a ledger, an evaluation record or a summary line stores."""
        return {"isolation": self.mode, "isolation_detail": self.detail}


# Found once per process and host-facing configuration: what the host offers does not change.
# (Read and filled without a lock: dict.get and dict.setdefault are atomic, and a lock held by another
# thread when the process forks would never be released in the child.)
_probes: dict[tuple, Isolation | SandboxUnavailableError] = {}


def _self_test(config: SandboxConfig, mode: str) -> tuple[str | None, int]:
    """Start a sandbox in ``mode`` and check what a program inside sees.

    Returns (None when all is as designed, else what is wrong; the Landlock ABI the zygote reported).
    """
    worker = SandboxProcess(replace(config, preload=()), mode)
    project = str(Path(__file__).resolve().parent.parent)
    message = {
        "op": "run",
        "mode": "stdio",
        "code": PROBE.replace("PROJECT", repr(project)),
        "stdin": "",
        "limits": Limits(wall_s=10).wire(mode),
    }
    try:
        worker.start()
        abi = int(worker.hello.get("landlock_abi") or 0)
        response = worker.request(message, timeout_s=config.start_timeout_s)
    except (SandboxStartError, OSError, ValueError) as exc:
        return str(exc), 0
    finally:
        worker.stop()
    out = str((response.get("attachments") or {}).get("stdout", ""))
    try:
        seen = json.loads(out)
    except ValueError:
        return f"probe program failed: {response.get('status')} {out!r} {response.get('stderr', '')!r}", abi
    wrong = {k: seen.get(k) for k, v in expected_probe(config, mode).items() if seen.get(k) != v}
    return (f"a program inside is not isolated as designed: {wrong}" if wrong else None), abi


def _describe(mode: str, abi: int) -> str:
    """The one-line description recorded with the scores of a pool in ``mode``."""
    if mode == "bwrap":
        return "bubblewrap (user, PID, network, IPC namespaces; read-only root) + rlimits"
    if mode == "bwrap-root":
        return "bubblewrap as root (namespaces; read-only root) + rlimits, no process limit"
    if mode == "landlock":
        # Each guarantee newer ABIs add in the kernel, the seccomp filter also gives; say which ones
        # rest on the filter alone on this kernel.
        alone = [what for since, what in ((4, "TCP"), (6, "signals, abstract sockets")) if abi < since]
        note = f" (seccomp alone for {'; '.join(alone)})" if alone else ""
        return f"Landlock ABI {abi} + seccomp + rlimits{note}"
    return "none, asked for by name: rlimits and a private working directory only"


def _refusal(choice: str, failures: list[str]) -> SandboxUnavailableError:
    reasons = "; ".join(failure if len(failure) < 300 else failure[:297] + "..." for failure in failures)
    return SandboxUnavailableError(
        f"the code sandbox cannot isolate programs with isolation '{choice}' ({reasons}): install "
        "bubblewrap, enable unprivileged user namespaces, or set the code reward's 'isolation: none' "
        "(recipe args; '--arg isolation=none' for python -m rewards score) to run model-written "
        "programs without isolation"
    )


def probe_isolation(config: SandboxConfig | None = None) -> Isolation:
    """The isolation ``config`` gets on this host: the first layer of its ladder that passes its self-test.

    Tested once per process and configuration, then cached. Raises :class:`SandboxUnavailableError`
    (one sentence naming the ways out) when no layer works, unless ``isolation`` is ``"none"``: running
    unisolated is never a fallback, only a choice made by name.
    """
    config = config or SandboxConfig()
    key = (
        config.isolation,
        resolve_bwrap(config),
        config.extra_ro_binds,
        config.extra_python_paths,
        config.unprivileged_uid,
        config.tmpfs_mb,
        config.landlock_abi,
    )
    found = _probes.get(key)
    if found is None:
        walked, skipped = _walk_ladder(config)
        found = _probes.setdefault(key, walked)  # two threads may walk at once: the first answer stays
        if found is walked and isinstance(found, Isolation):
            _log_choice(config, found, skipped)
    if isinstance(found, SandboxUnavailableError):
        raise SandboxUnavailableError(*found.args)
    return found


def _walk_ladder(config: SandboxConfig) -> tuple[Isolation | SandboxUnavailableError, list[str]]:
    """(the first layer that works, or the refusal; why each layer before it was passed over)."""
    if config.isolation == "none":
        return Isolation("none", _describe("none", 0)), []
    failures: list[str] = []
    for layer in CHOICES[config.isolation]:
        modes, why = candidates(config, layer)
        if not modes:
            failures.append(f"{layer}: {why}")
        for mode in modes:
            reason, abi = _self_test(config, mode)
            if reason is None:
                return Isolation(mode, _describe(mode, abi), abi), failures  # type: ignore[arg-type]
            failures.append(f"{mode}: {reason}")
    return _refusal(config.isolation, failures), failures


def _log_choice(config: SandboxConfig, isolation: Isolation, skipped: list[str]) -> None:
    if isolation.mode == "none":
        logger.warning(
            "Code sandbox: isolation 'none' was asked for; model-written programs run with rlimits and a "
            "private working directory only -- they can read and write what this user can and use the network."
        )
    elif isolation.mode == "bwrap-root":
        logger.warning(
            "Code sandbox: could not drop to uid %d before starting bubblewrap; sandboxes run as host root "
            "inside their namespaces, where the kernel does not enforce the process-count limit.",
            config.unprivileged_uid,
        )
    else:
        passed_over = f"; passed over: {'; '.join(skipped)}" if skipped else ""
        logger.info("Code sandbox isolation: %s (%s)%s", isolation.mode, isolation.detail, passed_over)
