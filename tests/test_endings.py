"""Every way a launch ends: one sentence, last on the console, the documented exit code, and a ledger that says
the same (pipeline.outcome). The table of endings is tested on its own; each kind of ending once end to end."""

from __future__ import annotations

import errno
import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from pipeline import outcome
from pipeline.outcome import ExitCode, Interrupted, ending_for
from pipeline.run_state import Status
from pipeline.schema import ConfigError
from tests.conftest import PYTHON, ROOT, subprocess_env, wait_for_checkpoint

RECIPE = str(ROOT / "tests" / "recipes" / "two-sft.yaml")
LOG = Path("runs/x/cascade.log")
WRAPPED_ENOSPC = RuntimeError("save failed")  # ENOSPC as the cause of another error, as torch raises it
WRAPPED_ENOSPC.__cause__ = OSError(errno.ENOSPC, "No space left on device")


def exploding_reward(completions: list, **kwargs: object) -> list[float]:
    """A user's reward with a bug: the stage that calls it crashes (exit 1, the stage named)."""
    raise RuntimeError("reward exploded")


# --------------------------------------------------------------------------------------------------
# The table of endings


@pytest.mark.parametrize(
    ("exc", "where", "code", "status", "fragment"),
    [
        # a recipe, data or run-directory problem: exit 2, its own sentence (prefixed by where it happened)
        (ConfigError("key 'a.b' must be positive, got -5"), None, 2, "failed", "key 'a.b' must be positive, got -5"),
        (ConfigError("source 'x.jsonl' line 3 is not JSON"), "stage sft2 while training", 2, "failed",
         "stage sft2 while training: source 'x.jsonl' line 3 is not JSON"),
        # a full disk, however a library wraps it
        (OSError(errno.ENOSPC, "No space left on device"), None, 2, "failed", "is full"),
        (RuntimeError("safetensors: write failed"), None, 1, "failed", "crashed"),
        (WRAPPED_ENOSPC, None, 2, "failed", "is full"),
        # a run directory that cannot be written
        (PermissionError(errno.EACCES, "Permission denied", "runs/x/ledger.json"), None, 2, "failed",
         "run directory 'runs/x' cannot be used: 'runs/x/ledger.json': permission denied"),
        (OSError(errno.EROFS, "Read-only file system", "runs/x/.lock"), None, 2, "failed", "read-only file system"),
        (PermissionError(errno.EACCES, "Permission denied", "/data/train.jsonl"), None, 2, "failed",
         "'/data/train.jsonl' cannot be used: permission denied"),
        # a crash: the stage named, the traceback's place given, exit 1
        (ValueError("boom\nsecond line"), "stage sft2 while training", 1, "failed",
         f"stage sft2 while training crashed (ValueError: boom); the traceback is in {LOG}"),
        # signals
        (KeyboardInterrupt(), "stage sft1 while training", 130, "interrupted",
         "interrupted by SIGINT during stage sft1 while training; run the same command again to resume"),
        (Interrupted(signal.SIGTERM), None, 143, "interrupted", "interrupted by SIGTERM;"),
    ],
)  # fmt: skip
def test_ending_for(exc, where, code, status, fragment) -> None:
    ending = ending_for(exc, where=where, run_dir=Path("runs/x"), log_file=LOG)
    assert (ending.code, ending.status) == (code, status)
    assert fragment in ending.sentence, ending.sentence
    assert "\n" not in ending.sentence


