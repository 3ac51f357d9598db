"""How a launch ends: its exit code, the run's status in the ledger, and the one sentence it prints last.

    exit   ledger status  when
    0      done           every stage is done (a regression under gate.policy=warn included)
    1      failed         a stage crashed: the sentence names the stage, the traceback is in the log file
    2      failed         something to fix before running again: the recipe or an override (YAML syntax
                          with file:line:column), the data, the run directory (in use, unreadable,
                          unwritable), a full disk (with the bytes a checkpoint needs)
    0      paused         the stage ``run.until`` names is done; the same command without it goes on
    3      regressed      the regression gate stopped the cascade
    75     interrupted    stopped early at a saved step: a pre-emption warning (Slurm's USR1, the stop file)
                          or ``run.deadline`` (:mod:`pipeline.preemption`); the same command resumes
    128+n  interrupted    signal n: 130 for Ctrl-C, 143 for SIGTERM; the same command resumes the run

Every launch ends through :func:`ending_for` (an exception), :func:`stopped` (an early stop the runner
recorded), :func:`paused` or :func:`finished` (a normal end), so the
console, the ledger and ``report --json`` all say the same thing. A new way to end (say, a pre-empted
job that Slurm requeues) is a member of :class:`ExitCode`, a :class:`~pipeline.run_state.Status` and a
branch of :func:`ending_for`, nothing else. Errors are told apart by type and ``errno`` (and, for a full
disk, by measuring the free space), never by reading another library's message.
"""

from __future__ import annotations

import errno
import shutil
import signal
import threading
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from types import FrameType
from typing import Any

from pipeline.run_state import Status
from pipeline.schema import ConfigError


class ExitCode(IntEnum):
    DONE = 0
    CRASHED = 1  # a stage (or Cascade itself) raised something nobody could foresee
    CONFIG = 2  # recipe, data or run directory: fixable by the user before a new launch
    REGRESSED = 3  # stopped by the regression gate
    PREEMPTED = (
        75  # EX_TEMPFAIL: stopped early at a saved step; the same command resumes (pipeline.preemption)
    )
    INTERRUPTED = 128  # + the signal's number (SIGINT 130, SIGTERM 143)


NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
NO_ACCESS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


@dataclass(frozen=True)
class Ending:
    """The end of one launch: what the process exits with, what the ledger records, what the user reads."""

    code: int
    status: Status
    sentence: str
    crashed: bool = False  # an unforeseen exception: its traceback belongs in the log file

    @property
    def ok(self) -> bool:
        return self.code == ExitCode.DONE


