"""Turning plain dicts into typed dataclasses, failing with one sentence that names the key.

OmegaConf's structured configs would check types too, but they cannot express a stage whose schema
depends on its ``kind`` (a tagged union), and their errors neither name the full key path nor suggest
the closest valid key. This module does only that conversion: composition, interpolation and the
override grammar stay with Hydra/OmegaConf (see ``pipeline.config``).

Numbers are checked against the range their dataclass declares in ``RANGES`` (field name →
:class:`Range`), before the class's own ``validate`` sees them; every float must be finite. A number
without a range is a mistake the schema tests catch (``tests/test_schema_ranges.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union

from rewards.hints import did_you_mean


class ConfigError(ValueError):
    """A recipe problem the user can fix; its message is one sentence naming the key."""


closest = did_you_mean  # the recipe's errors give the same hint as the rewards' (rewards.hints)


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a number of the recipe may take: bounds (None: unbounded, ``*_open``: excluded) and
    one special value outside them with its meaning (``max_steps`` is positive, or -1 for epochs)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    special: tuple[float, str] | None = None

    def fits(self, value: float) -> bool:
        if self.special is not None and value == self.special[0]:
            return True
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))

    def describe(self) -> str:
        low, high = _plain_number(self.low), _plain_number(self.high)
        if self.low is None and self.high is None:
            text = "a finite number"
        elif self.high is None:
            text = {(0, True): "positive", (0, False): "non-negative"}.get(
                (self.low, self.low_open), f"{'above' if self.low_open else 'at least'} {low}"
            )
        elif self.low is None:
            text = f"{'below' if self.high_open else 'at most'} {high}"
        else:
            text = f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.special is not None:
            text += f" or {_plain_number(self.special[0])} ({self.special[1]})"
        return text


def _plain_number(value: float | None) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)  # a probability, a share, a ratio: [0, 1]
FINITE = Range()  # any number, but not nan or inf
SEED = Range(0, 2**32 - 1)  # what numpy and torch accept as a seed


def at_least(n: float) -> Range:
    return Range(n)


def check_ranges(obj: Any, key: str) -> None:
    """Every number of dataclass ``obj`` against the ``RANGES`` its class (and its bases) declare."""
    ranges: dict[str, Range] = {}
    for klass in reversed(type(obj).__mro__):
        ranges.update(vars(klass).get("RANGES", {}))
    for name, allowed in ranges.items():
        value = getattr(obj, name)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not allowed.fits(value):
            path = f"{key}.{name}" if key else name
            raise ConfigError(f"key '{path}' must be {allowed.describe()}, got {value!r}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` converted to type ``tp``; ``key`` is the dotted path used in error messages."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"key '{key}' must be {_type_name(tp)}, not null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"key '{key}' must be {_type_name(tp)}, got {value!r}")
    if value is None:
        raise ConfigError(f"key '{key}' must be {_type_name(tp)}, not null")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            hint = closest(str(value), [str(a) for a in allowed])
            raise ConfigError(f"key '{key}' must be {_type_name(tp)}, got {value!r}{hint}")
        return value
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"key '{key}' must be a list, got {value!r}")
        return [convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, val_tp = typing.get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"key '{key}' must be a mapping, got {value!r}")
        return {str(k): convert(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"key '{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"key '{key}' must be an integer, got {value!r}")
    if tp is float:
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML reads 1e-5 (no dot) as a string
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is None:
            raise ConfigError(f"key '{key}' must be a number, got {value!r}")
        if not math.isfinite(number):  # .nan, .inf and "nan" parse as floats; no setting means them
            raise ConfigError(f"key '{key}' must be a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"key '{key}' must be a string, got {value!r}")
    return value


def from_dict(cls: type, data: Any, key: str = "") -> Any:
    """An instance of dataclass ``cls`` from ``data``; unknown, missing or mistyped keys raise ConfigError."""
    where = f"'{key}'" if key else "the recipe"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in data:
        if name not in fields:
            path = f"{key}.{name}" if key else str(name)
            raise ConfigError(f"unknown key '{path}'{closest(str(name), fields)}")
    kwargs = {}
    for name, field in fields.items():
        path = f"{key}.{name}" if key else name
        if name in data:
            kwargs[name] = convert(data[name], hints[name], path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key '{path}'")
    obj = cls(**kwargs)
    check_ranges(obj, key)
    check = getattr(obj, "validate", None)
    if callable(check):
        check(key)
    return obj


def set_fields(obj: Any) -> Any:
    """Like :func:`to_dict`, without the fields that hold their default value.

    What a stage's hash covers: a key a later version adds (at its default) leaves the hash of a
    recipe that does not use it unchanged, so upgrading Cascade does not retrain finished stages.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            if not f.init:
                continue
            value = getattr(obj, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            if f.default_factory is not dataclasses.MISSING and value == f.default_factory():
                continue
            out[f.name] = set_fields(value)
        return out
    if isinstance(obj, dict):
        return {k: set_fields(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [set_fields(v) for v in obj]
    return obj


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain dicts and lists (for YAML, hashing and logging)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # fields a recipe cannot set (init=False: derived at load) are not part of it either
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
