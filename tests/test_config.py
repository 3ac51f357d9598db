"""Recipes: every recipe loads; override grammar; each validation error names its key in one sentence."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from pipeline.compose import list_recipes, recipes_dir
from pipeline.config import load_recipe, stage_hashes
from pipeline.schema import ConfigError
from tests.conftest import PYTHON, ROOT, subprocess_env

ALL_RECIPES = [name for name, _ in list_recipes(ROOT / "recipes")]


@pytest.mark.parametrize("name", ALL_RECIPES)
def test_every_recipe_loads_and_validates(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    recipe = load_recipe(name)
    assert recipe.stages, name
    assert recipe.description, f"recipe {name} needs a one-line description"


def test_every_recipe_opens_with_its_launch_command() -> None:
    for name in ALL_RECIPES:
        first = (ROOT / "recipes" / f"{name}.yaml").read_text().splitlines()[0]
        assert first.startswith("#") and "launch/cascade.py" in first and f"recipe={name}" in first, name


@pytest.fixture
def recipe_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A self-contained recipes folder (local data files, no builtin tasks) as the working directory."""
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps({"q": f"q{i}", "a": f"a{i}"}) for i in range(10)) + "\n")
    rdir = tmp_path / "recipes"
    rdir.mkdir()
    (rdir / "mini.yaml").write_text(
        textwrap.dedent(
            f"""\
            # python launch/cascade.py recipe=mini
            description: a two-stage recipe for tests
            run: {{name: mini, output_dir: {tmp_path / "runs"}}}
            model: {{name_or_path: {tmp_path}}}
            stages:
              sft1:
                kind: sft
                data: [{{source: {data}, columns: {{prompt: q, response: a}}}}]
                train: {{max_steps: 5, learning_rate: 1.0e-4}}
              sft2:
                kind: sft
                data: [{{source: {data}, columns: {{prompt: q, response: a}}}}]
                train: {{max_steps: 5}}
            """
        )
    )
    (rdir / "child.yaml").write_text(
        "# python launch/cascade.py recipe=child\ndefaults: [mini, _self_]\ndescription: inherits mini\n"
        "stages: {sft2: {train: {max_steps: 9}}}\n"
    )
    for name, text in [
        ("zero2.json", '{"zero_optimization": {"stage": 2}}'),
        ("zero3.json", '{"zero_optimization": {"stage": 3}}'),
        ("broken.json", '{"zero_optimization": '),
        ("zero4.json", '{"zero_optimization": {"stage": 4}}'),
    ]:
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    return rdir


# (overrides, check) — the grammar of Hydra overrides, applied to the typed recipe
OVERRIDES = [
    # a plain value change addresses a stage by name
    (["stages.sft1.train.max_steps=7"], lambda r: r.stages["sft1"].train.max_steps == 7),
    # '+' adds a key the YAML does not set but the schema knows
    (["+stages.sft1.train.warmup_ratio=0.1"], lambda r: r.stages["sft1"].train.warmup_ratio == 0.1),
    # ... and on a key the YAML sets it changes it (the schema, not Hydra, decides which keys exist)
    (["+stages.sft1.train.max_steps=8"], lambda r: r.stages["sft1"].train.max_steps == 8),
    # a mapping value replaces fields of a nested section
    (["stages.sft1.lora={enabled: true, r: 4}"], lambda r: r.stages["sft1"].lora.r == 4),
    # a trainer setting the TRL config class has passes through train.extra
    (
        ["stages.sft1.train.extra.warmup_steps=2"],
        lambda r: r.stages["sft1"].train.extra == {"warmup_steps": 2},
    ),
    # a run-level value
    (["run.name=other"], lambda r: r.run.name == "other"),
    # scientific notation from the command line becomes a float
    (["stages.sft1.train.learning_rate=3e-5"], lambda r: r.stages["sft1"].train.learning_rate == 3e-5),
    # a schema field the YAML leaves out can be set without '+'
    (["stages.sft2.train.learning_rate=3e-4"], lambda r: r.stages["sft2"].train.learning_rate == 3e-4),
    # ... also inside a list item and a nested dataclass
    (["stages.sft1.data.0.size=4"], lambda r: r.stages["sft1"].data[0].size == 4),
    # '~' deletes a key: the stage falls back to the schema default
    (["~stages.sft1.train.learning_rate"], lambda r: r.stages["sft1"].train.learning_rate == 1e-5),
    # a DeepSpeed config per stage; LoRA goes with ZeRO-2
    (["stages.sft1.train.deepspeed=zero3.json"], lambda r: r.stages["sft1"].train.zero_stage() == 3),
    (
        ["stages.sft1.train.deepspeed=zero2.json", "stages.sft1.lora.enabled=true"],
        lambda r: r.stages["sft1"].lora.enabled and r.stages["sft1"].train.zero_stage() == 2,
    ),
]


