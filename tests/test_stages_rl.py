"""The RL stage kinds end to end on CPU: reward model, GRPO (rewards, filters, phases, resume), RLHF wiring.

A tiny random Qwen3 model is built once per module; every run is a few steps with short completions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.config import BuiltinModelConfig, recipe_from_dict
from pipeline.rundir import RunDir
from pipeline.schema import ConfigError
from pipeline.stages.base import StageContext
from pipeline.tracking import Tracker

TINY = BuiltinModelConfig(
    hidden_size=64,
    num_layers=2,
    num_heads=2,
    num_kv_heads=1,
    intermediate_size=128,
    vocab_size=512,
    tokenizer_corpus_rows=50,
)
THIS = "tests.test_stages_rl"


# --------------------------------------------------------------------------------------------------
# Rewards the tests construct (named in recipes as "tests.test_stages_rl:<function>")


def constant_reward(completions: list[Any], value: float | None = 0.5, **kwargs: Any) -> list[float | None]:
    """The same score for every completion (None: a reward that timed out on everything)."""
    return [value] * len(completions)


def parity_reward(completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
    """1.0 for every completion of an even-answer prompt; 1.0/0.0 alternating for odd answers (mixed groups)."""
    return [1.0 if int(a) % 2 == 0 else float(i % 2) for i, a in enumerate(answer)]


SEEN: list[tuple[int, list[str]]] = []  # (global step, prompt ids) of every parity_logged call


def parity_logged_reward(
    completions: list[Any], answer: list[str], id: list[str], trainer_state: Any, **kw: Any
):
    SEEN.append((trainer_state.global_step, list(id)))
    return parity_reward(completions, answer)


SCORED: list[int] = []  # completions per counting_reward call


def counting_reward(completions: list[Any], value: float = 0.5, **kwargs: Any) -> list[float]:
    """A constant score that counts the completions it was asked to score."""
    SCORED.append(len(completions))
    return [value] * len(completions)


CALLS = {"n": 0, "kill_at": 0}


class SimulatedKill(RuntimeError):
    """Stands for the process dying in the middle of a step."""


def killing_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """A varied reward that raises on call number ``CALLS['kill_at']`` (0: never)."""
    CALLS["n"] += 1
    if CALLS["n"] == CALLS["kill_at"]:
        raise SimulatedKill(f"killed during reward call {CALLS['n']}")
    return [float(i % 3) for i in range(len(completions))]


# --------------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.models import build_builtin_model

    return build_builtin_model("builtin:tiny", TINY, tmp_path_factory.mktemp("model") / "base", seed=0)


def grpo_stage(**overrides: Any) -> dict[str, Any]:
    """A tiny GRPO stage: 8 math prompts, G=4, 2 prompts per step, 6-token completions, 2 steps."""
    stage = {
        "kind": "grpo",
        "domain": "math",
        "data": [{"source": "builtin:math", "size": 8}],
        "rewards": [{"name": "math"}],
        "num_generations": 4,
        "max_completion_length": 6,
        "train": {
            "max_steps": 2,
            "batch_size": 8,
            "learning_rate": 1e-4,
            "logging_steps": 1,
            "save_steps": 50,
        },
    }
    stage.update(overrides)
    return stage


def make_ctx(
    tmp_path: Path,
    base: Path,
    stages: dict[str, dict[str, Any]],
    name: str,
    *,
    resume: bool = False,
    checkpoints: dict[str, str] | None = None,
    records: list[dict[str, Any]] | None = None,
    engine: str = "auto",
    free_for_training: bool = True,
) -> StageContext:
    recipe = recipe_from_dict(
        {
            "run": {"name": "rl", "output_dir": str(tmp_path / "runs"), "seed": 3},
            "model": {"name_or_path": str(base)},
            "tracking": {"backend": "none"},
            "generation": {"engine": engine, "free_for_training": free_for_training},
            "stages": stages,
        }
    )
    index = list(stages).index(name) + 1
    return StageContext(
        recipe=recipe,
        name=name,
        index=index,
        config=recipe.stages[name],
        init_path=str(base),
        stage_dir=RunDir(recipe.run_dir).stage_dir(index, name),
        resume=resume,
        tracker=Tracker(recipe, recipe.run_dir, is_main=False),
        stage_checkpoints=dict(checkpoints or {}),
        record=(records.append if records is not None else (lambda fields: None)),
    )


def run_stage(ctx: StageContext) -> dict[str, Any]:
    from pipeline.stages import stage_module

    return stage_module(ctx.config.kind).run(ctx).summary


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory: pytest.TempPathFactory, base_model: Path) -> tuple[Path, dict[str, Any]]:
    """A reward model trained for 2 steps on the builtin chat pairs, with 8 held-out pairs."""
    tmp = tmp_path_factory.mktemp("rm")
    stage = {
        "kind": "reward_model",
        "domain": "chat",
        "data": [{"source": "builtin:chat", "size": 24}],
        "eval_size": 8,
        "train": {
            "max_steps": 2,
            "batch_size": 4,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "max_length": 256,
        },
    }
    ctx = make_ctx(tmp, base_model, {"rm": stage}, "rm")
    return ctx.final_dir, run_stage(ctx)


# --------------------------------------------------------------------------------------------------
# Reward model


def test_reward_model_stage_writes_a_scalar_classifier(reward_model: tuple[Path, dict[str, Any]]) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipeline.stages import reward_model as rm_module

    final, summary = reward_model
    model = AutoModelForSequenceClassification.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    assert model.config.num_labels == 1 and tokenizer.pad_token is not None
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert summary["steps"] == 2 and summary["pairs"] == 16
    assert summary["eval_pairs"] == 8 and 0.0 <= summary["pairwise_accuracy"] <= 1.0
    assert summary["pairwise_accuracy"] * 8 == pytest.approx(round(summary["pairwise_accuracy"] * 8))
    assert rm_module.PRODUCES_POLICY is False


PAIR_CASES = [
    # (row, pair_format, expected (chosen, rejected) contents, or None for unusable, "tie" for a tie)
    ({"context": [{"role": "user", "content": "q"}], "response1": "A", "response2": "B", "overall_preference": -2},
     "auto", ("A", "B")),  # HelpSteer3: negative prefers response 1
    ({"context": [{"role": "user", "content": "q"}], "response1": "A", "response2": "B", "overall_preference": 3},
     "helpsteer3", ("B", "A")),  # positive prefers response 2
    ({"context": [{"role": "user", "content": "q"}], "response1": "A", "response2": "B", "overall_preference": 0},
     "auto", "tie"),  # a tie is skipped (counted apart from unusable rows)
    ({"context": [{"role": "user", "content": "q"}], "response1": "", "response2": "B", "overall_preference": 1},
     "auto", None),  # an empty response is unusable
    ({"prompt": "q", "chosen": "good", "rejected": "bad"}, "auto", ("good", "bad")),  # explicit prompt, strings
    ({"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
      "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]},
     "chosen_rejected", ("good", "bad")),  # implicit prompt: shared turns become the prompt
    ({"chosen": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "good"}],
      "rejected": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "bad"}]},
     "chosen_rejected", None),  # conversations with different prompts are not a pair
    ({"prompt": "q", "chosen": "good"}, "chosen_rejected", None),  # a missing side
]  # fmt: skip


@pytest.mark.parametrize(("row", "pair_format", "expected"), PAIR_CASES)
def test_preference_pair_mapping(row: dict[str, Any], pair_format: str, expected: Any) -> None:
    from pipeline.data.presets import SKIP, RowError
    from pipeline.stages.reward_model import to_pair

    if expected is None:
        with pytest.raises(RowError):  # the reason goes into the source's report
            to_pair(row, pair_format, "no_think")
        return
    pair = to_pair(row, pair_format, "no_think")
    if expected == "tie":
        assert pair is SKIP
    else:
        assert (pair["chosen"][-1]["content"], pair["rejected"][-1]["content"]) == expected
        assert pair["prompt"][-1]["role"] == "user" and pair["chosen"][-1]["role"] == "assistant"


# --------------------------------------------------------------------------------------------------
# GRPO


def test_grpo_stage_trains_and_writes_a_checkpoint(tmp_path: Path, base_model: Path) -> None:
    from pipeline.models import checkpoint_exists

    ctx = make_ctx(tmp_path, base_model, {"math_rl": grpo_stage()}, "math_rl")
    summary = run_stage(ctx)
    assert checkpoint_exists(ctx.final_dir)
    assert summary["steps"] == 2 and summary["prompts"] == 8
    assert summary["groups"] == 4 and summary["completions"] == 16  # 2 steps x 2 prompts x G=4
    assert summary["rewards"]["math"]["mean"] is not None
    assert 0.0 <= summary["accuracy"] <= 1.0 and summary["solve_threshold"] == 1.0
    assert summary["completion_length"]["max"] <= 6
    assert summary["tokens_per_s"] is not None and summary["tokens"] > 0


def test_grpo_through_the_compiled_engine_is_seeded(tmp_path: Path, base_model: Path) -> None:
    """Rollouts from the inference copy through the compiled engine: trained, timed, and fixed by the seed."""
    stage = grpo_stage(max_completion_length=20, rewards=[{"name": f"{THIS}:killing_reward"}])
    CALLS.update(n=0, kill_at=0)
    first = run_stage(make_ctx(tmp_path / "a", base_model, {"rl": stage}, "rl", engine="compiled"))
    CALLS.update(n=0, kill_at=0)
    again = run_stage(make_ctx(tmp_path / "b", base_model, {"rl": stage}, "rl", engine="compiled"))
    assert first["steps"] == 2 and first["completions"] == 16
    assert first["generation_s"] > 0 and first["rewards_s"] >= 0
    assert first["final_loss"] == again["final_loss"]
    assert first["completion_length"] == again["completion_length"]
    CALLS.update(n=0, kill_at=0)
    kept = run_stage(
        make_ctx(tmp_path / "c", base_model, {"rl": stage}, "rl", engine="compiled", free_for_training=False)
    )
    assert kept["final_loss"] == first["final_loss"]  # freeing memory for training changes no number
    assert kept["completion_length"] == first["completion_length"]


def test_early_scores_are_the_scores(tmp_path: Path) -> None:
    """Completions scored while the batch generates get the score the trainer's call would give."""
    from pipeline.stages.grpo.config import ROW_COLUMN
    from pipeline.stages.grpo.rewards import StageReward

    calls: list[int] = []

    def length(completions: list[str], **kwargs: Any) -> list[float]:
        calls.append(len(completions))
        return [float(len(c)) for c in completions]

    completions = ["a", "bb", "ccc", "dddd"]
    columns = {ROW_COLUMN: [0, 0, 1, 1], "answer": ["x", "x", "y", "y"]}
    reward = StageReward(length, "length")
    reward.prefetch(completions[1:3], {k: v[1:3] for k, v in columns.items()})
    assert reward(completions, **columns) == [1.0, 2.0, 3.0, 4.0]
    assert calls == [2, 2]  # the trainer's call scored only the two that were not scored early
    assert not reward.early  # scores of one batch never leak into the next
    relative = StageReward(length, "length", itemwise=False)  # batch_min_minus_k: not scored early
    relative.prefetch(completions, columns)
    assert not relative.early


