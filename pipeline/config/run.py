"""The run-wide sections of a recipe: ``run``, ``tracking``, ``generation``, ``eval`` and ``gate``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pipeline.config.checks import environment_problem
from pipeline.schema import (
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    Range,
)


@dataclass
class RunConfig:
    name: str
    output_dir: str = "runs"
    seed: int = 42
    rerun_from: str | None = None  # re-run this stage and every later one
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    # Stopping early (pipeline.preemption, docs/slurm.md): neither changes what a stage produces.
    deadline: str | None = None  # save and exit this long after the launch ("3h50m", "03:50:00")
    until: str | None = None  # stop after this stage (one Slurm job per stage); the run is "paused"

    def validate(self, key: str) -> None:
        if self.deadline is not None:
            from pipeline.preemption import parse_duration

            parse_duration(self.deadline, f"{key}.deadline")

    RANGES: ClassVar[dict[str, Range]] = {"seed": SEED}


@dataclass
class TrackingConfig:
    backend: Literal["wandb", "none"] = "wandb"
    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "cascade"
    entity: str | None = None


@dataclass
class EngineConfig:
    """How rollouts (GRPO) and benchmarks generate: ``pipeline.generation``, docs/stages.md."""

    engine: Literal["auto", "hf", "compiled", "paged", "vllm"] = "auto"  # auto: compiled on a GPU, hf on CPU
    compile: Literal["auto", "full", "none"] = "auto"  # compiled engine: torch.compile the decoding step
    # GRPO: the inference copy and KV cache give their memory back for each training step (on one H100:
    # 1.7 GiB less peak memory at the 0.6B shape for about 2% of the step; docs/results/performance.md)
    free_for_training: bool = True
    # compiled engine: decoding attends over the written cache positions rounded up to a multiple of
    # this (a captured step per multiple); 0 attends over the whole static cache
    span_bucket: int = 0
    vllm_mode: Literal["colocate", "server"] = (
        "colocate"  # GRPO with vllm: in the training processes, or trl vllm-serve
    )

    RANGES: ClassVar[dict[str, Range]] = {"span_bucket": NON_NEGATIVE}

    def engine_options(self, engine: str) -> dict[str, Any]:
        """The constructor options of ``engine`` (a resolved name) that this section sets."""
        if engine == "compiled":
            return {"compile": self.compile, "span_bucket": self.span_bucket}
        return {}

    def validate(self, key: str) -> None:
        import importlib.util

        if self.engine == "vllm" and importlib.util.find_spec("vllm") is None:
            environment_problem(
                f"key '{key}.engine' is vllm but vLLM is not installed here (pip install vllm); "
                "generation.engine=auto uses transformers' fast path instead"
            )


@dataclass
class EvalConfig:
    enabled: bool = True
    after: Literal["trained", "all"] = "trained"  # trained: benchmarks of domains trained so far (+ always)
    seed: int = 1234

    RANGES: ClassVar[dict[str, Range]] = {"seed": SEED}


@dataclass
class GateConfig:
    policy: Literal["stop", "warn", "rollback"] = "stop"
    tolerance: float = 0.02  # absolute drop on the [0, 1] scale that may be ignored
    alpha: float = 0.05  # significance level of the paired test
    n_resamples: int = 10000

    RANGES: ClassVar[dict[str, Range]] = {
        "tolerance": NON_NEGATIVE,
        "alpha": Range(0, 1, low_open=True, high_open=True),
        "n_resamples": POSITIVE,
    }
