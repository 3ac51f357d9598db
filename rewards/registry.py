"""The one registry of rewards: names → functions or factories, imported lazily."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RewardSpec:
    """Where a reward lives, whether calling it with arguments builds the reward (a factory), and the
    check it needs before a run relies on it (``preflight``, "module:attribute", called with the args)."""

    name: str
    target: str  # "module:attribute"
    factory: bool = False
    preflight: str | None = None

    def load(self) -> Callable[..., Any]:
        return _load(self.target)


def _load(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


_SPECS: dict[str, RewardSpec] = {
    spec.name: spec
    for spec in [
        RewardSpec("math", "rewards.math:math_reward"),
        RewardSpec("code", "rewards.code:code_reward", preflight="rewards.code:preflight"),
        RewardSpec("instruction", "rewards.instruction:instruction_reward"),
        RewardSpec("swe", "rewards.swe:swe_reward"),
        RewardSpec("think_format", "rewards.format:think_format_reward"),
        RewardSpec("language_mixing", "rewards.format:language_mixing_reward"),
        RewardSpec("reward_model", "rewards.preference:reward_model_reward", factory=True),
        RewardSpec("if_rm", "rewards.preference:instruction_with_rm_reward", factory=True),
    ]
}


class _Registry(Mapping[str, Callable[..., Any]]):
    """A read-only mapping that imports a reward's module the first time the reward is asked for."""

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return _SPECS[name].load()

    def __iter__(self) -> Iterator[str]:
        return iter(_SPECS)

    def __len__(self) -> int:
        return len(_SPECS)

    def spec(self, name: str) -> RewardSpec:
        return _SPECS[name]


REWARDS = _Registry()


class BoundReward:
    """A reward with fixed keyword arguments; picklable (unlike a lambda) and named for TRL's logs.

    ``facts`` is what :func:`preflight` found (e.g. the code sandbox's isolation): a run records it
    with the scores this reward gives.
    """

    def __init__(
        self, fn: Callable[..., Any], name: str, kwargs: dict[str, Any], facts: dict[str, Any] | None = None
    ):
        self.fn, self.__name__, self.kwargs = fn, name, dict(kwargs)
        self.facts = dict(facts or {})

    def __call__(self, completions: list[Any], **columns: Any) -> list[float | None]:
        return self.fn(completions, **{**columns, **self.kwargs})

    def __repr__(self) -> str:
        return f"BoundReward({self.__name__}, {self.kwargs})"


def _spec(name: str) -> RewardSpec:
    if name not in _SPECS:
        import difflib

        close = difflib.get_close_matches(name, list(_SPECS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise KeyError(f"unknown reward '{name}'{hint}; known rewards: {', '.join(sorted(_SPECS))}")
    return _SPECS[name]


def preflight(name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check reward ``name`` with ``args`` against this host before a run relies on it.

    Returns what a run records next to the reward's scores (the code reward: ``isolation`` and
    ``isolation_detail``; ``{}`` for rewards that need no check). Raises ``KeyError`` for an unknown
    name, ``ValueError`` for an invalid argument, and the reward's own error, in one sentence, when it
    cannot work here (the code reward: ``SandboxUnavailableError``). Call it when a recipe is loaded.
    """
    spec = _spec(name)
    if spec.preflight is None:
        return {}
    return dict(_load(spec.preflight)(**dict(args or {})))


def build_reward(name: str, args: dict[str, Any] | None = None) -> Callable[..., Any]:
    """The reward function a recipe names: a factory is called with ``args``; a function gets them bound.

    Runs :func:`preflight` first, so a reward that cannot work here fails now, before any generation;
    what it found travels as the returned reward's ``facts``.
    """
    spec, args = _spec(name), dict(args or {})
    facts = preflight(name, args)
    fn = spec.load()
    if spec.factory:
        return fn(**args)
    return BoundReward(fn, name, args, facts) if args or facts else fn


def describe_rewards() -> list[tuple[str, str, str]]:
    """(name, signature, first docstring line) for every reward, read from the code itself."""
    rows = []
    for name, spec in _SPECS.items():
        try:
            fn = spec.load()
            doc = (inspect.getdoc(fn) or "").splitlines()
            rows.append((name, f"{spec.target}{inspect.signature(fn)}", doc[0] if doc else ""))
        except Exception as exc:  # a reward whose optional dependency is missing is still listed
            rows.append((name, spec.target, f"unavailable: {exc}"))
    return rows
