"""A process's share of the CPU cores, and objects that belong to one process (forgotten by a fork)."""

from __future__ import annotations

import os
import threading

import pytest

from rewards.process import REWARD_WORKERS, SANDBOX_WORKERS, PerProcess, check_share_variables, cpu_share

# (environment, CPUs, cap, the share) for cpu_share(REWARD_WORKERS, cap=…)
SHARES = [
    ({}, 8, None, 8),  # one process alone on the node takes every core
    ({"LOCAL_WORLD_SIZE": "2"}, 8, None, 4),  # two ranks of a node share them
    ({"LOCAL_WORLD_SIZE": "4"}, 2, None, 1),  # more ranks than cores: one each, never zero
    ({"LOCAL_WORLD_SIZE": "2"}, 16, 4, 4),  # the caller's cap
    ({"LOCAL_WORLD_SIZE": "x"}, 8, None, 8),  # a launcher's odd value is not the user's mistake
    ({REWARD_WORKERS: "3"}, 8, None, 3),  # set by hand
    ({REWARD_WORKERS: "6", "LOCAL_WORLD_SIZE": "4"}, 2, 4, 6),  # set by hand wins over share and cap
    ({SANDBOX_WORKERS: "5"}, 8, None, 8),  # another pool's variable does not apply
]


@pytest.mark.parametrize(("env", "cpus", "cap", "expected"), SHARES)
def test_cpu_share(env: dict[str, str], cpus: int, cap: int | None, expected: int) -> None:
    assert cpu_share(REWARD_WORKERS, cap=cap, environ=env, cpus=cpus) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [("many", "CASCADE_REWARD_WORKERS must be a whole number, got 'many'"), ("0", "at least 1")],
)
def test_a_bad_setting_is_one_sentence_at_launch(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_share_variables({REWARD_WORKERS: value})
    check_share_variables({REWARD_WORKERS: "2", SANDBOX_WORKERS: "4"})  # good values pass


class Closeable:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_one_object_per_key_created_once_and_closed_by_close_all() -> None:
    holder: PerProcess[Closeable] = PerProcess("test", close=Closeable.close)
    calls = []

    def create() -> Closeable:
        calls.append(1)
        return Closeable()

    first = holder.get("a", create)
    assert holder.get("a", create) is first and holder.get("b", create) is not first
    assert len(calls) == 2
    holder.close_all()
    assert first.closed and holder.values() == []


def test_racing_threads_keep_one_object_and_close_the_others() -> None:
    holder: PerProcess[Closeable] = PerProcess("test", close=Closeable.close)
    made: list[Closeable] = []
    barrier = threading.Barrier(4)

    def create() -> Closeable:
        made.append(Closeable())
        return made[-1]

    def racer() -> None:
        barrier.wait()
        holder.get("pool", create)

    threads = [threading.Thread(target=racer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    kept = holder.get("pool", create)
    assert [m for m in made if not m.closed] == [kept]  # every loser was closed, the winner was not


def test_a_forked_child_forgets_its_parents_objects() -> None:
    holder: PerProcess[Closeable] = PerProcess("test", close=Closeable.close)
    parent = holder.get("pool", Closeable)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: a fresh object, and closing it leaves the parent's alone
        try:
            child = holder.get("pool", Closeable)
            holder.close_all()
            os.write(write, b"1" if child is not parent and child.closed and not parent.closed else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert holder.get("pool", Closeable) is parent and not parent.closed
