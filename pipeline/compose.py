"""Recipe files: finding them, and composing one with its ``defaults:`` and command-line overrides (Hydra).

Hydra's compose API does the composition (no working-directory change, no output folders, so every
process of a launch sees the same config), with one rule of Cascade's own: a plain ``key=value`` (or
``+key=value``) for a key of the recipe is sent to Hydra as ``++key=value`` (set it, adding it where the
YAML leaves it out). Whether such a key exists is then the typed schema's question
(:mod:`pipeline.schema`), which answers with the key path and the closest valid key, the same for a key
the YAML leaves out (``stages.sft1.train.warmup_ratio=0.1``) as for a typo. Only overrides that select
a config group (a folder of YAML files next to the recipe) keep Hydra's own meaning. Errors Hydra still
raises (syntax, a missing default, a deletion of an absent key) become one sentence chosen by the
exception's type, never by reading its text.

Relative paths in a recipe file (data files, DeepSpeed configs, chat templates, a local model) are read
from the recipe's own folder, so a recipe works from any working directory (:func:`resolve_paths`); a
path given on the command line is read from the current directory, where the user typed it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.schema import ConfigError, closest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Folders under recipes/ that hold launcher configs, not recipes.
NON_RECIPE_DIRS = {"deepspeed"}
OVERRIDE_FORMS = "key=value, +key=value, ++key=value or ~key"


def recipes_dir() -> Path:
    """The recipes folder: ``./recipes`` when run from a checkout, else the project's own."""
    local = Path.cwd() / "recipes"
    return local if local.is_dir() else PROJECT_ROOT / "recipes"


def list_recipes(root: Path | None = None) -> list[tuple[str, str]]:
    """(name, one-line description) for every recipe YAML under ``root``, recursively."""
    import yaml

    root = root or recipes_dir()
    out = []
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root)
        if rel.parts[0] in NON_RECIPE_DIRS:
            continue
        try:
            desc = (yaml.safe_load(path.read_text()) or {}).get("description", "")
        except yaml.YAMLError:
            desc = "(unreadable YAML)"
        out.append((str(rel.with_suffix("")), str(desc).strip().splitlines()[0] if desc else ""))
    return out


def recipe_file(name: str) -> Path:
    """The YAML file of recipe ``name``: a path ending in .yaml/.yml, or a name under the recipes folder."""
    path = Path(name).expanduser()
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise ConfigError(f"recipe file '{name}' does not exist")
        return path.resolve()
    root = recipes_dir()
    candidate = root / f"{name}.yaml"
    if not candidate.exists():
        known = [n for n, _ in list_recipes(root)]
        raise ConfigError(f"unknown recipe '{name}'{closest(name, known)}; run with recipe=list to see them")
    return candidate.resolve()


def schema_overrides(overrides: list[str], config_dir: Path) -> list[str]:
    """``overrides`` with plain and ``+`` overrides of recipe keys sent as ``++`` (see the module docstring).

    Each override is parsed with Hydra's own grammar; one that does not parse is a ConfigError naming it.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    out = []
    for text in overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except OverrideParseException:
            raise ConfigError(f"override '{text}' is not valid override syntax ({OVERRIDE_FORMS})") from None
        key = override.key_or_group
        is_group = "/" in key or override.package is not None or (config_dir / key.split(".")[0]).is_dir()
        if is_group or override.type not in (OverrideType.CHANGE, OverrideType.ADD):
            out.append(text)
        else:
            out.append("++" + text.lstrip("+"))
    return out


def compose(path: Path, overrides: list[str]) -> dict[str, Any]:
    """The recipe at ``path`` composed with its defaults and ``overrides``, interpolations resolved."""
    import yaml
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    sent = schema_overrides(overrides, path.parent)
    name = path.stem
    try:
        with initialize_config_dir(config_dir=str(path.parent), version_base=None, job_name="cascade"):
            cfg = hydra_compose(config_name=name, overrides=sent)
        data = OmegaConf.to_container(cfg, resolve=True)
    except MissingConfigException as exc:
        missing = exc.missing_cfg_file or "?"
        raise ConfigError(f"recipe '{name}' names a default '{missing}' that does not exist") from None
    except ConfigCompositionException as exc:
        cause = exc.__cause__
        reason = _first_line(getattr(cause, "msg", None) or str(exc))
        raise ConfigError(
            f"recipe '{name}' could not be composed with {' '.join(overrides)}: {reason}"
        ) from None
    except OmegaConfBaseException as exc:  # an interpolation that does not resolve
        key = getattr(exc, "full_key", None) or "?"
        reason = _first_line(getattr(exc, "msg", None) or str(exc))
        raise ConfigError(f"key '{key}' of recipe '{name}' cannot be resolved: {reason}") from None
    except yaml.YAMLError as exc:
        where = yaml_error_location(path) or f"{path}: {_first_line(str(exc))}"
        raise ConfigError(f"recipe '{name}' is not valid YAML: {where}") from None
    except HydraException as exc:
        raise ConfigError(f"recipe '{name}' could not be composed: {_first_line(str(exc))}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe '{name}' must be a mapping of keys, got {type(data).__name__}")
    data.pop("defaults", None)
    return data


def yaml_error_location(path: Path) -> str | None:
    """``file:line:column: problem`` of the first file of a recipe that is not valid YAML (the recipe, then
    the files its ``defaults:`` name, depth first), or None when they all parse.

    Hydra reads the files itself and its YAML errors carry no file name, so the files are parsed again
    here, which only happens after composition failed.
    """
    import yaml

    config_dir, seen, todo = path.parent, set(), [path]
    while todo:
        file = todo.pop(0)
        if file in seen or not file.is_file():
            continue
        seen.add(file)
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(file)
            return f"{where}: {getattr(exc, 'problem', None) or _first_line(str(exc))}"
        defaults = data.get("defaults", []) if isinstance(data, dict) else []
        for item in defaults if isinstance(defaults, list) else []:
            if isinstance(item, str) and item != "_self_":
                todo.append(config_dir / f"{item.lstrip('/')}.yaml")
            elif isinstance(item, dict):
                todo += [config_dir / str(group) / f"{option}.yaml" for group, option in item.items()]
    return None


def _first_line(text: str | None) -> str:
    """The first line of another library's message, to keep ours one sentence (its wording is not read)."""
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[0] if lines else "no reason given"


