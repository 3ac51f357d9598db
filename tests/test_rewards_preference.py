"""Reward-model rewards on a tiny randomly initialised Qwen3 classifier, and IF-RL's combined formula."""

from __future__ import annotations

import math
import pickle
import statistics
import threading
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rewards import build_reward  # noqa: E402
from rewards.preference import (  # noqa: E402
    group_normalize,
    instruction_with_rm_reward,
    reward_model_reward,
    sigmoid,
)

# fmt: off
WORDS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "user", "assistant", "system", "the", "a", "cat", "dog",
         "sat", "on", "mat", "answer", "yes", "no", "good", "bad", "think", "here", "is", "my", "comma", ",", ".",
         "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
# fmt: on
TEMPLATE = "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"


def _save_tiny_rm(directory: Path, chat_template: str | None) -> Path:
    """A 1-layer Qwen3 sequence classifier (num_labels=1) and a word-level tokenizer, saved as a checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForSequenceClassification

    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>"
    )
    tokenizer.chat_template = chat_template
    config = Qwen3Config(
        vocab_size=len(WORDS),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=256,
        num_labels=1,
        pad_token_id=0,
        initializer_range=0.5,  # large weights, so that different texts get clearly different scores
    )
    torch.manual_seed(0)
    Qwen3ForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def rm_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(_save_tiny_rm(tmp_path_factory.mktemp("rm"), TEMPLATE))


@pytest.fixture(scope="module")
def plain_rm_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(_save_tiny_rm(tmp_path_factory.mktemp("rm_plain"), None))


PROMPTS = ["a cat", "a dog", [{"role": "system", "content": "good"}, {"role": "user", "content": "a dog"}]]
COMPLETIONS = ["the cat sat on the mat", "no", "<think>bad bad</think>yes good"]


def test_scores_are_one_float_per_completion_and_deterministic(rm_path: str) -> None:
    reward = reward_model_reward(rm_path, device="cpu")
    scores = reward(COMPLETIONS, prompts=PROMPTS)
    assert len(scores) == 3 and all(isinstance(s, float) and math.isfinite(s) for s in scores)
    assert len(set(scores)) == 3  # different conversations, different scores
    assert reward(COMPLETIONS, prompts=PROMPTS) == scores  # same instance, same answer
    assert reward_model_reward(rm_path, device="cpu")(COMPLETIONS, prompts=PROMPTS) == scores  # fresh load
    assert reward.__name__ == "reward_model"


def test_batching_matches_one_by_one(rm_path: str) -> None:
    # Padding inside a batch must not change any score (right padding, last non-pad token read).
    completions = COMPLETIONS + ["yes", "the dog sat on the mat here is my answer", "one two three"]
    prompts = PROMPTS + ["a cat", "a", PROMPTS[2]]
    batched = reward_model_reward(rm_path, batch_size=16, device="cpu")(completions, prompts=prompts)
    single = reward_model_reward(rm_path, batch_size=1, device="cpu")(completions, prompts=prompts)
    assert batched == pytest.approx(single, abs=1e-5)


def test_think_rule(rm_path: str) -> None:
    # Closed thinking: only the answer is judged. Unclosed: the whole response is judged (not skipped).
    reward = reward_model_reward(rm_path, device="cpu")
    scorer = reward.scorer
    closed, unclosed, answer_only = reward(
        ["<think>bad bad no</think>yes good", "<think>the dog sat", "yes good"], prompts=["a cat"] * 3
    )
    assert closed == answer_only
    assert unclosed == pytest.approx(scorer.score(["a cat"], ["<think>the dog sat"])[0], abs=1e-6)
    assert unclosed != pytest.approx(scorer.score(["a cat"], [""])[0], abs=1e-6)


def test_chat_template_or_plain_concatenation(rm_path: str, plain_rm_path: str) -> None:
    # With a template the conversation is rendered as messages; without one, prompt + response.
    templated = reward_model_reward(rm_path, device="cpu").scorer
    assert templated.render(PROMPTS[2], "yes") == (
        "<|im_start|> system good <|im_end|> <|im_start|> user a dog <|im_end|> "
        "<|im_start|> assistant yes <|im_end|> ",
        False,
    )
    plain = reward_model_reward(plain_rm_path, device="cpu").scorer
    assert plain.render("a dog ", "yes") == ("a dog yes", True)


def test_truncation_keeps_the_end_of_the_response(rm_path: str) -> None:
    # Left truncation: prompts that differ only beyond the window score the same.
    reward = reward_model_reward(rm_path, max_length=8, device="cpu")  # 8 tokens: "a dog" and the reply
    long_a = "cat " * 40 + "a dog"
    long_b = "mat " * 40 + "a dog"
    score_a, score_b, short = reward(["yes good"] * 3, prompts=[long_a, long_b, "a dog"])
    assert score_a == pytest.approx(score_b, abs=1e-6)
    assert math.isfinite(short)


def test_picklable_without_the_model(rm_path: str) -> None:
    reward = reward_model_reward(rm_path, device="cpu")
    before = reward(COMPLETIONS, prompts=PROMPTS)  # loads the model
    blob = pickle.dumps(reward)
    assert len(blob) < 10_000  # the weights are not pickled
    copy = pickle.loads(blob)
    assert copy.scorer._model is None  # reloaded lazily on first call
    assert copy(COMPLETIONS, prompts=PROMPTS) == pytest.approx(before, abs=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_default_device_is_this_process_gpu(rm_path: str) -> None:
    # Without a device argument the model goes to the current CUDA device and scores as on the CPU.
    on_gpu = reward_model_reward(rm_path)
    scores = on_gpu(COMPLETIONS, prompts=PROMPTS)
    assert next(on_gpu.scorer._model.parameters()).device.type == "cuda"
    assert scores == pytest.approx(
        reward_model_reward(rm_path, device="cpu")(COMPLETIONS, prompts=PROMPTS), abs=1e-3
    )


def test_thread_safe(rm_path: str) -> None:
    reward = reward_model_reward(rm_path, batch_size=2, device="cpu")
    expected = reward(COMPLETIONS, prompts=PROMPTS)
    got: list = []
    threads = [
        threading.Thread(target=lambda: got.append(reward(COMPLETIONS, prompts=PROMPTS))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == [expected] * 4


def test_normalize_options(rm_path: str) -> None:
    prompts = ["a cat", "a cat", "a cat", "a dog", "a dog"]
    completions = ["yes", "no", "the cat sat", "good", "bad"]
    raw = reward_model_reward(rm_path, device="cpu")(completions, prompts=prompts)
    grouped = reward_model_reward(rm_path, device="cpu", normalize="group")(completions, prompts=prompts)
    squashed = reward_model_reward(rm_path, device="cpu", normalize="sigmoid")(completions, prompts=prompts)
    assert sum(grouped[:3]) == pytest.approx(0.0, abs=1e-6) and sum(grouped[3:]) == pytest.approx(
        0.0, abs=1e-6
    )
    assert squashed == pytest.approx([sigmoid(x) for x in raw])
    with pytest.raises(ValueError, match="normalize"):
        reward_model_reward(rm_path, normalize="zscore")


def test_factory_errors_are_clear(tmp_path: Path) -> None:
    # A misspelt argument is reported at build time; a missing checkpoint on first use, naming the path.
    with pytest.raises(ValueError, match="batchsize"):
        reward_model_reward("x", batchsize=4)
    with pytest.raises(ValueError, match="model_path"):
        instruction_with_rm_reward(None)
    reward = reward_model_reward(str(tmp_path / "missing"), device="cpu")
    with pytest.raises(RuntimeError, match="missing"):
        reward(["yes"], prompts=["a"])


def test_registry_builds_both(rm_path: str) -> None:
    reward = build_reward("reward_model", {"model_path": rm_path, "device": "cpu"})
    assert reward.__name__ == "reward_model"
    combined = build_reward("if_rm", {"model_path": rm_path, "device": "cpu"})
    assert combined.__name__ == "if_rm"
    scores = combined(
        ["yes good", "yes, good"], [["punctuation:no_comma"]] * 2, [[{}]] * 2, prompts=["a cat", "a cat"]
    )
    assert 1.0 < scores[0] < 2.0 and scores[1] == 0.0


# --- the combined IF + RM formula, with a fake scorer ---------------------------------------------------

FAKE_RM = {
    "alpha": 2.0,
    "beta": -1.0,
    "gamma": 0.5,
    "del, ta": 3.0,
    "eps, ilon": 1.0,
    "zeta": 4.0,
    "eta": 7.0,
}


class FakeScorer:
    """Scores by lookup and records what it was asked, so the formula can be checked exactly."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, prompts: list, responses: list[str]) -> list[float]:
        self.calls.append(list(responses))
        return [FAKE_RM[r] for r in responses]


