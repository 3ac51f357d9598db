"""Chat templates of real models: assistant-only masks without generation markers, prompt formatting."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pipeline.data.formatting import PromptFormat, rl_prompt, sft_messages
from pipeline.data.masks import TemplateMaskError, assistant_spans, tokenize_with_mask, trl_handles
from pipeline.models import CHAT_TEMPLATE

# SmolLM2-135M-Instruct's template: ChatML with a default system turn and no {% generation %} markers.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CONVERSATION = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "<think>\nA greeting.\n</think>\n\nHello!"},
    {"role": "user", "content": "Again"},
    {"role": "assistant", "content": "<think>\nOnce more.\n</think>\n\nHello again!"},
]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """A small byte-level BPE tokenizer with ChatML's special tokens (no hub download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(["hello again user assistant system"] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def with_template(tokenizer: Any, template: str) -> Any:
    copy = tokenizer.__class__(
        tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    copy.chat_template = template
    return copy


def trl_template(name: str) -> str:
    import trl

    return open(os.path.join(os.path.dirname(trl.__file__), "chat_templates", f"{name}.jinja")).read()


def masked_text(tokenizer: Any, messages: list[dict[str, str]]) -> list[str]:
    enc = tokenize_with_mask(tokenizer, messages)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    runs, current = [], []
    for token, bit in zip(ids, mask, strict=True):
        if bit:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def test_smollm2_template_masks_each_answer_with_its_end_of_turn(tokenizer: Any) -> None:
    tok = with_template(tokenizer, SMOLLM2_TEMPLATE)
    assert not trl_handles(tok)  # no markers, and TRL has no marked copy: Cascade derives the mask
    plain = [{"role": m["role"], "content": m["content"].split("</think>")[-1].strip()} for m in CONVERSATION]
    assert masked_text(tok, plain) == ["Hello!<|im_end|>", "Hello again!<|im_end|>"]


def test_qwen3_template_drops_past_thinking_and_the_mask_follows(tokenizer: Any) -> None:
    tok = with_template(tokenizer, trl_template("qwen3"))
    text, spans = assistant_spans(tok, CONVERSATION)
    assert "A greeting." not in text  # Qwen3 renders past assistant turns without their thinking
    assert [text[s:e] for s, e in spans] == [
        "Hello!<|im_end|>",
        "<think>\nOnce more.\n</think>\n\nHello again!<|im_end|>",
    ]
    assert trl_handles(tok)  # and TRL ships a marked copy of this one


def test_derived_mask_equals_the_generation_markers_mask(tokenizer: Any) -> None:
    """Cascade's own ChatML template has markers; without them, the derived mask is the same."""
    marked = with_template(tokenizer, CHAT_TEMPLATE)
    unmarked = with_template(
        tokenizer, CHAT_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    )
    out = marked.apply_chat_template(
        CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    derived = tokenize_with_mask(unmarked, CONVERSATION)
    assert derived["input_ids"] == list(out["input_ids"])
    assert derived["assistant_masks"] == list(out["assistant_masks"])


def test_a_template_that_hides_answers_is_one_sentence(tokenizer: Any) -> None:
    tok = with_template(
        tokenizer,
        "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}",
    )
    with pytest.raises(TemplateMaskError, match=r"assistant turn 1 .*generation.*assistant_only_loss: false"):
        assistant_spans(tok, CONVERSATION[:2])


# (format, mode, expected user turn) — system prompt, template, suffix and markers
FORMATS = [
    (PromptFormat(), "think", "What is 2+2? /think"),
    (PromptFormat(), "none", "What is 2+2?"),  # prompt_mode: none writes no marker
    (
        PromptFormat(suffix="Put the final answer in \\boxed{}."),
        "no_think",
        "What is 2+2?\n\nPut the final answer in \\boxed{}. /no_think",
    ),
    (
        PromptFormat(template="Question: {prompt}\nAnswer briefly."),
        "none",
        "Question: What is 2+2?\nAnswer briefly.",
    ),
]


@pytest.mark.parametrize(("fmt", "mode", "user"), FORMATS)
def test_prompt_format(fmt: PromptFormat, mode: str, user: str) -> None:
    assert rl_prompt("What is 2+2?", mode, fmt) == [{"role": "user", "content": user}]


def test_messages_rows_get_the_mode_system_prompt_and_keep_tool_calls() -> None:
    fmt = PromptFormat(system_prompt="Be brief.")
    call = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {}}}],
    }
    row = {
        "messages": [
            {"role": "user", "content": "Use f."},
            call,
            {"role": "tool", "content": "1", "tool_call_id": "c"},
            {"role": "assistant", "content": "Done."},
        ]
    }
    out = sft_messages(row, "no_think", fmt)
    assert out[0] == {"role": "system", "content": "Be brief."}
    assert out[1]["content"] == "Use f. /no_think" and out[2]["tool_calls"] == call["tool_calls"]
    assert out[3]["tool_call_id"] == "c"
    own = sft_messages({**row, "thinking": "think"}, "no_think")  # the row's own mode wins
    assert own[0]["content"] == "Use f. /think"
    prompt = rl_prompt([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}], "think", fmt)
    assert prompt == [{"role": "system", "content": "S"}, {"role": "user", "content": "Q /think"}]
