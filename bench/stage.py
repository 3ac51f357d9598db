"""Running one of Cascade's stages on its own, as the cascade would, for the training benchmarks.

The stage gets the context the runner gives it (recipe, config, starting checkpoint, stage directory)
from a one-stage recipe, and returns its summary; no evaluation, gate or report runs around it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any


def run_stage(
    recipe: dict[str, Any], name: str, init: str, callbacks: list[Any] | None = None
) -> dict[str, Any]:
    """Train stage ``name`` of ``recipe`` (a recipe mapping) from ``init``; its summary.

    ``callbacks`` go to every trainer of the stage, as the cascade's pre-emption callback does.
    """
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
        callbacks=list(callbacks or []),
    )
    return stage_module(r.stages[name].kind).run(ctx).summary


class GPUBusy:
    """The share of time the GPU was executing kernels, sampled from ``nvidia-smi`` while it runs.

    ``utilization.gpu`` is the fraction of the sample period in which at least one kernel ran: a
    launch-bound loop shows low values even at 100% of one CPU thread. ``mean`` covers the whole run,
    start-up and the first step's compilation included; ``steady`` only the samples between the end of
    the first training step and the end of training (``callback()`` marks both from the trainer), the
    figure a step of a long run sees.
    """

    def __init__(self, period_s: float = 0.2):
        self.period_s = period_s
        self.samples: list[tuple[float, int]] = []  # (time.monotonic(), percent)
        self.steady_from: float | None = None
        self.steady_until: float | None = None
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
                self.samples.append((time.monotonic(), int(out.stdout.strip())))
            time.sleep(self.period_s)

    @property
    def mean(self) -> float | None:
        return _mean([u for _, u in self.samples])

    @property
    def steady(self) -> float | None:
        """Mean of the samples after the first step until training ended (None without that window)."""
        if self.steady_from is None:
            return None
        until = self.steady_until if self.steady_until is not None else float("inf")
        return _mean([u for t, u in self.samples if self.steady_from <= t <= until])

    def callback(self) -> Any:
        """A trainer callback marking the steady window: after step 1, until the end of training."""
        from transformers import TrainerCallback

        busy = self

        class SteadyWindow(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                if busy.steady_from is None:
                    busy.steady_from = time.monotonic()

            def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                busy.steady_until = time.monotonic()

        return SteadyWindow()


def _mean(values: list[int]) -> float | None:
    return sum(values) / len(values) if values else None


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
