"""CPU threads per process when there is no GPU (``pipeline.distributed.cpu_threads``)."""

from __future__ import annotations

import pytest

from pipeline.distributed import cpu_threads
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
