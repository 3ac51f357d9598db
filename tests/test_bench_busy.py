"""The GPU-busy sampler of the bench scripts: the steady share leaves out start-up and the first step."""

from types import SimpleNamespace

import pytest

from bench.profiling import covered, merged
from bench.stage import GPUBusy


@pytest.mark.parametrize(
    ("samples", "marks", "whole", "steady"),
    [
        # start-up idle, the first step compiling at 10%, then 60% until training ends, idle teardown
        ([(0, 0), (1, 10), (2, 10), (3, 60), (4, 60), (5, 0)], (2.5, 4.5), 140 / 6, 60.0),
        ([(0, 50), (1, 70)], (None, None), 60.0, None),  # no step ended: no steady window
        ([(0, 50), (1, 70)], (0.5, None), 60.0, 70.0),  # training still running: up to the last sample
        ([], (0.0, 1.0), None, None),  # no nvidia-smi
    ],
)
def test_steady_window(samples, marks, whole, steady) -> None:
    busy = GPUBusy()
    busy.samples = list(samples)
    busy.steady_from, busy.steady_until = marks
    assert busy.mean == (pytest.approx(whole) if whole is not None else None)
    assert busy.steady == (pytest.approx(steady) if steady is not None else None)


def test_callback_marks_after_the_first_step_until_the_end() -> None:
    busy = GPUBusy()
    cb = busy.callback()
    args = state = control = SimpleNamespace()
    assert busy.steady_from is None
    cb.on_step_end(args, state, control)
    first = busy.steady_from
    cb.on_step_end(args, state, control)  # later steps keep the first mark
    cb.on_train_end(args, state, control)
    assert first is not None and busy.steady_from == first and busy.steady_until >= first


@pytest.mark.parametrize(
    ("intervals", "union"),
    [
        ([], []),
        ([(0, 2), (1, 3)], [(0, 3)]),  # overlapping kernels on two streams count once
        ([(5, 6), (0, 1)], [(0, 1), (5, 6)]),  # sorted
        ([(0, 4), (1, 2)], [(0, 4)]),  # contained
        ([(0, 1), (1, 2)], [(0, 2)]),  # touching
    ],
)
def test_busy_intervals_are_their_union(intervals, union) -> None:
    assert merged(intervals) == union


@pytest.mark.parametrize(
    ("window", "covered_us"),
    [((0, 10), 4.0), ((1, 6), 2.0), ((2, 5), 0.0), ((6, 20), 1.0), ((7, 20), 0.0)],
)
def test_busy_time_inside_a_window(window, covered_us) -> None:
    assert covered([(0, 2), (5, 7)], window) == covered_us
