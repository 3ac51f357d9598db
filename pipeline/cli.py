"""The command lines: ``cascade`` (run a recipe) and ``cascade-evaluate`` (benchmarks on one checkpoint).

    cascade recipe=tiny                                # = python launch/cascade.py recipe=tiny
    accelerate launch launch/cascade.py recipe=tiny    # one or many processes
    cascade recipe=tiny dry_run=true                   # print the plan and exit
    cascade recipe=list                                # the recipes, one line each

Every argument but ``recipe=`` and ``dry_run=`` (and the evaluator's ``checkpoint=``, ``benchmarks=``,
``out=``) is a Hydra override of the recipe. ``launch/cascade.py`` and ``launch/evaluate.py`` are the
same programs as files, for ``accelerate launch`` (which runs a script, not a console command).
Exit codes: 0 done (or paused by run.until), 1 a stage failed, 2 bad recipe or run directory, 3 stopped by
the regression gate, 75 stopped early at a saved step (pre-emption warning or run.deadline: run the same
command to resume), 128 + N stopped by signal N after recording where to resume (pipeline.preemption).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

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
                "usage: cascade recipe=NAME [dry_run=true] [key=value …] (recipe=list lists the recipes)"
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


def main(argv: list[str] | None = None) -> int:
    """Run a recipe (``cascade``); returns the exit code."""
    setup_logging()
    log = logging.getLogger("cascade")
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        from pipeline.compose import list_recipes
        from pipeline.config import load_recipe

        if args.recipe == "list":
            for name, description in list_recipes():
                sys.stdout.write(f"{name:<28} {description}\n")
            return 0
        recipe = load_recipe(args.recipe, args.overrides, defer_environment=args.dry_run or args.dry_run_data)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    if args.dry_run_data:  # every source and benchmark loaded through its preset/mapping, no model
        from pipeline.data.check import check_data, describe_checks

        try:
            reports = check_data(recipe)
        except ConfigError as exc:
            log.error("%s", exc)
            return 2
        sys.stdout.write(describe_checks(reports) + "\n")
        return 0
    if args.dry_run:
        from pipeline.describe import describe_plan

        sys.stdout.write(describe_plan(recipe) + "\n")
        return 0
    from pipeline.cascade import Cascade
    from pipeline.data.check import PREFLIGHT_ROWS, check_data

    try:
        check_data(recipe, rows=PREFLIGHT_ROWS)  # before any model loads: no run trains on unreadable rows
        cascade = Cascade(recipe)
    except ConfigError as exc:  # a source its rewards cannot read, a bad CASCADE_CPU_THREADS, …
        log.error("%s", exc)
        return 2
    return cascade.run()


def evaluate_main(argv: list[str] | None = None) -> int:
    """Evaluate one checkpoint on a recipe's benchmarks, outside a cascade (``cascade-evaluate``).

    ``checkpoint=`` is a path or a stage of ``runs/<run.name>``; ``benchmarks=`` picks some (default:
    all of the recipe); ``out=`` writes the eval record (default: print the scores only).
    """
    setup_logging()
    log = logging.getLogger("evaluate")
    try:
        args = parse_args(
            sys.argv[1:] if argv is None else argv, extra_keys=("checkpoint", "benchmarks", "out")
        )
        from pipeline.config import load_recipe
        from pipeline.evaluation import resolve_checkpoint

        recipe = load_recipe(args.recipe, args.overrides)
        checkpoint = resolve_checkpoint(recipe, args.extra.get("checkpoint", ""))
        names = [n for n in args.extra.get("benchmarks", "").split(",") if n] or list(recipe.benchmarks)
        unknown = [n for n in names if n not in recipe.benchmarks]
        if unknown:
            raise ConfigError(
                f"benchmark '{unknown[0]}' is not in recipe '{args.recipe}' ({', '.join(recipe.benchmarks)})"
            )
        from pipeline.distributed import process_state

        state = process_state()  # checks the CPU-share variables: a bad one is a recipe-level mistake
    except ConfigError as exc:
        log.error("%s", exc)
        return 2

    from pipeline.evaluation import evaluate_checkpoint, stage_judges

    out = Path(args.extra["out"]) if "out" in args.extra else None
    record = evaluate_checkpoint(
        recipe, checkpoint, names, out_file=out, stage="eval", index=0, judges=stage_judges(recipe)
    )
    if state.is_main_process:
        scores = {n: {k: b[k] for k in ("score", "stderr", "n")} for n, b in record["benchmarks"].items()}
        sys.stdout.write(
            json.dumps({"checkpoint": checkpoint, "scores": scores, "skipped": record["skipped"]}) + "\n"
        )
    return 0