DEGENERATE_REWARDS = [
    # (reward args, what the run must show)
    ({"value": 0.1}, "constant"),  # equal non-integer scores: every group zero-variance, advantages exactly 0
    ({"value": 0.0}, "constant"),  # a reward that scores 0 everywhere (e.g. timeouts scored 0)
    ({"value": None}, "unscored"),  # None everywhere, with max_unscored: 1 (checks off): no crash
]


def test_the_policy_forward_runs_without_cudnn_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    """cuDNN's SDPA plans every new shape (slow when lengths change every step): the policy's log-prob
    forward, whose backward is the training step's, runs with that backend off, and only there."""
    from trl import GRPOTrainer

    from pipeline.stages.grpo.trainer import CascadeGRPOTrainer

    seen = []
    monkeypatch.setattr(
        GRPOTrainer,
        "_get_per_token_logps_and_entropies",
        lambda self, *a, **k: seen.append(torch.backends.cuda.cudnn_sdp_enabled()),
    )
    assert torch.backends.cuda.cudnn_sdp_enabled()
    CascadeGRPOTrainer.__new__(CascadeGRPOTrainer)._get_per_token_logps_and_entropies(None, None)
    assert seen == [False]
    assert torch.backends.cuda.cudnn_sdp_enabled()


@pytest.mark.parametrize(("args", "kind"), DEGENERATE_REWARDS)
def test_grpo_zero_variance_groups_give_no_gradient(
    tmp_path: Path, base_model: Path, args: dict, kind: str
) -> None:
    rewards = [{"name": f"{THIS}:constant_reward", "args": args}]
    stage = grpo_stage(rewards=rewards, solve_threshold=1.0, max_unscored=1.0)
    ctx = make_ctx(tmp_path, base_model, {"rl": stage}, "rl")
    summary = run_stage(ctx)
    assert summary["steps"] == 2
    assert summary["zero_std_groups"] == summary["groups"] == 4 and summary["zero_std_fraction"] == 1.0
    assert summary["final_loss"] == 0.0 and summary["train_loss"] == 0.0
    unscored = 16 if kind == "unscored" else 0
    assert summary["unscored_completions"] == unscored
    assert summary["accuracy"] == (None if kind == "unscored" else 0.0)


