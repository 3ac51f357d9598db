"""Format rewards, language-mixing detection and the language penalty wrapper."""

from __future__ import annotations

import pickle
import threading

import pytest

from rewards import stats
from rewards.format import (
    LanguagePenalty,
    detect_mixed_language,
    language_mixing_reward,
    script_of,
    think_format_reward,
    with_language_penalty,
)

# (completion, score with require_think=True, score with require_think=False); one comment per case.
THINK_CASES = [
    ("<think>reason</think>answer", 1.0, 1.0),  # the canonical shape
    ("  <think>\nreason\n</think>\n\nanswer  ", 1.0, 1.0),  # surrounding whitespace is fine
    ("reason</think>answer", 1.0, 1.0),  # <think> supplied by the chat template in the prompt
    ("<think>reason</think>", 0.0, 0.0),  # no answer after the reasoning
    ("<think>reason</think>   \n", 0.0, 0.0),  # whitespace-only answer
    ("<think>reason never closed", 0.0, 0.0),  # unclosed reasoning
    ("<think></think>answer", 0.0, 1.0),  # empty reasoning: "no-think" mode
    ("<think>  </think>answer", 0.0, 1.0),  # whitespace-only reasoning
    ("just an answer", 0.0, 1.0),  # no tags at all
    ("", 0.0, 0.0),  # empty completion
    ("preamble <think>reason</think>answer", 0.0, 0.0),  # text before <think>
    ("<think>a</think>b<think>c</think>d", 0.0, 0.0),  # two reasoning blocks
    ("<think>a</think>b</think>c", 0.0, 0.0),  # stray closing tag
    ("<think><think>a</think>b", 0.0, 0.0),  # nested opening tag
    ("answer <think>", 0.0, 0.0),  # opening tag after the answer, never closed
    ([{"role": "assistant", "content": "<think>r</think>a"}], 1.0, 1.0),  # chat-message completion
    (None, 0.0, 0.0),  # missing completion
]


@pytest.mark.parametrize(("completion", "strict", "lenient"), THINK_CASES)
def test_think_format(completion, strict, lenient):
    assert think_format_reward([completion]) == [strict]
    assert think_format_reward([completion], require_think=False) == [lenient]


# (text, reference text, mixed?); one comment per case.
MIXING_CASES = [
    ("The answer is 42.", "What is 6*7?", False),  # English in, English out
    ("The answer is 42，对吧", "What is 6*7?", True),  # CJK in an English answer
    ("答案是 42。", "6 乘以 7 等于多少？", False),  # Chinese in, Chinese out
    ("答案是 x = 42", "6 乘以 7 等于多少？", False),  # Latin variable names in a Chinese answer
    ("Ответ: 42", "What is 6*7?", True),  # Cyrillic in an English answer
    ("Ответ: 42", "Сколько будет 6*7?", False),  # Russian in, Russian out
    ("The angle θ is 30°.", "Find the angle.", False),  # a single Greek letter is a math symbol
    ("We use α + β = π/2", "Find the angles.", False),  # several isolated Greek letters
    ("Καλημέρα means good morning", "Translate it.", True),  # a Greek word is Greek
    ("Use `print('你好')` to greet.", "How do I greet?", False),  # inline code is ignored
    ("```python\nprint('你好')\n```\nDone.", "How do I greet?", False),  # code blocks are ignored
    ("So $x = \\text{面积}$ holds.", "Find x.", False),  # LaTeX math is ignored
    ("Set ℝ and 𝑥 ∈ ℕ.", "Define the sets.", False),  # mathematical letters are neutral
    ("1 + 2 = 3!!! ### ---", "Add them.", False),  # digits and punctuation only
    ("", "Hi", False),  # empty response
    ("Done", None, False),  # no reference: Latin
    ("完成", None, True),  # no reference: CJK is foreign
    ("これは答えです", "これは何ですか", False),  # Japanese kana with Japanese prompt
    ("これは答えです", "这是什么", True),  # Japanese kana in answer to a Chinese prompt
    ("Ｆｕｌｌｗｉｄｔｈ letters", "Say it.", False),  # fullwidth Latin is Latin
    ("정답은 42", "What is 6*7?", True),  # Hangul in an English answer
    ("مرحبا", "Say hello.", True),  # Arabic in an English answer
]


@pytest.mark.parametrize(("text", "reference", "mixed"), MIXING_CASES)
def test_detect_mixed_language(text, reference, mixed):
    assert detect_mixed_language(text, reference) is mixed


@pytest.mark.parametrize(
    ("char", "script"),
    [
        ("a", "Latin"),  # ASCII letter
        ("7", None),  # digit
        ("中", "Han"),  # CJK ideograph
        ("カ", "Kana"),  # katakana
        ("π", "Greek"),  # Greek letter
        ("∑", None),  # math symbol
        ("é", "Latin"),  # accented Latin
        ("Ａ", "Latin"),  # fullwidth Latin
    ],
)
def test_script_of(char, script):
    assert script_of(char) == script


