"""The one registry of rewards: names → functions or factories, imported lazily, with what each one needs.

Besides where a reward lives, each entry declares what a caller can check before anything runs: the
dataset columns the reward cannot score a row without, and where the keyword arguments it forwards are
declared. :func:`check_args` reads a reward's signature (and those it forwards to) the way torchtune's
``config/_validate.py`` does, so a recipe's misspelt or mistyped argument is reported when the recipe
loads, not at the first reward call hours into a run. Everything here works for ``module:function``
rewards too, from their signatures alone.
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

# Keyword arguments GRPOTrainer passes to every reward function itself (TRL 1.x); never a recipe's to set.
TRAINER_KWARGS = frozenset(
    {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}
)


@dataclass(frozen=True)
class RewardSpec:
    """Where a reward lives, whether calling it with arguments builds the reward (a factory), and its needs:
    the columns it reads, the check it needs before a run relies on it (``preflight``, "module:attribute",
    called with the args)."""

    name: str
    target: str  # "module:attribute"
    factory: bool = False
    columns: tuple[str, ...] = ()  # dataset columns it cannot score a row without
    forwards_to: tuple[str, ...] = ()  # "module:attribute"s declaring the keyword arguments it passes on
    requires: tuple[str, ...] = ()  # arguments a caller must give that the signature leaves optional
    preflight: str | None = None

    def load(self) -> Callable[..., Any]:
        return load(self.target)


_SPECS: dict[str, RewardSpec] = {
    spec.name: spec
    for spec in [
        RewardSpec("math", "rewards.math:math_reward", columns=("answer",)),
        RewardSpec(
            "code",
            "rewards.code:code_reward",
            columns=("tests",),
            forwards_to=("rewards.code:code_reward_details",),
            preflight="rewards.code:preflight",
        ),
        RewardSpec("instruction", "rewards.instruction:instruction_reward", columns=("instruction_id_list",)),
        RewardSpec("ifbench", "rewards.ifbench:ifbench_reward", columns=("instruction_id_list",)),
        RewardSpec("swe", "rewards.swe:swe_reward", columns=("golden_patch",)),
        RewardSpec("think_format", "rewards.format:think_format_reward"),
        RewardSpec("language_mixing", "rewards.format:language_mixing_reward"),
        RewardSpec(
            "reward_model",
            "rewards.preference:reward_model_reward",
            factory=True,
            forwards_to=("rewards.preference:RewardModelScorer",),
        ),
        RewardSpec(
            "if_rm",
            "rewards.preference:instruction_with_rm_reward",
            factory=True,
            columns=("instruction_id_list",),
            forwards_to=("rewards.preference:RewardModelScorer",),
            requires=("model_path",),
        ),
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


class UnknownReward(KeyError):
    """A reward name that is neither in the registry nor of the form ``module:function``."""

    def __str__(self) -> str:
        return str(self.args[0])


class RewardLoadError(ImportError):
    """A ``module:attribute`` that cannot be imported (a missing module, a failing import, no such name)."""


def has(name: str) -> bool:
    """Whether ``name`` is a registry reward (``module:function`` names are not)."""
    return name in _SPECS


def load(target: str) -> Callable[..., Any]:
    """The object ``module:attribute`` names, imported now; RewardLoadError says why it cannot be."""
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except Exception as exc:  # importing a module runs its code: any failure means the name is unusable
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise RewardLoadError(f"reward '{target}' cannot be loaded: {reason}") from None


def _spec(name: str) -> RewardSpec:
    """The registry entry of ``name``; a ``module:function`` name gets an entry of its own."""
    if name in _SPECS:
        return _SPECS[name]
    if ":" in name:
        return RewardSpec(name, name)
    from rewards.hints import did_you_mean

    hint = did_you_mean(name, _SPECS)
    raise UnknownReward(f"unknown reward '{name}'{hint}; known rewards: {', '.join(sorted(_SPECS))}")


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


def preflight(name: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check reward ``name`` with ``args`` against this host before a run relies on it.

    Returns what a run records next to the reward's scores (the code reward: ``isolation`` and
    ``isolation_detail``; ``{}`` for rewards that need no check). Raises UnknownReward for an unknown
    name, ``ValueError`` for an invalid argument, and the reward's own error, in one sentence, when it
    cannot work here (the code reward: ``SandboxUnavailableError``). Called when a recipe is loaded.
    """
    spec = _spec(name)
    if spec.preflight is None:
        return {}
    return dict(load(spec.preflight)(**dict(args or {})))


def build_reward(name: str, args: Mapping[str, Any] | None = None) -> Callable[..., Any]:
    """The reward ``name`` (a registry name or ``module:function``) bound to ``args``.

    A factory is called with ``args``; a function gets them bound (a :class:`BoundReward` named after
    the reward), or is returned as it is without any. Runs :func:`preflight` first, so a reward that
    cannot work here fails now, before any generation; what it found travels as the reward's ``facts``.
    """
    spec, args = _spec(name), dict(args or {})
    facts = preflight(name, args)
    fn = spec.load()
    if spec.factory:
        return fn(**args)
    return BoundReward(fn, name.rpartition(":")[2], args, facts) if args or facts else fn


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