def sparse_none_reward(completions: list[Any], trainer_state: Any, **kwargs: Any) -> list[float | None]:
    """0.5 everywhere but the first completion of odd steps (None): 1 in 16 unscored over two steps."""
    return [None if i == 0 and trainer_state.global_step % 2 else 0.5 for i in range(len(completions))]


# (reward, stage keys, the error's fragment or None for a run that trains)
UNSCORED = [
    ({"name": f"{THIS}:constant_reward", "args": {"value": None}}, {},
     "16 of 16 completions of the last 2 rollout batches got no score from any reward ('constant_reward')"),
    ({"name": f"{THIS}:constant_reward", "args": {"value": None}}, {"unscored_window": 1},
     "8 of 8 completions of the last 1 rollout batches"),  # a full window stops the stage at once
    ({"name": f"{THIS}:sparse_none_reward"}, {}, None),  # 6% unscored: under the default 10%
    ({"name": f"{THIS}:sparse_none_reward"}, {"max_unscored": 0.05}, "1 of 16 completions"),
]  # fmt: skip


@pytest.mark.parametrize(("reward", "keys", "error"), UNSCORED)
def test_grpo_stage_fails_loudly_when_its_rewards_score_nothing(
    tmp_path: Path, base_model: Path, reward: dict[str, Any], keys: dict[str, Any], error: str | None
) -> None:
    from pipeline.stages.grpo.trainer import UnscoredRewardsError

    ctx = make_ctx(tmp_path, base_model, {"rl": grpo_stage(rewards=[reward], **keys)}, "rl")
    if error is None:
        assert run_stage(ctx)["unscored_completions"] == 1
        return
    with pytest.raises(UnscoredRewardsError) as info:
        run_stage(ctx)
    message = str(info.value)
    assert message.startswith("stage 'rl': ") and error in message and "max_unscored=" in message


