"""Command-line plumbing shared by the launch scripts: ``key=value`` arguments and logging."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from pipeline.schema import ConfigError

# Arguments the launcher itself consumes; everything else is a recipe override.
LAUNCH_KEYS = ("recipe", "dry_run", "checkpoint", "out")


@dataclass
class LaunchArgs:
    recipe: str = "tiny"
    dry_run: bool = False
    dry_run_data: bool = False  # dry_run=data: load and check every data source, print what came out
    overrides: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)


def parse_args(argv: list[str], extra_keys: tuple[str, ...] = ()) -> LaunchArgs:
    """Split ``recipe=…``, ``dry_run=…`` (and ``extra_keys``) from the Hydra overrides."""
    args = LaunchArgs()
    for arg in argv:
        if arg in ("-h", "--help"):
            raise ConfigError(
                "usage: launch/cascade.py recipe=NAME [dry_run=true] [key=value …] (recipe=list lists the recipes)"
            )
        key, sep, value = arg.partition("=")
        if not sep and not arg.startswith(("~", "+")):
            raise ConfigError(f"argument '{arg}' is not of the form key=value")
        if key == "recipe":
            args.recipe = value
        elif key == "dry_run":
            if value.lower() not in ("true", "false", "1", "0", "yes", "no", "data"):
                raise ConfigError(f"argument 'dry_run' must be true, false or data, got '{value}'")
            args.dry_run = value.lower() in ("true", "1", "yes")
            args.dry_run_data = value.lower() == "data"
        elif key in extra_keys:
            args.extra[key] = value
        else:
            args.overrides.append(arg)
    return args


def setup_logging() -> None:
    """INFO on the main process, WARNING on the others; rank in every line when there are several."""
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    prefix = f"[rank {rank}] " if world > 1 else ""
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    for noisy in ("httpx", "urllib3", "datasets", "filelock", "torch.distributed", "accelerate.utils.other"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