@pytest.mark.parametrize(("overrides", "check"), OVERRIDES)
def test_override_grammar(recipe_dir: Path, overrides: list[str], check) -> None:
    assert check(load_recipe("mini", overrides))


def test_defaults_inheritance(recipe_dir: Path) -> None:
    recipe = load_recipe("child")
    assert recipe.description == "inherits mini"
    assert recipe.stages["sft2"].train.max_steps == 9
    assert recipe.stages["sft1"].train.max_steps == 5  # inherited unchanged
    assert list(recipe.stages) == ["sft1", "sft2"]  # order kept


def test_recipe_by_path(recipe_dir: Path) -> None:
    assert load_recipe(str(recipe_dir / "mini.yaml")).run.name == "mini"


# (overrides or recipe name, fragments the one-sentence message must contain)
ERRORS = [
    # unknown key, with the closest valid key suggested
    (["+stages.sft1.train.max_step=5"], ["stages.sft1.train.max_step", "did you mean 'max_steps'"]),
    # unknown top-level key
    (["+rnu.seed=3"], ["'rnu'", "did you mean 'run'"]),
    # wrong type
    (["stages.sft1.train.max_steps=abc"], ["stages.sft1.train.max_steps", "integer"]),
    # wrong type in a Literal
    (["+run.precision=bf32"], ["run.precision", "bf16"]),
    # missing required field
    (["~model.name_or_path"], ["missing required key 'model.name_or_path'"]),
    # unknown stage kind, with a suggestion
    (["stages.sft1.kind=sftt"], ["stages.sft1.kind", "unknown stage kind 'sftt'", "did you mean 'sft'"]),
    # a dataset path that does not exist
    (["stages.sft1.data.0.source=./missing.jsonl"], ["stages.sft1.data[0].source", "does not exist"]),
    # a stage that names a stage that does not exist
    (["+stages.sft2.init=sft9"], ["stages.sft2.init", "sft9", "did you mean 'sft1'"]),
    # a stage that names a later stage
    (["+stages.sft1.init=sft2"], ["stages.sft1.init", "runs later"]),
    # a checkpoint path that does not exist
    (["+stages.sft2.init=/nonexistent/ckpt"], ["stages.sft2.init", "does not exist"]),
    # overriding a key neither the recipe nor the schema has: the schema names it and its closest key
    (
        ["stages.sft1.train.warmup=0.1"],
        ["unknown key 'stages.sft1.train.warmup'", "did you mean 'warmup_ratio'"],
    ),
    # ... also at the top level and in a misspelt section
    (["rnu.seed=3"], ["unknown key 'rnu'", "did you mean 'run'"]),
    (["stages.sft1.trian.max_steps=3"], ["unknown key 'stages.sft1.trian'", "did you mean 'train'"]),
    # Hydra's own errors, one sentence each: bad syntax, deleting an absent key, a list index out of range
    (
        ["stages.sft1.train.max_steps=[1"],
        ["override 'stages.sft1.train.max_steps=[1'", "not valid override syntax"],
    ),
    (
        ["~stages.sft1.train.nothing"],
        ["could not be composed with ~stages.sft1.train.nothing", "does not exist"],
    ),
    (["stages.sft1.data.7.size=3"], ["could not be composed with stages.sft1.data.7.size=3"]),
    # an interpolation that does not resolve names its key
    (["run.name=${nowhere}"], ["key 'run.name'", "cannot be resolved"]),
    # rerun_from a stage that is not there
    (["+run.rerun_from=sft3"], ["run.rerun_from", "sft3"]),
    # a negative size
    (["+stages.sft1.data.0.size=-3"], ["stages.sft1.data[0].size", "positive"]),
    # DeepSpeed configs: missing, not JSON, an unknown ZeRO stage, ZeRO-3 with LoRA
    (["stages.sft1.train.deepspeed=zero9.json"], ["stages.sft1.train.deepspeed", "does not exist"]),
    (["stages.sft1.train.deepspeed=broken.json"], ["stages.sft1.train.deepspeed", "not a DeepSpeed JSON"]),
    (["stages.sft1.train.deepspeed=zero4.json"], ["stages.sft1.train.deepspeed", "stage must be 0-3"]),
    (
        ["stages.sft1.train.deepspeed=zero3.json", "stages.sft1.lora.enabled=true"],
        ["stages.sft1.lora", "ZeRO-3", "ZeRO-2"],
    ),
]


