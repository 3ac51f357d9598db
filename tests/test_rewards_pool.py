"""The worker pool behind time-limited rewards: outcomes, hard deadlines, replacement, threads, fork."""

from __future__ import annotations

import operator
import os
import threading
import time

import pytest

from rewards.pool import Outcome, WorkerPool, shared_pool
from tests.conftest import in_forked_child


@pytest.fixture(scope="module")
def pool():
    pool = WorkerPool(2, name="test")
    yield pool
    pool.shutdown()


def _statuses(outcomes: list[Outcome]) -> list[str]:
    return [o.status for o in outcomes]


@pytest.mark.parametrize(
    ("fn", "args", "status", "value"),
    [
        (operator.add, (2, 3), "ok", 5),  # a plain result comes back
        (operator.truediv, (1, 0), "error", None),  # an exception becomes an error outcome
        (os._exit, (3,), "error", None),  # the worker dying mid-task is an error, not a hang
        (time.sleep, (30,), "timeout", None),  # past the deadline: killed, reported as a timeout
        (operator.itemgetter(0), ([1],), "ok", 1),  # any picklable callable works
    ],
)
def test_outcomes(pool, fn, args, status, value):
    (outcome,) = pool.map(fn, [args], timeout_s=1.0)
    assert outcome.status == status
    assert outcome.value == value
    assert outcome.ok is (status == "ok")


def test_deadline_is_hard_and_the_pool_recovers(pool):
    # Two stuck tasks occupy both workers; both are killed at the deadline, the quick tasks still
    # run, and the replaced workers serve the next call.
    started = time.monotonic()
    outcomes = pool.map(time.sleep, [(30,), (0.01,), (30,), (0.01,)], timeout_s=1.0)
    assert time.monotonic() - started < 10
    assert _statuses(outcomes) == ["timeout", "ok", "timeout", "ok"]
    assert _statuses(pool.map(operator.add, [(1, 1)] * 4, timeout_s=30)) == ["ok"] * 4


def test_budget_bounds_the_whole_call(pool):
    # Six stuck tasks, two workers, a 1 s deadline each: without a budget this takes 3+ s plus
    # restarts; with a 1.5 s budget the tasks not yet started are reported as timeouts.
    started = time.monotonic()
    outcomes = pool.map(time.sleep, [(30,)] * 6, timeout_s=1.0, budget_s=1.5)
    elapsed = time.monotonic() - started
    assert _statuses(outcomes) == ["timeout"] * 6
    assert any("budget" in o.error for o in outcomes)
    assert elapsed < 1.5 + 1.0 + 2.0


def test_unpicklable_task_is_an_error(pool):
    # A lambda cannot travel to a worker; that task fails, the others run.
    outcomes = pool.map(lambda x: x, [(1,)], timeout_s=5)  # noqa: E731
    assert _statuses(outcomes) == ["error"]
    assert _statuses(pool.map(operator.neg, [(1,)], timeout_s=5)) == ["ok"]


def test_threads_share_the_pool(pool):
    # Many threads map at once; each gets its own results back, in order.
    results: dict[int, list[int]] = {}

    def work(k: int) -> None:
        results[k] = [o.value for o in pool.map(operator.mul, [(k, i) for i in range(30)], timeout_s=30)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == {k: [k * i for i in range(30)] for k in range(5)}


def test_empty_map(pool):
    # Nothing to do returns at once.
    assert pool.map(operator.add, [], timeout_s=1) == []


def test_shutdown_refuses_new_work():
    # After shutdown a map raises instead of waiting forever.
    pool = WorkerPool(1, name="closing")
    assert pool.map(operator.add, [(1, 2)], timeout_s=30)[0].value == 3
    pool.shutdown()
    pool.shutdown()  # twice is fine
    with pytest.raises(RuntimeError, match="shut down"):
        pool.map(operator.add, [(1, 2)], timeout_s=1)


def test_failing_start_up_is_reported_not_hung():
    # A worker that cannot import its preload never becomes ready: tasks fail with an error.
    pool = WorkerPool(1, name="broken", preload=("a_module_that_does_not_exist",))
    try:
        (outcome,) = pool.map(operator.add, [(1, 2)], timeout_s=1)
        assert outcome.status == "error" and "start" in outcome.error
    finally:
        pool.shutdown()


def test_memory_limit_turns_a_blow_up_into_an_error():
    # With RLIMIT_AS set, a huge allocation fails inside the worker instead of swapping the machine.
    pool = WorkerPool(1, name="small", memory_limit_mb=512)
    try:
        (outcome,) = pool.map(bytearray, [(2 << 30,)], timeout_s=30)
        assert outcome.status == "error" and "MemoryError" in outcome.error
    finally:
        pool.shutdown()


def test_shared_pool_is_per_name_and_per_process():
    # One pool per name in a process; a forked child builds its own instead of using the parent's.
    first = shared_pool("test-shared", size=1)
    assert shared_pool("test-shared", size=5) is first

    def in_child() -> bool:  # must get a new pool that works
        child = shared_pool("test-shared", size=1)
        ok = child is not first and child.map(operator.add, [(2, 2)], timeout_s=60)[0].value == 4
        child.shutdown()
        return ok

    assert in_forked_child(in_child)
    assert first.map(operator.add, [(1, 1)], timeout_s=60)[0].value == 2  # the parent's still works
