r"""Answer classes: which of a prompt's n samples give the same answer, by the domain's own verifier.

Majority voting is only as good as its notion of "the same answer". Comparing strings would split
``\frac{1}{2}``, ``0.5`` and ``2/4`` into three minorities, and two programs that differ in a
variable name would never agree. So answers are grouped by the verifier that scores them:

- **math**: the final answer as the math reward finds it (the last ``\boxed{}`` after ``</think>``,
  else the reward's fallbacks), compared with the math reward itself (math-verify through its fast
  path and killable worker pool). Classes are built greedily in sample order: the first answer not yet
  in a class founds one, and every later answer the reward finds equal to it joins. An answer equal to
  two founders (math-verify's equivalence need not be transitive) joins the earlier one.
- **code**: the program as the code reward finds it, run in the code sandbox on the inputs of the
  row's tests (``majority.code_inputs``; their expected outputs are never read). Programs whose
  outputs are identical on every input form a class. A program that fails on every input has no answer;
  rows whose tests carry no inputs (``assert`` tests: HumanEval, MBPP) cannot be grouped, and each of
  their samples is a class of its own.

A sample without an answer belongs to no class. :func:`majority_pick` then takes the largest class;
**ties go to the class whose first member came first** (the lowest sample index), so the same
samples always give the same pick; the pick is that first member. :func:`majority_among` applies the
same vote to a subset of the samples (a GenSelect group).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

GROUPED_REWARDS = ("math", "code")  # scorers whose answers can be grouped into classes

Classes = list[int | None]  # per sample of one prompt: its class (numbered in order of first appearance)


@dataclass(frozen=True)
class Grouping:
    """The classes of every prompt's samples, and what grouping them cost."""

    classes: list[Classes]
    grouped: list[bool]  # per prompt: False when its answers could not be grouped (no test inputs)
    seconds: float


def majority_pick(classes: Sequence[int | None]) -> int | None:
    """The sample the vote picks: the first member of the largest class; ties go to the class seen
    first. None when no sample has an answer."""
    return majority_among(range(len(classes)), classes)


def majority_among(candidates: Sequence[int], classes: Sequence[int | None]) -> int | None:
    """The candidate the prompt's vote prefers among ``candidates`` (sample indices): a member of the
    class with the most votes over *all* the prompt's samples (ties: the class seen first), the one
    with the lowest index. None when no candidate has an answer.

    Over all samples it is :func:`majority_pick`; a GenSelect group whose choice is malformed falls
    back to it, so a tournament where every choice falls back picks exactly what majority picks.
    """
    size: dict[int, int] = {}
    first: dict[int, int] = {}
    for i, label in enumerate(classes):
        if label is not None:
            size[label] = size.get(label, 0) + 1
            first.setdefault(label, i)
    answered = [i for i in candidates if classes[i] is not None]
    if not answered:
        return None
    return min(answered, key=lambda i: (-size[classes[i]], first[classes[i]], i))  # type: ignore[index]


def classes_by_key(keys: Sequence[Hashable | None]) -> Classes:
    """Classes of samples whose keys are equal (None: no answer), numbered in order of first appearance."""
    labels: dict[Hashable, int] = {}
    return [None if key is None else labels.setdefault(key, len(labels)) for key in keys]


Equal = Callable[[list[tuple[str, str]]], list[bool]]
"""Compares (founder, answer) pairs in one batched call: is the answer equal to the founder?"""