def test_grpo_lora_saves_a_merged_model(tmp_path: Path, base_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    stage = grpo_stage(
        lora={"enabled": True, "r": 4, "alpha": 8},
        rewards=[{"name": f"{THIS}:killing_reward"}],  # varied scores: the adapters get a gradient
        train={"max_steps": 1, "batch_size": 8, "learning_rate": 1e-2, "logging_steps": 1},
    )
    CALLS.update(n=0, kill_at=0)
    ctx = make_ctx(tmp_path, base_model, {"rl": stage}, "rl")
    run_stage(ctx)
    assert not (ctx.final_dir / "adapter_config.json").exists()  # a plain checkpoint, adapters merged
    trained = AutoModelForCausalLM.from_pretrained(ctx.final_dir).state_dict()
    base = AutoModelForCausalLM.from_pretrained(base_model).state_dict()
    assert trained.keys() == base.keys()
    assert any(not torch.equal(trained[k], base[k]) for k in base)  # the merged deltas changed weights


def test_grpo_truncated_completions_get_truncated_reward(tmp_path: Path, base_model: Path) -> None:
    # every completion scores 0.5, except those cut at max_completion_length, which score 0 unscored
    SCORED.clear()
    stage = grpo_stage(
        rewards=[{"name": f"{THIS}:counting_reward", "args": {"value": 0.5}}], truncated_reward=0.0
    )
    summary = run_stage(make_ctx(tmp_path, base_model, {"rl": stage}, "rl"))
    assert summary["truncated_fraction"] > 0  # a random model rarely stops within 6 tokens
    mean = summary["rewards"]["counting_reward"]["mean"]
    assert mean == pytest.approx(0.5 * (1 - summary["truncated_fraction"]), abs=1e-4)
    # the reward ran for the finished completions only: a truncated one's score was known beforehand
    assert sum(SCORED) == round(summary["completions"] * (1 - summary["truncated_fraction"]))


def test_grpo_mixes_sources_with_different_columns(tmp_path: Path, base_model: Path) -> None:
    # math rows have `answer`, instruction rows `instruction_id_list`/`kwargs`: each reward sees the union
    stage = grpo_stage(
        data=[{"source": "builtin:math", "size": 4}, {"source": "builtin:instruction", "size": 4}],
        rewards=[{"name": "math"}, {"name": "instruction"}],
        train={"max_steps": 1, "batch_size": 32, "logging_steps": 1},  # all 8 prompts in one rollout batch
    )
    summary = run_stage(make_ctx(tmp_path, base_model, {"rl": stage}, "rl"))
    assert summary["steps"] == 1 and summary["groups"] == 8
    assert set(summary["rewards"]) == {"math", "instruction"}


def test_grpo_epoch_filter_drops_solved_prompts(tmp_path: Path, base_model: Path) -> None:
    from pipeline.stages.grpo.trainer import STATE_FILE

    SEEN.clear()
    stage = grpo_stage(
        rewards=[{"name": f"{THIS}:parity_logged_reward"}],
        solve_threshold=1.0,
        epoch_filter={"enabled": True, "readmit_hard": 0.0, "readmit_easy": 0.0},
        data=[{"source": "builtin:math", "size": 4}],
        train={"max_steps": 4, "batch_size": 8, "logging_steps": 1, "save_steps": 3},
    )
    ctx = make_ctx(tmp_path, base_model, {"rl": stage}, "rl")
    summary = run_stage(ctx)
    rows = {r["id"]: int(r["answer"]) for r in ctx_rows(ctx)}
    even = {pid for pid, a in rows.items() if a % 2 == 0}
    odd = set(rows) - even
    assert even and odd  # the draw holds both kinds (the test needs easy and mixed prompts)
    first, second = summary["epoch_filter"][0], summary["epoch_filter"][1]
    # epoch 0 (steps 1-2, every prompt once): even-answer prompts solved by all, odd ones mixed
    assert first == {**first, "epoch": 0, "groups": 4, "partial": False, "seen": 4,
                     "solved_all": len(even), "unsolved_all": 0, "mixed": len(odd),
                     "dropped_easy": len(even), "readmitted_easy": 0, "admitted": len(odd)}  # fmt: skip
    # epoch 1 (steps 3-4) draws only the admitted (odd-answer) prompts, and sees no new easy one
    epoch1 = {pid for step, ids in SEEN if step >= 2 for pid in ids}
    assert epoch1 == odd and second["seen"] == len(odd) and second["solved_all"] == 0
    saved = json.loads((ctx.checkpoints_dir / "checkpoint-3" / STATE_FILE).read_text())
    assert saved["epoch_filter"]["epochs_done"] == 1 and set(saved["epoch_filter"]["excluded"]) == even


def ctx_rows(ctx: StageContext) -> list[dict[str, Any]]:
    from pipeline.stages.grpo.data import build_dataset

    return build_dataset(ctx)[1]


def test_grpo_phases_change_length_and_resume_mid_phase(tmp_path: Path, base_model: Path) -> None:
    stage = grpo_stage(
        rewards=[{"name": f"{THIS}:killing_reward"}],
        phases=[
            {"name": "short", "steps": 1, "max_completion_length": 3},
            {"name": "long", "steps": 2, "max_completion_length": 7, "mask_truncated_completions": True},
        ],
        train={"batch_size": 8, "logging_steps": 1, "save_steps": 1, "learning_rate": 1e-4},
    )
    records: list[dict[str, Any]] = []
    ctx = make_ctx(tmp_path, base_model, {"rl": stage}, "rl", records=records)
    # first attempt: phase "short" (reward call 1) completes; "long" saves step 1 (call 2) and dies in step 2
    CALLS.update(n=0, kill_at=3)
    with pytest.raises(SimulatedKill):
        run_stage(ctx)
    short_dir, long_dir = ctx.stage_dir / "phases" / "1-short", ctx.stage_dir / "phases" / "2-long"
    assert json.loads((short_dir / "phase.json").read_text())["status"] == "done"
    assert (long_dir / "checkpoints" / "checkpoint-1" / "trainer_state.json").exists()
    assert not (long_dir / "phase.json").exists()
    assert [p["status"] for p in records[-1]["phases"]] == ["done", "running"]
    # second attempt: "short" is skipped, "long" resumes at step 1 and runs step 2 only
    CALLS.update(n=0, kill_at=0)
    records.clear()
    ctx = make_ctx(tmp_path, base_model, {"rl": stage}, "rl", resume=True, records=records)
    summary = run_stage(ctx)
    assert CALLS["n"] == 1
    short, long = summary["phases"]
    assert (short["name"], short["steps"], long["name"], long["steps"]) == ("short", 1, "long", 2)
    assert short["completion_length"]["max"] == 3 and long["completion_length"]["max"] == 7
    assert summary["steps"] == 3 and summary["completion_length"]["max"] == 7
    assert [p["status"] for p in records[-1]["phases"]] == ["done", "done"]
    history = json.loads((long_dir / "phase.json").read_text())["log_history"]
    assert [h["step"] for h in history if "loss" in h] == [1, 2]  # step 1 from the checkpoint, step 2 new
    assert (ctx.final_dir / "config.json").exists() and (short_dir / "final" / "config.json").exists()


# --------------------------------------------------------------------------------------------------
# RLHF and IF-RL wiring


def test_rlhf_stage_uses_the_reward_model_stage(
    tmp_path: Path, base_model: Path, reward_model: tuple
) -> None:
    final, _ = reward_model
    stages = {
        "rm": {"kind": "reward_model", "data": [{"source": "builtin:chat", "size": 8}]},
        "rlhf": grpo_stage(
            domain="chat",
            data=[{"source": "builtin:chat", "size": 8}],
            rewards=[{"name": "reward_model", "args": {"model_path": "rm"}}],
            language_penalty="batch_min_minus_10",
            prompt_mode="think",
        ),
    }
    ctx = make_ctx(tmp_path, base_model, stages, "rlhf", checkpoints={"rm": str(final)})
    summary = run_stage(ctx)
    assert summary["steps"] == 2 and summary["rewards"]["reward_model"]["mean"] is not None
    assert "accuracy" not in summary  # a reward-model score has no "solved" level


def test_if_rl_combined_reward_wiring(tmp_path: Path, base_model: Path, reward_model: tuple) -> None:
    from pipeline.data.synthetic import generate
    from pipeline.stages.grpo.rewards import build_rewards

    final, _ = reward_model
    stages = {
        "rm": {"kind": "reward_model", "data": [{"source": "builtin:chat", "size": 8}]},
        "if_rl": grpo_stage(
            domain="instruction",
            data=[{"source": "builtin:instruction", "size": 8}],
            prompt_mode="mixed",
            rewards=[
                {"name": "instruction", "mode": "no_think"},
                {"name": "if_rm", "mode": "think", "args": {"model_path": "rm"}},
            ],
        ),
    }
    ctx = make_ctx(tmp_path, base_model, stages, "if_rl", checkpoints={"rm": str(final)})
    funcs, weights = build_rewards(ctx)
    assert [f.__name__ for f in funcs] == ["instruction", "if_rm"] and weights == [1.0, 1.0]
    row = next(r for r in generate("instruction", "train", 50, seed=0, flaw_rate=0.0))
    good = row["response"]
    completions = [good, good, f"<think>plan</think>\n{good}", f"<think>plan</think>\n{good}"]
    columns = {
        "prompts": [[{"role": "user", "content": row["prompt"]}]] * 4,
        "instruction_id_list": [row["instruction_id_list"]] * 4,
        "kwargs": [row["kwargs"]] * 4,
        "cascade_mode": ["no_think", "no_think", "think", "think"],
    }
    instruction, if_rm = (f(completions, **columns) for f in funcs)
    # each term scores only its own mode's rows (None elsewhere, so TRL sums one term per row)
    assert instruction[2:] == [None, None] and if_rm[:2] == [None, None]
    assert instruction[:2] == [1.0, 1.0]  # the reference response follows every instruction
    # thinking rows that follow every instruction get 1 + sigmoid(z) of the reward model: in (1, 2)
    assert all(1.0 < s < 2.0 for s in if_rm[2:])


# --------------------------------------------------------------------------------------------------
# Validation: recipe errors are one sentence naming the key

INVALID_STAGES = [
    # (stage overrides, words the error must contain)
    ({"rewards": [{"name": "mth"}]}, ["stages.rl.rewards[0].name", "did you mean 'math'"]),  # misspelt reward
    ({"rewards": []}, ["stages.rl.rewards"]),  # no reward at all
    ({"language_penalty": "batch_max"}, ["stages.rl.language_penalty"]),  # unknown penalty rule
    ({"num_generations": 1}, ["stages.rl.num_generations", "at least 2"]),  # GRPO needs a group
    ({"loss_type": "dapoo"}, ["stages.rl.loss_type", "did you mean 'dapo'"]),  # misspelt loss
    ({"phases": [{"name": "a", "steps": 1}, {"name": "a", "steps": 2}]}, ["stages.rl.phases", "repeats"]),
    ({"phases": [{"name": "a", "steps": 0}]}, ["stages.rl.phases[0].steps"]),  # an empty phase
    ({"epoch_filter": {"enabled": True, "readmit_hard": 1.5}}, ["stages.rl.epoch_filter.readmit_hard"]),
    ({"rewards": [{"name": "reward_model", "args": {"model_path": "org/rm"}}], "epoch_filter": {"enabled": True}},
     ["stages.rl.epoch_filter.enabled", "solve_threshold"]),  # no natural "solved" for a reward model
    ({"rewards": [{"name": "nosuchpkg.rewards:fn"}]}, ["stages.rl.rewards[0].name", "nosuchpkg"]),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "words"), INVALID_STAGES)
