"""Every recipe mistake a stage can see in its own config is caught when the recipe loads, in one sentence.

Unknown trainer settings under ``train.extra``, reward arguments the reward's signature does not accept
or whose types it rejects, rollout batches that split a group for the launched world size, and rewards
reading a column the stage's data does not provide: each is a row below, and the launcher exits 2 on
them before a run directory (let alone a model) exists.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import recipe_from_dict
from pipeline.schema import ConfigError
from tests.conftest import PYTHON, ROOT, subprocess_env

THIS = "tests.test_recipe_checks"


def strict_reward(completions: list[Any], answer: list[str], *, scale: float = 1.0) -> list[float]:
    """A ``module:function`` reward without ``**kwargs``: its signature is all it accepts."""
    return [scale * float(str(c).strip() == a) for c, a in zip(completions, answer, strict=True)]


def open_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """A ``module:function`` reward reading its options from ``**kwargs``: any argument name may be read."""
    return [float(kwargs.get("bonus", 0.0))] * len(completions)


def grpo(**overrides: Any) -> dict[str, Any]:
    stage = {
        "kind": "grpo",
        "data": [{"source": "builtin:math", "size": 8}],
        "rewards": [{"name": "math"}],
        "num_generations": 4,
        "train": {"max_steps": 1, "batch_size": 8},
    }
    return {**stage, **overrides}


def sft(**train: Any) -> dict[str, Any]:
    return {
        "kind": "sft",
        "data": [{"source": "builtin:math", "size": 8}],
        "train": {"max_steps": 1, **train},
    }


def rm(**train: Any) -> dict[str, Any]:
    return {"kind": "reward_model", "data": [{"source": "builtin:chat", "size": 8}], "train": train}


def load(stage: dict[str, Any]) -> Any:
    return recipe_from_dict(
        {"run": {"name": "checks"}, "model": {"name_or_path": "builtin:tiny"}, "stages": {"s": stage}}
    )


def local_file(tmp_path: Path, name: str) -> str:
    """A two-row data file with the columns q (question) and gold (its answer)."""
    path = tmp_path / name
    rows = [{"q": "1+1", "gold": "2"}, {"q": "2+2", "gold": "4"}]
    if name.endswith(".csv"):
        path.write_text("q,gold\n" + "".join(f"{r['q']},{r['gold']}\n" for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


# (stage, fragments the one-sentence error must contain)
MISTAKES = [
    # train.extra: a setting the stage's TRL config class does not have, per kind, with the closest one
    (sft(extra={"warmup_step": 2}), ["stages.s.train.extra.warmup_step", "trl.SFTConfig", "'warmup_steps'"]),
    (rm(extra={"center_reward": 0.1}), ["stages.s.train.extra.center_reward", "trl.RewardConfig"]),
    (grpo(train={"max_steps": 1, "batch_size": 8, "extra": {"num_generation": 4}}),
     ["stages.s.train.extra.num_generation", "trl.GRPOConfig", "'num_generations'"]),
    # reward args: a name the reward does not take (registry reward), with the closest and the list
    (grpo(rewards=[{"name": "math", "args": {"timeout": 3}}]),
     ["stages.s.rewards[0].args.timeout", "not an argument of reward 'math'", "'timeout_s'", "fallbacks"]),
    # ... a name only a function the reward forwards to declares is fine, a misspelling of it is not
    (grpo(data=[{"source": "builtin:code", "size": 8}], rewards=[{"name": "code", "args": {"partial": True}}]),
     ["stages.s.rewards[0].args.partial", "'partial_credit'"]),
    # ... a type the annotation rejects: a bool, a Literal, a number YAML read as a string, a callable
    (grpo(data=[{"source": "builtin:code", "size": 8}], rewards=[{"name": "code", "args": {"partial_credit": "yes"}}]),
     ["stages.s.rewards[0].args.partial_credit", "true or false", "'yes'"]),
    (grpo(data=[{"source": "builtin:code", "size": 8}], rewards=[{"name": "code", "args": {"stdio_compare": "words"}}]),
     ["stages.s.rewards[0].args.stdio_compare", "one of 'lines', 'tokens'"]),
    (grpo(rewards=[{"name": "math", "args": {"timeout_s": "1e-5"}}]),
     ["stages.s.rewards[0].args.timeout_s", "a number", "write 1.0e-5"]),
    (grpo(data=[{"source": "builtin:swe", "size": 8}], rewards=[{"name": "swe", "args": {"judge": "gpt"}}]),
     ["stages.s.rewards[0].args.judge", "callable"]),
    # ... a factory's argument it cannot do without, and one it does not forward
    (grpo(rewards=[{"name": "reward_model"}]), ["stages.s.rewards[0].args.model_path", "required"]),
    (grpo(data=[{"source": "builtin:instruction", "size": 8}],
          rewards=[{"name": "if_rm", "args": {"model_path": "org/rm", "normalize": "group"}}]),
     ["stages.s.rewards[0].args.normalize", "not an argument of reward 'if_rm'"]),
    # ... an argument the trainer itself passes
    (grpo(rewards=[{"name": "math", "args": {"completions": ["4"]}}]),
     ["stages.s.rewards[0].args.completions", "passed by the trainer"]),
    # ... a module:function reward: its named parameters, by name and by type
    (grpo(rewards=[{"name": f"{THIS}:strict_reward", "args": {"scal": 2.0}}]),
     ["stages.s.rewards[0].args.scal", "did you mean 'scale'"]),
    (grpo(rewards=[{"name": f"{THIS}:strict_reward", "args": {"scale": "big"}}]),
     ["stages.s.rewards[0].args.scale", "a number", "'big'"]),
    # a rollout batch (batch_size x processes x steps_per_generation) that splits a group
    (grpo(train={"max_steps": 1, "batch_size": 6}),
     ["stages.s.train.batch_size", "6 completions", "multiple of num_generations=4"]),
    (grpo(num_generations=8, steps_per_generation=3, train={"max_steps": 1, "batch_size": 2}),
     ["stages.s.train.batch_size", "6 completions", "steps_per_generation 3"]),
    (grpo(train={"max_steps": 1, "batch_size": 8, "extra": {"per_device_train_batch_size": 3}}),
     ["stages.s.train.batch_size", "3 completions"]),  # what the trainer gets: train.extra wins
    # a reward reading a column no source provides: builtin tasks declare theirs
    (grpo(data=[{"source": "builtin:code", "size": 8}]), ["stages.s.rewards[0].name", "column 'answer'", "builtin:code"]),
    (grpo(rewards=[{"name": "instruction"}]), ["stages.s.rewards[0].name", "column 'instruction_id_list'"]),
    # ... a module:function reward needs the parameters it names without a default
    (grpo(data=[{"source": "builtin:chat", "size": 8}], rewards=[{"name": f"{THIS}:strict_reward"}]),
     ["stages.s.rewards[0].name", "column 'answer'"]),
    # ... a second reward of the stage is checked too
    (grpo(rewards=[{"name": "math"}, {"name": "code"}]), ["stages.s.rewards[1].name", "column 'tests'"]),
]  # fmt: skip


@pytest.mark.parametrize(("stage", "fragments"), MISTAKES)
def test_recipe_mistake_is_caught_at_load_time(stage: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load(stage)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


# Recipes that look close to a mistake above and are right: none may be refused.
ACCEPTED = [
    sft(extra={"warmup_steps": 2}),  # a real SFTConfig field
    grpo(train={"max_steps": 1, "batch_size": 8, "extra": {"num_generations": 4}}),  # a real GRPOConfig field
    grpo(rewards=[{"name": "math", "args": {"timeout_s": 3, "fallbacks": ["hash"]}}]),  # an int for a float
    grpo(data=[{"source": "builtin:code", "size": 8}],
         rewards=[{"name": "code", "args": {"partial_credit": True, "sandbox": {"tmpfs_mb": 64}}}]),  # forwarded
    grpo(rewards=[{"name": "reward_model", "args": {"model_path": "org/rm", "trust_remote_code": True}}]),
    grpo(rewards=[{"name": f"{THIS}:open_reward", "args": {"bonus": 1.0}}]),  # read from **kwargs
    grpo(rewards=[{"name": f"{THIS}:strict_reward", "args": {"scale": 2}}]),
    grpo(data=[{"source": "builtin:code", "size": 8}], rewards=[{"name": "math", "args": {"answer": "4"}}]),  # bound
    grpo(num_generations=8, train={"max_steps": 1, "batch_size": 4, "grad_accum": 2}),  # 4 x 1 x 2 = 8
    grpo(data=[{"source": "builtin:math", "size": 4}, {"source": "builtin:instruction", "size": 4}],
         rewards=[{"name": "math"}, {"name": "instruction"}]),  # each column from one source of the mix
    grpo(data=[{"source": "some-org/some-dataset"}], rewards=[{"name": "code"}]),  # hub: the loader checks
]  # fmt: skip


@pytest.mark.parametrize("stage", ACCEPTED)
def test_right_recipe_is_accepted(stage: dict[str, Any]) -> None:
    load(stage)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_local_file_columns_are_read_from_its_header(tmp_path: Path, suffix: str) -> None:
    source = local_file(tmp_path, "rows" + suffix)
    with pytest.raises(ConfigError, match=r"column 'answer'.*columns: \{answer: <source column>\}"):
        load(grpo(data=[{"source": source, "columns": {"prompt": "q"}}]))
    load(grpo(data=[{"source": source, "columns": {"prompt": "q", "answer": "gold"}}]))


def test_batch_check_reads_the_launched_world_size(monkeypatch: pytest.MonkeyPatch) -> None:
    stage = grpo(train={"max_steps": 1, "batch_size": 2})  # 2 completions per process, groups of 4
    with pytest.raises(ConfigError, match=r"2 completions.*1 process"):
        load(stage)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as accelerate launch / torchrun set it in every process
    load(stage)


MINI = """\
# python launch/cascade.py recipe=mini
description: one GRPO stage for the launcher tests
run: {name: mini, output_dir: RUNS}
model: {name_or_path: builtin:tiny}
stages:
  rl:
    kind: grpo
    data: [{source: builtin:math, size: 8}]
    rewards: [{name: math}]
    num_generations: 4
    train: {max_steps: 1, batch_size: 8}
