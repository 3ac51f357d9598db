"""The README and docs are true to the code: every command of their shell blocks parses (a recipe it names
loads, as ``dry_run=true`` would), every path they name exists, every recipe key they name is in the schema.

Commands are checked in this process with each program's own parser (Cascade's ``key=value`` arguments and
Hydra's override grammar, argparse for the reports and rewards CLIs, accelerate's launcher parser), not by
running them.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import tomllib
import types
import typing
from typing import Any, Union

import pytest

from pipeline.cli import parse_args
from pipeline.compose import schema_overrides
from pipeline.config import BenchmarkConfig, Recipe, StageConfig, load_recipe
from pipeline.stages import STAGE_KINDS, stage_config_class
from tests.conftest import ROOT

DOCS = [ROOT / "README.md", ROOT / "recipes" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL = ("bash", "sh", "shell", "console")
PLACEHOLDER = re.compile(r"<[^>]*>|…|path/to|my-recipe|my\.yaml|FILE|NAME")
# Programs whose commands are someone else's to parse (system tools in install and Slurm notes).
OTHER_PROGRAMS = {
    "apt-get",
    "sbatch",
    "srun",
    "squeue",
    "scancel",
    "sacct",
    "git",
    "cd",
    "export",
    "nvidia-smi",
    "hf",
    "mkdir",
}


def shell_commands() -> list[tuple[str, str]]:
    """(file:line, command) of every command line in the docs' shell code blocks."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for block in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            if block.group(1) not in SHELL:
                continue
            first = text[: block.start(2)].count("\n") + 1
            joined, start = "", 0
            for offset, line in enumerate(block.group(2).splitlines()):
                if not joined:
                    start = first + offset
                joined += line.rstrip().removesuffix("\\") + " "
                if line.rstrip().endswith("\\"):
                    continue
                command = re.split(r"\s#\s|\s#$", joined.strip())[0].strip()  # a trailing comment
                if command and not command.startswith("#"):
                    found.append((f"{doc.relative_to(ROOT)}:{start}", command))
                joined = ""
    return found


COMMANDS = shell_commands()


def check_cascade(args: list[str], extra_keys: tuple[str, ...] = ()) -> None:
    parsed = parse_args(args, extra_keys)
    recipes = ROOT / "recipes"
    schema_overrides(parsed.overrides, recipes)  # Hydra's override grammar
    if parsed.recipe in (None, "list") or PLACEHOLDER.search(" ".join(args)):
        return
    load_recipe(parsed.recipe, parsed.overrides)  # what dry_run=true checks before it prints the plan


def check(command: str) -> None:
    substituted = re.fullmatch(r"\w+=\$\((.*)\)", command)  # job=$(sbatch …): the command inside
    if substituted:
        command = substituted.group(1)
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # environment variables before the command
        words.pop(0)
    if words[0] == "sudo":
        words.pop(0)
    if re.fullmatch(r"\w+=\(.*", words[0]):  # a shell array (the options a helper printed)
        return
    program, args = words[0], words[1:]
    if program == "accelerate":
        from accelerate.commands.launch import launch_command_parser

        assert args[0] == "launch", command
        launched = launch_command_parser().parse_args(args[1:])
        script, args = launched.training_script, launched.training_script_args
        assert (ROOT / script).is_file(), script
        program, args = ("cascade", args) if script.endswith("cascade.py") else ("cascade-evaluate", args)
    if program == "python" and args[:1] in (["launch/cascade.py"], ["launch/evaluate.py"]):
        program, args = ("cascade" if args[0].endswith("cascade.py") else "cascade-evaluate"), args[1:]
    if program == "python" and args[:2] == ["-m", "pipeline.report"]:
        from pipeline.report.cli import parser

        parser().parse_args(args[2:])
    elif program == "python" and args[:3] == ["-m", "pipeline.slurm", "submit"]:
        from pipeline.slurm.submit import _parser as submit_parser

        _, launch_args = submit_parser().parse_known_args(args[3:])
        check_cascade(launch_args)
    elif program == "python" and args[:2] == ["-m", "rewards"]:
        from rewards.__main__ import _parser

        _parser().parse_args(args[2:])
    elif program == "cascade":
        check_cascade(args)
    elif program == "cascade-evaluate":
        check_cascade(args, extra_keys=("checkpoint", "benchmarks", "out"))
    elif program == "pip":
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        for spec in args:
            for extra in re.findall(r"\.\[([\w,-]+)\]", spec):
                assert set(extra.split(",")) <= set(extras), spec
    elif program == "pytest":
        for arg in args:
            if arg.startswith("tests/"):
                assert (ROOT / arg.split("::")[0]).exists(), arg
        markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"][
            "markers"
        ]
        known = {m.split(":")[0] for m in markers}
        for index, arg in enumerate(args):
            if arg == "-m":
                assert set(re.findall(r"\w+", args[index + 1])) - {"not", "and", "or"} <= known, command
    elif program == "bash":
        assert (ROOT / args[0]).is_file(), command
    elif program.startswith(("launch/", "bench/")):  # a script of this repository
        assert (ROOT / program).is_file(), command
    elif program == "python" and args[:2] == ["-m", "venv"]:
        pass
    else:
        assert program in OTHER_PROGRAMS, f"no parser for '{program}': add one to tests/test_docs.py"