def test_invalid_grpo_stage_is_one_sentence_naming_the_key(
    tmp_path: Path, base_model: Path, overrides: dict, words: list[str]
) -> None:
    with pytest.raises(ConfigError) as err:
        make_ctx(tmp_path, base_model, {"rl": grpo_stage(**overrides)}, "rl")
    message = str(err.value)
    assert all(w in message for w in words), message
    assert "\n" not in message


def test_reward_model_reference_must_be_an_earlier_stage(tmp_path: Path, base_model: Path) -> None:
    stages = {
        "rlhf": grpo_stage(rewards=[{"name": "reward_model", "args": {"model_path": "rm"}}]),
        "rm": {"kind": "reward_model", "data": [{"source": "builtin:chat", "size": 8}]},
    }
    with pytest.raises(ConfigError, match=r"stages\.rlhf\.rewards\[0\]\.args\.model_path.*runs later"):
        make_ctx(tmp_path, base_model, stages, "rlhf")
    stages = {"rm": stages["rm"], "rlhf": stages["rlhf"]}
    refs = make_ctx(tmp_path, base_model, stages, "rlhf").config.stage_refs()
    assert refs == [("rewards[0].args.model_path", "rm")]  # declared by the kind, found in the recipe


def test_batch_that_splits_groups_fails_when_the_recipe_loads(tmp_path: Path, base_model: Path) -> None:
    with pytest.raises(ConfigError, match=r"stages\.rl\.train\.batch_size.*multiple of num_generations=4"):
        make_ctx(tmp_path, base_model, {"rl": grpo_stage(train={"max_steps": 1, "batch_size": 6})}, "rl")


