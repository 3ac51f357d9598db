"""Turning plain dicts into typed dataclasses, failing with one sentence that names the key.

OmegaConf's structured configs would check types too, but they cannot express a stage whose schema
depends on its ``kind`` (a tagged union), and their errors neither name the full key path nor suggest
the closest valid key. This module does only that conversion: composition, interpolation and the
override grammar stay with Hydra/OmegaConf (see ``pipeline.config``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from rewards.hints import did_you_mean


class ConfigError(ValueError):
    """A recipe problem the user can fix; its message is one sentence naming the key."""


closest = did_you_mean  # the recipe's errors give the same hint as the rewards' (rewards.hints)


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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"key '{key}' must be a number, got {value!r}")
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