def test_a_full_disk_is_measured_and_says_how_much_is_needed(tmp_path: Path, monkeypatch) -> None:
    # A library that reports ENOSPC in its own words is still recognised: the free space is measured.
    run = tmp_path / "run"
    (run / "stages/01-sft1/checkpoints/checkpoint-3").mkdir(parents=True)
    (run / "stages/01-sft1/checkpoints/checkpoint-3/optimizer.pt").write_bytes(b"x" * 5_000_000)
    monkeypatch.setattr(outcome, "_free_bytes", lambda run_dir: 1_200_000)
    ending = ending_for(RuntimeError("file write failed"), where=None, run_dir=run, log_file=None)
    assert ending.code == ExitCode.CONFIG
    assert ending.sentence == (
        f"the disk holding run directory '{run}' is full (1.2 MB free, a checkpoint of this run needs about "
        "5.0 MB: free at least 3.8 MB) and run the same command again to resume"
    )
    monkeypatch.setattr(outcome, "_free_bytes", lambda run_dir: 50_000_000)  # room: a real crash
    assert ending_for(RuntimeError("x"), where=None, run_dir=run, log_file=None).code == ExitCode.CRASHED


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 bytes"), (999, "999 bytes"), (1_500, "1.5 KB"), (5_300_000, "5.3 MB"), (2e12, "2.0 TB")],
)
def test_format_bytes(n, text) -> None:
    assert outcome.format_bytes(int(n)) == text


def test_the_launcher_is_told_the_sentence(tmp_path: Path, monkeypatch) -> None:
    # torchrun's failure summary shows the error file of the failed worker: our sentence, not a hint.
    error_file = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))
    outcome.tell_the_launcher(outcome.Ending(2, Status.FAILED, "key 'a' must be positive, got -5"))
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    failure = ProcessFailure(local_rank=0, pid=1, exitcode=2, error_file=str(error_file))
    assert failure.message == "key 'a' must be positive, got -5"


# --------------------------------------------------------------------------------------------------
# End to end: the console's last line, the exit code, the ledger and report --json


def cascade(tmp_path: Path, *args: str, name: str = "end", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), *args],
        cwd=tmp_path, env=subprocess_env(**env), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stderr.strip().splitlines()[-1]


