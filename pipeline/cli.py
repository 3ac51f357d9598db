"""The command lines: ``cascade`` (run a recipe) and ``cascade-evaluate`` (benchmarks on one checkpoint).

    cascade recipe=tiny                                # = python launch/cascade.py recipe=tiny
    accelerate launch launch/cascade.py recipe=tiny    # one or many processes
    cascade recipe=tiny dry_run=true                   # print the plan and exit
    cascade recipe=tiny dry_run=data                   # load and check every data source
    cascade recipe=list                                # the recipes, one line each
    cascade -v recipe=tiny                             # more on the console (-vv: everything)

Every argument but ``recipe=``, ``dry_run=`` and ``-v`` (and the evaluator's ``checkpoint=``,
``benchmarks=``, ``out=``) is a Hydra override of the recipe. ``launch/cascade.py`` and
``launch/evaluate.py`` are the same programs as files, for ``accelerate launch`` (which runs a script,
not a console command). A launch ends with one sentence, last on the console, and the exit code of
:mod:`pipeline.outcome`: 0 done (or paused by run.until), 1 a stage crashed, 2 recipe/data/run directory,
3 stopped by the gate, 75 stopped early at a saved step (pre-emption warning or run.deadline: the same
command resumes), 128+n interrupted by signal n after recording where to resume.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import console as consoles
from pipeline.outcome import Ending, ExitCode, ending_for, raise_on_sigterm, tell_the_launcher
from pipeline.run_state import Status
from pipeline.schema import ConfigError

# Arguments the launcher itself consumes; everything else is a recipe override.
LAUNCH_KEYS = ("recipe", "dry_run", "checkpoint", "out")
USAGE = """usage: cascade recipe=NAME [dry_run=true|data] [-v|-vv] [key=value …]
       accelerate launch [-q] launch/cascade.py recipe=NAME [key=value …]

  recipe=NAME     a recipe of recipes/ (recipe=list lists them) or a path to a YAML file
  dry_run=true    print the plan (stages, data, steps, benchmarks) and exit; dry_run=data: load every source
  key=value       override a recipe key, e.g. stages.sft1.train.max_steps=5 (docs/recipes.md)
  -v, -vv         more on the console (or CASCADE_LOG_LEVEL=INFO|DEBUG); everything is in runs/<name>/cascade.log

exit codes: 0 done, 1 a stage crashed, 2 recipe/data/run-directory problem, 3 stopped by the regression gate,
75 stopped early at a saved step (pre-emption warning, run.deadline), 128+n interrupted by signal n
(130: Ctrl-C); 75 and 128+n resume with the same command"""


@dataclass
class LaunchArgs:
    recipe: str | None = None
    dry_run: bool = False
    dry_run_data: bool = False  # dry_run=data: load and check every data source, print what came out
    overrides: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    verbose: int = 0  # -v flags
    help: bool = False


def parse_args(argv: list[str], extra_keys: tuple[str, ...] = ()) -> LaunchArgs:
    """Split ``recipe=…``, ``dry_run=…``, ``-v`` (and ``extra_keys``) from the Hydra overrides."""
    args = LaunchArgs()
    for arg in argv:
        if arg in ("-h", "--help"):
            args.help = True
            continue
        if arg in ("-v", "--verbose", "-vv"):
            args.verbose += 2 if arg == "-vv" else 1
            continue
        key, sep, value = arg.partition("=")
        if not sep and not arg.startswith(("~", "+")):
            raise ConfigError(
                f"argument '{arg}' is not of the form key=value (cascade --help shows the usage)"
            )
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


def recipe_list() -> str:
    from pipeline.compose import list_recipes

    return "".join(f"{name:<28} {description}\n" for name, description in list_recipes())


def main(argv: list[str] | None = None) -> int:
    """Run a recipe (``cascade``); returns the exit code, after printing the launch's last sentence."""
    return _command(sys.argv[1:] if argv is None else argv, _launch)


