"""The stage's rewards as TRL calls them: registry rewards bound to their recipe args, limited to one prompt
mode where asked, language-penalised, and never run on a completion whose score is already fixed."""

from __future__ import annotations

from typing import Any

from pipeline.schema import ConfigError
from pipeline.stages.base import StageContext
from pipeline.stages.grpo.config import MODE_COLUMN, TRUNCATED_COLUMN, Config, parse_penalty


class StageReward:
    """A reward term as TRL calls it: named for the logs, limited to one prompt mode if asked.

    Rows of the other mode get None, which TRL leaves out of that term's mean and of the weighted sum.
    A row whose ``cascade_truncated_score`` column holds a number (a completion cut at
    ``max_completion_length`` in a phase that scores those) gets that number without the reward being
    run for it: no sandbox, no verifier, no reward-model call for an answer that was never finished.
    """

    def __init__(self, fn: Any, name: str, mode: str = "any"):
        self.fn, self.__name__, self.mode = fn, name, mode

    def __call__(self, completions: list[Any], **columns: Any) -> list[float | None]:
        from pipeline.models import whole_weights

        # a reward that loads a model (a reward model) loads it whole, also inside a ZeRO-3 stage
        with whole_weights():
            return self._score(completions, columns)

    def _score(self, completions: list[Any], columns: dict[str, Any]) -> list[float | None]:
        n = len(completions)
        fixed = columns.get(TRUNCATED_COLUMN) or [None] * n
        modes = columns.get(MODE_COLUMN) or [None] * n
        keep = [i for i in range(n) if fixed[i] is None and self.mode in ("any", modes[i])]
        if len(keep) == n and self.mode == "any":
            return list(self.fn(completions, **columns))
        out: list[float | None] = [None if s is None else float(s) for s in fixed]
        if not keep:
            return out
        sub = {
            k: [v[i] for i in keep] if isinstance(v, list) and len(v) == n else v for k, v in columns.items()
        }
        for i, score in zip(keep, self.fn([completions[i] for i in keep], **sub), strict=True):
            out[i] = score
        return out

    def __repr__(self) -> str:
        return f"StageReward({self.__name__}, mode={self.mode})"


def reward_labels(cfg: Config) -> list[str]:
    """The names TRL logs the terms under (``rewards/<label>/mean``): the reward's name, numbered if repeated."""
    base = [t.name.rpartition(":")[2] for t in cfg.rewards]
    return [b if base.count(b) == 1 else f"{b}_{i}" for i, b in enumerate(base)]


def build_rewards(ctx: StageContext) -> tuple[list[StageReward], list[float]]:
    """The stage's reward functions and weights; reward-model paths naming a stage are resolved."""
    from rewards.format import with_language_penalty
    from rewards.registry import RewardLoadError, build_reward

    cfg: Config = ctx.config  # type: ignore[assignment]
    penalty = parse_penalty(cfg.language_penalty, f"stages.{ctx.name}.language_penalty")
    funcs = []
    for i, (term, label) in enumerate(zip(cfg.rewards, reward_labels(cfg), strict=True)):
        args = dict(term.args)
        if isinstance(args.get("model_path"), str):
            args["model_path"] = ctx.resolve_ref(args["model_path"])
        try:
            fn = build_reward(term.name, args)
        except RewardLoadError as exc:  # a module that imported at load time and no longer does
            raise ConfigError(f"key 'stages.{ctx.name}.rewards[{i}].name': {exc}") from None
        if penalty is not None and term.language_penalty:
            fn = with_language_penalty(fn, penalty)
        funcs.append(StageReward(fn, label, term.mode))
    return funcs, [t.weight for t in cfg.rewards]