# --------------------------------------------------------------------------------------------------
# What a reward needs: its arguments and its columns, read from the registry and the signatures


@dataclass(frozen=True)
class ArgProblem:
    """Why a reward does not accept an argument; ``known`` lists the arguments it does take."""

    arg: str
    reason: str  # follows the argument's name: "is not an argument of reward 'math'", "must be a number …"
    known: tuple[str, ...] = ()


def _parameters(obj: Any, factory: bool) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """Named parameters a caller may set, their resolved annotations, and whether ``**kwargs`` is taken."""
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):  # a builtin or an object without a signature: nothing to check
        return {}, {}, True
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        annotated = obj
    else:  # a class is called through __init__, an instance through __call__
        annotated = obj.__init__ if isinstance(obj, type) else type(obj).__call__
    try:
        hints = typing.get_type_hints(annotated)
    except Exception:  # an annotation that does not resolve here: types go unchecked
        hints = {}
    named = {
        n: p
        for n, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and (factory or n not in TRAINER_KWARGS)
    }
    return named, hints, any(p.kind is p.VAR_KEYWORD for p in params.values())


def check_args(name: str, args: Mapping[str, Any], *, complete: bool = True) -> ArgProblem | None:
    """The first argument of ``args`` that reward ``name`` would not accept, or None when it takes them all.

    Accepted are the named parameters of the reward (a factory's, or a function's besides those the
    trainer passes) and of what it forwards to, with values their annotations admit. A registry reward's
    ``**kwargs`` only swallow dataset columns, so a name it does not declare is refused; a
    ``module:function`` with ``**kwargs`` may read any name from them, so only its named parameters are
    type-checked. With ``complete``, arguments a factory cannot do without must be present.
    """
    spec = _spec(name)
    own, hints, open_kwargs = _parameters(spec.load(), spec.factory)
    named = dict(own)
    for target in spec.forwards_to:
        more, more_hints, _ = _parameters(load(target), spec.factory)
        named, hints = {**more, **named}, {**more_hints, **hints}
    known = tuple(sorted(named))
    for arg, value in args.items():
        if arg in TRAINER_KWARGS and not spec.factory:
            return ArgProblem(arg, f"is passed by the trainer to reward '{name}', not set in a recipe")
        if arg not in named:
            if open_kwargs and not has(name):
                continue
            return ArgProblem(arg, f"is not an argument of reward '{name}'", known)
        expected = _expected(value, hints.get(arg, Any))
        if expected is not None:
            return ArgProblem(arg, f"must be {expected} for reward '{name}', got {value!r}")
    if complete and spec.factory:
        needed = [n for n, p in own.items() if p.default is p.empty]
        for arg in [*needed, *spec.requires]:
            if arg not in args:
                return ArgProblem(arg, f"is required by reward '{name}'")
    return None


def columns(name: str, args: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The dataset columns reward ``name`` cannot score a row without (less those ``args`` bind).

    Registry rewards declare theirs; a ``module:function`` needs the parameters it names without a
    default that the trainer does not pass (the dataset columns, in TRL's reward contract).
    """
    spec, bound = _spec(name), set(args or ())
    if has(name) or spec.factory:
        needed: tuple[str, ...] = spec.columns
    else:
        named, _, _ = _parameters(spec.load(), factory=False)
        needed = tuple(n for n, p in named.items() if p.default is p.empty)
    return tuple(c for c in needed if c not in bound)


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _expected(value: Any, tp: Any) -> str | None:
    """None when ``value`` (as YAML gives it) fits annotation ``tp``, else a description of what fits."""
    if _fits(value, tp):
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_TYPE_NAMES.get(a, _type_name(a)) for a in args if a is not type(None))
    if tp is float and isinstance(value, str) and _is_number(value):
        return "a number (YAML reads 1e-5 as a string: write 1.0e-5)"
    return _TYPE_NAMES.get(tp, _type_name(tp))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple, set, abc.Sequence, abc.Iterable, abc.Collection) or tp in (list, tuple):
        return "a list"
    if origin in (dict, abc.Mapping) or tp is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is abc.Callable or tp is abc.Callable:
        return "a callable (which a recipe cannot give)"
    return _TYPE_NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` fits annotation ``tp``; constructs this cannot judge (protocols, type variables) fit."""
    if tp is Any or isinstance(tp, (typing.TypeVar, str)):
        return True
    if tp is None or tp is type(None):
        return value is None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple, set, frozenset, abc.Sequence, abc.Iterable, abc.Collection) or tp in (
        list,
        tuple,
    ):
        if not isinstance(value, (list, tuple)):
            return False
        homogeneous = len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis)
        return not homogeneous or all(_fits(v, args[0]) for v in value)
    if origin in (dict, abc.Mapping) or tp is dict:
        return isinstance(value, dict) and (len(args) != 2 or all(_fits(v, args[1]) for v in value.values()))
    if origin is abc.Callable or tp is abc.Callable:
        return callable(value)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, (dict, tp))
    if isinstance(tp, type) and not getattr(tp, "_is_protocol", False):
        return isinstance(value, tp)
    return True