# --------------------------------------------------------------------------------------------------
# SFT batches


def test_sft_padding_free_batches_give_the_padded_losses(tmp_path: Path, base_model: Path) -> None:
    """Padding-free batches (one row of conversations, positions restarting) train exactly as padded ones,
    also for rows cut at max_length."""
    summaries = []
    for padding_free in (False, True):
        stage = {
            "kind": "sft",
            "prompt_mode": "mixed",
            "padding_free": padding_free,
            "data": [{"source": "builtin:math", "size": 48}, {"source": "builtin:swe", "size": 24}],
            "train": {
                "max_steps": 3,
                "batch_size": 8,
                "max_length": 96,
                "learning_rate": 1e-3,
                "logging_steps": 1,
            },
        }
        ctx = make_ctx(tmp_path / str(padding_free), base_model, {"sft": stage}, "sft")
        summaries.append(run_stage(ctx))
    padded, flat = summaries
    assert (padded["batches"], flat["batches"]) == ("padded", "padding-free")  # the ledger says which ran
    assert flat["tokens"] == padded["tokens"]  # the same real tokens
    assert flat["final_loss"] == pytest.approx(padded["final_loss"], rel=1e-4)
    assert flat["train_loss"] == pytest.approx(padded["train_loss"], rel=1e-4)


