"""Slurm: which job and attempt this process belongs to, and what a run directory says about it.

The launcher is ``launch/slurm/cascade.sbatch``; ``python -m pipeline.slurm submit …`` writes its
``sbatch`` command from the validated recipe (:mod:`pipeline.slurm.submit`); docs/slurm.md is the guide.
A requeued job keeps its id and counts its attempts in ``SLURM_RESTART_COUNT``; that pair names a
launch here: in the run lock (so that a later attempt may take over a lock its dead predecessor left)
and in the ledger's session (so that the batch script finds the exit status of its own attempt, which
``accelerate launch`` does not pass on). Nothing here imports torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.run_state import Session


@dataclass(frozen=True)
class SlurmJob:
    job_id: str
    attempt: int  # 0 for the first run of the job, n after its n-th requeue

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SlurmJob | None:
        """The job of a process started by Slurm (a batch script or a step), or None outside Slurm."""
        job_id = env.get("SLURM_JOB_ID")
        if not job_id:
            return None
        return cls(job_id, int(env.get("SLURM_RESTART_COUNT") or 0))

    def __str__(self) -> str:
        return f"slurm job {self.job_id} attempt {self.attempt}"


_OWNER = re.compile(r"\(slurm job (\w+) attempt (\d+)\)")


def lock_owner_suffix(env: Mapping[str, str]) -> str:
    """What the run lock adds to ``pid N on host`` under Slurm: `` (slurm job 123 attempt 0)``."""
    job = SlurmJob.from_env(env)
    return f" ({job})" if job else ""


def earlier_attempt(holder: str, env: Mapping[str, str]) -> bool:
    """Whether the run lock's ``holder`` is an earlier attempt of the Slurm job this process runs in.

    Slurm starts a requeued attempt only after the previous one has ended, so such a holder is no
    longer running: its lock outlived it (a node that died while holding an NFS or Lustre lock).
    """
    job = SlurmJob.from_env(env)
    owner = _OWNER.search(holder)
    return bool(job and owner and owner[1] == job.job_id and int(owner[2]) < job.attempt)


def exit_status(sessions: Sequence[Session], job: SlurmJob) -> int | None:
    """The exit status Cascade recorded for ``job``'s attempt, or None if that session did not close."""
    for session in reversed(sessions):
        if session.slurm_job == job.job_id and session.slurm_attempt == job.attempt:
            return session.exit
    return None
