"""Tests of the regression gate: the statistics, the pairing of prompts and the verdicts of check_stage."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from pipeline.gates import (
    GateResult,
    check_stage,
    compare_records,
    latest_records,
    mcnemar_exact,
    paired_bootstrap_ci,
    paired_permutation_test,
)


def binom_two_sided(b: int, c: int) -> float:
    """The textbook exact McNemar p-value, summed term by term with math.comb."""
    n, k = b + c, min(b, c)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


# --------------------------------------------------------------------------------------------------
# McNemar
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        (0, 0, 1.0),  # no discordant prompt: nothing changed
        (10, 0, 2 * 0.5**10),  # ten prompts lost, none gained
        (0, 10, 2 * 0.5**10),  # symmetric in b and c
        (5, 5, 1.0),  # balanced discordance
        (1, 0, 1.0),  # one discordant prompt can never be significant
        (3, 7, binom_two_sided(3, 7)),
        (12, 1, binom_two_sided(12, 1)),
        (40, 15, binom_two_sided(40, 15)),
        (6, 0, 0.03125),  # 2 / 64: the smallest all-one-way count below 0.05
        (5, 0, 0.0625),  # 2 / 32: not significant at 0.05
    ],
)
def test_mcnemar_exact_matches_binomial(b: int, c: int, expected: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)
    assert mcnemar_exact(c, b) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_exact_large_counts_use_log_space_accurately() -> None:
    # Above 10 000 discordant prompts the sum runs in log space; compare with an exact integer sum
    # built by the Pascal recurrence C(n, i + 1) = C(n, i) * (n - i) / (i + 1).
    b, c = 5200, 4900
    n, term, total = b + c, 1, 1
    for i in range(c):
        term = term * (n - i) // (i + 1)
        total += term
    assert mcnemar_exact(b, c) == pytest.approx(2 * total / 2**n, rel=1e-9)


def test_mcnemar_exact_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        mcnemar_exact(-1, 3)


# --------------------------------------------------------------------------------------------------
# Permutation test and bootstrap interval
# --------------------------------------------------------------------------------------------------


def brute_force_sign_flip(before: list[float], after: list[float]) -> float:
    """Enumerate every sign vector over all differences (zeros included) by itertools.product."""
    d = [a - b for a, b in zip(after, before, strict=True)]
    observed = abs(sum(d))
    flips = list(itertools.product((1, -1), repeat=len(d)))
    hits = sum(abs(sum(s * x for s, x in zip(signs, d, strict=True))) >= observed - 1e-12 for signs in flips)
    return hits / len(flips)


RNG = np.random.default_rng(7)


@pytest.mark.parametrize(
    ("before", "after", "check"),
    [
        # identical scores: no difference to test
        ([0.2, 0.5, 1.0], [0.2, 0.5, 1.0], lambda p: p == 1.0),
        # one non-zero difference: both of its signs are as extreme as observed
        ([0.0, 0.5], [0.0, 1.0], lambda p: p == 1.0),
        # a large consistent shift over 60 prompts (all differences positive): Monte Carlo floor 1 / 10 001
        (list(RNG.random(60) * 0.5), [0.9] * 60, lambda p: p == pytest.approx(1 / 10_001)),
        # a consistent shift over 8 prompts, exact: only the two all-same-sign flips reach it
        ([0.0] * 8, [0.25] * 8, lambda p: p == pytest.approx(2 / 256)),
    ],
)
def test_paired_permutation_test_cases(before: list[float], after: list[float], check) -> None:
    assert check(paired_permutation_test(before, after))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_permutation_exact_matches_brute_force(seed: int) -> None:
    # 10 prompts with mean-of-4-sample scores, some ties (zero differences), mixed signs.
    rng = np.random.default_rng(seed)
    before = list(rng.integers(0, 5, size=10) / 4)
    after = list(rng.integers(0, 5, size=10) / 4)
    assert paired_permutation_test(before, after) == pytest.approx(brute_force_sign_flip(before, after))


def test_paired_permutation_monte_carlo_agrees_with_exact_and_is_deterministic() -> None:
    # 16 non-zero differences: exact enumeration (65 536 flips) versus 20 000 random flips.
    rng = np.random.default_rng(3)
    before = rng.random(16)
    after = before + rng.normal(0.08, 0.2, size=16)
    exact = paired_permutation_test(before, after)
    sampled = paired_permutation_test(before, after, exact_max=0, n_resamples=20_000, seed=5)
    assert abs(exact - sampled) < 0.02
    assert sampled == paired_permutation_test(before, after, exact_max=0, n_resamples=20_000, seed=5)


def test_paired_permutation_rejects_unpaired_input() -> None:
    with pytest.raises(ValueError, match="equal length"):
        paired_permutation_test([0.1, 0.2], [0.1])


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ([0.1, 0.5, 0.7, 0.2], [0.3, 0.7, 0.9, 0.4], (0.2, 0.2)),  # constant shift: a point interval
        ([0.0] * 50 + [1.0] * 50, [0.0] * 50 + [1.0] * 50, (0.0, 0.0)),  # no change
    ],
)
def test_paired_bootstrap_ci_degenerate_cases(before, after, expected) -> None:
    assert paired_bootstrap_ci(before, after) == pytest.approx(expected)


def test_paired_bootstrap_ci_covers_the_shift_and_is_deterministic() -> None:
    # 400 prompts shifted by +0.1 with noise: the 95% interval brackets 0.1 and excludes 0.
    rng = np.random.default_rng(11)
    before = rng.random(400)
    after = before + 0.1 + rng.normal(0, 0.1, 400)
    low, high = paired_bootstrap_ci(before, after, seed=4)
    assert 0.0 < low < 0.1 < high
    assert (low, high) == paired_bootstrap_ci(before, after, seed=4)


# --------------------------------------------------------------------------------------------------
# Eval records and check_stage
# --------------------------------------------------------------------------------------------------


def record(
    domain: str,
    scores: list[float],
    *,
    ids: list[str] | None = None,
    samples_per_prompt: int = 1,
    stderr: bool = True,
    metric: str = "accuracy",
) -> dict:
    """An eval-file benchmark record (schemas.md) from per-prompt scores."""
    ids = ids or [f"{domain}-{i:04d}" for i in range(len(scores))]
    mean = sum(scores) / len(scores)
    samples = [
        {"id": i, "prompt": "…", "completions": ["…"] * samples_per_prompt, "scores": [s], "score": s}
        for i, s in zip(ids, scores, strict=True)
    ]
    out = {
        "domain": domain,
        "score": mean,
        "n": len(scores),
        "samples_per_prompt": samples_per_prompt,
        "metric": metric,
        "samples": samples,
    }
    if stderr:
        out["stderr"] = float(np.std(scores) / math.sqrt(len(scores)))
    return out


def flips(n: int, correct_before: int, lost: int, gained: int = 0) -> tuple[list[float], list[float]]:
    """0/1 scores of n prompts: `correct_before` right before; `lost` of them wrong after, `gained` new."""
    before = [1.0] * correct_before + [0.0] * (n - correct_before)
    after = list(before)
    for i in range(lost):
        after[i] = 0.0
    for i in range(gained):
        after[correct_before + i] = 1.0
    return before, after


DOMAINS = {"ifb": "if", "gsm": "math", "lcb": "code", "chat_rm": "chat"}

IF_BIG_DROP = flips(100, 62, lost=12)  # 0.62 → 0.50, McNemar b=12, c=0
IF_FEW = flips(10, 8, lost=2)  # 0.8 → 0.6 but only 2 discordant prompts
IF_SMALL_SIG = flips(2000, 1200, lost=30)  # -1.5 points, b=30, c=0: significant, within 2 points
IF_MID_DROP = flips(400, 240, lost=20)  # -5 points, b=20, c=0
MATH_GAIN = flips(200, 60, lost=0, gained=30)  # 0.30 → 0.45
MATH_FLAT = flips(200, 60, lost=5, gained=6)  # +0.5 points, not significant
CODE_CRASH = flips(100, 50, lost=40)  # untrained domain collapsing


def evals(**benchmarks: tuple[list[float], list[float]]) -> tuple[dict, dict]:
    before = {name: record(DOMAINS[name], pair[0]) for name, pair in benchmarks.items()}
    after = {name: record(DOMAINS[name], pair[1]) for name, pair in benchmarks.items()}
    return before, after


GATE_CASES = [
    pytest.param(
        # a drop beyond the tolerance that McNemar finds significant: the stage regressed
        dict(evals=evals(ifb=IF_BIG_DROP), trained={"if"}, domain="math", policy="stop"),
        dict(verdict="regressed", action="stop", checks={"ifb": ("regressed", "mcnemar_exact")}),
        id="drop-beyond-tolerance-significant",
    ),
    pytest.param(
        # 20 points lost on 10 prompts is within noise (p = 0.5): pass
        dict(evals=evals(ifb=IF_FEW), trained={"if"}, domain="math", policy="stop"),
        dict(verdict="pass", action="continue", checks={"ifb": ("pass", "mcnemar_exact")}),
        id="drop-beyond-tolerance-not-significant",
    ),
    pytest.param(
        # a significant 1.5-point drop is inside the 2-point tolerance: pass
        dict(evals=evals(ifb=IF_SMALL_SIG), trained={"if"}, domain="math", policy="stop"),
        dict(verdict="pass", action="continue", checks={"ifb": ("pass", "mcnemar_exact")}),
        id="significant-drop-within-tolerance",
    ),
    pytest.param(
        # a 5-point significant drop regresses at the default 2-point tolerance ...
        dict(evals=evals(ifb=IF_MID_DROP), trained={"if"}, domain="math", policy="warn"),
        dict(verdict="regressed", action="warn", checks={"ifb": ("regressed", "mcnemar_exact")}),
        id="mid-drop-default-tolerance",
    ),
    pytest.param(
        # ... and passes when the benchmark's own tolerance is 10 points
        dict(
            evals=evals(ifb=IF_MID_DROP),
            trained={"if"},
            domain="math",
            policy="warn",
            benchmark_tolerance={"ifb": 0.10},
        ),
        dict(verdict="pass", action="continue", checks={"ifb": ("pass", "mcnemar_exact")}),
        id="per-benchmark-tolerance-override",
    ),
    pytest.param(
        # rollback policy: the action names it
        dict(evals=evals(ifb=IF_BIG_DROP, gsm=MATH_GAIN), trained={"if"}, domain="math", policy="rollback"),
        dict(
            verdict="regressed",
            action="rollback",
            own=True,
            checks={"ifb": ("regressed", "mcnemar_exact"), "gsm": ("not_gated", "mcnemar_exact")},
        ),
        id="rollback-policy",
    ),
    pytest.param(
        # the stage's own domain improves significantly: recorded, not gated
        dict(evals=evals(gsm=MATH_GAIN), trained={"if"}, domain="math", policy="stop"),
        dict(verdict="pass", action="continue", own=True, checks={"gsm": ("not_gated", "mcnemar_exact")}),
        id="own-domain-improved",
    ),
    pytest.param(
        # the own domain does not move: flagged (own_domain_improved False), still a pass
        dict(evals=evals(gsm=MATH_FLAT), trained={"if"}, domain="math", policy="stop"),
        dict(verdict="pass", action="continue", own=False, checks={"gsm": ("not_gated", "mcnemar_exact")}),
        id="own-domain-flat",
    ),
    pytest.param(
        # a domain no stage trained yet collapses: reported, not gated
        dict(evals=evals(lcb=CODE_CRASH), trained={"if"}, domain="math", policy="stop"),
        dict(verdict="pass", action="continue", checks={"lcb": ("not_gated", "mcnemar_exact")}),
        id="untrained-domain-not-gated",
    ),
    pytest.param(
        # re-training an earlier domain: its benchmarks are both gated and the stage's own
        dict(evals=evals(gsm=MATH_GAIN), trained={"math"}, domain="math", policy="stop"),
        dict(verdict="pass", action="continue", own=True, checks={"gsm": ("pass", "mcnemar_exact")}),
        id="own-domain-also-gated",
    ),
]


@pytest.mark.parametrize(("given", "expected"), GATE_CASES)
def test_check_stage_verdicts(given: dict, expected: dict) -> None:
    before, after = given["evals"]
    result = check_stage(
        "stage",
        given["domain"],
        given["trained"],
        before,
        after,
        [],
        policy=given["policy"],
        tolerance=0.02,
        alpha=0.05,
        benchmark_tolerance=given.get("benchmark_tolerance"),
        benchmark_domains=DOMAINS,
    )
    assert result.verdict == expected["verdict"]
    assert result.action == expected["action"]
    assert result.own_domain_improved is expected.get("own")
    for name, (verdict, test) in expected["checks"].items():
        assert (result.benchmarks[name].verdict, result.benchmarks[name].test) == (verdict, test)


def test_check_stage_records_numbers_and_summary() -> None:
    # if_bench 0.62 → 0.50 after math RL: numbers, roles and the one-paragraph message.
    before, after = evals(ifb=IF_BIG_DROP, gsm=MATH_GAIN)
    history = [{"ifb": {"score": 0.70}, "gsm": {"score": 0.20}}, {"ifb": {"score": 0.62}, "gsm": 0.30}]
    result = check_stage(
        "math_rl",
        "math",
        {"if"},
        before,
        after,
        history,
        policy="stop",
        tolerance=0.02,
        alpha=0.05,
        benchmark_domains=DOMAINS,
    )
    ifb = result.benchmarks["ifb"]
    assert (ifb.role, ifb.gated, ifb.n_paired) == ("earlier", True, 100)
    assert ifb.delta == pytest.approx(-0.12)
    assert ifb.p_value == pytest.approx(2 * 0.5**12)
    assert ifb.best_so_far == pytest.approx(0.70)  # the best row, not the previous one
    assert ifb.drop_from_best == pytest.approx(0.20)
    assert ifb.ci is not None and ifb.ci[0] <= -0.12 <= ifb.ci[1]
    gsm = result.benchmarks["gsm"]
    assert (gsm.role, gsm.improved, gsm.drop_from_best) == ("own", True, 0.0)  # a new best
    text = result.summary()
    assert "Stage math_rl regressed ifb by 12.0 points (0.62 → 0.50, McNemar p=0.00049 < 0.05" in text
    assert "tolerance 2.0 points" in text
    assert "Policy stop: the cascade stops here" in text
    assert "Own domain math improved (gsm +15.0 points, p=" in text


def test_gate_result_round_trips_through_json() -> None:
    before, after = evals(ifb=IF_BIG_DROP, gsm=MATH_FLAT, lcb=CODE_CRASH)
    result = check_stage(
        "math_rl",
        "math",
        {"if"},
        before,
        after,
        [],
        policy="warn",
        tolerance=0.02,
        alpha=0.05,
        benchmark_domains=DOMAINS,
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert data["message"] == result.summary()  # the ledger keeps the sentence the run logged
    assert GateResult.from_dict(data) == result
    assert GateResult.from_dict({**data, "added_later": 1}) == result  # forward compatible


@pytest.mark.parametrize(
    ("action", "keeps"),
    [
        ("continue", True),  # passed: the next stage starts from this one
        ("warn", True),  # regressed under policy warn: recorded, the weights are kept
        ("rollback", False),  # the weights are discarded, the next stage starts from the last kept ones
        ("stop", False),  # the cascade ends here
    ],
)
def test_which_actions_keep_the_stage_weights(action: str, keeps: bool) -> None:
    result = GateResult("s", None, "pass", action, "warn", 0.02, 0.05, [], None)  # type: ignore[arg-type]
    assert result.keeps_weights is keeps


def test_permutation_for_multi_sample_and_mean_reward_benchmarks() -> None:
    # 4 samples per prompt (pass@1 as a mean) and a raw reward-model score both use the permutation test.
    rng = np.random.default_rng(0)
    code_before = list(rng.integers(0, 5, 300) / 4)
    code_after = [min(1.0, s + 0.25) for s in code_before]
    rm_before = list(rng.normal(0.0, 1.0, 300))
    rm_after = [s - 0.5 for s in rm_before]
    before = {
        "lcb": record("code", code_before, samples_per_prompt=4),
        "chat_rm": record("chat", rm_before, metric="mean_reward"),
    }
    after = {
        "lcb": record("code", code_after, samples_per_prompt=4),
        "chat_rm": record("chat", rm_after, metric="mean_reward"),
    }
    result = check_stage(
        "swe_rl",
        "swe",
        {"code", "chat"},
        before,
        after,
        [],
        policy="stop",
        tolerance=0.02,
        alpha=0.05,
        benchmark_domains=DOMAINS,
    )
    assert result.benchmarks["lcb"].test == "permutation"
    assert result.benchmarks["lcb"].verdict == "pass"  # an improvement
    assert result.benchmarks["chat_rm"].test == "permutation"
    assert result.benchmarks["chat_rm"].verdict == "regressed"  # -0.5 reward, p at the Monte Carlo floor
    assert "chat_rm by 0.5 (" in result.summary()  # raw units, not points


@pytest.mark.parametrize(
    ("before_ids", "after_ids", "stderr", "expected"),
    [
        # half the prompts shared: paired on those 50
        ([f"p{i}" for i in range(100)], [f"p{i}" for i in range(50, 150)], True, (50, "mcnemar_exact")),
        # no shared id: unpaired z-test on the reported standard errors
        ([f"a{i}" for i in range(100)], [f"b{i}" for i in range(100)], True, (0, "unpaired_z")),
        # no shared id and no standard errors: recorded as untested, no crash
        ([f"a{i}" for i in range(100)], [f"b{i}" for i in range(100)], False, (0, None)),
    ],
)
def test_check_stage_mismatched_ids(before_ids, after_ids, stderr, expected) -> None:
    scores_before, scores_after = IF_BIG_DROP
    before = {"ifb": record("if", scores_before, ids=before_ids, stderr=stderr)}
    after = {"ifb": record("if", scores_after, ids=after_ids, stderr=stderr)}
    result = check_stage(
        "s",
        "math",
        {"if"},
        before,
        after,
        [],
        policy="stop",
        tolerance=0.02,
        alpha=0.05,
        benchmark_domains=DOMAINS,
    )
    check = result.benchmarks["ifb"]
    assert (check.n_paired, check.test) == expected
    if expected[1] is None:
        assert (check.verdict, result.verdict) == ("untested", "pass")
        assert "not tested" in check.note and "Not checked: ifb" in result.summary()


def test_check_stage_benchmark_missing_on_one_side() -> None:
    # gsm was not re-run by the previous stage: it is compared with its latest history row (unpaired);
    # ifb was dropped from this stage's evaluation: "missing", not a regression.
    before = {"ifb": record("if", IF_BIG_DROP[0])}
    after = {"gsm": record("math", MATH_GAIN[1])}
    history = [{"gsm": {"score": 0.30, "stderr": 0.032, "n": 200}}, {"ifb": {"score": 0.62}}]
    result = check_stage(
        "math_rl",
        "math",
        {"if"},
        before,
        after,
        history,
        policy="stop",
        tolerance=0.02,
        alpha=0.05,
        benchmark_domains=DOMAINS,
    )
    assert (result.benchmarks["gsm"].test, result.benchmarks["gsm"].improved) == ("unpaired_z", True)
    assert "latest earlier score" in result.benchmarks["gsm"].note
    assert (result.benchmarks["ifb"].verdict, result.verdict) == ("missing", "pass")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"policy": "abort"}, "policy"),  # unknown policy
        ({"alpha": 0.0}, "alpha"),  # alpha outside (0, 1)
        ({"tolerance": -0.1}, "tolerance"),  # negative tolerance
    ],
)
def test_check_stage_rejects_bad_settings(kwargs: dict, match: str) -> None:
    settings = {"policy": "stop", "tolerance": 0.02, "alpha": 0.05, **kwargs}
    with pytest.raises(ValueError, match=match):
        check_stage("s", None, set(), {}, {}, [], benchmark_domains={}, **settings)


def test_compare_records_without_samples_uses_stderr() -> None:
    # Ledger-style scores only: an unpaired z-test; 0.30 → 0.45 with stderr 0.03 each is z ≈ 3.5.
    comparison = compare_records({"score": 0.30, "stderr": 0.03}, {"score": 0.45, "stderr": 0.03})
    assert comparison.test == "unpaired_z"
    assert comparison.p_value == pytest.approx(math.erfc(0.15 / math.hypot(0.03, 0.03) / math.sqrt(2)))


def test_latest_records_prefers_later_evaluations() -> None:
    base = {"stage": "base", "benchmarks": {"ifb": {"score": 0.1}, "gsm": {"score": 0.2}}}
    later = {"stage": "if_rl", "benchmarks": {"ifb": {"score": 0.5}}}
    assert latest_records([base, later]) == {"ifb": {"score": 0.5}, "gsm": {"score": 0.2}}


@pytest.mark.parametrize(
    ("metric", "before", "after", "expected"),
    [
        ("accuracy", 0.8, 0.3, "ifb by 50.0 points ("),
        ("win_rate", 0.8, 0.3, "ifb by 50.0 points ("),
        # a reward-model score that happens to lie in [0, 1] is still in reward units
        ("mean_reward", 0.8, 0.3, "ifb by 0.5 ("),
        ("mean_reward", 2.0, 1.5, "ifb by 0.5 ("),
    ],
)
def test_regressions_are_stated_in_the_metric_units(
    metric: str, before: float, after: float, expected: str
) -> None:
    result = check_stage(
        "math_rl",
        "math",
        {"if"},
        {"ifb": record("if", [before] * 200, metric=metric)},
        {"ifb": record("if", [after] * 200, metric=metric)},
        [],
        policy="warn",
        tolerance=0.02,
        alpha=0.05,
        benchmark_domains=DOMAINS,
    )
    assert expected in result.summary()