def test_sft_packed_rows_attend_per_conversation_under_gradient_checkpointing(
    tmp_path: Path, base_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Packed rows (several conversations each) reach the varlen attention with their boundaries, also
    through gradient checkpointing's recomputation, and train to a finite loss."""
    import math

    from pipeline import varlen_attention

    conversations_per_row: list[int] = []
    original = varlen_attention.attention

    def spy(*args: Any, **kwargs: Any) -> Any:
        conversations_per_row.append(kwargs["cu_seq_lens_q"].numel() - 1)
        return original(*args, **kwargs)

    monkeypatch.setattr(varlen_attention, "attention", spy)
    stage = {
        "kind": "sft",
        "packing": True,
        "data": [{"source": "builtin:math", "size": 48}],
        "train": {"max_steps": 2, "batch_size": 2, "max_length": 256, "gradient_checkpointing": True,
                  "learning_rate": 1e-3, "logging_steps": 1},
    }  # fmt: skip
    summary = run_stage(make_ctx(tmp_path, base_model, {"sft": stage}, "sft"))
    assert conversations_per_row and max(conversations_per_row) > 2  # two rows, each holding several
    assert math.isfinite(summary["final_loss"])


@pytest.mark.parametrize(
    ("padding_free", "packing", "kernel", "flattened"),
    [
        ("auto", False, True, True),  # a GPU run the kernel takes: one row per batch
        ("auto", False, False, False),  # CPU, fp32 or an older GPU: padded batches
        ("auto", True, True, False),  # packed rows are already full
        (True, False, False, True),  # the recipe's explicit choice wins both ways
        (False, False, True, False),
    ],
)
def test_padding_free_auto_follows_the_kernel(
    monkeypatch: pytest.MonkeyPatch, padding_free: Any, packing: bool, kernel: bool, flattened: bool
) -> None:
    from pipeline import varlen_attention
    from pipeline.stages import sft

    monkeypatch.setattr(varlen_attention, "kernel_usable", lambda model, half: kernel)
    cfg = sft.Config(kind="sft", padding_free=padding_free, packing=packing)
    assert sft._padding_free(cfg, object(), object()) is flattened
