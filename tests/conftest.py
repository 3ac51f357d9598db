"""Shared fixtures and marker handling: GPU tests are skipped (never silently passed) without a GPU."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    slurm_items = [item for item in items if "slurm" in item.keywords]
    missing = slurm_unavailable() if slurm_items else None
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)
    if missing and os.environ.get("CASCADE_REQUIRE_SLURM") == "1":
        raise pytest.UsageError(f"CASCADE_REQUIRE_SLURM=1 but {missing}")
    for item in slurm_items if missing else []:
        item.add_marker(pytest.mark.skip(reason=missing))


def slurm_unavailable() -> str | None:
    """Why the slurm tests cannot run here, or None when a controller with two idle nodes answers."""
    if shutil.which("sbatch") is None:
        return "Slurm is not installed (no sbatch on PATH); .ci/run installs and starts one as root"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    if ping.returncode != 0 or "UP" not in ping.stdout:
        who = "as root" if os.geteuid() == 0 else "only root can start one here; as root"
        return (
            f"no Slurm controller answers (scontrol ping); {who}: launch/slurm/local-cluster.sh start, "
            "then export the SLURM_CONF it prints"
        )
    idle = subprocess.run(["sinfo", "-h", "-N", "-t", "idle", "-o", "%N"], capture_output=True, text=True)
    if len(set(idle.stdout.split())) < 2:
        return "the Slurm cluster has fewer than two idle nodes"
    return None


@pytest.fixture
def project_root() -> Path:
    return ROOT


def free_port() -> str:
    """A TCP port free now, for a multi-process launch's rendezvous: processes of a test killed moments
    before may still hold accelerate's default port (29500), and a second launch on it fails."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for launching the CLI in a subprocess: quiet, offline, this checkout importable."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        WANDB_MODE="disabled",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"),
    )
    env.update(extra)
    return env


def wait_for_checkpoint(proc: subprocess.Popen, checkpoints: Path, step: int, timeout_s: float = 600) -> None:
    """Wait until a complete trainer checkpoint of at least ``step`` exists (or the process ends)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        done = [
            int(p.name.split("-")[1])
            for p in checkpoints.glob("checkpoint-*")
            if (p / "trainer_state.json").exists()
        ]
        if done and max(done) >= step:
            return
        time.sleep(0.2)


def in_forked_child(check: Callable[[], bool]) -> bool:
    """Whether ``check()`` is true when run in a forked child (per-process singletons, after a fork)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, b"1" if check() else b"0")
        finally:
            os._exit(0)
    os.close(write)
    try:
        return os.read(read, 1) == b"1"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
