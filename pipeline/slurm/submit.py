"""``python -m pipeline.slurm submit``: the ``sbatch`` command(s) of a recipe, printed, then submitted.

Everything the command needs from the recipe comes from the validated recipe (``load_recipe``), never
from the YAML text: the job name (``run.name``), the log folder (the run directory) and, with
``--per-stage``, the stages. One job per stage stops after its stage (``run.until``) and the jobs are
chained with ``--dependency=afterok`` (a failed stage cancels the rest) or ``singleton`` (one job of the
run's name at a time, whatever the previous one's outcome), for clusters whose time limit is shorter
than the cascade. Each job is itself pre-emption safe and requeues itself (docs/slurm.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cli import parse_args
from pipeline.compose import PROJECT_ROOT
from pipeline.config import Recipe, load_recipe
from pipeline.rundir import RunDir
from pipeline.schema import ConfigError

log = logging.getLogger(__name__)

SBATCH_SCRIPT = PROJECT_ROOT / "launch" / "slurm" / "cascade.sbatch"
CHAINS = ("afterok", "singleton")


@dataclass
class Resources:
    """What the job asks Slurm for, and how long before its time limit it wants to hear about it.

    The fields are the ``submit`` command's options, by the same names.
    """

    nodes: int = 1
    gpus_per_node: int = 0  # 0: CPU nodes (gloo)
    processes_per_node: int | None = None  # default: one per GPU, or one on a CPU node
    cpus_per_task: int | None = None  # CPUs for each node's task (all its processes)
    time: str | None = None  # Slurm's --time
    partition: str | None = None
    account: str | None = None
    grace_s: int = 300  # the warning comes this long before the time limit
    sbatch_args: list[str] = field(default_factory=list)  # anything else, passed through


@dataclass
class Job:
    """One ``sbatch`` call; ``after_previous`` puts the chain's dependency on the previous job."""

    options: list[str]
    script_args: list[str]
    after_previous: str | None = None  # "afterok" or "singleton"
    stage: str | None = None  # the stage it stops after (per-stage jobs)

    def argv(self, previous: str | None) -> list[str]:
        dependency = []
        if self.after_previous == "singleton":
            dependency = ["--dependency=singleton"]
        elif self.after_previous == "afterok" and previous:
            dependency = [f"--dependency=afterok:{previous}", "--kill-on-invalid-dep=yes"]
        return ["sbatch", "--parsable", *dependency, *self.options, str(SBATCH_SCRIPT), *self.script_args]


def plan_jobs(
    recipe: Recipe,
    launch_args: list[str],
    res: Resources,
    per_stage: bool = False,
    chain: str = "afterok",
    workdir: Path | None = None,
    python: str = sys.executable,
) -> list[Job]:
    """The jobs of ``recipe`` (already validated; ``launch_args`` are the ``key=value`` arguments it came from)."""
    if res.nodes < 1 or res.gpus_per_node < 0 or res.grace_s < 1:
        raise ConfigError(
            f"--nodes and --grace must be at least 1 and --gpus-per-node at least 0, "
            f"got {res.nodes}, {res.grace_s} and {res.gpus_per_node}"
        )
    if chain not in CHAINS:
        raise ConfigError(f"--chain must be one of {', '.join(CHAINS)}, got '{chain}'")
    workdir = (workdir or Path.cwd()).resolve()
    run_dir = (workdir / recipe.run_dir).resolve()
    env = {
        "CASCADE_ROOT": str(PROJECT_ROOT),
        "CASCADE_PYTHON": python,
        "CASCADE_GPUS_PER_NODE": str(res.gpus_per_node),
        "CASCADE_PROCS_PER_NODE": str(res.processes_per_node or max(res.gpus_per_node, 1)),
    }
    if any("," in value for value in env.values()):
        raise ConfigError(f"paths with a comma cannot be passed through sbatch --export: {env}")
    options = [
        f"--job-name=cascade-{recipe.run.name}",
        f"--nodes={res.nodes}",
        "--ntasks-per-node=1",
        f"--chdir={workdir}",
        f"--output={RunDir(run_dir).logs / 'slurm-%j.out'}",
        "--export=ALL," + ",".join(f"{k}={v}" for k, v in env.items()),
    ]
    if res.gpus_per_node:
        options.append(f"--gpus-per-node={res.gpus_per_node}")
    for flag, value in (
        ("--cpus-per-task", res.cpus_per_task),
        ("--time", res.time),
        ("--partition", res.partition),
        ("--account", res.account),
    ):
        if value:
            options.append(f"{flag}={value}")
    options.append(f"--signal=B:USR1@{res.grace_s}")  # B: the batch script alone hears it (cascade.sbatch)
    options.extend(res.sbatch_args)
    if not per_stage:
        return [Job(options, list(launch_args))]
    if recipe.run.until is not None:
        raise ConfigError("--per-stage sets run.until for each job; leave run.until out of the arguments")
    stages = list(recipe.stages)
    jobs = []
    for i, stage in enumerate(stages):
        until = [f"run.until={stage}"] if i < len(stages) - 1 else []
        jobs.append(Job(options, [*launch_args, *until], chain if i or chain == "singleton" else None, stage))
    return jobs