def classes_by_equivalence(answers: Sequence[Sequence[str | None]], equal: Equal) -> list[Classes]:
    """Greedy classes of every prompt's answers under ``equal``, one batched comparison per founder level.

    Identical strings share a class without a comparison. Each pass takes, in every prompt, the first
    answer without a class as a founder and compares it with the prompt's remaining answers; a prompt
    with a thousand distinct answers costs as many passes, but each pass is one call for all prompts.
    """
    out: list[Classes] = [[None] * len(row) for row in answers]
    pending: list[list[str]] = []  # per prompt: distinct answers without a class, in order
    for row in answers:
        distinct: list[str] = []
        for answer in row:
            if answer is not None and answer not in distinct:
                distinct.append(answer)
        pending.append(distinct)
    label_of: list[dict[str, int]] = [{} for _ in answers]
    while any(pending):
        pairs: list[tuple[str, str]] = []
        owners: list[tuple[int, str]] = []
        for p, distinct in enumerate(pending):
            if not distinct:
                continue
            founder, rest = distinct[0], distinct[1:]
            label_of[p][founder] = len(set(label_of[p].values()))
            pairs += [(founder, answer) for answer in rest]
            owners += [(p, answer) for answer in rest]
        verdicts = equal(pairs) if pairs else []
        joined: dict[int, set[str]] = {}
        for (p, answer), same in zip(owners, verdicts, strict=True):
            if same:
                label_of[p][answer] = label_of[p][pending[p][0]]
                joined.setdefault(p, set()).add(answer)
        for p, distinct in enumerate(pending):
            if distinct:
                pending[p] = [a for a in distinct[1:] if a not in joined.get(p, set())]
    for p, row in enumerate(answers):
        out[p] = [None if a is None else label_of[p][a] for a in row]
    return out


# --------------------------------------------------------------------------------------------------
# The domains' verifiers


def _fallbacks(value: Any) -> tuple[str, ...]:
    """The math reward's ``fallbacks`` argument as a tuple of names (as ``rewards.math`` reads it)."""
    from rewards.math_answer import DEFAULT_FALLBACKS

    if value is None:
        return DEFAULT_FALLBACKS
    if value in ("", "none"):
        return ()
    return tuple(n.strip() for n in value.split(",")) if isinstance(value, str) else tuple(value)


def math_answers(completions: Sequence[Any], args: dict[str, Any]) -> list[str | None]:
    """The final answer of each completion as the math reward finds it (None: no answer)."""
    from rewards.common import final_answer
    from rewards.math import MAX_ANSWER_CHARS
    from rewards.math_answer import extract_answer

    order = _fallbacks(args.get("fallbacks"))
    out: list[str | None] = []
    for completion in completions:
        text = final_answer(completion)
        answer = extract_answer(text, order) if text is not None else None
        out.append(answer.strip() if answer and len(answer) <= MAX_ANSWER_CHARS else None)
    return out


def math_equal(args: dict[str, Any]) -> Equal:
    r"""The math reward as a comparison of two answers: the founder boxed as the reference, the other
    boxed as the completion (so both are read exactly as they were found)."""
    from rewards.math import math_reward

    options = {k: v for k, v in args.items() if k in ("timeout_s", "batch_timeout_s")}

    def equal(pairs: list[tuple[str, str]]) -> list[bool]:
        scores = math_reward(
            [f"\\boxed{{{answer}}}" for _, answer in pairs],
            [f"\\boxed{{{founder}}}" for founder, _ in pairs],
            fallbacks=(),
            **options,
        )
        return [s >= 1.0 for s in scores]

    return equal


def group_answers(
    reward: str, args: dict[str, Any], rows: Sequence[dict[str, Any]], completions: Sequence[Sequence[Any]],
    code_inputs: str = "tests",
) -> Grouping:  # fmt: skip
    """Classes of each prompt's samples by the verifier of scorer ``reward`` (one of GROUPED_REWARDS)."""
    started = time.perf_counter()
    if reward == "math":
        answers = [math_answers(comps, args) for comps in completions]
        classes = classes_by_equivalence(answers, math_equal(args))
        grouped = [True] * len(rows)
    elif reward == "code":
        from rewards.code_outputs import has_inputs, program_outputs

        flat_rows = [row for row, comps in zip(rows, completions, strict=True) for _ in comps]
        flat = [c for comps in completions for c in comps]
        outputs = program_outputs(flat, [row.get(code_inputs) for row in flat_rows], **args)
        classes, i = [], 0
        for comps in completions:
            classes.append(classes_by_key(outputs[i : i + len(comps)]))
            i += len(comps)
        grouped = [has_inputs(row.get(code_inputs)) for row in rows]
        # a row that cannot be grouped: every sample is its own class, so the vote takes the first
        classes = [c if ok else list(range(len(c))) for c, ok in zip(classes, grouped, strict=True)]
    else:
        raise ValueError(f"scorer '{reward}' has no answer grouping (known: {', '.join(GROUPED_REWARDS)})")
    return Grouping(classes, grouped, time.perf_counter() - started)