def test_the_docs_have_commands() -> None:
    assert len(COMMANDS) > 25 and any("launch/cascade.py" in c for _, c in COMMANDS)


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_documented_command_parses(where: str, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    check(command)


# --------------------------------------------------------------------------------------------------
# Paths and recipe keys named in the docs


PATH = re.compile(r"`((?:pipeline|rewards|launch|tests|recipes|docs|bench|\.ci)/[\w./-]*)`")
KEY = re.compile(r"`((?:run|model|stages|benchmarks|eval|gate|tracking|generation)\.[\w.\[\]]+)(?:=[^`]*)?`")


def named(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for match in pattern.finditer(line):
                if not PLACEHOLDER.search(match.group(1)) and "*" not in match.group(1):
                    out.append((f"{doc.relative_to(ROOT)}:{number}", match.group(1)))
    return out


@pytest.mark.parametrize(("where", "path"), named(PATH), ids=[w for w, _ in named(PATH)])
def test_every_documented_path_exists(where: str, path: str) -> None:
    assert (ROOT / path.rstrip(".")).exists(), f"{where}: {path}"


def _strip(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _resolves(classes: list[type], parts: list[str]) -> bool:
    """Whether ``parts`` is a path of fields under one of ``classes`` (free below a mapping)."""
    if not parts:
        return True
    for cls in classes:
        hints = typing.get_type_hints(cls)
        if parts[0] not in hints or parts[0] not in {f.name for f in dataclasses.fields(cls)}:
            continue
        tp = _strip(hints[parts[0]])
        rest = parts[1:]
        if typing.get_origin(tp) is list:
            tp = _strip(typing.get_args(tp)[0])
            rest = rest[1:] if rest and rest[0].isdigit() else rest
        if typing.get_origin(tp) is dict or tp is Any or not rest:
            return True
        if dataclasses.is_dataclass(tp) and _resolves([tp], rest):
            return True
    return False


def resolves(key: str) -> bool:
    parts = [p for p in re.split(r"[.\[\]]+", key) if p]
    section, rest = parts[0], parts[1:]
    if section == "stages":  # stages.<name>.<field of any stage kind>
        kinds = [stage_config_class(kind, "kind") for kind in STAGE_KINDS]
        return len(rest) < 2 or _resolves([*kinds, StageConfig], rest[1:])
    if section == "benchmarks":
        return len(rest) < 2 or _resolves([BenchmarkConfig], rest[1:])
    return _resolves([Recipe], parts)


@pytest.mark.parametrize(("where", "key"), named(KEY), ids=[w for w, _ in named(KEY)])
def test_every_documented_recipe_key_exists(where: str, key: str) -> None:
    assert resolves(key), f"{where}: {key}"
