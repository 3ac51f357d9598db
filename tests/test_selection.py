"""Heavy-mode evaluation: answer grouping, the majority vote, GenSelect's prompt, choice and tournament,
the modes' record, the recipe keys and the gate on a primary metric; and the whole path on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.gates import check_stage, compare_records, record_score
from pipeline.gates.compare import metric_view
from pipeline.schema import ConfigError
from pipeline.selection.genselect import (
    MISSING,
    NO_SUMMARY,
    OK,
    OUT_OF_RANGE,
    UNFINISHED,
    check_template,
    knockout_groups,
    parse_choice,
    run_genselect,
    selection_prompt,
    shuffled,
    summary,
)
from pipeline.selection.grouping import (
    classes_by_equivalence,
    classes_by_key,
    group_answers,
    majority_pick,
    math_answers,
    math_equal,
)
from pipeline.selection.modes import Generated, heavy_record

# --------------------------------------------------------------------------------------------------
# The vote


@pytest.mark.parametrize(
    ("classes", "pick"),
    [
        ([0, 0, 1], 0),  # a clear majority
        ([0, 1, 1], 1),  # the first member of the largest class
        ([0, 1, 0, 1], 0),  # a tie: the class seen first
        ([0, 1, 1, 0], 0),  # a tie, the other way round: still the class seen first
        ([None, 0, 1, 1], 2),  # no answer never votes
        ([None, None], None),  # no sample has an answer
        ([], None),
        ([2, 0, 0, 1, 2, 2], 0),  # labels need not be in order: class 2 is largest, first at index 0
    ],
)
def test_majority_pick(classes, pick) -> None:
    assert majority_pick(classes) == pick


@pytest.mark.parametrize(
    ("keys", "classes"),
    [
        ([("3",), ("3",), ("4",)], [0, 0, 1]),
        ([None, ("a", "b"), ("a", "b"), None], [None, 0, 0, None]),
        ([("4",), ("3",), ("4",)], [0, 1, 0]),
    ],
)
def test_classes_by_key(keys, classes) -> None:
    assert classes_by_key(keys) == classes


def test_classes_by_equivalence_joins_the_earliest_founder_and_batches_per_level() -> None:
    calls = []

    def equal(pairs):  # "equal" when the numbers agree modulo 3: not how math works, but transparent
        calls.append(pairs)
        return [int(a) % 3 == int(b) % 3 for a, b in pairs]

    answers = [["1", "4", "2", None, "7", "5"], ["9", "9"], [None]]
    assert classes_by_equivalence(answers, equal) == [[0, 0, 1, None, 0, 1], [0, 0], [None]]
    # one call per founder level for all prompts; identical strings are never compared
    assert calls == [[("1", "4"), ("1", "2"), ("1", "7"), ("1", "5")], [("2", "5")]]


# The math reward's own equivalence: fractions, decimals and LaTeX spellings of one number are one
# class; a different number is another; an answer that never closed its thinking has no answer.
MATH_CASES = [
    (
        [r"So \boxed{\frac{1}{2}}.", r"\boxed{0.5}", r"\boxed{2/4}", r"\boxed{3}", r"\boxed{\dfrac{2}{4}}"],
        [0, 0, 0, 1, 0],
        0,
    ),
    (["The answer is 3.", r"\boxed{4}", r"\boxed{4}", r"Answer: 3", r"<think>no end"], [0, 1, 1, 0, None], 0),
    ([r"\boxed{6}", r"\boxed{5}", r"\boxed{5}"], [0, 1, 1], 1),
    ([r"\boxed{1,000}", r"\boxed{1000}", r"\boxed{10^3}"], [0, 0, 0], 0),
]


def test_math_groups_equivalent_answers() -> None:
    completions = [c for c, _, _ in MATH_CASES]
    grouping = group_answers("math", {}, [{} for _ in MATH_CASES], completions)
    assert grouping.classes == [classes for _, classes, _ in MATH_CASES]
    assert [majority_pick(c) for c in grouping.classes] == [pick for _, _, pick in MATH_CASES]
    assert grouping.grouped == [True] * len(MATH_CASES)


def test_math_answers_follow_the_rewards_fallbacks() -> None:
    texts = [r"\boxed{7}", "It is 7 apples.", "<think>x</think>Answer: 8", "<think>unfinished"]
    assert math_answers(texts, {}) == ["7", "7", "8", None]
    assert math_answers(texts, {"fallbacks": []}) == ["7", None, None, None]  # boxed answers only
    assert math_equal({})([("x^2+2x+1", "(x+1)^2"), ("1/2", "0.25")]) == [True, False]  # sympy, in the pool


CALL = {"kind": "call", "fn_name": "f", "cases": [{"args": [1], "expected": 0}, {"args": [5], "expected": 0}]}
STDIO = {"kind": "stdio", "cases": [{"input": "2\n", "output": "no"}, {"input": "3\n", "output": "no"}]}
ASSERT = {
    "kind": "assert",
    "test": "def check(candidate):\n    assert candidate(1) == 2\n",
    "entry_point": "f",
}


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def test_code_groups_programs_by_their_outputs_never_the_expected_ones() -> None:
    rows = [{"tests": json.dumps(CALL)}, {"tests": STDIO}, {"tests": ASSERT}]
    completions = [
        [
            fenced("def f(x):\n    return x + 1"),
            fenced("def f(y):\n    z = 1 + y\n    return z"),  # another spelling, the same behaviour
            fenced("def f(x):\n    return 2 * x"),  # agrees on 1 only
            "no program at all",
            fenced("def f(x):\n    raise ValueError"),  # fails on every input: no answer
            fenced("def f(x):\n    return 2 * x"),
            fenced("def f(x):\n    return 2 * x"),
        ],
        [
            fenced("n = int(input())\nprint(n * n)"),
            fenced("n = int(input())\nprint(n ** 2, '  ')"),  # trailing spaces: the same output
            fenced("n = int(input())\nprint(n + n)"),
        ],
        [fenced("def f(x):\n    return x + 1"), fenced("def f(x):\n    return x + 1")],
    ]
    grouping = group_answers("code", {"timeout_s": 5.0}, rows, completions)
    assert grouping.classes[0] == [0, 0, 1, None, None, 1, 1]
    assert majority_pick(grouping.classes[0]) == 2  # the wrong program wins the vote: votes are not grades
    assert grouping.classes[1] == [0, 0, 1]
    # assert tests carry no inputs: each sample is a class of its own, so the vote takes the first
    assert grouping.classes[2] == [0, 1] and grouping.grouped == [True, True, False]


# --------------------------------------------------------------------------------------------------
# GenSelect


@pytest.mark.parametrize(
    ("text", "k", "choice", "outcome"),
    [
        ("Solution 1 is wrong, solution 2 is right.\nJudgment: 2", 4, 2, OK),
        ("Judgement: [0]", 4, 0, OK),
        ("**Judgment:** Solution 3", 4, 3, OK),
        ("Judgment: 1\n...on second thought\nJudgment: 0", 2, 0, OK),  # the last judgment counts
        ("<think>compare them</think>Judgment: 1", 2, 1, OK),
        ("<think>Judgment: 1 maybe", 2, None, UNFINISHED),  # thinking never closed
        (r"The best is \boxed{1}.", 3, 1, OK),
        (r"\boxed{\text{Solution 2}}", 3, 2, OK),
        ("2", 3, 2, OK),
        ("Solution 1.", 3, 1, OK),
        ("Judgment: 4", 4, None, OUT_OF_RANGE),
        ("Judgment: -1", 4, None, OUT_OF_RANGE),
        (r"So 7 + 5 = 12. The answer is \boxed{12}.", 4, None, OUT_OF_RANGE),
        ("I like the second one best.", 4, None, MISSING),
        ("The answer is 2", 4, None, MISSING),  # a number in a sentence is not a choice
        ("", 4, None, MISSING),
    ],
)
def test_parse_choice(text, k, choice, outcome) -> None:
    assert parse_choice(text, k) == (choice, outcome)


@pytest.mark.parametrize(
    ("alive", "k", "groups"),
    [
        ([0, 1, 2, 3, 4, 5, 6, 7], 4, [[0, 1, 2, 3], [4, 5, 6, 7]]),
        ([0, 1, 2, 3, 4], 4, [[0, 1, 2], [3, 4]]),  # balanced: never a lone candidate beside a full group
        ([3, 1, 2, 0], 4, [[3, 1, 2, 0]]),
        ([0, 1, 2, 3, 4, 5, 6, 7, 8], 4, [[0, 1, 2], [3, 4, 5], [6, 7, 8]]),
        ([5], 2, [[5]]),
        ([], 4, []),
    ],
)
def test_knockout_groups(alive, k, groups) -> None:
    assert knockout_groups(alive, k) == groups


def test_selection_prompt_shows_summaries_after_think() -> None:
    texts = ["<think>long reasoning</think>\nIt is \\boxed{4}.", "<think>never ends", "x" * 50]
    summaries = [summary(t, 20) for t in texts]
    assert summaries == ["It is \\boxed{4}.", NO_SUMMARY, "x" * 20 + " …"]
    prompt = selection_prompt("What is {2+2}?", summaries)
    assert "numbered 0 to 2" in prompt and "What is {2+2}?" in prompt and "long reasoning" not in prompt
    assert prompt.index("Solution 0:\nIt is") < prompt.index("Solution 1:") < prompt.index("Solution 2:")
    custom = "Pick one of {k} for {problem}:\n{solutions}\nLast index {last}."
    assert (
        selection_prompt("P", ["a", "b"], custom)
        == "Pick one of 2 for P:\nSolution 0:\na\n\nSolution 1:\nb\nLast index 1."
    )
    assert check_template(custom) is None and "{solutions}" in (check_template("{problem}") or "")


def test_shuffles_are_fixed_by_seed_prompt_and_round() -> None:
    assert shuffled(8, 1, "p", 0) == shuffled(8, 1, "p", 0)
    assert sorted(shuffled(8, 1, "p", 0)) == list(range(8))
    assert len({tuple(shuffled(8, 1, "p", r)) for r in range(6)}) > 1


def scripted(answers):
    """A selector that answers each selection prompt with the next scripted text, recording the prompts."""
    asked: list[list[str]] = []

    def generate(texts, level):
        asked.append(texts)
        return [answers.pop(0) for _ in texts], 3 * len(texts), 100 * len(texts)

    return generate, asked


def test_tournament_over_eight_candidates_in_groups_of_four() -> None:
    completions = [[f"\\boxed{{{i}}}" for i in range(8)]]
    classes = [[0, 1, 2, 3, 4, 5, 6, 7]]
    order = shuffled(8, 7, "p0", 0)
    generate, asked = scripted(["Judgment: 1", "Judgment: 3", "Judgment: 1"])
    selected, cost = run_genselect(
        ["2+2?"], completions, classes, ["p0"], generate, k=4, rounds=1, seed=7, max_summary_chars=100
    )
    finalists = [order[1], order[4 + 3]]
    assert selected[0].pick == finalists[1]
    assert [len(level) for level in asked] == [2, 1]  # two groups, then the final
    assert [j.group for j in selected[0].judgments] == [order[:4], order[4:], finalists]
    assert selected[0].fallbacks == 0 and (cost.calls, cost.tokens, cost.prompt_tokens) == (3, 9, 300)


def test_a_malformed_choice_falls_back_to_the_groups_majority_and_is_counted() -> None:
    completions = [["a", "b", "c", "d"], ["a", "b"]]
    classes = [[0, 1, 1, 2], [None, None]]
    generate, _ = scripted(["I cannot decide.", "Judgment: 9"])
    selected, cost = run_genselect(
        ["p", "q"], completions, classes, ["p0", "p1"], generate, k=4, rounds=1, seed=0, max_summary_chars=9
    )
    assert selected[0].pick == 1  # the prompt's vote: class 1 (samples 1 and 2), its first member
    assert selected[0].judgments[0].outcome == MISSING and selected[0].fallbacks == 1
    # no answer anywhere in the group: its first candidate
    assert selected[1].pick == selected[1].judgments[0].group[0]
    assert selected[1].judgments[0].outcome == OUT_OF_RANGE and cost.calls == 2


@pytest.mark.parametrize("rounds", [1, 3])
@pytest.mark.parametrize(
    "classes",
    [
        [0, 1, 1, 2, 1, 0, 3, 0],  # a tie between classes 0 and 1: the class seen first
        [None, 2, 1, 1, 0, 2, 2, None],
        [0, 1, 2, 3, 4, 5, 6, 7],  # every answer different
        [None] * 8,  # no answer anywhere: the first sample
        [3, 3, 3, 3, 3, 3, 3, 1],
    ],
)
def test_a_selector_that_never_answers_picks_what_majority_picks(classes, rounds) -> None:
    generate, _ = scripted(["I do not know."] * 100)
    completions = [[f"c{i}" for i in range(8)]]
    selected, cost = run_genselect(
        ["p"], completions, [classes], ["p"], generate, k=4, rounds=rounds, seed=5, max_summary_chars=9
    )
    expected = majority_pick(classes)
    if expected is None:  # no answer anywhere: groups keep their first candidate, the first round stands
        expected = next(j.winner for j in selected[0].judgments if (j.round, j.level) == (0, 1))
    assert selected[0].pick == expected
    assert selected[0].fallbacks == cost.calls == 3 * rounds


def test_rounds_vote_over_answer_classes() -> None:
    completions = [["a", "b", "c"]]
    classes = [[0, 1, 1]]
    orders = [shuffled(3, 0, "p", r) for r in range(3)]
    # round 0 picks sample 0, rounds 1 and 2 pick samples 1 and 2 (one class): the class of 1 and 2 wins
    answers = [f"Judgment: {orders[r].index(sample)}" for r, sample in enumerate([0, 1, 2])]
    generate, _ = scripted(answers)
    selected, _ = run_genselect(
        ["p"], completions, classes, ["p"], generate, k=4, rounds=3, seed=0, max_summary_chars=9
    )
    assert selected[0].pick == 1 and selected[0].fallbacks == 0


def test_heavy_record_modes_and_outcomes() -> None:
    from pipeline.selection.genselect import Cost, Judgment, Selected
    from pipeline.selection.grouping import Grouping

    correct = [[True, False, False], [False, True, True], [False, False, False]]
    grouping = Grouping([[0, 1, 1], [0, 1, 1], [None, None, None]], [True, True, True], 0.5)
    selected = [
        Selected(0, [Judgment(0, 0, [0, 1, 2], 0, 0, OK, "Judgment: 0")]),
        Selected(1, [Judgment(0, 0, [2, 1, 0], None, 1, MISSING, "?")]),
        Selected(2, []),
    ]
    modes, per_prompt, skipped = heavy_record(
        ["majority", "genselect"], correct, Generated(90, 2.0), grouping, selected, Cost(2, 6, 400, 1.0)
    )
    assert modes["pass@1"]["score"] == pytest.approx(1 / 3) and modes["pass@3"]["score"] == pytest.approx(
        2 / 3
    )
    assert modes["majority"]["score"] == pytest.approx(1 / 3)  # picks 1, 1 and (no answer) 0
    assert modes["majority"]["no_answer"] == 1 and per_prompt[0]["selection"]["majority"] == {
        "pick": 1,
        "correct": False,
    }
    assert modes["genselect"]["score"] == pytest.approx(2 / 3)
    assert (modes["genselect"]["calls"], modes["genselect"]["fallbacks"]) == (2, 1)
    assert modes["genselect"]["fallback_outcomes"] == {MISSING: 1} and modes["pass@1"]["tokens"] == 90
    assert per_prompt[1]["classes"] == [0, 1, 1] and not skipped


# --------------------------------------------------------------------------------------------------
# Recipe keys


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["benchmarks.ifeval.selection=[majority]"], "scorer 'instruction' has no final answer to vote on"),
        (["benchmarks.math.selection=[majority]"], "set benchmarks.math.generation.n to 2 or more"),
        (["benchmarks.math.selection=[genselect]", "benchmarks.math.generation.n=4"], "greedy"),
        (["benchmarks.math.primary=majority"], "which benchmarks.math.selection does not list"),
        (["benchmarks.math.primary=majorty"], "did you mean 'majority'?"),
        (["benchmarks.math.primary=pass@4"], "k between 1 and benchmarks.math.generation.n (1)"),
        (["benchmarks.math.selection=[genselekt]"], "did you mean 'genselect'?"),
        (["benchmarks.math.genselect.k=1"], "'benchmarks.math.genselect.k' must be at least 2"),
        (["benchmarks.math.genselect.template=Pick one"], "must contain {problem} exactly once"),
        (["benchmarks.swe.selection=[pass@k]", "benchmarks.swe.generation.n=2"], "metric is mean_reward"),
    ],
)
def test_selection_keys_are_checked_at_recipe_load(overrides, fragment) -> None:
    from pipeline.config import load_recipe

    with pytest.raises(ConfigError, match="benchmarks") as err:
        load_recipe("tiny", overrides)
    assert fragment in str(err.value)


def test_the_heavy_variant_of_tiny_loads() -> None:
    from pipeline.config import load_recipe

    recipe = load_recipe("tiny-heavy")
    math = recipe.benchmarks["math"]
    assert math.selection == ["pass@k", "majority", "genselect"] and math.primary == "pass@1"
    assert (math.generation.n, math.genselect.k) == (8, 4)
    assert load_recipe("tiny").benchmarks["math"].selection == []  # tiny itself is unchanged


# --------------------------------------------------------------------------------------------------
# The gate on a primary metric


def heavy_eval(majority: list[bool], pass1: list[float], primary: str = "majority") -> dict:
    n = len(majority)
    return {
        "domain": "math", "metric": "accuracy", "primary": primary, "samples_per_prompt": 4,
        "score": sum(majority) / n if primary == "majority" else sum(pass1) / n, "stderr": 0.01,
        "modes": {"pass@1": {"score": sum(pass1) / n, "stderr": 0.01}, "majority": {"score": sum(majority) / n, "stderr": 0.01}},
        "samples": [
            {"id": f"p{i}", "score": s, "correct": [True] * int(4 * s) + [False] * (4 - int(4 * s)),
             "selection": {"majority": {"pick": 0, "correct": m}}}
            for i, (m, s) in enumerate(zip(majority, pass1, strict=True))
        ],
    }  # fmt: skip


def test_the_gate_pairs_the_primary_metrics_outcomes_by_prompt() -> None:
    before = heavy_eval([True] * 30, [0.75] * 30)
    after = heavy_eval([True] * 18 + [False] * 12, [0.75] * 30)  # pass@1 unchanged, the vote lost 12 prompts
    comparison = compare_records(before, after)
    assert comparison.test == "mcnemar_exact" and comparison.n_paired == 30
    assert comparison.delta == pytest.approx(-0.4) and comparison.p_value < 0.001
    as_pass1 = compare_records(before, after, metric="pass@1")
    assert as_pass1.delta == pytest.approx(0.0) and as_pass1.test == "permutation"
    assert record_score(after, "pass@4") == pytest.approx(1.0)  # any of 4 samples with 3 correct
    result = check_stage(
        "code_rl", "code", {"math"}, {"math": before}, {"math": after}, [{"math": before}],
        policy="warn", tolerance=0.02, alpha=0.05, benchmark_domains={"math": "math"},
    )  # fmt: skip
    check = result.benchmarks["math"]
    assert check.verdict == "regressed" and check.primary == "majority" and check.best_so_far == 1.0
    assert "math (majority) by 40.0 points" in result.summary()
    assert "primary" in result.to_dict()["benchmarks"]["math"]


def test_a_pass1_gate_ignores_heavy_metrics_and_keeps_its_layout() -> None:
    before = heavy_eval([True] * 30, [0.75] * 30, primary="pass@1")
    after = heavy_eval([False] * 30, [0.75] * 30, primary="pass@1")
    result = check_stage(
        "code_rl", "code", {"math"}, {"math": before}, {"math": after}, [],
        policy="stop", tolerance=0.02, alpha=0.05, benchmark_domains={"math": "math"},
    )  # fmt: skip
    assert result.verdict == "pass" and result.benchmarks["math"].delta == pytest.approx(0.0)
    assert "primary" not in result.to_dict()["benchmarks"]["math"]


def test_a_record_without_the_metric_is_untested_not_zero() -> None:
    old = {"score": 0.7, "stderr": 0.02, "samples": [{"id": "p0", "score": 1.0}], "samples_per_prompt": 1}
    assert metric_view(old, "majority")["samples"] == [] and record_score(old, "majority") is None
    result = check_stage(
        "code_rl", "code", {"math"}, {"math": old}, {"math": heavy_eval([True], [1.0])}, [{"math": old}],
        policy="stop", tolerance=0.02, alpha=0.05, benchmark_domains={"math": "math"},
    )  # fmt: skip
    assert result.benchmarks["math"].verdict == "untested" and result.verdict == "pass"


def test_ledger_summary_keeps_every_mode_and_round_trips() -> None:
    from pipeline.run_state import BenchmarkScore

    record = heavy_eval([True, False], [0.5, 0.25])
    record["modes"]["genselect"] = {"score": 0.5, "stderr": 0.3, "tokens": 40, "seconds": 1.5, "calls": 6,
                                    "fallbacks": 2, "fallback_outcomes": {"missing": 2}}  # fmt: skip
    score = BenchmarkScore.of_record(record)
    assert score.primary == "majority" and score.score == 0.5
    assert score.modes["genselect"].fallbacks == 2 and score.modes["pass@1"].score == pytest.approx(0.375)
    data = json.loads(json.dumps(score.to_json()))
    assert "fallback_outcomes" not in data["modes"]["genselect"]  # the details stay in the eval file
    assert BenchmarkScore.read(data).to_json() == data
    assert "modes" not in BenchmarkScore.of_record({"score": 0.5, "n": 2}).to_json()


# --------------------------------------------------------------------------------------------------
# The whole path on CPU


@pytest.mark.slow
def test_majority_and_genselect_on_tinys_math_benchmark_run_on_cpu(tmp_path: Path) -> None:
    from pipeline.config import load_recipe
    from pipeline.evaluation import evaluate_checkpoint
    from pipeline.models import build_builtin_model
    from pipeline.run_state import scores_of

    overrides = [
        f"run.output_dir={tmp_path}", "tracking.mode=disabled", "model.builtin.tokenizer_corpus_rows=40",
        "benchmarks.math.data.size=12", "benchmarks.math.selection=[majority,genselect]",
        "benchmarks.math.generation.n=5", "benchmarks.math.generation.temperature=1.0",
        "benchmarks.math.genselect.k=3", "benchmarks.math.genselect.max_new_tokens=8",
    ]  # fmt: skip
    recipe = load_recipe("tiny", overrides)
    model = build_builtin_model("builtin:tiny", recipe.model.builtin, tmp_path / "model", seed=0)
    records = [
        evaluate_checkpoint(
            recipe, str(model), ["math"], out_file=tmp_path / f"{i}.json", stage="base", index=0
        )
        for i in range(2)
    ]
    math = records[0]["benchmarks"]["math"]
    assert set(math["modes"]) == {"pass@1", "pass@5", "majority", "genselect"} and math["primary"] == "pass@1"
    genselect = math["modes"]["genselect"]
    # 5 candidates in groups of at most 3: two groups, then the final, for each of the 12 prompts
    assert genselect["calls"] == 36 and genselect["tokens"] > 0 and genselect["prompt_tokens"] > 0
    judgments = [j for s in math["samples"] for j in s["selection"]["genselect"]["judgments"]]
    assert genselect["fallbacks"] == sum(j["choice"] is None for j in judgments)
    assert all(len(s["classes"]) == 5 for s in math["samples"])
    # same seed, same numbers: every mode and every pick
    again = records[1]["benchmarks"]["math"]
    assert {m: v["score"] for m, v in again["modes"].items()} == {
        m: v["score"] for m, v in math["modes"].items()
    }
    assert [s["selection"] for s in again["samples"]] == [s["selection"] for s in math["samples"]]
    assert scores_of(records[0])["math"].modes["genselect"].calls == 36


@pytest.mark.slow
def test_heavy_modes_do_not_depend_on_the_number_of_processes(tmp_path: Path) -> None:
    import subprocess

    from pipeline.config import load_recipe
    from pipeline.models import build_builtin_model
    from tests.conftest import PYTHON, ROOT, free_port, subprocess_env

    keys = [
        f"run.output_dir={tmp_path}", "tracking.mode=disabled", "model.builtin.tokenizer_corpus_rows=40",
        "benchmarks.math.data.size=6", "benchmarks.math.selection=[majority,genselect]",
        "benchmarks.math.generation.n=4", "benchmarks.math.generation.temperature=1.0",
        "benchmarks.math.generation.batch_size=2", "benchmarks.math.genselect.k=2",
        "benchmarks.math.genselect.max_new_tokens=6", "benchmarks.math.generation.max_new_tokens=12",
    ]  # fmt: skip
    model = build_builtin_model(
        "builtin:tiny", load_recipe("tiny", keys).model.builtin, tmp_path / "m", seed=0
    )
    outs = {}
    for n in (1, 2):
        out = tmp_path / f"eval{n}.json"
        cmd = [
            PYTHON, "-m", "accelerate.commands.launch", *(["--multi_gpu"] if n > 1 else ["--cpu"]),
            "--num_processes", str(n), "--num_machines", "1", "--main_process_port", free_port(),
            "--mixed_precision", "no", "--dynamo_backend", "no",
            str(ROOT / "launch" / "evaluate.py"), "recipe=tiny", f"checkpoint={model}", "benchmarks=math",
            f"out={out}", *keys,
        ]  # fmt: skip
        env = subprocess_env(OMP_NUM_THREADS="1")
        res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
        outs[n] = json.loads(out.read_text())["benchmarks"]["math"]
    assert outs[1]["modes"]["genselect"]["calls"] == 6 * 3  # 4 candidates in pairs: two pairs, the final
    for key in ("score", "n"):
        assert outs[1][key] == outs[2][key]
    assert {m: v["score"] for m, v in outs[1]["modes"].items()} == {
        m: v["score"] for m, v in outs[2]["modes"].items()
    }
    assert [s["selection"] for s in outs[1]["samples"]] == [s["selection"] for s in outs[2]["samples"]]