# --------------------------------------------------------------------------------------------------
# Relative paths

# The recipe keys that hold a path (``*``: every key of a mapping, ``[]``: every item of a list).
PATH_KEYS = (
    "model.name_or_path",
    "model.chat_template",
    "stages.*.init",
    "stages.*.train.deepspeed",
    "stages.*.data[].source",
    "stages.*.eval_data[].source",
    "benchmarks.*.data.source",
)
# Endings that make a value a file path even when no such file exists (a typo is then reported as a path).
PATH_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".gz", ".jinja", ".j2", ".yaml", ".yml")


def override_keys(overrides: list[str]) -> set[str]:
    """The dotted recipe keys the command-line ``overrides`` set or remove."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    keys = set()
    for text in overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except OverrideParseException:
            continue  # reported by schema_overrides, which composing runs first
        keys.add(override.key_or_group)
    return keys


def resolve_paths(data: dict[str, Any], folder: Path, overridden: set[str]) -> None:
    """Make the relative paths the recipe file itself holds absolute, reading them from ``folder``.

    Values set on the command line (``overridden`` keys, or a key above them) stay as typed: the
    current directory is where they are read. A value is a path when it starts with ``./`` or ``../``,
    ends like a file (``.jsonl``, ``.json``, ``.jinja``, …), or names something in ``folder``; hub ids,
    ``builtin:`` names, stage names and absolute paths are left alone. A file-like path that is not in
    ``folder`` but is in the current directory is a ConfigError that names both readings.
    """
    stages = set((data.get("stages") or {}).keys()) if isinstance(data.get("stages"), dict) else set()
    for key, parent, name in _path_slots(data):
        value = parent[name]
        if not isinstance(value, str) or any(key == k or key.startswith(k + ".") for k in overridden):
            continue
        if value in stages or not _relative_path(value, folder):
            continue
        resolved = (folder / value).resolve()
        if not resolved.exists() and Path(value).exists():
            raise ConfigError(
                f"key '{key}' names '{value}', which the recipe's folder ({folder}) does not have: a path in a "
                f"recipe file is read from the recipe's folder (write it as '{os.path.relpath(Path(value).resolve(), folder)}'"
                ") and a path on the command line from the current directory"
            )
        parent[name] = str(resolved)


def _relative_path(value: str, folder: Path) -> bool:
    if not value or value.startswith(("/", "~", "builtin:")) or "://" in value or value == "package":
        return False
    if value.startswith(("./", "../")) or value.endswith(PATH_SUFFIXES):
        return True
    return (folder / value).exists()


def _path_slots(data: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, container, key in the container) of every value at a :data:`PATH_KEYS` pattern."""
    for pattern in PATH_KEYS:
        nodes: list[tuple[str, Any]] = [("", data)]
        parts = pattern.split(".")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            found: list[tuple[str, Any]] = []
            for path, node in nodes:
                if not isinstance(node, dict):
                    continue
                names = list(node) if part == "*" else [part.removesuffix("[]")]
                for name in names:
                    if name not in node:
                        continue
                    key = f"{path}.{name}" if path else str(name)
                    if last:
                        yield key, node, name
                    elif part.endswith("[]") and isinstance(node[name], list):
                        found += [(f"{key}.{i}", item) for i, item in enumerate(node[name])]
                    else:
                        found.append((key, node[name]))
            nodes = found
