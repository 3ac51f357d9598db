"""GRPO prompt filters as pure functions: constructed rewards and outcomes, exact counts."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.stages.grpo.filters import (
    EASY,
    HARD,
    AdmittedRepeatSampler,
    EpochFilterRule,
    EpochFilterState,
    apply_epoch_filter,
    epoch_order,
    group_totals,
    uniform,
    zero_group_advantages,
    zero_variance_groups,
)

NAN = math.nan

# --------------------------------------------------------------------------------------------------
# Dynamic filtering

ZERO_VARIANCE_CASES = [
    # (group rewards, zero variance?)
    ([1.0, 1.0, 1.0, 1.0], True),  # every completion solved: no signal
    ([0.0, 1.0, 0.0, 1.0], False),  # mixed outcomes: the group teaches something
    ([NAN, NAN, NAN, NAN], True),  # nothing scored (all rewards None, e.g. timeouts)
    ([0.1, 0.1, 0.1, 0.1], True),  # equal non-integer scores (GRPO's float residue case)
    ([1.0, NAN, 1.0, 1.0], True),  # unscored completions are ignored, the rest are equal
    ([1.0, NAN, 0.0, 1.0], False),  # unscored ignored, the rest differ
    ([0.0, 0.0, 0.0, 1e-7], False),  # equality is exact, not within a tolerance
    ([-10.5, -10.5, -10.5, -10.5], True),  # a whole group penalised alike (language mixing)
]


@pytest.mark.parametrize(("rewards", "expected"), ZERO_VARIANCE_CASES)
def test_zero_variance_groups_single(rewards: list[float], expected: bool) -> None:
    assert zero_variance_groups(torch.tensor(rewards), 4).tolist() == [expected]


def test_zero_variance_groups_counts_exactly_over_a_batch() -> None:
    totals = torch.tensor([r for rewards, _ in ZERO_VARIANCE_CASES for r in rewards])
    zero = zero_variance_groups(totals, 4)
    assert zero.tolist() == [expected for _, expected in ZERO_VARIANCE_CASES]
    assert int(zero.sum()) == 5 and zero.numel() == 8


def test_group_totals_weights_and_unscorable_rows() -> None:
    per_func = torch.tensor([[1.0, NAN], [NAN, NAN], [0.5, 1.0], [0.0, 0.0]])
    totals = group_totals(per_func, [1.0, 2.0])
    # a None term counts as 0 (TRL's nansum); a row with no score at all stays NaN
    assert totals[0] == 1.0 and math.isnan(totals[1]) and totals[2] == 2.5 and totals[3] == 0.0


def test_grpo_normalisation_leaves_a_residue_that_zeroing_removes() -> None:
    from trl.trainer.utils import nanstd

    # GRPO's advantages of a constant group, exactly as GRPOTrainer computes them (float32, group scaling)
    rewards = torch.full((8,), 0.1, dtype=torch.float32)
    mean = torch.nanmean(rewards.view(-1, 8), dim=1).repeat_interleave(8)
    std = nanstd(rewards.view(-1, 8), dim=1).repeat_interleave(8)
    advantages = (rewards - mean) / (std + 1e-4)
    assert advantages.abs().max() > 0  # not exactly 0: this group would still move the policy
    fixed = zero_group_advantages(advantages, zero_variance_groups(rewards, 8), 8, start=0)
    assert torch.equal(fixed, torch.zeros(8))


def test_zero_group_advantages_uses_this_process_rows() -> None:
    # two processes, 3 groups of 2 rows (6 rows); process 1 holds global rows 3..5
    zero = torch.tensor([False, True, False])
    local = torch.tensor([0.5, -0.5, 0.25])  # rows 3 (group 1), 4 and 5 (group 2)
    assert zero_group_advantages(local, zero, 2, start=3).tolist() == [0.0, -0.5, 0.25]


# --------------------------------------------------------------------------------------------------
# Per-epoch filtering

IDS = ["a", "b", "c", "d", "e", "f", "g"]
OUTCOMES = {"a": (4, 4), "b": (0, 4), "c": (2, 4), "d": (0, 0)}  # a easy, b hard, c mixed, d unscored
EXCLUDED = {"e": HARD, "f": EASY}  # excluded earlier, not seen this epoch

EPOCH_FILTER_CASES = [
    # (rule, expected excluded, expected counts)
    (  # nothing comes back: easy and hard prompts of this epoch join the earlier ones
        EpochFilterRule(readmit_hard=0.0, readmit_easy=0.0),
        {"a": EASY, "b": HARD, "e": HARD, "f": EASY},
        dict(seen=3, solved_all=1, unsolved_all=1, mixed=1, dropped_easy=1, dropped_hard=1,
             readmitted_easy=0, readmitted_hard=0, excluded_easy=2, excluded_hard=2, admitted=3),
    ),
    (  # everything comes back, old and new
        EpochFilterRule(readmit_hard=1.0, readmit_easy=1.0),
        {},
        dict(seen=3, solved_all=1, unsolved_all=1, mixed=1, dropped_easy=0, dropped_hard=0,
             readmitted_easy=2, readmitted_hard=2, excluded_easy=0, excluded_hard=0, admitted=7),
    ),
    (  # hard prompts all come back, easy ones never
        EpochFilterRule(readmit_hard=1.0, readmit_easy=0.0),
        {"a": EASY, "f": EASY},
        dict(seen=3, solved_all=1, unsolved_all=1, mixed=1, dropped_easy=1, dropped_hard=0,
             readmitted_easy=0, readmitted_hard=2, excluded_easy=2, excluded_hard=0, admitted=5),
    ),
    (  # solved prompts are kept (drop_solved off) but still counted
        EpochFilterRule(drop_solved=False, readmit_hard=0.0, readmit_easy=0.0),
        {"b": HARD, "e": HARD, "f": EASY},
        dict(seen=3, solved_all=1, unsolved_all=1, mixed=1, dropped_easy=0, dropped_hard=1,
             readmitted_easy=0, readmitted_hard=0, excluded_easy=1, excluded_hard=2, admitted=4),
    ),
    (  # neither kind is dropped: only earlier exclusions remain
        EpochFilterRule(drop_solved=False, drop_unsolved=False, readmit_hard=0.0, readmit_easy=0.0),
        {"e": HARD, "f": EASY},
        dict(seen=3, solved_all=1, unsolved_all=1, mixed=1, dropped_easy=0, dropped_hard=0,
             readmitted_easy=0, readmitted_hard=0, excluded_easy=1, excluded_hard=1, admitted=5),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "excluded", "counts"), EPOCH_FILTER_CASES)
def test_apply_epoch_filter_exact_counts(rule: EpochFilterRule, excluded: dict, counts: dict) -> None:
    new, got = apply_epoch_filter(OUTCOMES, EXCLUDED, IDS, rule, seed=0, epoch=0)
    assert new == excluded
    assert got == counts


def test_excluded_prompt_seen_again_is_judged_on_this_epoch() -> None:
    # "e" was excluded as hard; drawn again (e.g. the whole set was excluded), it was now half solved
    new, counts = apply_epoch_filter({"e": (2, 4)}, {"e": HARD}, ["e"], EpochFilterRule(0.0, 0.0), 0, 3)
    assert new == {} and counts["mixed"] == 1 and counts["admitted"] == 1


def test_readmission_probabilities_are_seeded_and_per_prompt() -> None:
    ids = [f"h{i}" for i in range(2000)] + [f"e{i}" for i in range(2000)]
    outcomes = {pid: ((0, 8) if pid.startswith("h") else (8, 8)) for pid in ids}
    rule = EpochFilterRule(readmit_hard=0.1, readmit_easy=0.01)
    new, counts = apply_epoch_filter(outcomes, {}, ids, rule, seed=7, epoch=2)
    again, counts_again = apply_epoch_filter(outcomes, {}, ids, rule, seed=7, epoch=2)
    other_epoch, _ = apply_epoch_filter(outcomes, {}, ids, rule, seed=7, epoch=3)
    # the same (seed, epoch) gives the same decision in every process and on resume
    assert new == again and counts == counts_again
    # exactly the prompts whose draw falls under their probability come back
    expected_hard = sum(uniform(7, 2, f"h{i}") < 0.1 for i in range(2000))
    expected_easy = sum(uniform(7, 2, f"e{i}") < 0.01 for i in range(2000))
    assert counts["readmitted_hard"] == expected_hard and counts["readmitted_easy"] == expected_easy
    # and the draw behaves like the probabilities (5 standard deviations either side)
    assert 133 <= expected_hard <= 267 and 0 <= expected_easy <= 43
    assert counts["admitted"] == expected_hard + expected_easy
    assert other_epoch != new  # another epoch re-admits other prompts


def test_epoch_filter_state_closes_epochs_and_round_trips() -> None:
    state = EpochFilterState()
    for pid, solved in [("a", True), ("a", True), ("b", False), ("b", False), ("c", True), ("c", False)]:
        state.record(pid, solved, scored=True)
    state.record("d", False, scored=False)  # an unscored completion counts for nothing
    state.groups_in_epoch = 3
    record = state.close_epoch(
        ["a", "b", "c", "d"], EpochFilterRule(readmit_hard=0.0, readmit_easy=0.0), seed=1
    )
    assert record["epoch"] == 0 and record["groups"] == 3 and record["seen"] == 3 and record["admitted"] == 2
    assert state.excluded == {"a": EASY, "b": HARD}
    assert state.epochs_done == 1 and state.outcomes == {} and state.groups_in_epoch == 0
    assert EpochFilterState.from_dict(state.to_dict()) == state


# --------------------------------------------------------------------------------------------------
# Sampler


def _sampler(excluded: dict[str, str] | None = None, epochs_done: int = 0) -> AdmittedRepeatSampler:
    state = EpochFilterState(epochs_done=epochs_done, excluded=excluded or {})
    ids = [f"p{i}" for i in range(10)]
    return AdmittedRepeatSampler(ids, state, mini_repeat_count=2, batch_size=3, repeat_count=2, seed=5)


def test_sampler_layout_matches_trl_repeat_sampler() -> None:
    out = list(_sampler())
    assert len(out) == len(_sampler()) == 3 * 3 * 2 * 2  # 3 batches of 3 prompts, G=2, 2 repeats
    for b in range(3):
        block = out[b * 12 : (b + 1) * 12]
        assert block[:6] == block[6:]  # the generation batch is repeated whole
        assert all(block[i] == block[i + 1] for i in range(0, 6, 2))  # each prompt G times in a row
    assert len({out[i] for i in range(0, 36, 2)}) == 9  # 9 distinct prompts of the 10 in one epoch


def test_sampler_keeps_epoch_length_and_draws_admitted_only() -> None:
    excluded = {f"p{i}": HARD for i in range(6)}  # 4 of 10 admitted
    out = list(_sampler(excluded))
    assert len(out) == 36  # epoch length unchanged (HF Trainer's max_steps arithmetic)
    assert set(out) == {6, 7, 8, 9}
    assert sorted(out.count(i) // 4 for i in range(6, 10)) == [2, 2, 2, 3]  # 9 draws over 4 prompts


def test_sampler_order_is_a_function_of_state() -> None:
    assert list(_sampler()) == list(_sampler())  # replayable on resume
    assert list(_sampler()) != list(_sampler(epochs_done=1))  # each epoch its own order


def test_sampler_falls_back_to_all_prompts_when_all_are_excluded() -> None:
    order, fallback = epoch_order(["a", "b"], {"a": EASY, "b": HARD}, 2, seed=0, epoch=0)
    assert fallback and sorted(order) == [0, 1]