def report_json(run: Path) -> dict:
    proc = subprocess.run(
        [PYTHON, "-m", "pipeline.report", str(run), "--json"],
        env=subprocess_env(), capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return json.loads(proc.stdout)


def test_no_argument_prints_usage_and_the_recipes(tmp_path: Path) -> None:
    # It used to start the full tiny cascade.
    proc = cascade(ROOT)
    assert proc.returncode == 2
    assert "usage: cascade recipe=NAME" in proc.stderr and "tiny-smoke" in proc.stderr
    assert last_line(proc) == "error: no recipe given: name one with recipe=NAME (listed above)"
    helped = cascade(ROOT, "--help")
    assert helped.returncode == 0 and "exit codes: 0 done" in helped.stdout and "tiny-smoke" in helped.stdout


def test_yaml_syntax_names_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  name: x\n   seed: 3\n")
    proc = cascade(tmp_path, f"recipe={bad}")
    assert proc.returncode == 2
    assert (
        last_line(proc)
        == f"error: recipe 'bad' is not valid YAML: {bad}:3:8: mapping values are not allowed here"
    )


def test_a_stage_that_crashes_is_named_and_its_traceback_is_in_the_log(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "end"
    rl = (
        "++stages.rl={kind: grpo, data: [{source: builtin:math, size: 8}], num_generations: 2, "
        "max_completion_length: 8, rewards: [{name: 'tests.test_endings:exploding_reward'}], "
        "train: {max_steps: 1, batch_size: 2, save_steps: 1}}"
    )
    proc = cascade(
        tmp_path, f"recipe={RECIPE}", "run.name=end", f"run.output_dir={tmp_path / 'runs'}",
        "~stages.sft1", "~stages.sft2", "~benchmarks", rl,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    sentence = (
        "stage rl while training crashed (RuntimeError: reward exploded); "
        f"the traceback is in {run / 'cascade.log'}"
    )
    assert last_line(proc) == f"error: {sentence}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout  # not on the console ...
    log = (run / "cascade.log").read_text()
    assert "Traceback" in log and 'raise RuntimeError("reward exploded")' in log  # ... but in the log file
    data = json.loads((run / "ledger.json").read_text())
    assert (data["status"], data["error"], data["sessions"][0]["exit"]) == ("failed", sentence, 1)
    rl_entry = data["stages"][0]
    assert (
        rl_entry["status"] == "failed"
        and rl_entry["error"] == sentence
        and "reward exploded" in rl_entry["traceback"]
    )
    report = report_json(run)
    assert report["status"] == "failed" and report["error"] == sentence
    assert report["stages"][1]["status"] == "failed" and report["stages"][1]["error"] == sentence


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch):
    """``pipeline.cli.main`` in this process; it gives logging and the SIGTERM handler back when it returns."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    sigterm = signal.getsignal(signal.SIGTERM)
    from pipeline.cli import main

    yield main
    assert signal.getsignal(signal.SIGTERM) is sigterm


def test_bad_data_found_during_a_stage_is_recorded_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], in_process
) -> None:
    # The ConfigError branch of the runner left the ledger (and report --json) saying "running" after the
    # launch had exited 2. The launch's data check reads a sample of each source; rows past it can still
    # be unusable when the stage loads them all.
    from pipeline.data.sources import DataError
    from pipeline.stages import stage_module

    def unusable(ctx: object) -> None:
        raise DataError("data source 'late.jsonl' dropped 40 of 296 rows (unusable)")

    monkeypatch.setattr(stage_module("sft"), "run", unusable)
    run = tmp_path / "runs" / "end"
    code = in_process(
        [
            f"recipe={RECIPE}",
            "run.name=end",
            f"run.output_dir={tmp_path / 'runs'}",
            "~benchmarks",
            "~stages.sft2",
        ]
    )
    assert code == 2
    sentence = "stage sft1 while training: data source 'late.jsonl' dropped 40 of 296 rows (unusable)"
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {sentence}"
    data = json.loads((run / "ledger.json").read_text())
    assert (data["status"], data["error"], data["sessions"][0]["exit"]) == ("failed", sentence, 2)
    assert data["stages"][0]["status"] == "failed" and data["stages"][0]["error"] == sentence
    assert "traceback" not in data["stages"][0]  # a data problem is its sentence; no traceback to read
    report = report_json(run)
    assert report["status"] == "failed" and report["error"] == sentence


@pytest.mark.parametrize(
    ("signum", "code", "resume"), [(signal.SIGINT, 130, False), (signal.SIGTERM, 143, True)]
)
def test_a_signal_is_recorded_as_interrupted_and_resumes(
    tmp_path: Path, signum: int, code: int, resume: bool
) -> None:
    run = tmp_path / "runs" / "end"
    args = (
        f"recipe={RECIPE}", "run.name=end", f"run.output_dir={tmp_path / 'runs'}", "~benchmarks", "~stages.sft2",
        "stages.sft1.train.max_steps=30", "stages.sft1.train.save_steps=2",
    )  # fmt: skip
    proc = subprocess.Popen(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), *args],
        cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_checkpoint(proc, run / "stages" / "01-sft1" / "checkpoints", 2)
    assert proc.poll() is None, "the stage ended before the signal"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == code, stderr[-3000:]
    name = signal.Signals(signum).name
    sentence = stderr.strip().splitlines()[-1].removeprefix("error: ")
    where = r"stage sft1 resumes from step (\d+) \(stages/01-sft1/checkpoints/checkpoint-\1\)"
    assert re.fullmatch(rf"stopped \({name}\): {where}; run the same command again to resume", sentence)
    data = json.loads((run / "ledger.json").read_text())
    assert (data["status"], data["error"], data["sessions"][0]["exit"]) == ("interrupted", sentence, code)
    assert data["stages"][0]["status"] == "interrupted" and data["sessions"][0]["ended"]
    assert report_json(run)["status"] == "interrupted"
    if not resume:
        return
    again = cascade(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "attempt 2, resuming from its last checkpoint" in again.stderr


# --------------------------------------------------------------------------------------------------
# The run directory: read-only, full (real file systems: a tmpfs mounted for the test, as root)


@pytest.fixture
def mounted(tmp_path: Path):
    """A mount point for a tmpfs the test mounts; skipped where mounting is not allowed."""
    point = tmp_path / "mnt"
    point.mkdir()
    probe = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    subprocess.run(["umount", str(point)], check=True)
    yield point
    subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_a_read_only_run_directory_is_one_sentence(tmp_path: Path, mounted: Path) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mounted)], check=True)
    proc = cascade(tmp_path, f"recipe={RECIPE}", "run.name=end", f"run.output_dir={mounted}", "~benchmarks")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert last_line(proc) == (
        f"error: run directory '{mounted / 'end'}' cannot be used: '{mounted / 'end'}': read-only file system; "
        "fix its permissions or choose another run.output_dir"
    )
    assert "Traceback" not in proc.stderr


def test_a_full_disk_says_what_it_needs_and_resumes_once_freed(tmp_path: Path, mounted: Path) -> None:
    # The base model (~0.5 MB) fits; the first trainer checkpoint (weights + optimizer, ~1.4 MB) does not.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=900k", "tmpfs", str(mounted)], check=True)
    args = (f"recipe={RECIPE}", "run.name=end", f"run.output_dir={mounted}", "~benchmarks", "~stages.sft2")
    proc = cascade(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = last_line(proc)
    assert line.startswith(
        f"error: stage sft1 while training: the disk holding run directory '{mounted / 'end'}' is full ("
    )
    assert "a checkpoint of this run needs about" in line and "run the same command again to resume" in line
    assert "Traceback" not in proc.stderr
    subprocess.run(["mount", "-o", "remount,size=64m", str(mounted)], check=True)
    resumed = cascade(tmp_path, *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    data = json.loads((mounted / "end" / "ledger.json").read_text())
    assert data["status"] == "done" and data["sessions"][-1]["exit"] == 0
    # the full disk kept the first launch from recording its end: its session says only when it started
    assert "exit" not in data["sessions"][0] and data["sessions"][0]["started"]


# --------------------------------------------------------------------------------------------------
# Under accelerate launch


def accelerate(tmp_path: Path, *args: str, quiet: bool) -> subprocess.CompletedProcess[str]:
    cmd = [
        PYTHON, "-m", "accelerate.commands.launch", *(["-q"] if quiet else []), "--cpu", "--num_processes", "1",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(ROOT / "launch" / "cascade.py"), f"recipe={RECIPE}", f"run.output_dir={tmp_path / 'runs'}", *args,
    ]  # fmt: skip
    return subprocess.run(
        cmd, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600
    )


def test_under_accelerate_launch_q_the_sentence_is_the_last_line(tmp_path: Path) -> None:
    sentence = "error: key 'stages.sft1.train.max_steps' must be positive or -1 (epochs), got -5"
    quiet = accelerate(tmp_path, "stages.sft1.train.max_steps=-5", quiet=True)
    assert quiet.returncode == 1  # accelerate turns every failure into 1; the sentence says which it was
    assert last_line(quiet) == sentence
    # without -q accelerate adds its own traceback of the child's exit, after ours, naming its status
    loud = accelerate(tmp_path, "stages.sft1.train.max_steps=-5", quiet=False)
    lines = loud.stderr.strip().splitlines()
    assert sentence in lines and "non-zero exit status 2" in lines[-1]


def test_yaml_syntax_in_a_default_is_located_in_that_file(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("run:\n  name: [x\n")
    (tmp_path / "top.yaml").write_text("defaults: [base, _self_]\nmodel: {name_or_path: builtin:tiny}\n")
    from pipeline.config import load_recipe

    with pytest.raises(ConfigError) as caught:
        load_recipe(str(tmp_path / "top.yaml"))
    assert str(caught.value) == (
        f"recipe 'top' is not valid YAML: {tmp_path / 'base.yaml'}:3:1: expected ',' or ']', "
        "but got '<stream end>'"
    )
