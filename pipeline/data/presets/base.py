"""What a preset is: a public dataset's defaults (hub id, config, split) and an adapter of its rows.

A preset's adapter turns one raw row of the public dataset into the row a stage or a benchmark reads
(``prompt`` + the reward's columns, a ``messages`` conversation, or a preference pair), including the
conversions that renaming columns cannot do: decoding LiveCodeBench's compressed private tests, building
an ``assert`` test that runs HumanEval's prompt with the completion, splitting hh-rlhf's transcripts
into turns, reading GSM8K's ``####`` answers.

An adapter raises :class:`RowError` for a row it cannot use (the loader drops and counts it, and
names the reason when too many are dropped) and returns :data:`SKIP` for a row it leaves out on
purpose (a tie, a contest outside the asked dates), which is counted apart and never trips the
dropped-rows check.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Produces = Literal["rl", "sft", "pairs"]


class RowError(ValueError):
    """A row the preset cannot use; the message says why (it is shown with an example row)."""


class _Skip:
    def __repr__(self) -> str:
        return "SKIP"


SKIP: Any = _Skip()  # an adapter's answer for a row left out on purpose


@dataclass(frozen=True)
class Scorer:
    """How a benchmark built on the preset is scored, unless the recipe says otherwise."""

    reward: str
    args: Mapping[str, Any] = field(default_factory=dict)
    metric: Literal["accuracy", "mean_reward", "win_rate"] = "accuracy"


Adapter = Callable[[dict[str, Any], Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Preset:
    """A named adapter from a public dataset's rows to what a stage or a benchmark reads."""

    name: str
    description: str
    produces: (
        Produces  # rl: prompt + reward columns (RL stages, benchmarks); sft: messages; pairs: preferences
    )
    adapt: Adapter
    reads: tuple[str, ...]  # the source columns the adapter needs (shown when rows do not fit)
    hub: str | None = None  # default hub id
    config: str | None = None
    split: str = "train"
    domain: str | None = None
    scorer: Scorer | None = None  # benchmark default
    options: Mapping[str, Any] = field(default_factory=dict)  # the adapter's options and their defaults
    packaged: Callable[[], Path] | None = None  # the copy a pip package ships (``source: package``)

    def resolve_options(self, given: Mapping[str, Any], key: str = "options") -> dict[str, Any]:
        """The adapter's options: defaults updated by ``given``; an unknown option is a ValueError."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise ValueError(
                f"preset '{self.name}' has no option {', '.join(unknown)} (its options: {known})"
            )
        return {**self.options, **given}

    def __call__(self, row: dict[str, Any], options: Mapping[str, Any] | None = None) -> Any:
        return self.adapt(row, self.options if options is None else options)


# --------------------------------------------------------------------------------------------------
# Helpers the adapters share


def text(row: Mapping[str, Any], *names: str, required: bool = True, numbers: bool = False) -> str | None:
    """The first non-empty string among columns ``names``; RowError naming them when there is none.

    A column that holds something else than text (a list, a dict; a number unless ``numbers``, as an
    AIME answer may be) is a RowError naming the column and what it holds: a file whose column has the
    wrong type is reported, not read as the text of its value.
    """
    for name in names:
        value = row.get(name)
        if isinstance(value, str):
            if value.strip():
                return value
            continue
        if value is None:
            continue
        if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(_plain_number(value))
        raise RowError(f"column '{name}' holds {type(value).__name__}, not text")
    if required:
        raise RowError(f"no text in column {' / '.join(repr(n) for n in names)}")
    return None


def ident(row: Mapping[str, Any], *names: str) -> str | None:
    """A row's id: the first of columns ``names`` that holds text or a whole number, as text; else None.

    A missing value stays None (the loader then numbers the row), never the text "None".
    """
    for name in names:
        value = row.get(name)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def as_list(value: Any) -> Any:
    """numpy arrays (as parquet columns come back through pandas) and tuples as lists; JSON list text parsed."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def message(role: str, content: Any, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"role": role, "content": content}
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


# Keys of a chat message that chat templates read: tool calls and their answers are kept, not dropped.
MESSAGE_KEYS = ("role", "content", "tool_calls", "name", "tool_call_id", "reasoning_content")


def messages(value: Any, what: str = "messages") -> list[dict[str, Any]]:
    """A chat conversation with every template-relevant key kept.

    ``content: null`` is allowed on an assistant turn that carries ``tool_calls`` (OpenAI's layout, as
    Nemotron and Tulu tool-use rows have it) and becomes ``""``, which every template renders.
    """
    value = as_list(value)
    if not isinstance(value, list) or not value:
        raise RowError(f"{what} is not a non-empty list of messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise RowError(f"{what}[{i}] has no 'role'")
        item = {k: m[k] for k in MESSAGE_KEYS if k in m and m[k] is not None}
        content = m.get("content")
        if content is None:
            if not m.get("tool_calls") and m.get("role") != "assistant":
                raise RowError(f"{what}[{i}] ({m['role']}) has no content")
            content = ""
        elif not isinstance(content, str):
            raise RowError(f"{what}[{i}] content is {type(content).__name__}, not text")
        item["content"] = content
        if "tool_calls" in item:
            item["tool_calls"] = _tool_calls(item["tool_calls"])
        out.append(item)
    return out


def _tool_calls(value: Any) -> list[dict[str, Any]]:
    """Tool calls with their ``arguments`` as a dict (templates such as Qwen3's serialise it themselves)."""
    calls = as_list(value) or []
    out = []
    for call in calls:
        call = dict(call)
        fn = dict(call.get("function") or {})
        if isinstance(fn.get("arguments"), str):
            with contextlib.suppress(ValueError):  # otherwise kept as text: a template prints it as it is
                fn["arguments"] = json.loads(fn["arguments"])
        if fn:
            call["function"] = fn
        out.append(call)
    return out


def cleaned_kwargs(value: Any, n: int) -> list[dict[str, Any]]:
    """IFEval-style kwargs: one dict per instruction, ``None`` values dropped.

    The hub layouts pad every dict with every argument name set to ``None`` (Arrow needs one struct
    type); the original jsonl has only the arguments used; some sets write ``null`` for an instruction
    without arguments. All three become the same list of small dicts.
    """
    value = as_list(value)
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else None
        except ValueError:
            raise RowError("kwargs is not valid JSON") from None
    if value is None:
        return [{} for _ in range(n)]
    if isinstance(value, Mapping) and n == 1:
        value = [value]
    if not isinstance(value, list):
        raise RowError(f"kwargs is {type(value).__name__}, not a list of dicts")
    if len(value) != n:
        raise RowError(f"kwargs has {len(value)} entries for {n} instructions")
    out = []
    for item in value:
        if isinstance(item, str):
            item = json.loads(item) if item.strip() else None
        if item is None:
            out.append({})
            continue
        if not isinstance(item, Mapping):
            raise RowError(f"a kwargs entry is {type(item).__name__}, not a dict")
        out.append({k: _plain_number(v) for k, v in item.items() if v is not None})
    return out


def _plain_number(value: Any) -> Any:
    """5.0 → 5: Arrow widens mixed int/None struct fields to float, and checkers count with ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