def test_min_foreign_chars_and_always_allowed():
    # One stray character can be tolerated, and scripts can be allowed explicitly.
    assert detect_mixed_language("OK 好", "Hi", min_foreign_chars=2) is False
    assert detect_mixed_language("OK 好的", "Hi", min_foreign_chars=2) is True
    assert detect_mixed_language("OK 好", "Hi", always_allowed=("Latin", "Han")) is False
    assert detect_mixed_language("Hello", "你好", always_allowed=()) is True


@pytest.mark.parametrize(
    ("completion", "prompt", "expected"),
    [
        ("<think>think</think>Paris.", "Capital of France?", 1.0),  # clean answer
        ("<think>think</think>巴黎", "Capital of France?", 0.0),  # CJK answer to English prompt
        ("<think>嗯，想想</think>Paris.", "Capital of France?", 1.0),  # mixing only in the reasoning
        ("<think>never closed", "Capital of France?", 0.0),  # unclosed think scores 0
        ("Paris.", [{"role": "system", "content": "你好"}, {"role": "user", "content": "Capital?"}], 1.0),
        # ^ chat prompt: only user turns set the reference script
        ("巴黎", [{"role": "user", "content": "法国的首都？"}], 1.0),  # Chinese chat prompt
    ],
)
def test_language_mixing_reward(completion, prompt, expected):
    assert language_mixing_reward([completion], prompts=[prompt]) == [expected]


def test_language_mixing_include_thinking():
    # With include_thinking the reasoning is checked too.
    completion = "<think>嗯，想想</think>Paris."
    assert language_mixing_reward([completion], prompts=["Capital?"], include_thinking=True) == [0.0]


def test_language_mixing_without_prompts():
    # TRL always passes prompts, but the reward also works without them (Latin reference).
    assert language_mixing_reward(["fine", "不好"]) == [1.0, 0.0]


def _constant(completions, **kwargs):
    """A stand-in reward: 0.5 for every completion, None for those containing 'skip'."""
    return [None if "skip" in str(c) else 0.5 for c in completions]


def _varied(completions, **kwargs):
    """A stand-in reward that scores by position: 1, 2, 3, …"""
    return [float(i + 1) for i in range(len(completions))]


@pytest.mark.parametrize(
    ("penalty", "reward_fn", "expected"),
    [
        (-1.0, _constant, [0.5, -1.0, None, 0.5]),  # math: fixed -1
        (0, _constant, [0.5, 0.0, None, 0.5]),  # code: fixed 0
        ("-1", _constant, [0.5, -1.0, None, 0.5]),  # a number given as a string (recipe value)
        ("batch_min_minus_10", _varied, [1.0, -9.0, -9.0, 4.0]),  # RLHF: batch minimum minus 10
        ("batch_min_minus_2.5", _varied, [1.0, -1.5, -1.5, 4.0]),  # another margin
    ],
)
def test_language_penalty(penalty, reward_fn, expected):
    # The second and third completions mix scripts; _constant skips the third (None stays None).
    completions = ["fine", "混合 mixed", "skip 混合", "fine"]
    wrapped = with_language_penalty(reward_fn, penalty)
    assert wrapped(completions, prompts=["Hi"] * 4) == expected


def test_language_penalty_keeps_scores_without_mixing():
    # Nothing mixed: the wrapped reward's scores pass through untouched.
    wrapped = with_language_penalty(_varied, -1)
    assert wrapped(["a", "b"], prompts=["Hi", "Hi"]) == [1.0, 2.0]


@pytest.mark.parametrize("penalty", ["batch_min", "lots", True, None, [1]])
def test_language_penalty_rejects_bad_values(penalty):
    # A penalty that is neither a number nor batch_min_minus_<k> is a configuration error.
    with pytest.raises(ValueError, match="language penalty"):
        with_language_penalty(_constant, penalty)


def test_language_penalty_is_picklable_and_named():
    # GRPOTrainer logs rewards by __name__ and may pickle them.
    wrapped = with_language_penalty(think_format_reward, -1.0)
    restored = pickle.loads(pickle.dumps(wrapped))
    assert isinstance(restored, LanguagePenalty)
    assert restored.__name__ == "think_format_reward"
    assert restored(["<think>a</think>好"], prompts=["Hi"]) == [-1.0]


@pytest.mark.parametrize("fn", [think_format_reward, language_mixing_reward])
def test_format_rewards_from_a_thread_and_pickled(fn):
    # Plain functions: picklable by reference and free of thread-bound state.
    assert pickle.loads(pickle.dumps(fn)) is fn
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn(["<think>a</think>b"], prompts=["Hi"], junk=1)))
    thread.start()
    thread.join(timeout=30)
    assert out == [[1.0]]


def test_format_stats_recorded():
    # Both rewards report to rewards.stats under their registry names.
    stats.reset()
    think_format_reward(["<think>a</think>b", "x"])
    language_mixing_reward(["ok", "<think>open"])
    snap = stats.snapshot()
    assert snap["think_format"]["mean"] == 0.5
    assert snap["language_mixing"]["parse_failures"] == 1.0