class Interrupted(BaseException):
    """A signal asked the launch to stop (SIGTERM; Ctrl-C arrives as KeyboardInterrupt).

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` on the way up
    mistakes it for a failure of the code it interrupts.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_on_sigterm() -> Any:
    """Turn SIGTERM (``kill``, Slurm's time limit, torchrun stopping its workers) into :class:`Interrupted`;
    returns the handler it replaced.

    Without this the process dies at once, the ledger keeps ``running`` and the session its last time.
    Only the main thread may set a handler; elsewhere (a test calling ``main`` from a thread) it is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    return signal.signal(signal.SIGTERM, handler)


def finished(run_dir: Path, wall_s: float) -> Ending:
    from pipeline.report.markdown import format_duration

    report = run_dir / "report.md"
    return Ending(ExitCode.DONE, Status.DONE, f"done in {format_duration(wall_s)}; the report is {report}")


def paused(stage: str) -> Ending:
    return Ending(
        ExitCode.DONE,
        Status.PAUSED,
        f"paused after stage {stage} (run.until); the same command without run.until goes on",
    )


def stopped(
    reason: str, code: int, stage: str | None, step: int | None, checkpoint: str | None = None
) -> Ending:
    """The ending of a run the runner stopped early and recorded: why, and where the same command resumes."""
    if stage is None:
        where = "between stages"
    elif checkpoint is None:
        where = f"stage {stage} starts again from its beginning"
    else:
        where = f"stage {stage} resumes from step {step} ({checkpoint})"
    return Ending(
        code, Status.INTERRUPTED, f"stopped ({reason}): {where}; run the same command again to resume"
    )


def regressed(message: str) -> Ending:
    return Ending(ExitCode.REGRESSED, Status.REGRESSED, f"stopped by the regression gate: {message}")


def ending_for(
    exc: BaseException, *, where: str | None, run_dir: Path | None, log_file: Path | None
) -> Ending:
    """The ending an exception makes; ``where`` is what was running ("stage sft2 while training").

    ``run_dir`` (when the run has one) is where a full disk is measured; ``log_file`` is where the
    traceback of a crash is written, and the sentence says so.
    """
    from pipeline.preemption import StopRun

    prefix = f"{where}: " if where else ""
    if isinstance(exc, StopRun):  # a stop before the run had anything to record (while opening it)
        return stopped(exc.reason, exc.exit_code, None, None)
    if isinstance(exc, KeyboardInterrupt | Interrupted):
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        during = f" during {where}" if where else ""
        return Ending(
            ExitCode.INTERRUPTED + signum,
            Status.INTERRUPTED,
            f"interrupted by {signal.Signals(signum).name}{during}; run the same command again to resume",
        )
    if isinstance(exc, ConfigError):
        return Ending(ExitCode.CONFIG, Status.FAILED, prefix + str(exc))
    os_error = _os_error(exc)
    if (os_error is not None and os_error.errno in NO_SPACE) or (run_dir is not None and disk_full(run_dir)):
        return Ending(ExitCode.CONFIG, Status.FAILED, prefix + full_disk_sentence(run_dir or Path(".")))
    if os_error is not None and os_error.errno in NO_ACCESS:
        return Ending(ExitCode.CONFIG, Status.FAILED, prefix + no_access_sentence(os_error, run_dir))
    if isinstance(exc, SystemExit) and exc.code in (0, None):
        exc = RuntimeError("a library called sys.exit(0) in the middle of the run")
    what = where or "Cascade"
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    log = f"; the traceback is in {log_file}" if log_file else ""
    return Ending(ExitCode.CRASHED, Status.FAILED, f"{what} crashed ({detail}){log}", crashed=True)


def _os_error(exc: BaseException) -> OSError | None:
    """The first ``OSError`` with an ``errno`` in the exception or the chain of its causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current
        current = current.__cause__ or current.__context__
    return None


# --------------------------------------------------------------------------------------------------
# A full disk: measured, so that it is recognised however a library reports it (safetensors and torch
# wrap ENOSPC in errors of their own).


def checkpoint_bytes(run_dir: Path) -> int:
    """About what the next save of this run needs: its largest trainer checkpoint so far, or, before it has
    one, three times its largest model folder (a trainer checkpoint holds the weights and the optimizer's
    two moments). 0 when the run has written nothing yet."""
    trainer = [*run_dir.glob("stages/*/checkpoints/checkpoint-*")]
    models = [run_dir / "base", *run_dir.glob("stages/*/final")]
    largest_trainer = max((_folder_bytes(p) for p in trainer if p.is_dir()), default=0)
    largest_model = max((_folder_bytes(p) for p in models if p.is_dir()), default=0)
    return max(largest_trainer, ADAM_FACTOR * largest_model)


ADAM_FACTOR = 3  # weights + Adam's first and second moments, each the size of the weights


def _folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:
            continue
    return total


def _free_bytes(run_dir: Path) -> int | None:
    for folder in (run_dir, *run_dir.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def disk_full(run_dir: Path) -> bool:
    """Whether the disk holding ``run_dir`` has less room than one more checkpoint of this run needs."""
    needed, free = checkpoint_bytes(run_dir), _free_bytes(run_dir)
    return free is not None and needed > 0 and free < needed


def full_disk_sentence(run_dir: Path) -> str:
    needed, free = checkpoint_bytes(run_dir), _free_bytes(run_dir)
    room = f"{format_bytes(free)} free" if free is not None else "no room left"
    if needed > 0:
        more = max(needed - (free or 0), 0)
        need = f", a checkpoint of this run needs about {format_bytes(needed)}: free at least {format_bytes(more)}"
    else:
        need = ": free some space"
    return (
        f"the disk holding run directory '{run_dir}' is full ({room}{need}) and run the same command "
        "again to resume"
    )


def no_access_sentence(exc: OSError, run_dir: Path | None) -> str:
    path = exc.filename or (str(run_dir) if run_dir else "a file")
    reason = (exc.strerror or "not permitted").lower()
    inside = run_dir is not None and _inside(Path(str(path)), run_dir)
    if inside or run_dir is not None and Path(str(path)) in run_dir.parents:
        return (
            f"run directory '{run_dir}' cannot be used: '{path}': {reason}; fix its permissions or choose "
            "another run.output_dir"
        )
    return f"'{path}' cannot be used: {reason}"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def format_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} bytes"


def tell_the_launcher(ending: Ending) -> None:
    """Under torchrun (``accelerate launch --multi_gpu``, DeepSpeed), name the sentence as the failure.

    torchrun's summary of a failed worker shows the message of the worker's error file, the file that
    ``torch.distributed.elastic``'s ``@record`` would fill with a traceback; without one it shows only
    "To enable traceback see …". Its layout: ``{"message": str, "timestamp": int}``.
    """
    import contextlib
    import json
    import os
    import time

    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path or ending.ok:
        return
    with contextlib.suppress(
        OSError
    ):  # the launcher then says less; the console and ledger have the sentence
        Path(path).write_text(json.dumps({"message": ending.sentence, "timestamp": int(time.time())}))
