"""The SWE patch reward: how close a model's code edit is to the golden patch, without running tests.

This is the execution-free reward of SWE-RL (Wei et al., 2025): the model's edit is parsed, a malformed
answer is penalised with -1, and otherwise the score is difflib's similarity between the predicted and
the golden patch. Edits may be written as unified diffs (in a ```diff fence or bare) or as
SEARCH/REPLACE blocks (Aider/Agentless style, with an optional file path line before each block).

Both patches are first reduced to a canonical form: per file, the runs of removed and added lines,
with trailing whitespace and blank lines ignored, and diff headers, hunk line numbers and the amount
of context dropped. When the original files are given (``original_code``), both edits are applied to
them and the canonical form is recomputed from the resulting files, so that any two edits producing
the same code score 1.0 however they were written; a SEARCH block or hunk that does not match the
original code then makes the answer unusable (-1).

Scores: 1.0 same change as the golden patch; 0.0 no change (or thinking never closed, the contract's
rule for verifiable rewards); -1.0 no parseable edit, or an edit that does not apply; otherwise the
similarity, in [0, 1).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rewards import stats
from rewards.common import column, final_answer

logger = logging.getLogger(__name__)

Block = tuple[tuple[str, ...], tuple[str, ...]]  # (removed lines, added lines)
Files = dict[str, "str | None"]  # path -> content (None: file deleted)

UNPARSEABLE = -1.0
NO_CHANGE = 0.0
# Character-level matching of changed runs is quadratic: at most this many character pairs per call
# (about 0.1 s); runs beyond the budget earn no character-level credit.
_CHAR_BUDGET = 2_000_000

_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_FENCE = re.compile(r"^\s*```")
_DIFF_FENCE = re.compile(r"```(?:diff|patch|udiff)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_HUNK_HEADER = re.compile(r"^@@+\s*(?:-(\d+)(?:,\d+)?\s+\+\d+(?:,\d+)?)?.*$")
_GIT_HEADER = re.compile(r"^diff --git\s+(\S+)\s+(\S+)")


@dataclass
class Edit:
    """One located change: replace ``old`` lines by ``new`` lines in ``path``.

    A diff hunk gives its context plus removed lines as ``old``; a SEARCH/REPLACE block its two sides.
    """

    path: str | None
    old: list[str]
    new: list[str]
    line: int | None = None  # 1-based start in the original, when a hunk header says so
    kind: str = "modify"  # "modify", "create" or "delete"


@dataclass
class ParsedEdit:
    """Everything parsed from one answer; ``error`` is set when it cannot be used at all."""

    edits: list[Edit] = field(default_factory=list)
    error: str | None = None


# --- parsing ------------------------------------------------------------------------------------------


def _clean_path(path: str, *, git_prefix: bool) -> str | None:
    path = path.strip().strip("`'\"").strip()
    if "\t" in path:  # "--- a/x.py\t2024-01-01 ..." timestamps
        path = path.split("\t", 1)[0]
    if path in ("/dev/null", ""):
        return None
    if git_prefix and path[:2] in ("a/", "b/"):
        path = path[2:]
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/") or None


def _path_line(line: str) -> str | None:
    """A file path written on its own line before a SEARCH block ("### src/x.py", "File: x.py", …)."""
    text = line.strip().strip("*`#").strip()
    for prefix in ("File:", "file:", "Path:", "path:", "Filename:", "filename:"):
        text = text.removeprefix(prefix).strip()
    text = text.strip("*`:").strip()
    if not text or any(c.isspace() for c in text) or not ("." in text or "/" in text):
        return None
    if _SEARCH.match(text) or _REPLACE.match(text) or _DIVIDER.match(text):
        return None
    return _clean_path(text, git_prefix=False)


def parse_search_replace(text: str) -> ParsedEdit | None:
    """SEARCH/REPLACE blocks in ``text``; ``None`` when there are none."""
    lines = text.split("\n")
    result = ParsedEdit()
    path: str | None = None
    i = 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            i += 1
            continue
        for back in range(i - 1, max(i - 4, -1), -1):  # the nearest non-fence line above names the file
            if not lines[back].strip() or _FENCE.match(lines[back]):
                continue
            path = _path_line(lines[back]) or path
            break
        divider = next((j for j in range(i + 1, len(lines)) if _DIVIDER.match(lines[j])), None)
        end = (
            None
            if divider is None
            else next((j for j in range(divider + 1, len(lines)) if _REPLACE.match(lines[j])), None)
        )
        if end is None:
            return ParsedEdit(error="SEARCH block without ======= or >>>>>>> REPLACE")
        search, replace = lines[i + 1 : divider], lines[divider + 1 : end]
        result.edits.append(
            Edit(path, search, replace, kind="modify" if any(s.strip() for s in search) else "create")
        )
        i = end + 1
    return result if result.edits else None


def parse_unified_diff(text: str, *, implicit_hunks: bool = False) -> ParsedEdit | None:
    """Hunks of a unified diff; ``None`` when there are none.

    Line counts in hunk headers are ignored (models often get them wrong). With ``implicit_hunks``
    (text inside a ```diff fence) +/-/context lines open a hunk even without an ``@@`` header; bare
    text needs the header, so that a markdown list ("- item") is never read as a diff.
    """
    lines = text.split("\n")
    result = ParsedEdit()
    path: str | None = None
    kind = "modify"
    hunk: list[tuple[str, str]] | None = None
    start: int | None = None
    bare_blanks = 0  # blank lines without the leading space: context inside a hunk, noise at its end

    def close() -> None:
        nonlocal hunk
        if hunk is not None:
            body = hunk[: len(hunk) - bare_blanks]
            old = [t for tag, t in body if tag in " -"]
            new = [t for tag, t in body if tag in " +"]
            if any(tag != " " for tag, _ in body):
                result.edits.append(Edit(path, old, new, start, kind))
        hunk = None

    for index, line in enumerate(lines):
        nxt = lines[index + 1] if index + 1 < len(lines) else ""
        git = _GIT_HEADER.match(line)
        if git:
            close()
            path, kind = _clean_path(git.group(2), git_prefix=True), "modify"
        elif line.startswith("--- ") and nxt.startswith("+++ "):
            close()
            old_path = _clean_path(line[4:], git_prefix=True)
            new_path = _clean_path(nxt[4:], git_prefix=True)
            path = new_path or old_path or path
            kind = "create" if old_path is None else "delete" if new_path is None else "modify"
        elif line.startswith("+++ ") and hunk is None:
            continue
        elif (header := _HUNK_HEADER.match(line)) is not None:
            close()
            hunk, bare_blanks = [], 0
            start = int(header.group(1)) if header.group(1) else None
        elif line[:1] in (" ", "-", "+") and (hunk is not None or implicit_hunks):
            if hunk is None:
                hunk, bare_blanks, start = [], 0, None
            hunk.append((line[0], line[1:]))
            bare_blanks = 0
        elif hunk is not None and line.strip() == "":
            hunk.append((" ", ""))
            bare_blanks += 1
        elif line.startswith("\\"):  # "\ No newline at end of file"
            continue
        else:
            close()
            if line.startswith("deleted file mode"):
                kind = "delete"
            elif line.startswith("new file mode"):
                kind = "create"
    close()
    return result if result.edits else None


def parse_edit(text: str) -> ParsedEdit:
    """The edits in a model's answer: SEARCH/REPLACE blocks, else ```diff fences, else a bare diff.

    A ```diff fence holding no change is a well-formed no-op; text with neither form is an error.
    """
    blocks = parse_search_replace(text)
    if blocks is not None:
        return blocks
    fenced = _DIFF_FENCE.findall(text)
    if fenced:
        return parse_unified_diff("\n".join(fenced), implicit_hunks=True) or ParsedEdit()
    return parse_unified_diff(text) or ParsedEdit(error="no unified diff or SEARCH/REPLACE block found")


# --- canonical form -------------------------------------------------------------------------------------


def _normal(lines: Iterable[str]) -> list[str]:
    """Lines with trailing whitespace removed and blank lines dropped: whitespace-only changes vanish."""
    return [line.rstrip() for line in lines if line.strip()]


def _blocks(old: list[str], new: list[str]) -> list[Block]:
    """The runs of changed lines between two texts (a minimal diff, context dropped)."""
    a, b = _normal(old), _normal(new)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [
        (tuple(a[i1:i2]), tuple(b[j1:j2])) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"
    ]


def canonical_patch(changes: Mapping[str | None, list[Block]], *, with_paths: bool = True) -> str:
    """One text for a set of changes, the same however the edit was written (headers, line numbers,
    context and whitespace do not appear)."""
    parts = []
    keys = sorted(changes, key=lambda p: p or "") if with_paths else list(changes)
    for path in keys:
        blocks = changes[path]
        if not blocks:
            continue
        if with_paths:
            parts.append(f"=== {path}")
        for removed, added in blocks:
            parts.append("@@")
            parts.extend("-" + line for line in removed)
            parts.extend("+" + line for line in added)
    return "\n".join(parts)


def _text_changes(edits: list[Edit]) -> dict[str | None, list[Block]]:
    """Changes read from the edits alone (no original code): each edit's old/new fragments diffed."""
    changes: dict[str | None, list[Block]] = {}
    for edit in edits:
        changes.setdefault(edit.path, []).extend(_blocks(edit.old, edit.new))
    return changes


# --- applying edits to original code -----------------------------------------------------------------


def _find(haystack: list[str], needle: list[str], near: int | None) -> int | None:
    """Where ``needle`` occurs in ``haystack`` (trailing whitespace ignored), nearest to ``near``."""
    if not needle:
        return None
    hay = [line.rstrip() for line in haystack]
    want = [line.rstrip() for line in needle]
    hits = [
        i for i in range(len(hay) - len(want) + 1)
        if hay[i] == want[0] and hay[i : i + len(want)] == want
    ]  # fmt: skip
    if not hits:
        return None
    return hits[0] if near is None else min(hits, key=lambda i: abs(i - near))


def _resolve(path: str | None, files: Files, edit: Edit) -> str | None:
    """The original file an edit targets: its path, a path suffix match, or the only file it fits."""
    if path is not None:
        if path in files:
            return path
        matches = [p for p in files if p.endswith("/" + path) or path.endswith("/" + p)]
        return matches[0] if len(matches) == 1 else path
    if len(files) == 1:
        return next(iter(files))
    for candidate in sorted(files):
        content = files[candidate]
        if content is not None and _find(content.split("\n"), edit.old, None) is not None:
            return candidate
    return None


def apply_edits(original: Mapping[str, str], edits: list[Edit]) -> Files | str:
    """The files after applying ``edits`` in order, or an error message when one does not apply."""
    files: Files = dict(original)
    offsets: dict[str, int] = {}
    for edit in edits:
        path = _resolve(edit.path, files, edit)
        if path is None:
            return "edit names no file and matches none"
        content = files.get(path)
        if edit.kind == "delete":
            files[path] = None
            continue
        if content is None:  # a new file (or one the edit recreates)
            if any(line.strip() for line in edit.old):
                return f"{path}: file not in the original code"
            files[path] = "\n".join(edit.new)
            continue
        lines = content.split("\n")
        if not any(line.strip() for line in edit.old):  # pure insertion: at the stated line, else the end
            at = (
                len(lines)
                if edit.line is None
                else min(max(edit.line - 1 + offsets.get(path, 0), 0), len(lines))
            )
            lines[at:at] = edit.new
        else:
            near = None if edit.line is None else edit.line - 1 + offsets.get(path, 0)
            at = _find(lines, edit.old, near)
            if at is None:
                return f"{path}: the edit's original lines were not found"
            lines[at : at + len(edit.old)] = edit.new
        offsets[path] = offsets.get(path, 0) + len(edit.new) - len(edit.old)
        files[path] = "\n".join(lines)
    return files


def _code_changes(original: Mapping[str, str], result: Files) -> dict[str | None, list[Block]]:
    """Changes between original files and edited ones, recomputed from the code itself."""
    changes: dict[str | None, list[Block]] = {}
    for path in sorted(set(original) | set(result)):
        before, after = original.get(path), result.get(path, original.get(path))
        blocks = _blocks((before or "").split("\n"), (after or "").split("\n"))
        if before is not None and after is None:
            blocks.append((("<deleted>",), ()))  # deleting a file is a change even when it was empty
        if blocks:
            changes[path] = blocks
    return changes


def _unified(original: Mapping[str, str], result: Files) -> str:
    """A readable unified diff of the edited files (for an LLM judge)."""
    out: list[str] = []
    for path in sorted(set(original) | set(result)):
        before = (original.get(path) or "").split("\n")
        after = (result.get(path) or "").split("\n")
        out.extend(difflib.unified_diff(before, after, f"a/{path}", f"b/{path}", lineterm=""))
    return "\n".join(out)


def _originals(value: Any, golden: ParsedEdit) -> dict[str, str] | None:
    """A row's original code as ``{path: content}``: a dict, its JSON, a list of {path, content}, or
    one file's text (for a golden patch that touches one file)."""
    if value is None:
        return None
    if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items() if isinstance(v, str)}
    if isinstance(value, list) and all(isinstance(item, Mapping) for item in value):
        return {str(i.get("path")): i["content"] for i in value if isinstance(i.get("content"), str)}
    if isinstance(value, str):
        paths = {edit.path for edit in golden.edits}
        if len(paths) == 1 and None not in paths:
            return {paths.pop(): value}
    return None


# --- similarity -----------------------------------------------------------------------------------------


def similarity(a: str, b: str) -> float:
    """difflib's ratio between two patches, computed on lines first, then characters inside changed runs.

    Close to ``SequenceMatcher(None, a, b, autojunk=False).ratio()`` (SWE-RL's measure), but the plain
    character-level ratio is quadratic (tens of seconds for 30k characters), which a training step
    cannot afford: here lines are matched first, and only the unmatched runs are compared character
    by character, within a fixed budget of character comparisons; runs beyond it earn no credit.
    """
    if not a and not b:
        return 1.0
    la, lb = a.split("\n"), b.split("\n")
    matched, budget = 0, _CHAR_BUDGET
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, la, lb, autojunk=False).get_opcodes():
        if tag == "equal":
            matched += sum(len(line) + 1 for line in la[i1:i2])
            continue
        # Every line carries its newline, as in the equal runs (the last line a virtual one).
        ra, rb = "".join(x + "\n" for x in la[i1:i2]), "".join(x + "\n" for x in lb[j1:j2])
        if ra and rb and len(ra) * len(rb) <= budget:
            budget -= len(ra) * len(rb)
            blocks = difflib.SequenceMatcher(None, ra, rb, autojunk=False).get_matching_blocks()
            matched += sum(block.size for block in blocks)
    return min(2.0 * matched / (len(a) + len(b) + 2), 1.0)


# --- the reward -------------------------------------------------------------------------------------------


def _score_one(
    answer: str, golden_text: str, original_value: Any, judge: Callable[[str, str], float] | None
) -> float | None:
    golden = parse_unified_diff(golden_text)
    if golden is None:
        logger.warning("golden patch has no hunks; row not scored")
        return None
    predicted = parse_edit(answer)
    if predicted.error is not None:
        return UNPARSEABLE

    originals = _originals(original_value, golden)
    pred_changes = gold_changes = None
    shown = answer
    if originals is not None:
        gold_files = apply_edits(originals, golden.edits)
        if isinstance(gold_files, str):
            logger.warning(
                "golden patch does not apply to original_code (%s); comparing patch texts", gold_files
            )
        else:
            pred_files = apply_edits(originals, predicted.edits)
            if isinstance(pred_files, str):
                return UNPARSEABLE
            pred_changes = _code_changes(originals, pred_files)
            gold_changes = _code_changes(originals, gold_files)
            shown = _unified(originals, pred_files)
    if pred_changes is None or gold_changes is None:
        pred_changes, gold_changes = _text_changes(predicted.edits), _text_changes(golden.edits)

    with_paths = None not in pred_changes
    pred_text = canonical_patch(pred_changes, with_paths=with_paths)
    gold_text = canonical_patch(gold_changes, with_paths=with_paths)
    if not gold_text:
        logger.warning("golden patch changes nothing; row not scored")
        return None
    if not pred_text:
        return NO_CHANGE
    if pred_text == gold_text:
        return 1.0
    if judge is not None:
        try:
            return min(max(float(judge(shown, golden_text)), 0.0), 1.0)
        except Exception:
            logger.exception("SWE judge failed; falling back to patch similarity")
    return min(similarity(pred_text, gold_text), 1.0 - 1e-9)


def swe_reward(
    completions: list[Any],
    golden_patch: list[Any] | None = None,
    original_code: list[Any] | None = None,
    *,
    judge: Callable[[str, str], float] | None = None,
    **_: Any,
) -> list[float | None]:
    """Execution-free SWE reward: 1.0 for the golden change, similarity in [0, 1) for a partial one,
    0.0 for no change, -1.0 for an answer without a usable edit (SWE-RL's format penalty).

    ``original_code`` (optional; ``{path: content}``, its JSON, or one file's text) makes the
    comparison run on the edited code rather than the patch texts. ``judge(predicted, golden)``, if
    given, scores partial matches instead of the similarity. Rows without a golden patch score ``None``.
    Reports to ``rewards.stats`` under ``"swe"`` (unusable answers as parse failures).
    """
    started = time.perf_counter()
    n = len(completions)
    scores: list[float | None] = []
    errors = failures = 0
    rows = zip(completions, column(golden_patch, n), column(original_code, n), strict=True)
    for completion, golden, original in rows:
        if not isinstance(golden, str) or not golden.strip():
            scores.append(None)
            continue
        answer = final_answer(completion)
        if answer is None:  # thinking never closed: the contract's 0 for verifiable rewards
            scores.append(NO_CHANGE)
            failures += 1
            continue
        try:
            score = _score_one(answer, golden, original, judge)
        except Exception:  # an unexpected input must not take the training step down
            logger.exception("SWE reward failed on one completion; scored as unparseable")
            score = UNPARSEABLE
            errors += 1
        errors += score is None  # a golden patch that cannot be used is a data error
        failures += score == UNPARSEABLE
        scores.append(score)
    stats.record("swe", scores, errors=errors, parse_failures=failures, seconds=time.perf_counter() - started)
    return scores
