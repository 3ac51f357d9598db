"""Every number of the recipe schema is range-checked when the recipe loads, with one sentence naming the key.

``max_steps=-5`` used to be accepted and silently mean one epoch. The schema walk below finds every int and
float field of every stage kind, benchmark and run setting, and sets it to a value no setting can mean: the
recipe must refuse it. The table after it pins the sentences of the common mistakes.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Iterator
from typing import Any, Union

import pytest

from pipeline.compose import compose, recipe_file
from pipeline.config import Recipe, recipe_from_dict
from pipeline.schema import FRACTION, POSITIVE, ConfigError, Range
from pipeline.stages import stage_config_class

BASE = compose(recipe_file("tiny-smoke"), [])  # every stage kind (sft, reward_model, grpo) and benchmarks

# Numbers for which a negative value has a meaning: only nan and inf are refused.
NEGATIVE_ALLOWED = {
    "ScorerConfig.threshold",  # a score a sample must reach: reward scales may be negative
    "RewardTerm.weight",  # a term may penalise
    "Config.truncated_reward",  # the score given to truncated completions, any reward scale
    "PhaseConfig.truncated_reward",
    "Config.solve_threshold",  # compared with the reward total, any scale
}


def _numeric(tp: Any) -> type | None:
    """int or float when ``tp`` is one (or Optional of one); None for anything else (str unions included)."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _numeric(args[0]) if len(args) == 1 else None
    return tp if tp in (int, float) else None


def _dataclass_of(tp: Any) -> type | None:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _dataclass_of(args[0]) if len(args) == 1 else None
    return tp if dataclasses.is_dataclass(tp) else None


def _list_item(tp: Any) -> type | None:
    return _dataclass_of(typing.get_args(tp)[0]) if typing.get_origin(tp) is list else None


