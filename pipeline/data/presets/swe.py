"""SWE presets: Nemotron-Cascade's SWE RL set and SWE-bench (Lite / Verified), as ``prompt`` + ``golden_patch``.

The SWE reward compares the model's edit with ``golden_patch``; given ``original_code`` it compares the
edited code instead, and the prompt must show the model that code. Whenever a row carries the code the
golden patch edits, as ``relevant_file_contents`` (Nemotron-Cascade's files with their contents) or an
``original_code`` column ({path: content}, its JSON, a list of {path, content}, or one file's text),
both presets show it in the prompt and pass it to the reward. SWE-bench's own rows have none (the
repository at ``base_commit`` is not in the data set), so their prompts hold the issue alone. A golden
patch that does not parse as a unified diff makes the row unusable.
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


def file_contents(value: Any, patch: str) -> dict[str, str]:
    """``{path: content}`` from a dict, its JSON, a list of ``{path|file_path, content}`` items, or the
    text of the one file ``patch`` edits."""
    value = as_list(value)
    if isinstance(value, str):
        if not value.lstrip().startswith(("{", "[")):
            return {_only_path(patch): value}
        try:
            value = json.loads(value)
        except ValueError:
            raise RowError("the code context is text that starts like JSON but is not JSON") from None
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items() if isinstance(v, str)}
    if isinstance(value, list):
        out = {}
        for item in value:
            if not isinstance(item, Mapping):
                raise RowError("the code context's items must be {path, content}")
            path = item.get("path") or item.get("file_path") or item.get("file")
            if isinstance(path, str) and isinstance(item.get("content"), str):
                out[path] = item["content"]
        return out
    raise RowError(f"the code context is {type(value).__name__}, not files")


def _only_path(patch: str) -> str:
    from rewards.swe import parse_unified_diff

    parsed = parse_unified_diff(patch)
    paths = {edit.path for edit in parsed.edits} if parsed is not None else set()
    if len(paths) != 1 or None in paths:
        raise RowError(
            "the code context is one file's text, but the golden patch does not edit exactly one file"
        )
    return str(paths.pop())


def code_files(row: Mapping[str, Any], patch: str) -> dict[str, str]:
    """The code the golden patch edits, when the row has it (``relevant_file_contents`` or ``original_code``)."""
    value = row.get("relevant_file_contents") or row.get("original_code")
    return file_contents(value, patch) if value else {}


def swe_row(row_id: str | None, issue: str, patch: str, files: Mapping[str, str], instruction: str) -> dict:
    """A SWE row: the issue, then the code the fix edits (when there is some), then the instruction."""
    prompt = issue
    if files:
        prompt += f"\n\nThe code the fix edits:\n\n{code_context(files)}"
    out: dict[str, Any] = {"id": row_id, "prompt": f"{prompt}\n\n{instruction}", "golden_patch": patch}
    if files:
        out["original_code"] = dict(files)
    return out


def code_context(files: Mapping[str, str]) -> str:
    return "\n\n".join(
        f"{path}\n```python\n{content.rstrip()}\n```" for path, content in sorted(files.items())
    )


def cascade_swe(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    issue = text(row, "problem_statement", "issue", "prompt")
    patch = golden_patch(text(row, "golden_patch", "patch"))
    head = f"Fix the issue below.\n\nIssue:\n{issue.strip()}"
    return swe_row(
        ident(row, "instance_id", "id"), head, patch, code_files(row, patch), options["instruction"]
    )


def swebench(row: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    issue = text(row, "problem_statement")
    patch = golden_patch(text(row, "patch"))
    repo = text(row, "repo", required=False) or "the repository"
    hints = text(row, "hints_text", required=False) if options["hints"] else None
    head = f"Fix this issue of {repo}.\n\nIssue:\n{issue.strip()}"
    if hints:
        head += f"\n\nHints:\n{hints.strip()}"
    # SWE-bench's own rows have no code; a derived copy that adds the edited files gets them shown
    return swe_row(ident(row, "instance_id"), head, patch, code_files(row, patch), options["instruction"])


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
        "SWE-bench Lite / Verified (princeton-nlp): problem_statement and the gold patch (+ code, if a copy adds it)",
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
