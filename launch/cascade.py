"""Run a Cascade recipe.

    accelerate launch launch/cascade.py recipe=tiny                     # one or many processes
    python launch/cascade.py recipe=tiny stages.sft1.train.max_steps=5   # same as a single-process launch
    python launch/cascade.py recipe=tiny dry_run=true                    # print the plan and exit
    python launch/cascade.py recipe=tiny dry_run=data                    # load and check every data source
    python launch/cascade.py recipe=list                                 # the recipes, one line each

Every argument but ``recipe=`` and ``dry_run=`` is a Hydra override of the recipe.
Exit codes: 0 done, 1 a stage failed, 2 bad recipe or run directory, 3 stopped by the regression gate.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable from a plain checkout

from pipeline.cli import parse_args, setup_logging  # noqa: E402
from pipeline.schema import ConfigError  # noqa: E402

log = logging.getLogger("cascade")


def main(argv: list[str]) -> int:
    setup_logging()
    try:
        args = parse_args(argv)
        from pipeline.config import list_recipes, load_recipe

        if args.recipe == "list":
            for name, description in list_recipes():
                sys.stdout.write(f"{name:<28} {description}\n")
            return 0
        recipe = load_recipe(args.recipe, args.overrides)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    from pipeline.cascade import Cascade, describe_plan

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
        sys.stdout.write(describe_plan(recipe) + "\n")
        return 0
    try:
        from pipeline.data.check import PREFLIGHT_ROWS, check_data

        check_data(recipe, rows=PREFLIGHT_ROWS)  # before any model loads: no run trains on unreadable rows
        cascade = Cascade(recipe)
    except ConfigError as exc:  # a source its rewards cannot read, a bad CASCADE_CPU_THREADS, …
        log.error("%s", exc)
        return 2
    return cascade.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
