"""The stage's rewards as TRL calls them: registry rewards bound to their recipe args, limited to one prompt
mode where asked, language-penalised, and never run on a completion whose score is already fixed."""

from __future__ import annotations

from typing import Any

from pipeline.schema import ConfigError
from pipeline.stages.base import StageContext
from pipeline.stages.grpo.config import MODE_COLUMN, ROW_COLUMN, TRUNCATED_COLUMN, Config, parse_penalty


class StageReward:
    """A reward term as TRL calls it: named for the logs, limited to one prompt mode if asked.

    Rows of the other mode get None, which TRL leaves out of that term's mean and of the weighted sum.
    A row whose ``cascade_truncated_score`` column holds a number (a completion cut at
    ``max_completion_length`` in a phase that scores those) gets that number without the reward being
    run for it: no sandbox, no verifier, no reward-model call for an answer that was never finished.

    :meth:`prefetch` scores completions that ended while the rest of the batch is still generating;
    the trainer's own call then takes their scores from :attr:`early` (keyed by the row and the
    completion's text) and runs the reward only for the rest. A reward whose score depends on the
    rest of the batch (``batch_min_minus_k`` language penalty) is never prefetched (``itemwise``).
    """

    def __init__(
        self,
        fn: Any,
        name: str,
        mode: str = "any",
        itemwise: bool = True,
        facts: dict[str, Any] | None = None,
    ):
        self.fn, self.__name__, self.mode, self.itemwise = fn, name, mode, itemwise
        self.facts = dict(facts or {})  # what the reward found about this host (the sandbox's isolation)
        self.early: dict[tuple[Any, str], float | None] = {}

    def __call__(self, completions: list[Any], **columns: Any) -> list[float | None]:
        from pipeline.models import whole_weights

        # a reward that loads a model (a reward model) loads it whole, also inside a ZeRO-3 stage
        with whole_weights():
            if not self.early:
                return self._score(completions, columns)
            keys = _keys(completions, columns)
            todo = [i for i, k in enumerate(keys) if k not in self.early]
            out = [self.early.get(k) for k in keys]
            if todo:
                rest = self._score([completions[i] for i in todo], _subset(columns, todo, len(completions)))
                for i, score in zip(todo, rest, strict=True):
                    out[i] = score
            self.early.clear()
            return out

    def prefetch(self, completions: list[Any], columns: dict[str, Any]) -> None:
        """Score ``completions`` now and keep the scores for the trainer's call of this batch."""
        from pipeline.models import whole_weights

        if not self.itemwise:
            return
        with whole_weights():
            scores = self._score(completions, columns)
        self.early.update(zip(_keys(completions, columns), scores, strict=True))

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
        sub = _subset(columns, keep, n)
        for i, score in zip(keep, self.fn([completions[i] for i in keep], **sub), strict=True):
            out[i] = score
        return out

    def __repr__(self) -> str:
        return f"StageReward({self.__name__}, mode={self.mode})"


def _subset(columns: dict[str, Any], keep: list[int], n: int) -> dict[str, Any]:
    """The columns of rows ``keep`` (per-row lists are cut; anything else passes as is)."""
    return {k: [v[i] for i in keep] if isinstance(v, list) and len(v) == n else v for k, v in columns.items()}


def _keys(completions: list[Any], columns: dict[str, Any]) -> list[tuple[Any, str]]:
    from rewards.common import completion_text

    rows = columns.get(ROW_COLUMN) or [None] * len(completions)
    return [(r, completion_text(c)) for r, c in zip(rows, completions, strict=True)]


def reward_labels(cfg: Config) -> list[str]:
    """The names TRL logs the terms under (``rewards/<label>/mean``): the reward's name, numbered if repeated."""
    base = [t.name.rpartition(":")[2] for t in cfg.rewards]
    return [b if base.count(b) == 1 else f"{b}_{i}" for i, b in enumerate(base)]


def build_rewards(ctx: StageContext[Config]) -> tuple[list[StageReward], list[float]]:
    """The stage's reward functions and weights; reward-model paths naming a stage are resolved."""
    from rewards.format import with_language_penalty
    from rewards.registry import RewardLoadError, build_reward

    cfg = ctx.config
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
        relative, facts = False, dict(getattr(fn, "facts", {}))
        if penalty is not None and term.language_penalty:
            fn = with_language_penalty(fn, penalty)
            relative = isinstance(penalty, str)  # batch_min_minus_k: a score depends on the whole batch
        funcs.append(StageReward(fn, label, term.mode, itemwise=not relative, facts=facts))
    return funcs, [t.weight for t in cfg.rewards]
