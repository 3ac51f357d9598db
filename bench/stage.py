"""Running one of Cascade's stages on its own, as the cascade would, for the training benchmarks.

The stage gets the context the runner gives it (recipe, config, starting checkpoint, stage directory)
from a one-stage recipe, and returns its summary; no evaluation, gate or report runs around it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any


def run_stage(recipe: dict[str, Any], name: str, init: str) -> dict[str, Any]:
    """Train stage ``name`` of ``recipe`` (a recipe mapping) from ``init``; its summary."""
    from pipeline.config import recipe_from_dict
    from pipeline.rundir import RunDir
    from pipeline.stages import stage_module
    from pipeline.stages.base import StageContext
    from pipeline.tracking import Tracker

    r = recipe_from_dict(recipe)
    index = list(r.stages).index(name) + 1
    ctx = StageContext(
        recipe=r,
        name=name,
        index=index,
        config=r.stages[name],
        init_path=init,
        stage_dir=RunDir(r.run_dir).stage_dir(index, name),
        resume=False,
        tracker=Tracker(r, r.run_dir, is_main=False),
        stage_checkpoints={},
        record=lambda fields: None,
    )
    return stage_module(r.stages[name].kind).run(ctx).summary


class GPUBusy:
    """The share of time the GPU was executing kernels, sampled from ``nvidia-smi`` while it runs.

    ``utilization.gpu`` is the fraction of the sample period in which at least one kernel ran: a
    launch-bound loop shows low values even at 100% of one CPU thread.
    """

    def __init__(self, period_s: float = 0.2):
        self.period_s, self.samples = period_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> GPUBusy:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import shutil
        import subprocess

        if shutil.which("nvidia-smi") is None:
            return
        while not self._stop.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True,
                text=True,
            )
            if out.returncode == 0 and out.stdout.strip().isdigit():
                self.samples.append(int(out.stdout.strip()))
            time.sleep(self.period_s)

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 FLOP/s of the SXM parts


def peak_flops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def mfu(params: int, tokens: float, seconds: float) -> float | None:
    """Model FLOPs utilisation of training: 6 × parameters × tokens per second over the GPU's peak."""
    peak = peak_flops()
    return 6 * params * tokens / seconds / peak if peak and seconds > 0 else None


def count_params(path: str | Path) -> int:
    """Parameters of the model at ``path`` (built on the meta device: nothing is loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    return sum(p.numel() for p in model.parameters())


def announce(shape: str, path: Path) -> int:
    """Print the machine and the model a benchmark runs on; returns the model's parameter count."""
    from bench.shapes import describe, machine

    params = count_params(path)
    print(f"machine: {machine()}")
    print(f"model: {shape} ({describe(path)}, {params / 1e6:.1f}M parameters)")
    return params


def step_history(history: list[dict[str, Any]], key: str) -> list[float]:
    """The values a trainer logged under ``key``, one per logging step, in order."""
    return [float(h[key]) for h in history if isinstance(h.get(key), int | float)]


def steady(values: list[float]) -> float | None:
    """Mean over all but the first value (the first step pays for allocation and compilation)."""
    rest = values[1:] or values
    return sum(rest) / len(rest) if rest else None
