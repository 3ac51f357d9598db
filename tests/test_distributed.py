"""CPU threads per process when there is no GPU (``pipeline.distributed.cpu_threads``); leaving the group."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.distributed import cpu_threads
from pipeline.outcome import ExitCode
from pipeline.schema import ConfigError

ACCELERATE = {"ACCELERATE_MIXED_PRECISION": "no", "OMP_NUM_THREADS": "1"}

# (environment, CPUs, threads per process or None for torch's own choice).
CASES = [
    ({}, 8, None),  # plain `python launch/cascade.py`: torch already uses every core
    ({"OMP_NUM_THREADS": "1"}, 8, None),  # the user's own OMP_NUM_THREADS, no accelerate: respected
    (ACCELERATE, 2, 2),  # `accelerate launch`, one process: every core instead of one
    ({**ACCELERATE, "LOCAL_WORLD_SIZE": "2"}, 8, 4),  # two processes on the node share the cores
    ({**ACCELERATE, "LOCAL_WORLD_SIZE": "4"}, 2, None),  # more processes than cores: one thread each
    ({**ACCELERATE, "OMP_NUM_THREADS": "3"}, 8, None),  # --num_cpu_threads_per_process 3: respected
    ({**ACCELERATE, "CASCADE_CPU_THREADS": "1"}, 8, 1),  # the explicit choice wins
    ({"CASCADE_CPU_THREADS": "6"}, 2, 6),  # even without accelerate
]


@pytest.mark.parametrize(("env", "cpus", "expected"), CASES)
def test_cpu_threads(env: dict[str, str], cpus: int, expected: int | None) -> None:
    assert cpu_threads(env, cpus) == expected


@pytest.mark.parametrize(("value", "message"), [("two", "whole number"), ("0", "at least 1")])
def test_a_bad_thread_count_is_one_clear_sentence(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cpu_threads({"CASCADE_CPU_THREADS": value}, 4)


@pytest.mark.parametrize(
    ("code", "left"),
    [
        (None, True),  # a command that printed what was asked
        (ExitCode.DONE, True),
        (ExitCode.REGRESSED, True),  # the gate stopped every process at the same stage
        (ExitCode.CRASHED, False),  # another process may wait in a collective until this one exits
        (ExitCode.INTERRUPTED + 15, False),
    ],
)
def test_a_command_leaves_the_process_group_when_every_process_ended_together(
    tmp_path: Path, code: int | None, left: bool
) -> None:
    """Left to the interpreter's exit the group's threads can abort a process that finished its work."""
    import torch.distributed as dist

    from pipeline.cli import _command
    from pipeline.outcome import Ending
    from pipeline.run_state import Status

    def body(args: object, console: object) -> Ending | None:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
        return None if code is None else Ending(code, Status.DONE if code == 0 else Status.FAILED, "ended")

    try:
        assert _command(["recipe=tiny"], body) == (code or 0)
        assert dist.is_initialized() is not left
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
