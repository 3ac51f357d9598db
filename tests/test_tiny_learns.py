"""The tiny recipe shows the cascade effect (slow: the full recipe on CPU; `pytest -m slow tests/test_tiny_learns.py`).

Learning criteria, on the held-out test splits with the default seed: SFT lifts every domain above the
base model and leaves room below the ceiling; the reward model ranks held-out pairs; RLHF raises the chat
score; IF-RL, math RL and code RL each raise their own benchmark by at least 10 points; SWE RL raises the
SWE similarity; the gate checks every earlier domain after each stage; the whole cascade fits in 20 minutes
on 2 CPU cores.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import PYTHON, ROOT, subprocess_env


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("tiny")
    proc = subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), "recipe=tiny", f"run.output_dir={tmp}", "tracking.mode=disabled"],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = subprocess.run(
        [PYTHON, "-m", "pipeline.report", str(tmp / "tiny"), "--json"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out)
    data["ledger"] = json.loads((tmp / "tiny" / "ledger.json").read_text())
    return data


def scores(report: dict, stage: str) -> dict[str, float]:
    return next(s for s in report["stages"] if s["name"] == stage)["scores"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ifeval", "math", "code"])  # accuracies
def test_sft_leaves_room_above_base(report: dict, name: str) -> None:
    base, sft = scores(report, "base"), scores(report, "sft2")
    assert sft[name] >= base[name] + 0.10, (name, base[name], sft[name])
    assert sft[name] <= 0.90, (name, sft[name])


@pytest.mark.slow
def test_sft_teaches_edits_that_apply(report: dict) -> None:
    # SWE similarity, in [-1, 1]: edits that apply, short of the golden patch
    base, sft = scores(report, "base"), scores(report, "sft2")
    assert base["swe"] + 0.10 <= sft["swe"] <= 0.90, (base["swe"], sft["swe"])


@pytest.mark.slow
def test_reward_model_ranks_held_out_pairs(report: dict) -> None:
    rm = next(s for s in report["ledger"]["stages"] if s["name"] == "rm")
    assert rm["summary"]["pairwise_accuracy"] >= 0.8


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "before", "benchmark", "gain"),
    [
        ("rlhf", "rm", "chat", 0.0),  # RLHF raises the reward-model score
        # each verifiable RL stage: +10 points on its own benchmark
        ("if_rl", "rlhf", "ifeval", 0.10),
        ("math_rl", "if_rl", "math", 0.10),
        ("code_rl", "math_rl", "code", 0.10),
        ("swe_rl", "code_rl", "swe", 0.0),  # SWE RL raises the similarity reward
    ],
)
def test_each_rl_stage_raises_its_own_domain(
    report: dict, stage: str, before: str, benchmark: str, gain: float
) -> None:
    assert scores(report, stage)[benchmark] > scores(report, before)[benchmark] + gain


@pytest.mark.slow
def test_the_gate_checks_every_earlier_domain_after_each_stage(report: dict) -> None:
    # After each stage, every benchmark of a domain an earlier stage trained is gated.
    trained: set[str] = set()
    for stage in report["ledger"]["stages"]:
        gate = stage["gate"]["benchmarks"]
        earlier = {
            name for name, b in gate.items() if b["domain"] in trained and b["domain"] != stage["domain"]
        }
        assert earlier and all(gate[name]["gated"] for name in earlier) or not trained, stage["name"]
        if stage["domain"] and stage["kind"] != "reward_model":
            trained.add(stage["domain"])


@pytest.mark.slow
def test_fits_the_cpu_budget(report: dict) -> None:
    assert report["ledger"]["wall_s"] <= 20 * 60
