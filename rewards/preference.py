"""Reward-model rewards: a scalar preference score per (prompt, response), and IF-RL's combined reward.

``reward_model_reward(model_path, ...)`` builds a callable that scores completions with a sequence-
classification reward model (``num_labels=1``, as TRL's ``RewardTrainer`` and the ``reward_model``
stage produce). The model loads lazily, in the process that first calls it, on that process's device;
pickling drops it and the copy reloads on its first call. A lock serialises use of the model, so one
instance may be shared by threads.

A reward model judges the answer the user sees: the text after the last ``</think>``, or the whole
completion when thinking never closed (Nemotron-Cascade's rule, :func:`rewards.common.response_for_judging`),
so that an endless "thought" is judged on what it says rather than given a free pass.

Like every reward, these never raise for what a completion, a prompt or a column holds: text with unpaired
UTF-16 surrogates (which the tokenizers' Rust core refuses) reaches the model with U+FFFD in their place,
and a conversation the tokenizer's chat template rejects (a message with an unknown role) scores None.

``instruction_with_rm_reward(model_path, ...)`` is Nemotron-Cascade's reward for instruction-following
RL with thinking models: ``R = R_IF + sigmoid(z)`` when every instruction is followed (IFEval strict,
``R_IF = 1``) and ``R = 0`` otherwise, where ``z`` is the reward model's score normalised within the
group of completions of the same prompt, ``(x - mean) / (std + eps)``. The verifiable part dominates
(any follower beats every non-follower); the preference part ranks followers, so a model cannot buy
instruction compliance with a degenerate answer.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from rewards import stats
from rewards.common import column, final_answer, response_for_judging
from rewards.instruction import instruction_results

logger = logging.getLogger(__name__)

Scorer = Callable[[Sequence[Any], Sequence[str]], list[float | None]]
_NORMALIZE = {False: None, None: None, True: "group", "group": "group", "sigmoid": "sigmoid",
              "group_sigmoid": "group_sigmoid"}  # fmt: skip


def sigmoid(x: float) -> float:
    """The logistic function, stable for large ``|x|``."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def prompt_key(prompt: Any) -> str:
    """A hashable identity for a prompt (a string, or a list of chat messages)."""
    if isinstance(prompt, str):
        return prompt
    try:
        return json.dumps(prompt, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(prompt)


def group_normalize(
    values: Sequence[float | None], prompts: Sequence[Any], eps: float = 1e-6
) -> list[float | None]:
    """``(x - mean) / (std + eps)`` within each group of identical prompts (population std).

    TRL passes the ``num_generations`` completions of one prompt consecutively; grouping by prompt
    text also handles any order. A group of one (or of equal scores) normalises to 0; a value that is
    None (unscored) stays None and takes no part in its group's mean.
    """
    groups: dict[str, list[int]] = {}
    for index, prompt in enumerate(prompts):
        if values[index] is not None:
            groups.setdefault(prompt_key(prompt), []).append(index)
    out: list[float | None] = [None] * len(values)
    for members in groups.values():
        xs = [float(values[i]) for i in members]  # type: ignore[arg-type]
        mean = sum(xs) / len(xs)
        std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
        for i, x in zip(members, xs, strict=True):
            out[i] = (x - mean) / (std + eps)
    return out


def clean_text(value: Any) -> str:
    """``value`` as text the tokenizers accept: a str with U+FFFD for each unpaired UTF-16 surrogate.

    A completion or prompt decoded from JSON (``"\\ud800"``) or cut in the middle of an emoji can hold
    lone surrogates; a well-formed pair becomes its character.
    """
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _default_device() -> Any:
    import torch

    if torch.cuda.is_available():  # the device this process was given (accelerate sets it per rank)
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _dtype(value: Any) -> Any:
    import torch

    if value is None or value == "auto":
        return "auto"
    if isinstance(value, torch.dtype):
        return value
    name = str(value).removeprefix("torch.")
    aliases = {
        "bf16": "bfloat16",
        "fp16": "float16",
        "half": "float16",
        "fp32": "float32",
        "float": "float32",
    }
    dtype = getattr(torch, aliases.get(name, name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(
            f"torch_dtype must be a torch dtype name such as 'bfloat16' or 'auto', got {value!r}"
        )
    return dtype


class RewardModelScorer:
    """Scores (prompt, response) pairs with a sequence-classification reward model, in batches.

    Conversations are rendered with the tokenizer's chat template when it has one (the prompt as
    given, string or message list, then the response as the assistant turn); otherwise prompt and
    response are concatenated. Long inputs are truncated from the left so that the end of the
    response, where the model reads its score, is always kept.
    """

    def __init__(
        self,
        model_path: str,
        *,
        batch_size: int = 16,
        max_length: int = 1024,
        device: Any = None,
        torch_dtype: Any = None,
        trust_remote_code: bool = False,
    ):
        if batch_size < 1 or max_length < 8:
            raise ValueError(f"batch_size must be >= 1 and max_length >= 8, got {batch_size}, {max_length}")
        self.model_path = str(model_path)
        self.batch_size, self.max_length = int(batch_size), int(max_length)
        self.device, self.torch_dtype, self.trust_remote_code = device, torch_dtype, trust_remote_code
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_model=None, _tokenizer=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def load(self) -> tuple[Any, Any]:
        """The model and tokenizer, loaded on first use (in this process) onto the scoring device."""
        with self._lock:
            if self._model is None:
                from transformers import AutoModelForSequenceClassification, AutoTokenizer

                started = time.perf_counter()
                try:
                    tokenizer = AutoTokenizer.from_pretrained(
                        self.model_path, trust_remote_code=self.trust_remote_code
                    )
                    model = AutoModelForSequenceClassification.from_pretrained(
                        self.model_path,
                        num_labels=1,
                        dtype=_dtype(self.torch_dtype),
                        trust_remote_code=self.trust_remote_code,
                    )
                except (OSError, ValueError) as exc:
                    raise RuntimeError(f"cannot load reward model '{self.model_path}': {exc}") from exc
                if tokenizer.pad_token is None:
                    tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
                tokenizer.padding_side = "right"  # the classifier reads the last non-pad token
                tokenizer.truncation_side = "left"
                model.config.pad_token_id = tokenizer.pad_token_id
                device = self.device if self.device is not None else _default_device()
                self._model = model.to(device).eval()
                self._tokenizer = tokenizer
                logger.info(
                    "loaded reward model %s on %s in %.1fs",
                    self.model_path,
                    device,
                    time.perf_counter() - started,
                )
        return self._model, self._tokenizer

    def unload(self) -> None:
        """Free the model (it reloads on the next call)."""
        with self._lock:
            self._model = self._tokenizer = None

    def render(self, prompt: Any, response: str) -> tuple[str, bool] | None:
        """The text the model scores and whether the tokenizer should add its special tokens; None when
        the tokenizer's chat template refuses the conversation (an unknown role, say)."""
        from jinja2 import TemplateError

        _, tokenizer = self.load()
        if isinstance(prompt, list | tuple):
            messages = [
                {"role": clean_text(m.get("role")) or "user", "content": clean_text(m.get("content"))}
                for m in prompt
                if isinstance(m, dict)
            ]
        else:
            messages = [{"role": "user", "content": clean_text(prompt)}]
        messages.append({"role": "assistant", "content": clean_text(response)})
        if getattr(tokenizer, "chat_template", None):
            try:
                return clean_text(tokenizer.apply_chat_template(messages, tokenize=False)), False
            except (TemplateError, ValueError, TypeError, KeyError):
                return None
        return "".join(m["content"] for m in messages), True

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> list[float | None]:
        """One raw scalar score per pair (None: not renderable), batched longest first; order preserved."""
        import torch

        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
        if not responses:
            return []
        with self._lock:
            model, tokenizer = self.load()
            texts = [self.render(p, r) for p, r in zip(prompts, responses, strict=True)]
            rendered = {i: text for i, text in enumerate(texts) if text is not None}
            order = sorted(rendered, key=lambda i: -len(rendered[i][0]))
            scores: list[float | None] = [None] * len(texts)
            device = next(model.parameters()).device
            for begin in range(0, len(order), self.batch_size):
                chunk = order[begin : begin + self.batch_size]
                # Texts with and without special tokens are tokenised separately, then padded together.
                encoded = [
                    tokenizer(
                        rendered[i][0],
                        add_special_tokens=rendered[i][1],
                        truncation=True,
                        max_length=self.max_length,
                    )["input_ids"]
                    for i in chunk
                ]
                batch = tokenizer.pad({"input_ids": encoded}, padding=True, return_tensors="pt")
                with torch.inference_mode():
                    logits = model(
                        input_ids=batch["input_ids"].to(device),
                        attention_mask=batch["attention_mask"].to(device),
                    ).logits
                for i, value in zip(chunk, logits[:, 0].float().cpu().tolist(), strict=True):
                    scores[i] = float(value)
        return scores


def _prompts(prompts: Any, n: int) -> list[Any]:
    """One prompt per completion, whatever the ``prompts`` column holds (one, a list, None, garbage)."""
    if not isinstance(prompts, list | tuple):
        return [prompts] * n
    return column(prompts, n)


class RewardModelReward:
    """A reward-model reward in TRL's contract; build it with :func:`reward_model_reward`."""

    __name__ = "reward_model"

    def __init__(self, scorer: Scorer | RewardModelScorer, *, normalize: Any = False, eps: float = 1e-6):
        if normalize not in _NORMALIZE:
            raise ValueError(f"normalize must be one of {sorted(map(str, _NORMALIZE))}, got {normalize!r}")
        self.scorer, self.normalize, self.eps = scorer, _NORMALIZE[normalize], eps

    def raw_scores(self, prompts: Sequence[Any], responses: Sequence[str]) -> list[float | None]:
        """The scorer's raw scores, one per (prompt, response); None where it could not score."""
        score = self.scorer.score if isinstance(self.scorer, RewardModelScorer) else self.scorer
        return [None if x is None else float(x) for x in score(prompts, responses)]

    def __call__(self, completions: list[Any], prompts: Any = None, **_: Any) -> list[float | None]:
        """Scores of the judged responses: raw, or normalised as configured."""
        started = time.perf_counter()
        completions = list(completions) if isinstance(completions, list | tuple) else [completions]
        prompt_list = _prompts(prompts, len(completions))
        raw = self.raw_scores(prompt_list, [response_for_judging(c) for c in completions])
        if self.normalize in ("group", "group_sigmoid"):
            raw = group_normalize(raw, prompt_list, self.eps)
        if self.normalize in ("sigmoid", "group_sigmoid"):
            raw = [None if x is None else sigmoid(x) for x in raw]
        scores: list[float | None] = list(raw)
        stats.record(self.__name__, scores, seconds=time.perf_counter() - started)
        return scores

    def __repr__(self) -> str:
        target = getattr(self.scorer, "model_path", self.scorer)
        return f"{type(self).__name__}({target!r}, normalize={self.normalize!r})"


_SCORER_ARGS = ("batch_size", "max_length", "device", "torch_dtype", "trust_remote_code")


def _scorer(model_path: str | None, args: dict[str, Any], reward: str) -> RewardModelScorer:
    """A scorer from a recipe's reward arguments; a misspelt argument is reported, not ignored."""
    unknown = sorted(set(args) - set(_SCORER_ARGS))
    if unknown:
        raise ValueError(f"unknown argument(s) for reward '{reward}': {', '.join(unknown)}")
    if not model_path:
        raise ValueError(f"reward '{reward}' needs model_path (a reward model checkpoint)")
    return RewardModelScorer(model_path, **args)


def reward_model_reward(
    model_path: str,
    *,
    batch_size: int = 16,
    max_length: int = 1024,
    device: Any = None,
    torch_dtype: Any = None,
    normalize: Any = False,
    **kw: Any,
) -> RewardModelReward:
    """A reward scoring each completion with the sequence-classification reward model at ``model_path``.

    Returns raw scalar scores by default; ``normalize`` = ``"group"`` (or ``True``) z-scores them within
    each prompt's group, ``"sigmoid"`` squashes them into (0, 1), ``"group_sigmoid"`` does both.
    ``device`` defaults to this process's CUDA device, else the CPU; ``torch_dtype`` to the checkpoint's.
    ``trust_remote_code`` is the one other argument accepted.
    """
    args = dict(batch_size=batch_size, max_length=max_length, device=device, torch_dtype=torch_dtype, **kw)
    return RewardModelReward(_scorer(model_path, args, "reward_model"), normalize=normalize)


class InstructionWithRMReward:
    """Nemotron-Cascade's IF-RL reward; build it with :func:`instruction_with_rm_reward`."""

    __name__ = "if_rm"

    def __init__(self, scorer: Scorer | RewardModelScorer, *, eps: float = 1e-6):
        self.rm = RewardModelReward(scorer, normalize=False)
        self.eps = eps

    def __call__(
        self,
        completions: list[Any],
        instruction_id_list: list[Any] | None = None,
        kwargs: list[Any] | None = None,
        prompts: Any = None,
        **_: Any,
    ) -> list[float | None]:
        """``R_IF + sigmoid(group-normalised RM score)`` for completions following every instruction, else 0."""
        started = time.perf_counter()
        completions = list(completions) if isinstance(completions, list | tuple) else [completions]
        n = len(completions)
        prompt_list = _prompts(prompts, n)
        results = instruction_results(completions, instruction_id_list, kwargs, mode="strict")
        r_if = [None if r is None else float(all(x.followed for x in r)) for r in results]
        # Only groups with at least one follower need the reward model; the whole group is scored so
        # that normalisation runs over all completions of the prompt.
        keys = [prompt_key(p) for p in prompt_list]
        wanted = {keys[i] for i in range(n) if r_if[i] == 1.0}
        todo = [i for i in range(n) if keys[i] in wanted and r_if[i] is not None]
        raw = self.rm.raw_scores(
            [prompt_list[i] for i in todo], [response_for_judging(completions[i]) for i in todo]
        )
        z = dict(zip(todo, group_normalize(raw, [keys[i] for i in todo], self.eps), strict=True))
        scores: list[float | None] = []
        for i, r in enumerate(r_if):
            if r != 1.0:  # no instructions (None), or one not followed (0)
                scores.append(r)
            else:
                rm = z[i]
                scores.append(None if rm is None else r + sigmoid(rm))  # the reward model could not score it
        unclosed = sum(
            1 for c, r in zip(completions, r_if, strict=True) if r is not None and final_answer(c) is None
        )
        stats.record(self.__name__, scores, parse_failures=unclosed, seconds=time.perf_counter() - started)
        return scores

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self.rm.scorer, 'model_path', self.rm.scorer)!r})"


def instruction_with_rm_reward(
    model_path: str | None = None,
    *,
    scorer: Scorer | None = None,
    eps: float = 1e-6,
    **rm_args: Any,
) -> InstructionWithRMReward:
    """IF-RL reward for thinking models: IFEval strict following gated, reward-model ranked.

    ``rm_args`` are :func:`reward_model_reward`'s (batch_size, max_length, device, torch_dtype,
    trust_remote_code). ``scorer(prompts, responses) -> scores`` replaces the reward model (tests,
    a remote reward-model server).
    """
    if scorer is not None:
        return InstructionWithRMReward(scorer, eps=eps)
    return InstructionWithRMReward(_scorer(model_path, rm_args, "if_rm"), eps=eps)
