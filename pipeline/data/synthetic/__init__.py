"""Builtin synthetic tasks: small, verifiable problems a tiny model learns in minutes, with no downloads.

Five tasks cover the cascade's domains: ``math`` (arithmetic and word problems, ``\\boxed{}`` answers),
``code`` (Python functions and stdin/stdout programs with tests), ``instruction`` (IFEval-style
constraints), ``chat`` (chosen/rejected pairs for the reward model) and ``swe`` (unified-diff bug fixes).

Every row has ``id``, ``prompt``, ``reasoning`` (a short thinking trace), ``response`` (the SFT answer)
and ``flawed``, plus the columns its domain's reward needs (:func:`task_columns`). A ``flaw_rate`` share
of the rows carries a deliberately wrong response (wrong answer, failing code, broken constraint, bad
patch, the rejected chat answer), so that SFT leaves headroom for RL and flawed rows can be filtered.

Guarantees:

- Deterministic: the rows depend only on (task, split, n, seed, options); no global random state.
- Train and test are disjoint by construction: a problem's split is a hash of its identity (its group),
  so no seed, size or option can put a test problem into train.
- Problems are unique within a call; asking for more than a split's problem space holds is a
  ValueError naming the options that enlarge it (there is no sampling with repeats).
- Exactly ``round(flaw_rate * n)`` rows are flawed at random, at positions drawn from the seed; a
  problem's rendering does not depend on the seed, so the ``n`` first rows of a larger call are the same
  problems. A task's ``traps`` (math stories, code templates, instructions) add systematic mistakes: a teacher that
  gets those problems wrong most of the time, not just at random.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

from pipeline.data.synthetic import chat, code, instruction, math, swe
from pipeline.data.synthetic.base import SPLITS, TEST_PERCENT, Task, split_of, stable_hash

__all__ = ["COMMON_COLUMNS", "SPLITS", "TASKS", "TEST_PERCENT", "Task", "corpus", "generate", "task_columns"]

logger = logging.getLogger(__name__)

COMMON_COLUMNS = ("id", "prompt", "reasoning", "response", "flawed")
TASKS: dict[str, Task] = {m.TASK.name: m.TASK for m in (math, code, instruction, chat, swe)}
# Consecutive draws that yield no new problem of the split before the problem space counts as used up.
# Test problems are 1 draw in 5, so this is far beyond any streak of bad luck in a space with room left.
MAX_MISSES = 20_000


def _task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown synthetic task {name!r}; known tasks: {', '.join(TASKS)}") from None


def task_columns(task: str) -> tuple[str, ...]:
    """The columns every row of ``task`` has: the common ones, then the domain's own."""
    return COMMON_COLUMNS + _task(task).columns


def generate(task: str, split: str, n: int, seed: int = 0, **options: Any) -> list[dict[str, Any]]:
    """``n`` unique rows of ``task`` from ``split`` ("train" or "test"), reproducible from the arguments.

    ``options`` are the task's knobs (``flaw_rate`` for every task; see ``TASKS[task].options``).
    Raises ValueError for an unknown task, split or option, a bad option value, or an ``n`` larger
    than the split's problem space under these options.
    """
    spec = _task(task)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for synthetic task '{task}'; use 'train' or 'test'")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"the number of rows must be a non-negative integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"the seed must be an integer, got {seed!r}")
    opts = spec.resolve(options)
    rng = random.Random(f"{task}-{split}-{seed}")
    flawed = set(random.Random(f"{task}-{split}-{seed}-flaws").sample(range(n), round(opts["flaw_rate"] * n)))
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    misses = 0
    while len(rows) < n:
        problem = spec.sample(rng, opts)
        if problem.key in seen or split_of(task, problem.group) != split:
            misses += 1
            if misses > MAX_MISSES:
                raise ValueError(
                    f"synthetic task '{task}' ran out of unique {split} problems after {len(rows)} of {n} rows; "
                    f"ask for fewer rows or enlarge the problem space ({spec.widen})"
                )
            continue
        seen.add(problem.key)
        row = spec.render(problem, len(rows) in flawed, opts)
        if row is None:  # a problem these options cannot render: skip it like a duplicate
            misses += 1
            continue
        misses = 0
        rows.append(
            {
                "id": f"{task}-{split}-{stable_hash(task, problem.key):016x}",
                **{k: row[k] for k in ("prompt", "reasoning", "response")},
                "flawed": row.get("flawed", len(rows) in flawed),
                **{k: row[k] for k in spec.columns},
            }
        )
    logger.debug("generated %d %s rows of synthetic task '%s' (seed %d)", n, split, task, seed)
    return rows


# Qwen3's chat format, so that the tokenizer learns merges for the template's own pieces.
_TURN = "<|im_start|>user\n{prompt} {mode}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n"


def corpus(seed: int = 0, n_per_task: int = 400) -> Iterator[str]:
    """Representative text of every task's train split, to train the builtin tokenizer on.

    Yields, per row, the row rendered as a chat turn in both thinking modes, then every other text
    column (chosen/rejected answers, code, diffs, issues, tests). Deterministic in its arguments.
    """
    for name in TASKS:
        for row in generate(name, "train", n_per_task, seed=seed):
            yield _TURN.format(
                prompt=row["prompt"],
                mode="/think",
                answer=f"<think>\n{row['reasoning']}\n</think>\n\n{row['response']}",
            )
            yield _TURN.format(prompt=row["prompt"], mode="/no_think", answer=row["response"])
            for column in TASKS[name].columns:
                value = row[column]
                if isinstance(value, str) and value:
                    yield value
