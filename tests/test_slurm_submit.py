"""The submit helper's sbatch commands, from the validated recipe (no Slurm needed), and the two questions
cascade.sbatch asks through ``python -m pipeline.slurm``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipeline.config import load_recipe
from pipeline.schema import ConfigError
from pipeline.slurm.submit import SBATCH_SCRIPT, Resources, plan_jobs, shell_text
from tests.conftest import PYTHON, ROOT, subprocess_env

STAGES = ["sft1", "sft2", "rm", "rlhf", "if_rl", "math_rl", "code_rl", "swe_rl"]


def options(job_options: list[str]) -> dict[str, str]:
    return dict(o.removeprefix("--").split("=", 1) for o in job_options)


def test_one_job_from_the_recipe(tmp_path: Path) -> None:
    recipe = load_recipe("tiny-smoke", ["run.name=exp1"])
    res = Resources(nodes=4, gpus_per_node=8, time="4:00:00", partition="gpu", grace_s=600)
    (job,) = plan_jobs(
        recipe, ["recipe=tiny-smoke", "run.name=exp1"], res, workdir=tmp_path, python="/venv/python"
    )
    opts = options(job.options)
    assert opts["job-name"] == "cascade-exp1" and opts["nodes"] == "4" and opts["gpus-per-node"] == "8"
    assert opts["ntasks-per-node"] == "1"  # one accelerate launch per node
    assert opts["time"] == "4:00:00" and opts["partition"] == "gpu" and opts["signal"] == "B:USR1@600"
    assert opts["chdir"] == str(tmp_path.resolve())
    assert opts["output"] == str(tmp_path.resolve() / "runs" / "exp1" / "logs" / "slurm-%j.out")
    exported = dict(kv.split("=", 1) for kv in opts["export"].split(",")[1:])
    assert exported == {
        "CASCADE_ROOT": str(ROOT), "CASCADE_PYTHON": "/venv/python",
        "CASCADE_GPUS_PER_NODE": "8", "CASCADE_PROCS_PER_NODE": "8",
    }  # fmt: skip
    argv = job.argv(None)
    assert argv[:2] == ["sbatch", "--parsable"] and argv[-3:] == [
        str(SBATCH_SCRIPT),
        "recipe=tiny-smoke",
        "run.name=exp1",
    ]


def test_cpu_nodes_ask_for_no_gpu() -> None:
    recipe = load_recipe("tiny-smoke")
    (job,) = plan_jobs(recipe, ["recipe=tiny-smoke"], Resources(nodes=2, processes_per_node=4))
    opts = options(job.options)
    assert "gpus-per-node" not in opts and "CASCADE_GPUS_PER_NODE=0" in opts["export"]
    assert "CASCADE_PROCS_PER_NODE=4" in opts["export"]


@pytest.mark.parametrize(
    ("chain", "dependencies"),
    [
        # afterok: each job waits for the previous one to succeed; a failure cancels the rest
        ("afterok", [[]] + [["--dependency=afterok:JOB", "--kill-on-invalid-dep=yes"]] * 7),
        # singleton: one job of the run's name at a time, whatever the previous one's outcome
        ("singleton", [["--dependency=singleton"]] * 8),
    ],
)
def test_one_job_per_stage(chain: str, dependencies: list[list[str]]) -> None:
    recipe = load_recipe("tiny-smoke")
    jobs = plan_jobs(recipe, ["recipe=tiny-smoke"], Resources(nodes=2), per_stage=True, chain=chain)
    assert [j.stage for j in jobs] == STAGES
    assert [j.script_args[1:] for j in jobs] == [[f"run.until={s}"] for s in STAGES[:-1]] + [[]]
    assert [j.argv("JOB")[2 : 2 + len(d)] for j, d in zip(jobs, dependencies, strict=True)] == dependencies
    text = shell_text(jobs, Path("/runs/tiny-smoke/logs"))
    lines = text.splitlines()
    assert lines[0] == "mkdir -p /runs/tiny-smoke/logs" and lines[1].startswith(
        "opts=(--job-name=cascade-tiny-smoke "
    )
    assert lines[2].startswith('job1=$(sbatch --parsable "${opts[@]}" ') or chain == "singleton"
    if chain == "afterok":
        assert '--dependency=afterok:$job1 --kill-on-invalid-dep=yes "${opts[@]}"' in lines[3]
    assert lines[2].endswith("recipe=tiny-smoke run.until=sft1)  # stops after stage sft1")
    assert lines[-1].endswith("recipe=tiny-smoke)")


@pytest.mark.parametrize(
    ("res", "kwargs", "message"),
    [
        (Resources(nodes=0), {}, "--nodes and --grace must be at least 1"),
        (Resources(grace_s=0), {}, "--nodes and --grace must be at least 1"),
        (Resources(), {"chain": "after"}, "--chain must be one of afterok, singleton"),
    ],
)
def test_bad_requests_are_one_sentence(res: Resources, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_jobs(load_recipe("tiny-smoke"), ["recipe=tiny-smoke"], res, **kwargs)


def test_per_stage_jobs_set_until_themselves() -> None:
    recipe = load_recipe("tiny-smoke", ["run.until=rm"])
    with pytest.raises(ConfigError, match="--per-stage sets run.until for each job"):
        plan_jobs(recipe, ["recipe=tiny-smoke", "run.until=rm"], Resources(), per_stage=True)


def cli(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "pipeline.slurm", *args], cwd=tmp, env=env or subprocess_env(),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_command_line(tmp_path: Path) -> None:
    out = cli(tmp_path, "submit", "recipe=tiny-smoke", "--nodes", "2", "--gpus-per-node", "8", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert (
        "--nodes=2" in out.stdout
        and "--gpus-per-node=8" in out.stdout
        and "cascade.sbatch recipe=tiny-smoke)" in out.stdout
    )
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing
    bad = cli(tmp_path, "submit", "recipe=tiny-smoke", "stages.sft1.train.learning_rate=fast", "--dry-run")
    assert bad.returncode == 2 and "stages.sft1.train.learning_rate" in bad.stderr and not bad.stdout
    assert cli(tmp_path, "submit", "recipe=tiny-smoke", "--node", "2").returncode == 2  # argparse's own error

    where = cli(tmp_path, "run-dir", "recipe=tiny-smoke", "run.name=x", "run.output_dir=out")
    assert where.returncode == 0 and where.stdout.strip() == str(tmp_path.resolve() / "out" / "x")
    assert cli(tmp_path, "run-dir", "recipe=nope").returncode == 2

    run = tmp_path / "out" / "x"
    run.mkdir(parents=True)
    (run / "ledger.json").write_text(
        json.dumps({"sessions": [{"slurm_job": "5", "slurm_attempt": 1, "exit": 75}]})
    )
    ask = cli(tmp_path, "exit-code", str(run), env=subprocess_env(SLURM_JOB_ID="5", SLURM_RESTART_COUNT="1"))
    assert ask.returncode == 0 and ask.stdout.strip() == "75"
    assert cli(tmp_path, "exit-code", str(run), env=subprocess_env(SLURM_JOB_ID="5")).returncode == 1
    assert cli(tmp_path).returncode == 2 and "submit" in cli(tmp_path).stderr
