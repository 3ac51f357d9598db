"""Stopping a run before it is done without losing work: a pre-emption warning, a deadline, SIGTERM.

A cluster takes a job away in one of three ways, and each gets the best answer it allows:

* **A warning** — ``SIGUSR1`` (what ``sbatch --signal=USR1@300`` sends), a stop file written by the
  batch script that heard the warning (``CASCADE_STOP_FILE``), or the recipe's own ``run.deadline``
  (for clusters that kill without a word). Every rank finishes the optimizer step it is in; at the
  step's end the ranks agree (one all-reduce of a flag: a rank that heard nothing must stop at the
  same step as one that did, or the next collective would hang); the trainer saves a checkpoint of
  that step; the runner records the stage ``interrupted`` with it and every process exits with
  :data:`EXIT_PREEMPTED`. The next launch resumes from that very step: nothing is lost.
* **SIGTERM** (Slurm's ``scancel``, ``scontrol requeue`` or pre-emption, ``KillWait`` seconds before
  SIGKILL) or **SIGINT**: the step in flight is abandoned — its reward workers and sandboxes are being
  killed with it, so its numbers could not be trusted — and the runner records the stage
  ``interrupted`` at its last periodic checkpoint before exiting with 128 + the signal number.
* **SIGKILL**: nothing can run; the ledger keeps ``running`` and the next launch resumes from the last
  periodic checkpoint, as after any crash.

Why a module of our own: ``transformers`` can stop a trainer (``control.should_training_stop``) and
save one (``control.should_save``), but nothing in TRL, Accelerate or transformers listens for a
scheduler's warning, keeps ranks in step when only some of them heard it, or tells the caller that
training ended early rather than finished.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.schema import ConfigError

log = logging.getLogger(__name__)

# EX_TEMPFAIL of sysexits.h: the run stopped early at a checkpoint and resumes where it stopped.
EXIT_PREEMPTED = 75
STOP_FILE_ENV = "CASCADE_STOP_FILE"
WARNING_SIGNALS = (signal.SIGUSR1,)
TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# Why a run stops, in the order the ranks' all-reduce (MAX) prefers when they disagree.
_REASONS = (None, "deadline", "warning")


class StopRun(BaseException):  # noqa: N818 - not an error: the run was asked to stop
    """The run stops before it is done. A ``BaseException``: no ``except Exception`` may swallow it.

    ``checkpoint`` is the trainer checkpoint the stage resumes from (None: none yet, or not known here:
    the runner then finds the newest complete one); ``exit_code`` is the process's exit status.
    """

    def __init__(self, reason: str, exit_code: int, step: int | None = None, checkpoint: Path | None = None):
        super().__init__(reason)
        self.reason, self.exit_code, self.step, self.checkpoint = reason, exit_code, step, checkpoint


class Preempted(StopRun):
    """A warning or the deadline: the ranks stopped together after a step and saved it."""


class Interrupted(StopRun):
    """SIGTERM/SIGINT: the step in flight was abandoned; the run resumes from its last checkpoint."""


# --------------------------------------------------------------------------------------------------
# run.deadline


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_UNIT_FORM = re.compile(
    r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?"
)
_CLOCK_FORM = re.compile(r"(?:(\d+)-)?(\d+):(\d{2}):(\d{2})")  # Slurm's [D-]HH:MM:SS


def parse_duration(text: str, key: str = "run.deadline") -> float:
    """Seconds in ``text``: units (``3h50m``, ``90m``, ``45s``, ``1d``) or Slurm's ``[D-]HH:MM:SS``.

    A bare number is refused: Slurm reads ``--time=90`` as minutes, most people as seconds.
    """
    text = str(text).strip().replace(" ", "")
    clock = _CLOCK_FORM.fullmatch(text)
    units = _UNIT_FORM.fullmatch(text)
    if clock:
        days, hours, minutes, seconds = (int(g) if g else 0 for g in clock.groups())
        if minutes >= 60 or seconds >= 60:
            raise ConfigError(f"key '{key}' has minutes or seconds of 60 or more in '{text}'")
        total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    elif units and text:
        total = sum(float(g) * f for g, f in zip(units.groups(), _UNITS.values(), strict=True) if g)
    else:
        raise ConfigError(
            f"key '{key}' must be a duration such as '3h50m', '90m', '45s' or '03:50:00', got '{text}'"
        )
    if total <= 0:
        raise ConfigError(f"key '{key}' must be longer than zero, got '{text}'")
    return total


# --------------------------------------------------------------------------------------------------
# The stop request of this process


@dataclass
class StopRequest:
    """What this process has been told: a warning signal, a stop file, a deadline.

    ``install()`` puts the signal handlers in place (main thread only, as Python requires). Reading the
    request is cheap (a flag, a clock, one ``stat``); :meth:`agreed` makes it one decision of all ranks.
    """

    deadline_s: float | None = None  # seconds after ``t0`` at which to stop
    stop_file: Path | None = None  # the batch script creates it when its warning arrives
    t0: float = 0.0
    warned_by: str | None = None  # the name of the warning signal received
    _terminated: bool = False
    _previous: dict[int, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, deadline: str | None, env: dict[str, str] | None = None) -> StopRequest:
        env = dict(os.environ if env is None else env)
        stop_file = env.get(STOP_FILE_ENV)
        return cls(
            deadline_s=parse_duration(deadline) if deadline else None,
            stop_file=Path(stop_file) if stop_file else None,
            t0=time.monotonic(),
        )

    def install(self) -> None:
        """Listen for the signals (a no-op outside the main thread, where Python allows no handler)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in WARNING_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_warning)
        for sig in TERMINATING_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_terminate)

    def uninstall(self) -> None:
        """Give the signals back to the handlers they had before :meth:`install`."""
        while self._previous:
            sig, handler = self._previous.popitem()
            signal.signal(sig, handler)

    def _on_warning(self, signum: int, frame: Any) -> None:
        if self.warned_by is None:
            self.warned_by = signal.Signals(signum).name
            log.warning("%s received: stopping after the current step with a checkpoint", self.warned_by)

    def _on_terminate(self, signum: int, frame: Any) -> None:
        # Raise once: srun, slurmstepd and the launcher may each deliver the same SIGTERM, and a second
        # raise would cut short the runner's record of the first one.
        if self._terminated:
            return
        self._terminated = True
        name = signal.Signals(signum).name
        raise Interrupted(name, 128 + signum)

    def closing(self) -> None:
        """The process is on its way out: a SIGTERM no longer interrupts what it still has to record."""
        self._terminated = True

    def local_reason(self) -> str | None:
        """Why this process wants to stop now, or None."""
        if self.warned_by is not None:
            return "warning"
        if self.stop_file is not None and self.stop_file.exists():
            self.warned_by = "stop file"
            log.warning("%s found: stopping after the current step with a checkpoint", self.stop_file)
            return "warning"
        if self.deadline_s is not None and time.monotonic() - self.t0 >= self.deadline_s:
            return "deadline"
        return None

    def agreed(self) -> str | None:
        """The reason to stop that all ranks share (a collective: every rank must call it at the same point)."""
        code = _REASONS.index(self.local_reason())
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            import torch
            from accelerate import PartialState

            flag = torch.tensor([code], dtype=torch.int32, device=PartialState().device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            code = int(flag.item())
        return _REASONS[code]

    def describe(self, reason: str) -> str:
        if reason == "deadline":
            return f"run.deadline ({self.deadline_s:.0f}s after the launch)"
        return self.warned_by or "a warning on another rank"

    def stop(self, reason: str, step: int | None = None, checkpoint: Path | None = None) -> Preempted:
        return Preempted(self.describe(reason), EXIT_PREEMPTED, step, checkpoint)


# --------------------------------------------------------------------------------------------------
# The trainer side


def trainer_callback(request: StopRequest) -> Any:
    """A ``TrainerCallback`` that turns an agreed stop request into a saved step and :class:`Preempted`.

    At each step's end the ranks agree; on a stop the callback asks the trainer to save and stop
    (``control.should_save`` / ``should_training_stop``), waits until every rank has written its part of
    the checkpoint (RNG states are per rank) and raises, so that ``trainer.train()`` cannot be mistaken
    for a finished stage by the code that called it.
    """
    from transformers import TrainerCallback

    class PreemptionCallback(TrainerCallback):
        def __init__(self) -> None:
            self.reason: str | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            reason = request.agreed()
            if reason is not None:
                self.reason = reason
                control.should_save = True
                control.should_training_stop = True

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.reason is None:
                return
            from accelerate import PartialState

            PartialState().wait_for_everyone()
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            raise request.stop(self.reason, state.global_step, checkpoint)

    return PreemptionCallback()


def newest_checkpoint(stage_dir: Path) -> tuple[Path, int] | None:
    """The stage's most recently written complete trainer checkpoint (of any phase) and its step, or None."""
    from pipeline.stages.base import latest_checkpoint

    found = [c for folder in Path(stage_dir).glob("**/checkpoints") if (c := latest_checkpoint(folder))]
    if not found:
        return None
    newest = max(found, key=lambda c: (c / "trainer_state.json").stat().st_mtime)
    return newest, int(newest.name.rsplit("-", 1)[-1])