@pytest.mark.parametrize(("overrides", "fragments"), ERRORS)
def test_validation_errors_name_the_key(recipe_dir: Path, overrides: list[str], fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe("mini", overrides)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_unknown_recipe_suggests(recipe_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown recipe 'mnii'.*did you mean 'mini'"):
        load_recipe("mnii")


def test_hashes_chain_through_stages(recipe_dir: Path) -> None:
    a = stage_hashes(load_recipe("mini"))
    b = stage_hashes(load_recipe("mini", ["stages.sft1.train.max_steps=6"]))
    c = stage_hashes(load_recipe("mini", ["+stages.sft1.train.save_steps=3"]))
    assert a["sft1"] != b["sft1"] and a["sft2"] != b["sft2"]  # a change of stage 1 changes every later stage
    assert a == c  # checkpointing frequency does not change what a stage produces


def test_hashes_cover_only_values_set_away_from_defaults(recipe_dir: Path) -> None:
    """A key written at its default (as a key a later version adds is) leaves every hash unchanged."""
    a = stage_hashes(load_recipe("mini"))
    same = stage_hashes(load_recipe("mini", ["stages.sft1.train.weight_decay=0.0", "model.dtype=auto"]))
    other = stage_hashes(load_recipe("mini", ["stages.sft1.train.weight_decay=0.1"]))
    assert same == a
    assert other["sft1"] != a["sft1"]


def test_recipes_dir_is_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert recipes_dir() == ROOT / "recipes"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["stages.sft1.train.max_steps=abc"], "must be an integer"),  # bad override
        (["recipe=nope"], "unknown recipe 'nope'"),  # bad recipe name
        (["stages.sft1.train.max_steps"], "not of the form key=value"),  # not key=value
    ],
)
def test_launcher_exits_2_with_one_sentence(recipe_dir: Path, args: list[str], fragment: str) -> None:
    argv = args if any(a.startswith("recipe=") for a in args) else ["recipe=mini", *args]
    proc = subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), *argv],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()  # one sentence, the last line, and no other error
    assert lines[-1].startswith("error: ") and fragment in lines[-1], proc.stderr
    assert sum("error" in line.lower() for line in lines) == 1, proc.stderr


def test_dry_run_prints_plan(recipe_dir: Path) -> None:
    proc = subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), "recipe=mini", "dry_run=true"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "01 sft1" in proc.stdout and "02 sft2" in proc.stdout and "5 steps" in proc.stdout
    assert not (recipe_dir.parent / "runs").exists()  # a dry run writes nothing


def test_recipe_list(recipe_dir: Path) -> None:
    proc = subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), "recipe=list"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert proc.returncode == 0
    assert "mini" in proc.stdout and "a two-stage recipe for tests" in proc.stdout


def test_shipped_deepspeed_config_is_zero3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    recipe = load_recipe("tiny-smoke", ["stages.sft1.train.deepspeed=recipes/deepspeed/zero3.json"])
    assert recipe.stages["sft1"].train.zero_stage() == 3


def test_a_missing_default_is_one_sentence(recipe_dir: Path) -> None:
    (recipe_dir / "orphan.yaml").write_text(
        "# python launch/cascade.py recipe=orphan\ndefaults: [nowhere, _self_]\n"
    )
    with pytest.raises(ConfigError, match=r"recipe 'orphan' names a default 'nowhere' that does not exist"):
        load_recipe("orphan")


def test_console_command_is_the_launch_script(recipe_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `cascade` (pyproject's console script) runs the function launch/cascade.py calls
    import importlib
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["cascade"].partition(":")
    main = getattr(importlib.import_module(module), name)
    assert f"from {module} import {name}" in (ROOT / "launch" / "cascade.py").read_text()
    assert main(["recipe=list"]) == 0 and "a two-stage recipe for tests" in capsys.readouterr().out
    assert main(["recipe=mini", "stages.sft1.train.max_steps=abc"]) == 2
