"""What every synthetic task is made of: problems with a stable identity, a split by hash, typed options.

A task samples :class:`Problem` objects from a seeded generator and renders each into a row. A problem's
``key`` is its identity (two problems with one key are the same problem); its ``group`` is the unit
assigned to a split, by a hash of the group alone, so that no seed, size or option can move a problem
from one split to the other. Everything a row contains is derived from the problem (through
:func:`problem_rng`) and the options, never from the order of generation.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SPLITS = ("train", "test")
# Percentage of every task's problem groups that belong to the test split. Fixed, not an option: a
# configurable share would let two calls disagree about which split a problem is in.
TEST_PERCENT = 20

Options = Mapping[str, Any]


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of ``parts`` that is the same in every process (unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def split_of(task: str, group: str) -> str:
    """The split a problem group belongs to: ``test`` for a fixed ``TEST_PERCENT`` of all groups."""
    return "test" if stable_hash(task, "split", group) % 100 < TEST_PERCENT else "train"


def problem_rng(task: str, key: str) -> random.Random:
    """A generator seeded by a problem alone: a problem renders the same in every call that draws it."""
    return random.Random(stable_hash(task, "render", key))


@dataclass(frozen=True)
class Problem:
    """One problem of a task, before rendering.

    ``key`` identifies the problem; ``group`` (the key itself unless a task groups problems, e.g. the
    bugs of one function) is what is assigned to a split; ``params`` is whatever the task renders from.
    """

    key: str
    params: Mapping[str, Any]
    group: str = ""

    def __post_init__(self) -> None:
        if not self.group:
            object.__setattr__(self, "group", self.key)


# --- options -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """A task option: its default, a converter that validates a value (raising ValueError), and its meaning."""

    default: Any
    convert: Callable[[Any], Any]
    help: str


def fraction(value: Any) -> float:
    """A number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"expected a number between 0 and 1, got {value!r}")
    return float(value)


def boolean(value: Any) -> bool:
    """A YAML boolean (true/false), not a number or a string."""
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def one_of(*allowed: str) -> Callable[[Any], str]:
    """A converter accepting one of ``allowed``."""

    def convert(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {list(allowed)}, got {value!r}")
        return value

    return convert


def integer(low: int, high: int | None = None) -> Callable[[Any], int]:
    """A converter accepting integers in [low, high] (integral floats included, as YAML may give them)."""

    def convert(value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"expected an integer {bounds}, got {value}")
        return value

    return convert


def subset(allowed: Sequence[str], empty: bool = False) -> Callable[[Any], tuple[str, ...]]:
    """A converter accepting a selection of ``allowed`` (a list, or a string of one-character items).

    The selection must not be empty unless ``empty`` says an empty one means "none".
    """

    def convert(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            items = [value] if value in allowed else list(value)
        elif isinstance(value, Sequence):
            items = list(value)
        else:
            raise ValueError(f"expected a list drawn from {list(allowed)}, got {value!r}")
        unknown = [item for item in items if item not in allowed]
        if unknown or not (items or empty):
            kind = "a selection" if empty else "a non-empty selection"
            raise ValueError(f"expected {kind} of {list(allowed)}, got {value!r}")
        return tuple(dict.fromkeys(items))  # unique, in the given order

    return convert


def trap_options(allowed: Sequence[str], kinds: str, rows: str, example: str) -> dict[str, Option]:
    """A task's ``traps`` (``kinds`` of problem, drawn from ``allowed``, that the teacher gets wrong
    systematically; none by default) and ``trap_rate`` (the share of ``rows`` that make the mistake)."""
    return {
        "traps": Option(
            (), subset(allowed, empty=True), f"{kinds} systematically (see trap_rate), e.g. {example}"
        ),
        "trap_rate": Option(0.7, fraction, f"share of {rows}"),
    }


@dataclass(frozen=True)
class Task:
    """A synthetic task: its domain columns, its options, how to sample a problem and how to render it.

    ``sample(rng, options)`` draws a problem; ``render(problem, flawed, options)`` returns the row's
    ``prompt``, ``reasoning``, ``response`` and domain columns, or None when the problem cannot be
    rendered under these options (it is then skipped like a duplicate). A row may say it is ``flawed``
    itself, when a systematic mistake (a trap) made it wrong though it was not drawn to be. ``widen``
    tells a user which options enlarge the problem space when it runs out.
    """

    name: str
    columns: tuple[str, ...]
    options: Mapping[str, Option]
    sample: Callable[[random.Random, Options], Problem]
    render: Callable[[Problem, bool, Options], dict[str, Any] | None]
    widen: str
    description: str = field(default="")

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given``, every value validated; an unknown option is a ValueError."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise ValueError(
                f"task '{self.name}' has no option {', '.join(repr(u) for u in unknown)}; "
                f"its options are: {', '.join(self.options)}"
            )
        resolved = {}
        for name, option in self.options.items():
            value = given.get(name, option.default)
            try:
                resolved[name] = option.convert(value)
            except ValueError as exc:
                raise ValueError(f"option '{name}' of task '{self.name}': {exc}") from None
        return resolved
