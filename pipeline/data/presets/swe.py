"""SWE presets: Nemotron-Cascade's SWE RL set and SWE-bench (Lite / Verified), as ``prompt`` + ``golden_patch``.

The SWE reward compares the model's edit with ``golden_patch``; given ``original_code`` it compares the
edited code instead, and the prompt must show the model that code. Nemotron-Cascade's rows carry it as
``relevant_file_contents`` (files the golden patch edits, with their contents); SWE-bench rows do not
(the repository at ``base_commit`` is not in the data set), so their prompts hold the issue alone and
say so. A golden patch that does not parse as a unified diff makes the row unusable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pipeline.data.presets.base import Preset, RowError, Scorer, as_list, ident, text

ASK = "Answer with SEARCH/REPLACE edits (each after the file's path) or a unified diff."


def golden_patch(value: str) -> str:
    from rewards.swe import parse_unified_diff

    if parse_unified_diff(value) is None:
        raise RowError("golden patch is not a unified diff with hunks")
    return value


def file_contents(value: Any) -> dict[str, str]:
    """``{path: content}`` from a dict, its JSON, or a list of ``{path|file_path, content}`` items."""
    value = as_list(value)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise RowError("relevant_file_contents is text but not JSON") from None
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items() if isinstance(v, str)}
    if isinstance(value, list):
        out = {}
        for item in value:
            if not isinstance(item, Mapping):
                raise RowError("relevant_file_contents items must be {path, content}")
            path = item.get("path") or item.get("file_path") or item.get("file")
            if isinstance(path, str) and isinstance(item.get("content"), str):
                out[path] = item["content"]
        return out
    raise RowError(f"relevant_file_contents is {type(value).__name__}")


def code_context(files: Mapping[str, str]) -> str:
    return "\n\n".join(
        f"{path}\n```python\n{content.rstrip()}\n```" for path, content in sorted(files.items())
    )


def cascade_swe(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    issue = text(row, "problem_statement", "issue", "prompt")
    patch = golden_patch(text(row, "golden_patch", "patch"))
    files = file_contents(row.get("relevant_file_contents") or row.get("original_code") or {})
    prompt = f"Fix the issue below.\n\nIssue:\n{issue.strip()}"
    if files:
        prompt += f"\n\nThe code the fix edits:\n\n{code_context(files)}"
    out = {
        "id": ident(row, "instance_id", "id"),
        "prompt": f"{prompt}\n\n{options['instruction']}",
        "golden_patch": patch,
    }
    if files:
        out["original_code"] = files
    return out


def swebench(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    issue = text(row, "problem_statement")
    patch = golden_patch(text(row, "patch"))
    repo = text(row, "repo", required=False) or "the repository"
    hints = text(row, "hints_text", required=False) if options["hints"] else None
    prompt = f"Fix this issue of {repo}.\n\nIssue:\n{issue.strip()}"
    if hints:
        prompt += f"\n\nHints:\n{hints.strip()}"
    return {
        "id": ident(row, "instance_id"),
        "prompt": f"{prompt}\n\n{options['instruction']}",
        "golden_patch": patch,
    }


PRESETS = [
    Preset(
        "nemotron-cascade-rl-swe",
        "Nemotron-Cascade's SWE RL set: issue, golden_patch, and relevant_file_contents as the code context",
        "rl",
        cascade_swe,
        ("problem_statement|prompt", "golden_patch", "relevant_file_contents"),
        hub="nvidia/Nemotron-Cascade-RL-SWE",
        split="train",
        domain="swe",
        scorer=Scorer("swe", metric="mean_reward"),
        options={"instruction": ASK},
    ),
    Preset(
        "swebench",
        "SWE-bench Lite / Verified (princeton-nlp): problem_statement and the gold patch; no code context",
        "rl",
        swebench,
        ("instance_id", "problem_statement", "patch"),
        hub="princeton-nlp/SWE-bench_Lite",
        split="test",
        domain="swe",
        scorer=Scorer("swe", metric="mean_reward"),
        options={"instruction": ASK, "hints": False},
    ),
]