def test_combined_reward_formula() -> None:
    # Group P1: three followers (alpha, beta, gamma) and one violator ("del, ta" has a comma).
    # Group P2: one follower (zeta) and one violator. Group P3: violators only — never sent to the RM.
    # A row without instructions scores None; an unclosed think follows nothing (0).
    completions = ["alpha", "beta", "gamma", "del, ta", "zeta", "eps, ilon", "eps, ilon", "<think>eta", "x"]
    prompts = ["P1"] * 4 + ["P2"] * 2 + ["P3"] * 2 + ["P4"]
    ids = [["punctuation:no_comma"]] * 8 + [None]
    scorer = FakeScorer()
    reward = instruction_with_rm_reward(scorer=scorer, eps=1e-6)
    scores = reward(completions, ids, [[{}]] * 8 + [None], prompts=prompts)

    def z(values: list[float], x: float) -> float:
        return (x - statistics.fmean(values)) / (statistics.pstdev(values) + 1e-6)

    p1 = [2.0, -1.0, 0.5, 3.0]  # the whole group is normalised, violators included
    p2 = [4.0, 1.0]
    expected = [
        1 + sigmoid(z(p1, 2.0)),
        1 + sigmoid(z(p1, -1.0)),
        1 + sigmoid(z(p1, 0.5)),
        0.0,
        1 + sigmoid(z(p2, 4.0)),
        0.0,
        0.0,
        0.0,
        None,
    ]
    assert scores[:8] == pytest.approx(expected[:8], abs=1e-9)
    assert scores[8] is None
    assert sorted(r for call in scorer.calls for r in call) == sorted(
        ["alpha", "beta", "gamma", "del, ta", "zeta", "eps, ilon"]
    )  # P3 and P4 never reach the reward model
    assert scores[0] > scores[2] > scores[1] > 1.0  # followers ranked by the RM, all above violators


def test_group_normalize_handles_order_and_singletons() -> None:
    # Interleaved prompts group by identity; a single completion normalises to 0; message lists work.
    messages = [{"role": "user", "content": "q"}]
    values = group_normalize([1.0, 10.0, 3.0, 5.0], ["a", messages, "a", "b"])
    assert values[1] == 0.0 and values[3] == 0.0
    assert values[0] == pytest.approx(-1.0, abs=1e-5) and values[2] == pytest.approx(1.0, abs=1e-5)


def test_combined_reward_is_picklable() -> None:
    reward = instruction_with_rm_reward(scorer=_module_scorer)
    copy = pickle.loads(pickle.dumps(reward))
    args = (["alpha", "beta"], [["punctuation:no_comma"]] * 2, [[{}]] * 2)
    assert copy(*args, prompts=["p", "p"]) == reward(*args, prompts=["p", "p"])


def _module_scorer(prompts: list, responses: list[str]) -> list[float]:
    return [FAKE_RM[r] for r in responses]
