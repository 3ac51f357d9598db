"""``benchmarks.<name>``: the data, the scorer, how it generates and which heavy modes select answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pipeline.config.checks import check_reward_args
from pipeline.config.data import DataSource, PromptConfig
from pipeline.schema import (
    FINITE,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    ConfigError,
    Range,
    at_least,
    closest,
)


@dataclass
class ScorerConfig:
    reward: str  # a name from rewards.REWARDS, or "reward_model" for chat
    args: dict[str, Any] = field(default_factory=dict)
    threshold: float = 1.0  # a sample is correct when its score reaches this
    metric: Literal["accuracy", "mean_reward", "win_rate"] = "accuracy"
    judge: str | None = None  # reward-model stage name / path for chat scorers

    RANGES: ClassVar[dict[str, Range]] = {"threshold": FINITE}  # any score scale: rewards may be negative


@dataclass
class GenerationConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    n: int = 1  # samples per prompt → avg@n, pass@k
    batch_size: int = 32

    RANGES: ClassVar[dict[str, Range]] = {
        "max_new_tokens": POSITIVE,
        "temperature": NON_NEGATIVE,
        "top_p": Range(0, 1, low_open=True),
        "n": at_least(1),
        "batch_size": POSITIVE,
    }


SelectionMode = Literal["pass@k", "majority", "genselect"]
HEAVY_MODES = ("majority", "genselect")  # modes that pick one of the n samples per prompt


@dataclass
class GenSelectConfig:
    """GenSelect (arXiv 2507.17797): the policy reads k of its own candidates and names the best one.

    With more samples than ``k`` a knockout tournament runs (groups of at most ``k``, winners advance);
    ``rounds`` independent tournaments over reshuffled candidates vote on the final pick.
    """

    k: int = 4  # candidates shown in one selection prompt
    rounds: int = 1  # independent tournaments; their winners are put to a majority vote
    max_new_tokens: int = 256  # of one selection answer
    temperature: float | None = None  # None: the benchmark's generation temperature
    max_summary_chars: int = 2000  # each candidate's summary (its text after </think>) is cut to this
    template: str | None = None  # the selection prompt; None: pipeline.selection.genselect.TEMPLATE

    def validate(self, key: str) -> None:
        for name, least in (("k", 2), ("rounds", 1), ("max_new_tokens", 1), ("max_summary_chars", 1)):
            if getattr(self, name) < least:
                raise ConfigError(f"key '{key}.{name}' must be at least {least}, got {getattr(self, name)}")
        if self.temperature is not None and self.temperature < 0:
            raise ConfigError(f"key '{key}.temperature' must not be negative, got {self.temperature}")
        if self.template is not None:
            from pipeline.selection.genselect import check_template

            problem = check_template(self.template)
            if problem:
                raise ConfigError(f"key '{key}.template' {problem}")


@dataclass
class MajorityConfig:
    """How majority voting groups the n answers of a prompt (docs/evaluation.md, "Heavy mode")."""

    code_inputs: str = "tests"  # column whose code tests give the inputs programs run on (never the outputs)


@dataclass
class BenchmarkConfig:
    data: DataSource
    domain: str | None = None  # None: the data preset's domain
    scorer: ScorerConfig | None = None  # None: the data preset's scorer
    prompt_mode: Literal["think", "no_think", "none"] = "no_think"
    prompt: PromptConfig = field(default_factory=PromptConfig)
    max_unscored: float = 0.02  # share of samples the scorer may leave unscored before the benchmark fails
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    always: bool = False  # evaluate after every stage, whatever was trained
    tolerance: float | None = None  # per-benchmark gate tolerance (absolute, on the [0, 1] scale)
    selection: list[SelectionMode] = field(default_factory=list)  # heavy modes over generation.n samples
    genselect: GenSelectConfig = field(default_factory=GenSelectConfig)
    majority: MajorityConfig = field(default_factory=MajorityConfig)
    primary: str = "pass@1"  # the metric the gate compares: pass@1, pass@<k>, majority or genselect

    RANGES: ClassVar[dict[str, Range]] = {"max_unscored": FRACTION, "tolerance": NON_NEGATIVE}

    def validate(self, key: str) -> None:
        from rewards import registry

        self._preset_defaults(key)
        if not registry.has(self.scorer.reward):
            raise ConfigError(
                f"key '{key}.scorer.reward' names unknown reward '{self.scorer.reward}'"
                f"{closest(self.scorer.reward, registry.REWARDS)}"
            )
        # the judge (or an earlier stage) may still give a reward model's model_path: only names and types
        keys = (f"{key}.scorer.reward", f"{key}.scorer.args")
        check_reward_args(self.scorer.reward, self.scorer.args, keys, complete=False)
        self._check_selection(key)

    def _check_selection(self, key: str) -> None:
        """Heavy modes need several distinct samples, a 0/1 verdict per sample and answers that can be grouped."""
        from pipeline.selection.grouping import GROUPED_REWARDS

        n, reward = self.generation.n, self.scorer.reward
        if len(set(self.selection)) < len(self.selection):
            raise ConfigError(f"key '{key}.selection' lists a mode twice: {self.selection}")
        heavy = [m for m in self.selection if m in HEAVY_MODES]
        if heavy and reward not in GROUPED_REWARDS:
            raise ConfigError(
                f"key '{key}.selection' lists '{heavy[0]}', which groups answers by the domain's verifier; "
                f"scorer '{reward}' has no final answer to vote on (majority and genselect work with "
                f"{' and '.join(GROUPED_REWARDS)} scorers)"
            )
        for mode in self.selection:
            if n < 2:
                raise ConfigError(
                    f"key '{key}.selection' lists '{mode}', which needs several samples per prompt: "
                    f"set {key}.generation.n to 2 or more (it is {n})"
                )
            if self.scorer.metric != "accuracy":
                raise ConfigError(
                    f"key '{key}.selection' lists '{mode}', which needs a right/wrong verdict per sample, "
                    f"but the scorer's metric is {self.scorer.metric}"
                )
        if heavy and self.generation.temperature <= 0:
            raise ConfigError(
                f"key '{key}.selection' lists '{heavy[0]}' but {key}.generation.temperature is 0: greedy "
                "decoding makes the n samples identical, so there is nothing to select from"
            )
        primary = self.primary
        if primary in HEAVY_MODES:
            if primary not in self.selection:
                raise ConfigError(
                    f"key '{key}.primary' is '{primary}', which {key}.selection does not list {self.selection}"
                )
        elif primary != "pass@1":
            k = primary.removeprefix("pass@")
            known = ["pass@1", "pass@<k>", *HEAVY_MODES]
            if not (primary.startswith("pass@") and k.isdigit()):
                raise ConfigError(
                    f"key '{key}.primary' must be one of {', '.join(known)}, got {primary!r}"
                    f"{closest(primary, known)}"
                )
            if not 1 <= int(k) <= n or self.scorer.metric != "accuracy":
                raise ConfigError(
                    f"key '{key}.primary' is {primary}, which needs an accuracy scorer and k between 1 and "
                    f"{key}.generation.n ({n})"
                )

    def _preset_defaults(self, key: str) -> None:
        """Domain and scorer from the data preset when the recipe leaves them out."""
        preset = None
        if self.data.preset:
            from pipeline.data.presets import get_preset

            preset = get_preset(self.data.preset)  # known: the data source was validated first
        if self.scorer is None:
            if preset is None or preset.scorer is None:
                raise ConfigError(
                    f"missing required key '{key}.scorer' (its data has no preset with a scorer)"
                )
            ps = preset.scorer
            self.scorer = ScorerConfig(reward=ps.reward, args=dict(ps.args), metric=ps.metric)
        if self.domain is None:
            if preset is None or preset.domain is None:
                raise ConfigError(f"missing required key '{key}.domain'")
            self.domain = preset.domain