def numbers(cls: type, data: Any, path: list[str | int]) -> Iterator[tuple[list[str | int], str, type]]:
    """(path in the recipe dict, ``Class.field``, int or float) of every number under ``cls``."""
    hints = typing.get_type_hints(cls)
    data = data if isinstance(data, dict) else {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        tp = hints[field.name]
        if (kind := _numeric(tp)) is not None:
            yield [*path, field.name], f"{cls.__name__}.{field.name}", kind
        elif (sub := _dataclass_of(tp)) is not None:
            yield from numbers(sub, data.get(field.name), [*path, field.name])
        elif (item := _list_item(tp)) is not None and data.get(field.name):  # an item the recipe has
            yield from numbers(item, data[field.name][0], [*path, field.name, 0])


def every_number() -> list[tuple[str, list[str | int], str, type]]:
    found = []
    for path, name, kind in numbers(Recipe, BASE, []):
        if path[0] != "stages":
            found.append((".".join(map(str, path)), path, name, kind))
    for stage, raw in BASE["stages"].items():
        for path, name, kind in numbers(stage_config_class(raw["kind"], "kind"), raw, ["stages", stage]):
            found.append((".".join(map(str, path)), path, name, kind))
    for bench, raw in BASE["benchmarks"].items():
        for path, name, kind in numbers(
            typing.get_type_hints(Recipe)["benchmarks"].__args__[1], raw, ["benchmarks", bench]
        ):
            found.append((".".join(map(str, path)), path, name, kind))
    return found


NUMBERS = every_number()


def with_value(path: list[str | int], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    node: Any = data
    for part in path[:-1]:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    node[path[-1]] = value
    return data


def key_of(path: list[str | int]) -> str:
    """The key as the schema's errors write it: ``stages.math_rl.phases[0].steps``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def test_the_walk_reaches_every_stage_kind_and_section() -> None:
    names = {name for _, _, name, _ in NUMBERS}
    for expected in ("TrainConfig.max_steps", "DataSource.size", "GenerationConfig.top_p", "GateConfig.alpha",
                     "LoraConfig.dropout", "BuiltinModelConfig.num_heads", "PhaseConfig.steps", "RewardTerm.weight",
                     "EpochFilterConfig.readmit_hard", "Config.eval_fraction", "Config.num_generations"):  # fmt: skip
        assert expected in names, expected
    assert len(NUMBERS) > 100  # per stage and benchmark: the same field under every stage that has it


@pytest.mark.parametrize(("key", "path", "name", "kind"), NUMBERS, ids=[n[0] for n in NUMBERS])
def test_no_number_takes_nan_or_an_absurd_negative(key: str, path: list, name: str, kind: type) -> None:
    if kind is float:
        with pytest.raises(ConfigError) as nan:
            recipe_from_dict(with_value(path, float("nan")))
        assert str(nan.value) == f"key '{key_of(path)}' must be a finite number, got nan"
    if name in NEGATIVE_ALLOWED:
        recipe_from_dict(with_value(path, -3))  # accepted: a negative has a meaning here
        return
    with pytest.raises(ConfigError) as caught:
        recipe_from_dict(with_value(path, -(10**9)))
    assert key_of(path) in str(caught.value) and "-1000000000" in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("key", "value", "sentence"),
    [
        ("stages.sft1.train.max_steps", -5, "key 'stages.sft1.train.max_steps' must be positive or -1 (epochs), got -5"),
        ("stages.sft1.train.max_steps", 0, "key 'stages.sft1.train.max_steps' must be positive or -1 (epochs), got 0"),
        ("stages.sft1.train.batch_size", 0, "key 'stages.sft1.train.batch_size' must be positive, got 0"),
        ("stages.sft1.train.max_length", 0, "key 'stages.sft1.train.max_length' must be positive, got 0"),
        ("stages.sft1.train.warmup_ratio", 1.5, "key 'stages.sft1.train.warmup_ratio' must be in [0, 1], got 1.5"),
        ("stages.sft1.train.learning_rate", -1e-5, "key 'stages.sft1.train.learning_rate' must be non-negative"),
        ("stages.sft1.think_fraction", 1.2, "key 'stages.sft1.think_fraction' must be in [0, 1], got 1.2"),
        ("stages.sft1.lora.dropout", 1.0, "key 'stages.sft1.lora.dropout' must be in [0, 1), got 1.0"),
        ("stages.sft1.lora.r", 0, "key 'stages.sft1.lora.r' must be positive, got 0"),
        ("stages.sft1.data.0.size", 0, "key 'stages.sft1.data[0].size' must be positive, got 0"),
        ("stages.sft1.data.0.max_dropped", 2, "key 'stages.sft1.data[0].max_dropped' must be in [0, 1], got 2.0"),
        ("stages.rlhf.top_p", 1.5, "key 'stages.rlhf.top_p' must be in (0, 1], got 1.5"),
        ("stages.rlhf.top_k", -1, "key 'stages.rlhf.top_k' must be non-negative, got -1"),
        ("stages.rlhf.epsilon_high", 0, "key 'stages.rlhf.epsilon_high' must be positive, got 0.0"),
        ("stages.rlhf.entropy_coef", -0.1, "key 'stages.rlhf.entropy_coef' must be non-negative, got -0.1"),
        ("stages.math_rl.epoch_filter.readmit_hard", 1.1, "key 'stages.math_rl.epoch_filter.readmit_hard' must be in [0, 1], got 1.1"),
        ("stages.rm.eval_fraction", 1.0, "key 'stages.rm.eval_fraction' must be in [0, 1), got 1.0"),
        ("stages.rm.center_rewards_coefficient", -1, "key 'stages.rm.center_rewards_coefficient' must be non-negative, got -1.0"),
        ("benchmarks.math.generation.temperature", -1, "key 'benchmarks.math.generation.temperature' must be non-negative, got -1.0"),
        ("benchmarks.math.generation.top_p", 0, "key 'benchmarks.math.generation.top_p' must be in (0, 1], got 0.0"),
        ("benchmarks.math.generation.n", 0, "key 'benchmarks.math.generation.n' must be at least 1, got 0"),
        ("benchmarks.math.max_unscored", -0.1, "key 'benchmarks.math.max_unscored' must be in [0, 1], got -0.1"),
        ("gate.alpha", 1.0, "key 'gate.alpha' must be in (0, 1), got 1.0"),
        ("gate.tolerance", -0.02, "key 'gate.tolerance' must be non-negative, got -0.02"),
        ("run.seed", -1, "key 'run.seed' must be in [0, 4294967295], got -1"),
        ("model.builtin.vocab_size", 100, "key 'model.builtin.vocab_size' must be at least 261, got 100"),
        ("model.builtin.num_kv_heads", 3, "key 'model.builtin.num_heads' (2) must be a multiple of num_kv_heads (3)"),
        ("stages.sft1.train.epochs", float("inf"), "key 'stages.sft1.train.epochs' must be a finite number, got inf"),
    ],
)  # fmt: skip
def test_out_of_range_values_are_one_sentence(key: str, value: Any, sentence: str) -> None:
    path: list[str | int] = [int(p) if p.isdigit() else p for p in key.split(".")]
    with pytest.raises(ConfigError) as caught:
        recipe_from_dict(with_value(path, value))
    assert str(caught.value).startswith(sentence), str(caught.value)


def test_epochs_must_be_positive_when_steps_are_not_given() -> None:
    data = with_value(["stages", "sft1", "train", "max_steps"], -1)
    data["stages"]["sft1"]["train"]["epochs"] = 0
    with pytest.raises(
        ConfigError, match="key 'stages.sft1.train.epochs' must be positive when max_steps is -1"
    ):
        recipe_from_dict(data)


@pytest.mark.parametrize(
    ("allowed", "good", "bad", "text"),
    [
        (POSITIVE, [1e-9, 3], [0, -1], "positive"),
        (FRACTION, [0, 0.5, 1], [-0.01, 1.01], "in [0, 1]"),
        (Range(0, 1, low_open=True), [1e-9, 1], [0, 1.5], "in (0, 1]"),
        (Range(0, 1, high_open=True), [0, 0.99], [1, -1], "in [0, 1)"),
        (Range(0, low_open=True, special=(-1, "epochs")), [-1, 1], [0, -2], "positive or -1 (epochs)"),
        (Range(2), [2, 10], [1], "at least 2"),
        (Range(), [-1e9, 0, 1e9], [], "a finite number"),
    ],
)  # fmt: skip
def test_range(allowed: Range, good: list[float], bad: list[float], text: str) -> None:
    assert all(allowed.fits(v) for v in good) and not any(allowed.fits(v) for v in bad)
    assert allowed.describe() == text
