"""``python -m pipeline.slurm``: submit a recipe, and the two questions ``cascade.sbatch`` asks.

python -m pipeline.slurm submit recipe=tiny --nodes 2 --gpus-per-node 8 --time 4:00:00 [--per-stage]
python -m pipeline.slurm run-dir recipe=tiny [overrides]    # the validated recipe's run directory
python -m pipeline.slurm exit-code RUN_DIR                   # this job attempt's Cascade exit status
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pipeline import console
from pipeline.schema import ConfigError
from pipeline.slurm import SlurmJob, exit_status

log = logging.getLogger("pipeline.slurm")

USAGE = __doc__.split("\n\n", 1)[1]


def run_dir(argv: list[str]) -> int:
    """Print the run directory of ``recipe=… overrides…``; a bad recipe is exit 2 with its one sentence."""
    from pipeline.cli import parse_args
    from pipeline.config import load_recipe

    try:
        args = parse_args(argv)
        recipe = load_recipe(args.recipe, args.overrides)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    sys.stdout.write(f"{recipe.run_dir.resolve()}\n")
    return 0


def exit_code(argv: list[str]) -> int:
    """Print the exit status Cascade recorded for this Slurm job attempt; exit 1 if it recorded none.

    ``accelerate launch`` reports every failure of a process as its own status 1, so the batch script
    reads the status that matters (75: pre-empted, resume) from the ledger instead.
    """
    job = SlurmJob.from_env(os.environ)
    if len(argv) != 1 or job is None:
        log.error("usage: python -m pipeline.slurm exit-code RUN_DIR (inside a Slurm job)")
        return 2
    from pipeline.ledger import read_state

    try:
        state = read_state(Path(argv[0]))
    except ConfigError:
        return 1
    code = exit_status(state.sessions, job) if state is not None else None
    if code is None:
        return 1
    sys.stdout.write(f"{code}\n")
    return 0


def main(argv: list[str]) -> int:
    console.setup()
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "submit":
        from pipeline.slurm.submit import main as submit

        return submit(rest)
    if command == "run-dir":
        return run_dir(rest)
    if command == "exit-code":
        return exit_code(rest)
    sys.stderr.write(f"usage:\n{USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
