"""Prompt filtering for GRPO: dynamic (zero-variance groups) and per-epoch difficulty filtering.

Both are pure logic here, so they can be tested with constructed rewards and exact counts; the
trainer (:mod:`pipeline.stages.grpo.trainer`) only feeds them gathered rewards and prompt ids.

- **Dynamic filtering.** A group whose ``num_generations`` rewards are all equal carries no learning
  signal: its advantages must be exactly 0. GRPO gets there only approximately (``r - mean`` is not
  exactly 0 in floating point, and dividing by ``std + 1e-4`` can blow the residue up), so
  :func:`zero_variance_groups` finds those groups exactly and the trainer zeroes their advantages.
- **Per-epoch filtering** (Nemotron-Cascade math RL). After each pass over the prompt set, a prompt that
  every scored completion solved ("easy") or none did ("hard") leaves the pool; every excluded prompt
  comes back for the next epoch with probability ``readmit_easy`` / ``readmit_hard``. The draw is a hash
  of (seed, epoch, prompt id), so every process takes the same decision without communicating.
  :class:`AdmittedRepeatSampler` keeps the epoch length constant (HF Trainer's step arithmetic holds)
  while drawing only admitted prompts.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

EASY, HARD = "easy", "hard"


# --------------------------------------------------------------------------------------------------
# Dynamic filtering


def group_totals(rewards_per_func: Any, weights: Any) -> Any:
    """Each completion's weighted total reward, as GRPO sums it; NaN where every reward was None.

    ``weights`` is a sequence or a tensor (TRL's ``reward_weights``).
    """
    import torch

    w = torch.as_tensor(weights, dtype=rewards_per_func.dtype, device=rewards_per_func.device)
    totals = (rewards_per_func * w.unsqueeze(0)).nansum(dim=1)
    totals[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    return totals


def zero_variance_groups(totals: Any, group_size: int) -> Any:
    """A bool per group: True when its scored totals are all equal (or nothing in it was scored).

    ``totals`` holds consecutive groups of ``group_size`` completions (GRPO's layout). NaN entries
    (unscorable completions) are ignored; equality is exact, not within a tolerance.
    """
    import torch

    grouped = totals.view(-1, group_size)
    scored = ~torch.isnan(grouped)
    hi = torch.where(scored, grouped, torch.full_like(grouped, -math.inf)).amax(dim=1)
    lo = torch.where(scored, grouped, torch.full_like(grouped, math.inf)).amin(dim=1)
    return (hi == lo) | ~scored.any(dim=1)


def zero_group_advantages(advantages: Any, zero_groups: Any, group_size: int, start: int) -> Any:
    """``advantages`` (this process's rows, starting at global row ``start``) with zero-variance groups set to 0."""
    rows = zero_groups.repeat_interleave(group_size)[start : start + advantages.shape[0]]
    return advantages.masked_fill(rows.to(advantages.device), 0.0)


# --------------------------------------------------------------------------------------------------
# Per-epoch difficulty filtering


@dataclass
class EpochFilterRule:
    """The decision rule; mirrors the ``epoch_filter`` recipe keys."""

    drop_solved: bool = True
    drop_unsolved: bool = True
    readmit_hard: float = 0.1
    readmit_easy: float = 0.01


def uniform(seed: int, epoch: int, prompt_id: str) -> float:
    """A number in [0, 1) fixed by (seed, epoch, prompt id): the same in every process and on resume."""
    digest = hashlib.sha256(f"{seed}|{epoch}|{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def apply_epoch_filter(
    outcomes: dict[str, tuple[int, int]],
    excluded: dict[str, str],
    all_ids: Sequence[str],
    rule: EpochFilterRule,
    seed: int,
    epoch: int,
) -> tuple[dict[str, str], dict[str, int]]:
    """The excluded prompts for the next epoch, and the counts of this decision.

    ``outcomes`` maps a prompt id to (solved, scored) completions of the epoch just finished;
    ``excluded`` maps the prompts excluded so far to ``"easy"`` or ``"hard"``. A prompt seen this
    epoch is judged on this epoch alone; an excluded prompt not seen keeps its label. Every prompt
    labelled easy or hard is then re-admitted with its probability, or excluded for the next epoch.
    """
    labels = {pid: label for pid, label in excluded.items() if outcomes.get(pid, (0, 0))[1] <= 0}
    counts = dict.fromkeys(
        (
            "seen",
            "solved_all",
            "unsolved_all",
            "mixed",
            "dropped_easy",
            "dropped_hard",
            "readmitted_easy",
            "readmitted_hard",
        ),
        0,
    )
    for pid, (solved, scored) in outcomes.items():
        if scored <= 0:
            continue
        counts["seen"] += 1
        if solved == scored:
            counts["solved_all"] += 1
            if rule.drop_solved:
                labels[pid] = EASY
        elif solved == 0:
            counts["unsolved_all"] += 1
            if rule.drop_unsolved:
                labels[pid] = HARD
        else:
            counts["mixed"] += 1
    readmit = {EASY: rule.readmit_easy, HARD: rule.readmit_hard}
    new_excluded: dict[str, str] = {}
    for pid in sorted(labels):
        label = labels[pid]
        if uniform(seed, epoch, pid) < readmit[label]:
            counts[f"readmitted_{label}"] += 1
        else:
            new_excluded[pid] = label
            if pid not in excluded:
                counts[f"dropped_{label}"] += 1
    counts["excluded_easy"] = sum(label == EASY for label in new_excluded.values())
    counts["excluded_hard"] = sum(label == HARD for label in new_excluded.values())
    unique = set(all_ids)
    counts["admitted"] = len(unique) - len(unique & new_excluded.keys())
    return new_excluded, counts


@dataclass
class EpochFilterState:
    """What the epoch filter remembers: JSON-serialisable, saved in every trainer checkpoint."""

    epochs_done: int = 0
    excluded: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, list[int]] = field(default_factory=dict)  # id -> [solved, scored] this epoch
    groups_in_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def record(self, prompt_id: str, solved: bool, scored: bool) -> None:
        entry = self.outcomes.setdefault(prompt_id, [0, 0])
        entry[0] += int(solved and scored)
        entry[1] += int(scored)

    def close_epoch(
        self, all_ids: Sequence[str], rule: EpochFilterRule, seed: int, partial: bool = False
    ) -> dict[str, Any]:
        """Apply the filter to this epoch's outcomes, start the next epoch, and return the counts."""
        outcomes = {pid: (v[0], v[1]) for pid, v in self.outcomes.items()}
        self.excluded, counts = apply_epoch_filter(
            outcomes, self.excluded, all_ids, rule, seed, self.epochs_done
        )
        record = {"epoch": self.epochs_done, "groups": self.groups_in_epoch, "partial": partial, **counts}
        self.history.append(record)
        self.epochs_done += 1
        self.outcomes, self.groups_in_epoch = {}, 0
        return record

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochFilterState:
        return cls(
            epochs_done=int(data.get("epochs_done", 0)),
            excluded={str(k): str(v) for k, v in data.get("excluded", {}).items()},
            outcomes={str(k): [int(v[0]), int(v[1])] for k, v in data.get("outcomes", {}).items()},
            groups_in_epoch=int(data.get("groups_in_epoch", 0)),
            history=list(data.get("history", [])),
        )


def epoch_order(
    ids: Sequence[str], excluded: dict[str, str], n_prompts: int, seed: int, epoch: int
) -> tuple[list[int], bool]:
    """``n_prompts`` dataset indices for one epoch, drawn from the admitted prompts in a seeded order.

    The admitted indices are shuffled and repeated as often as needed to fill the epoch. When every
    prompt is excluded, the whole set is used (returned flag True) rather than stopping training.
    """
    admitted = [i for i, pid in enumerate(ids) if pid not in excluded]
    fallback = not admitted
    pool = list(range(len(ids))) if fallback else admitted
    rng = random.Random(f"{seed}|epoch|{epoch}")
    order: list[int] = []
    while len(order) < n_prompts:
        chunk = list(pool)
        rng.shuffle(chunk)
        order.extend(chunk)
    return order[:n_prompts], fallback


class AdmittedRepeatSampler:
    """TRL's ``RepeatSampler`` layout over the admitted prompts, with a constant epoch length.

    Yields ``batch_size`` prompts per generation batch, each ``mini_repeat_count`` times (the group),
    each batch ``repeat_count`` times (gradient accumulation × iterations), exactly like TRL's sampler;
    which prompts fill the ``len(ids) // batch_size`` batches of an epoch is read from ``state`` when
    the epoch starts, so the order is a function of (seed, completed epochs, excluded set) alone and a
    resumed run replays it exactly.
    """

    def __init__(
        self,
        ids: Sequence[str],
        state: EpochFilterState,
        mini_repeat_count: int,
        batch_size: int,
        repeat_count: int,
        seed: int,
    ):
        self.ids, self.state, self.seed = list(ids), state, seed
        self.mini_repeat_count, self.batch_size, self.repeat_count = (
            mini_repeat_count,
            batch_size,
            repeat_count,
        )
        self.num_batches = len(self.ids) // batch_size

    @property
    def prompts_per_epoch(self) -> int:
        return self.num_batches * self.batch_size

    def __iter__(self) -> Iterator[int]:
        order, fallback = epoch_order(
            self.ids, self.state.excluded, self.prompts_per_epoch, self.seed, self.state.epochs_done
        )
        if fallback:
            log.warning(
                "epoch filter excluded every prompt; epoch %d draws from the whole set",
                self.state.epochs_done,
            )
        for b in range(self.num_batches):
            chunk = order[b * self.batch_size : (b + 1) * self.batch_size]
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        yield index

    def __len__(self) -> int:
        return self.prompts_per_epoch * self.mini_repeat_count * self.repeat_count
