"""Checks that several sections of a recipe share: this machine's (deferred in a dry run), local paths, and
the arguments of a reward."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pipeline.schema import (
    ConfigError,
    closest,
)

# Checks of this machine rather than of the recipe (a package, the code sandbox's isolation): errors
# at load, but listed instead while a dry run loads the recipe (load_recipe(defer_environment=True)).
_DEFERRED: ContextVar[list[str] | None] = ContextVar("deferred_environment_checks", default=None)

LOCAL_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".jsonl.gz", ".json.gz")


def environment_problem(message: str) -> None:
    """A check this machine fails (one sentence): a ConfigError, or listed as unchecked in a dry run."""
    deferred = _DEFERRED.get()
    if deferred is None:
        raise ConfigError(message)
    deferred.append(message)


@contextmanager
def environment_checks(defer: bool) -> Iterator[list[str]]:
    """Within this block :func:`environment_problem` raises, or (``defer``) appends to the list yielded."""
    deferred: list[str] = []
    token = _DEFERRED.set(deferred if defer else None)
    try:
        yield deferred
    finally:
        _DEFERRED.reset(token)


def looks_local(source: str) -> bool:
    """Whether a source string is meant as a local path (not a hub id)."""
    return (
        source.startswith(("/", "./", "../", "~"))
        or source.endswith(LOCAL_DATA_SUFFIXES)
        or (os.sep in source and Path(source).exists())
    )


def check_reward_args(
    name: str, args: dict[str, Any], keys: tuple[str, str], *, complete: bool = True
) -> None:
    """A ConfigError naming the key when reward ``name`` cannot be loaded or would not accept ``args``.

    ``keys`` are the recipe keys of the reward's name and of its arguments; see
    ``rewards.registry.check_args`` for what is checked (``complete``: a factory's required arguments too).
    """
    from rewards import registry

    name_key, args_key = keys
    try:
        problem = registry.check_args(name, args, complete=complete)
    except registry.RewardLoadError as exc:
        raise ConfigError(f"key '{name_key}': {exc}") from None
    if problem is not None:
        takes = f"; it takes {', '.join(problem.known)}" if problem.known else ""
        hint = closest(problem.arg, problem.known)
        raise ConfigError(f"key '{args_key}.{problem.arg}' {problem.reason}{hint}{takes}")
    if registry.has(name):
        try:  # a reward this host cannot run (the code sandbox without any isolation) stops the launch now
            registry.preflight(name, args)
        except (ValueError, RuntimeError) as exc:
            environment_problem(f"key '{args_key}': {exc}")