def _command(
    argv: list[str],
    body: Callable[[LaunchArgs, consoles.Console], Ending | None],
    extra_keys: tuple[str, ...] = (),
    where: str | None = None,
) -> int:
    """Parse, set up the console, run ``body``; whatever happens, end with one sentence and its exit code."""
    try:
        args = parse_args(argv, extra_keys)
        console = consoles.setup(consoles.verbosity(args.verbose))
    except ConfigError as exc:
        console = consoles.setup(0)
        try:
            return _end(console, Ending(ExitCode.CONFIG, Status.FAILED, str(exc)))
        finally:
            console.close()
    previous_sigterm = raise_on_sigterm()
    try:
        with console.around_bars():
            ending = body(args, console)
    except BaseException as exc:  # a mistake of Cascade's own before the run had a log file
        ending = ending_for(exc, where=where, run_dir=None, log_file=_crash_log(exc))
    if ending is None or ending.code in (ExitCode.DONE, ExitCode.REGRESSED):  # every process reached it
        from pipeline.distributed import leave_process_group

        leave_process_group()
    try:
        return _end(console, ending)
    finally:  # a command called in this process (a test, a notebook) leaves logging and signals as they were
        console.close()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _launch(args: LaunchArgs, console: consoles.Console) -> Ending | None:
    """Everything a ``cascade`` command line can do; None when it printed what was asked and nothing failed."""
    if args.help:
        sys.stdout.write(USAGE + "\n\nrecipes:\n" + recipe_list())
        return None
    if args.recipe is None:
        sys.stderr.write(USAGE + "\n\nrecipes:\n" + recipe_list() + "\n")
        return Ending(
            ExitCode.CONFIG, Status.FAILED, "no recipe given: name one with recipe=NAME (listed above)"
        )
    if args.recipe == "list":
        sys.stdout.write(recipe_list())
        return None
    from pipeline.config import load_recipe

    try:
        # a dry run lists what this machine cannot check (a package, the sandbox) instead of refusing it
        recipe = load_recipe(args.recipe, args.overrides, defer_environment=args.dry_run or args.dry_run_data)
        if args.dry_run_data:  # every source and benchmark loaded through its preset/mapping, no model
            from pipeline.data.check import check_data, describe_checks

            sys.stdout.write(describe_checks(check_data(recipe)) + "\n")
            return None
        if args.dry_run:
            from pipeline.describe import describe_plan

            sys.stdout.write(describe_plan(recipe) + "\n")
            return None
        from pipeline.cascade import Cascade
        from pipeline.data.check import PREFLIGHT_ROWS, check_data

        check_data(recipe, rows=PREFLIGHT_ROWS)  # before any model loads: no run trains on unreadable rows
        cascade = Cascade(recipe, console)
    except ConfigError as exc:  # the recipe, a data source its rewards cannot read, a bad CASCADE_* variable
        return Ending(ExitCode.CONFIG, Status.FAILED, str(exc))
    return cascade.run()


def _end(console: consoles.Console, ending: Ending | None) -> int:
    """Print the launch's last sentence (the main process's), tell a torchrun parent, return the exit code."""
    if ending is None:
        return ExitCode.DONE
    console.last_line(ending.sentence, ending.ok)
    tell_the_launcher(ending)
    return int(ending.code)


def _crash_log(exc: BaseException) -> Path | None:
    """A file for the traceback of a crash that happened before the run directory had a log."""
    if isinstance(exc, ConfigError | KeyboardInterrupt):
        return None
    try:
        with tempfile.NamedTemporaryFile(
            "w", prefix="cascade-crash-", suffix=".log", delete=False, encoding="utf-8"
        ) as handle:
            handle.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            return Path(handle.name)
    except OSError:
        return None


def evaluate_main(argv: list[str] | None = None) -> int:
    """Evaluate one checkpoint on a recipe's benchmarks, outside a cascade (``cascade-evaluate``).

    ``checkpoint=`` is a path or a stage of ``runs/<run.name>``; ``benchmarks=`` picks some (default:
    all of the recipe); ``out=`` writes the eval record (default: print the scores only).
    """
    argv = sys.argv[1:] if argv is None else argv
    return _command(argv, _evaluate, extra_keys=("checkpoint", "benchmarks", "out"), where="the evaluation")


def _evaluate(args: LaunchArgs, console: consoles.Console) -> Ending | None:
    if args.help or args.recipe is None:
        out = sys.stdout if args.help else sys.stderr
        out.write(
            "usage: cascade-evaluate recipe=NAME checkpoint=STAGE_OR_PATH [benchmarks=a,b] [out=FILE] "
            "[key=value …]\n"
        )
        return (
            None
            if args.help
            else Ending(ExitCode.CONFIG, Status.FAILED, "no recipe given: name one with recipe=NAME")
        )
    try:
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
        return Ending(ExitCode.CONFIG, Status.FAILED, str(exc))

    from pipeline.evaluation import evaluate_checkpoint, stage_judges

    console.quiet_libraries()
    out = Path(args.extra["out"]) if "out" in args.extra else None
    record = evaluate_checkpoint(
        recipe, checkpoint, names, out_file=out, stage="eval", index=0, judges=stage_judges(recipe)
    )
    if state.is_main_process:
        scores = {n: {k: b[k] for k in ("score", "stderr", "n")} for n, b in record["benchmarks"].items()}
        sys.stdout.write(
            json.dumps({"checkpoint": checkpoint, "scores": scores, "skipped": record["skipped"]}) + "\n"
        )
    return None