def shell_text(jobs: list[Job], log_dir: Path) -> str:
    """The jobs as bash lines a user can read, keep or run: the shared options once, then one line per job."""
    q = shlex.quote
    lines = [f"mkdir -p {q(str(log_dir))}", f"opts=({' '.join(q(o) for o in jobs[0].options)})"]
    for i, job in enumerate(jobs, start=1):
        dependency = ""
        if job.after_previous == "singleton":
            dependency = "--dependency=singleton "
        elif job.after_previous == "afterok" and i > 1:
            dependency = f"--dependency=afterok:$job{i - 1} --kill-on-invalid-dep=yes "
        args = " ".join(q(a) for a in job.script_args)
        comment = f"  # stops after stage {job.stage}" if job.stage and i < len(jobs) else ""
        lines.append(
            f'job{i}=$(sbatch --parsable {dependency}"${{opts[@]}}" {q(str(SBATCH_SCRIPT))} {args}){comment}'
        )
    return "\n".join(lines)


def submit(jobs: list[Job], log_dir: Path) -> list[str]:
    """Submit the jobs in order, each depending on the one before as planned; returns the job ids."""
    log_dir.mkdir(parents=True, exist_ok=True)
    ids: list[str] = []
    for job in jobs:
        out = subprocess.run(job.argv(ids[-1] if ids else None), capture_output=True, text=True)
        if out.returncode != 0:
            raise ConfigError(f"sbatch refused the job: {out.stderr.strip() or out.stdout.strip()}")
        ids.append(out.stdout.strip().split(";")[0])  # --parsable: "id" or "id;cluster"
    return ids


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.slurm submit",
        allow_abbrev=False,  # a mistyped option is an error, not a guess (--node is not --nodes)
        description="Submit a Cascade recipe to Slurm through launch/slurm/cascade.sbatch. Every key=value "
        "argument (recipe=NAME and Hydra overrides) goes to the run as it would to launch/cascade.py.",
    )
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int, default=0, help="0: CPU nodes, gloo (default)")
    parser.add_argument("--processes-per-node", type=int, help="default: one per GPU, one on a CPU node")
    parser.add_argument("--cpus-per-task", type=int, help="CPUs of each node's task")
    parser.add_argument("--time", help="Slurm time limit of each job, e.g. 4:00:00")
    parser.add_argument("--partition")
    parser.add_argument("--account")
    parser.add_argument(
        "--grace", type=int, default=300, metavar="SECONDS", dest="grace_s",
        help="warning before the time limit: one step plus one checkpoint must fit in it (default 300)",
    )  # fmt: skip
    parser.add_argument("--per-stage", action="store_true", help="one job per stage, chained")
    parser.add_argument(
        "--chain", choices=CHAINS, default="afterok", help="how per-stage jobs wait (default afterok)"
    )
    parser.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="ARG",
        dest="sbatch_args",
        help="more sbatch arguments",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands, submit nothing")
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    opts, launch_args = parser.parse_known_args(argv)
    unknown = [a for a in launch_args if a.startswith("-")]
    if unknown:
        parser.error(f"unknown option {unknown[0]} (the options are in the usage line above)")
    try:
        args = parse_args(launch_args)
        recipe = load_recipe(args.recipe, args.overrides)
        res = Resources(**{f.name: getattr(opts, f.name) for f in dataclasses.fields(Resources)})
        jobs = plan_jobs(recipe, launch_args, res, opts.per_stage, opts.chain)
        if res.gpus_per_node and not res.cpus_per_task:
            log.warning(
                "no --cpus-per-task: each node's %d processes share the CPUs Slurm gives one task by default "
                "(often one); ask for the node's cores",
                res.processes_per_node or res.gpus_per_node,
            )
        log_dir = RunDir((Path.cwd() / recipe.run_dir).resolve()).logs
        sys.stdout.write(shell_text(jobs, log_dir) + "\n")
        if opts.dry_run:
            return 0
        if shutil.which("sbatch") is None:
            raise ConfigError(
                "sbatch is not on PATH: submit from a login node, or add --dry-run to print the commands"
            )
        ids = submit(jobs, log_dir)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    for job, job_id in zip(jobs, ids, strict=True):
        what = f"stage {job.stage}" if job.stage else f"run {recipe.run.name}"
        sys.stdout.write(f"submitted job {job_id}: {what}; logs in {log_dir}\n")
    return 0