"""


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("stages.rl.train.extra.learning_rat=0.1", "not a setting of trl.GRPOConfig"),
        ("stages.rl.rewards.0.args.timeout=3", "not an argument of reward 'math'"),
        ("stages.rl.train.batch_size=6", "multiple of num_generations=4"),
        ("stages.rl.rewards.0.name=code", "column 'tests'"),
    ],
)
def test_launcher_exits_2_before_the_run_starts(tmp_path: Path, override: str, fragment: str) -> None:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "mini.yaml").write_text(MINI.replace("RUNS", str(tmp_path / "runs")))
    proc = subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), "recipe=mini", override],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()  # one sentence, the last line, and no other error
    assert lines[-1].startswith("error: ") and fragment in lines[-1], proc.stderr
    assert sum("error" in line.lower() for line in lines) == 1, proc.stderr
    assert not (tmp_path / "runs").exists()  # no run directory, no model: the recipe never got that far


def test_launcher_recipe_is_valid_without_the_mistake(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(MINI.replace("RUNS", str(tmp_path)))  # the exit 2 above is the override's doing
    assert recipe_from_dict(data).stages["rl"].rewards[0].name == "math"


def test_benchmark_scorer_args_are_checked_too() -> None:
    bench = {"domain": "math", "data": {"source": "builtin:math", "split": "test", "size": 8}}
    recipe = {"run": {"name": "checks"}, "model": {"name_or_path": "builtin:tiny"}, "stages": {"s": sft()}}
    scorer = {"reward": "math", "args": {"timout_s": 3}}
    with pytest.raises(ConfigError, match=r"benchmarks\.m\.scorer\.args\.timout_s.*did you mean 'timeout_s'"):
        recipe_from_dict({**recipe, "benchmarks": {"m": {**bench, "scorer": scorer}}})
    # a reward model's model_path may come from the judge: a benchmark need not give it
    judged = {"reward": "reward_model", "judge": "org/rm", "metric": "mean_reward"}
    recipe_from_dict({**recipe, "benchmarks": {"m": {**bench, "scorer": judged}}})
