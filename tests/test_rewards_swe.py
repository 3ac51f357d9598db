"""The execution-free SWE patch reward: parsing, normalisation, scoring with and without original code."""

from __future__ import annotations

import difflib
import pickle
import threading
import time

import pytest

from rewards.swe import parse_edit, similarity, swe_reward

ORIGINAL = {
    "pkg/calc.py": (
        "def add(a, b):\n"
        "    return a - b\n"
        "\n"
        "\n"
        "def scale(x, factor):\n"
        "    result = x * factor\n"
        "    return result\n"
    ),
    "pkg/io.py": "def read(path):\n    with open(path) as f:\n        return f.read()\n",
}

GOLDEN = (
    "diff --git a/pkg/calc.py b/pkg/calc.py\n"
    "index 3b18e51..a1f2c3d 100644\n"
    "--- a/pkg/calc.py\n"
    "+++ b/pkg/calc.py\n"
    "@@ -1,7 +1,7 @@\n"
    " def add(a, b):\n"
    "-    return a - b\n"
    "+    return a + b\n"
    " \n"
    " \n"
    " def scale(x, factor):\n"
    "-    result = x * factor\n"
    "+    result = x * float(factor)\n"
    "     return result\n"
)


def fenced_diff(body: str) -> str:
    return f"The bug is in calc.\n\n```diff\n{body}```\n"


def search_replace(path: str | None, search: str, replace: str, style: str = "aider") -> str:
    """One SEARCH/REPLACE block in Aider style (path line, then a fence) or Agentless style (### path)."""
    head = "" if path is None else (f"### {path}\n" if style == "agentless" else f"{path}\n")
    return f"{head}```python\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n```\n"


# The same change as GOLDEN, written differently each time.
SAME_DIFF_OTHER_HEADERS = fenced_diff(
    "--- pkg/calc.py\n+++ pkg/calc.py\n"
    "@@ -40,2 +40,2 @@ def add\n-    return a - b   \n+    return a + b\n"  # wrong line numbers, trailing spaces
    "@@ -99 +99 @@\n"
    " def scale(x, factor):\n-    result = x * factor\n+    result = x * float(factor)\n"
)
SAME_BARE_DIFF = (
    "--- a/pkg/calc.py\n+++ b/pkg/calc.py\n@@ -2 +2 @@\n-    return a - b\n+    return a + b\n"
    "@@ -6 +6 @@\n-    result = x * factor\n+    result = x * float(factor)\n"
)
SAME_SEARCH_REPLACE = search_replace(
    "pkg/calc.py", "def add(a, b):\n    return a - b\n", "def add(a, b):\n    return a + b\n"
) + search_replace(
    "pkg/calc.py", "    result = x * factor\n", "    result = x * float(factor)\n", "agentless"
)
SAME_NO_PATH = search_replace(None, "    return a - b\n", "    return a + b\n") + search_replace(
    None, "    result = x * factor\n", "    result = x * float(factor)\n"
)
# Half of the golden change, and a change of an unrelated line: the first is closer.
HALF = search_replace("pkg/calc.py", "    return a - b\n", "    return a + b\n")
UNRELATED = search_replace("pkg/io.py", "def read(path):\n", "def read(path, mode='r'):\n")
NO_OP = search_replace("pkg/calc.py", "    return a - b\n", "    return a - b\n")
WRONG_SEARCH = search_replace("pkg/calc.py", "    return a * b\n", "    return a + b\n")

# (completion, expected score) without original code — the patch texts are compared.
TEXT_CASES = [
    (SAME_DIFF_OTHER_HEADERS, 1.0),  # headers, line numbers, trailing spaces and hunk split ignored
    (SAME_BARE_DIFF, 1.0),  # a diff without a fence
    (SAME_SEARCH_REPLACE, 1.0),  # SEARCH/REPLACE with context lines, Aider and Agentless path styles
    (SAME_NO_PATH, 1.0),  # blocks without a path are compared without paths
    ("<think>Let me look.</think>" + SAME_BARE_DIFF, 1.0),  # only the answer after </think> counts
    (NO_OP, 0.0),  # SEARCH equals REPLACE: no change
    (fenced_diff(" def add(a, b):\n"), 0.0),  # a diff fence with context only: no change
    ("<think>" + SAME_BARE_DIFF, 0.0),  # thinking never closed: 0, the contract's rule
    ("Change the minus to a plus in add().", -1.0),  # prose, no edit at all
    ("- first point\n- second point\n", -1.0),  # a markdown list is not a diff without @@
    ("<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n", -1.0),  # unterminated block
    (WRONG_SEARCH, "partial"),  # without the code a wrong SEARCH is just a near miss
]


@pytest.mark.parametrize(("completion", "expected"), TEXT_CASES)
def test_scores_from_patch_text(completion: str, expected: float | str) -> None:
    (score,) = swe_reward([completion], [GOLDEN])
    if expected == "partial":
        assert 0.0 < score < 1.0
    else:
        assert score == expected


# (completion, expected score) with the original files — the edits are applied and the code compared.
CODE_CASES = [
    (SAME_DIFF_OTHER_HEADERS, 1.0),
    (SAME_SEARCH_REPLACE, 1.0),
    (SAME_NO_PATH, 1.0),  # each block finds the only file it matches
    # The same resulting code from one big block rewriting the whole function pair.
    (search_replace("calc.py", ORIGINAL["pkg/calc.py"], ORIGINAL["pkg/calc.py"].replace("a - b", "a + b")
                    .replace("x * factor", "x * float(factor)")), 1.0),  # fmt: skip
    (NO_OP, 0.0),
    (WRONG_SEARCH, -1.0),  # the SEARCH text is not in the file: the edit cannot apply
    (fenced_diff("--- a/pkg/calc.py\n+++ b/pkg/calc.py\n@@ -1 +1 @@\n-    return a * b\n+    return a\n"), -1.0),
    (search_replace("pkg/missing.py", "x = 1\n", "x = 2\n"), -1.0),  # a file that does not exist
]  # fmt: skip


@pytest.mark.parametrize(("completion", "expected"), CODE_CASES)
def test_scores_from_edited_code(completion: str, expected: float) -> None:
    assert swe_reward([completion], [GOLDEN], original_code=[ORIGINAL]) == [expected]


@pytest.mark.parametrize("original", [ORIGINAL, None])
def test_partial_credit_is_ordered(original: dict | None) -> None:
    # Half the fix beats an unrelated edit; both are strictly between no change and the golden patch.
    half, unrelated = swe_reward([HALF, UNRELATED], [GOLDEN, GOLDEN], original_code=[original, original])
    assert 0.0 < unrelated < half < 1.0


def test_original_code_as_single_file_text_and_json() -> None:
    # One file's text is matched to the only file the golden patch touches; a JSON dict also works.
    import json

    golden = (
        GOLDEN.split("@@ -1,7")[0]
        + "@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
    )
    scores = swe_reward(
        [HALF, WRONG_SEARCH, HALF],
        [golden] * 3,
        original_code=[ORIGINAL["pkg/calc.py"], ORIGINAL["pkg/calc.py"], json.dumps(ORIGINAL)],
    )
    assert scores == [1.0, -1.0, 1.0]


def test_golden_patch_that_does_not_apply_falls_back_to_text() -> None:
    # Stale original code must not punish the model: the patch texts are compared instead.
    stale = {"pkg/calc.py": "something else entirely\n"}
    assert swe_reward([SAME_BARE_DIFF], [GOLDEN], original_code=[stale]) == [1.0]


def test_rows_without_golden_patch_and_extra_columns() -> None:
    # Rows of other domains score None; TRL's extra columns are ignored.
    scores = swe_reward(
        [SAME_BARE_DIFF, SAME_BARE_DIFF], [GOLDEN, None], prompts=["p", "p"], trainer_state=None
    )
    assert scores == [1.0, None]


def test_chat_message_completion() -> None:
    completion = [{"role": "assistant", "content": SAME_SEARCH_REPLACE}]
    assert swe_reward([completion], [GOLDEN]) == [1.0]


def test_new_and_deleted_files() -> None:
    # A golden patch creating one file and deleting another; the same edit as a diff scores 1.0.
    golden = (
        "diff --git a/pkg/new.py b/pkg/new.py\nnew file mode 100644\n--- /dev/null\n+++ b/pkg/new.py\n"
        "@@ -0,0 +1,2 @@\n+X = 1\n+Y = 2\n"
        "diff --git a/pkg/io.py b/pkg/io.py\ndeleted file mode 100644\n--- a/pkg/io.py\n+++ /dev/null\n"
        "@@ -1,3 +0,0 @@\n-def read(path):\n-    with open(path) as f:\n-        return f.read()\n"
    )
    assert swe_reward([fenced_diff(golden)], [golden], original_code=[ORIGINAL]) == [1.0]
    assert swe_reward([fenced_diff(golden)], [golden]) == [1.0]
    only_new = search_replace("pkg/new.py", "", "X = 1\nY = 2\n")  # empty SEARCH creates a file
    score = swe_reward([only_new], [golden], original_code=[ORIGINAL])[0]
    assert 0.0 < score < 1.0


def test_diff_parsing_details() -> None:
    # A removed SQL comment ("-- x") reads "--- x" inside a hunk: a line, not a file header.
    edit = parse_edit("```diff\n--- a/q.sql\n+++ b/q.sql\n@@ -1,2 +1,1 @@\n--- old comment\n SELECT 1;\n```")
    assert edit.error is None
    assert [(e.path, e.old, e.new) for e in edit.edits] == [
        ("q.sql", ["-- old comment", "SELECT 1;"], ["SELECT 1;"])
    ]
    # A fenced diff without @@ headers is one hunk.
    edit = parse_edit("```diff\n-x = 1\n+x = 2\n```")
    assert [(e.old, e.new) for e in edit.edits] == [(["x = 1"], ["x = 2"])]


def test_judge_hook() -> None:
    # A judge scores partial matches only; exact matches and failures keep their fixed scores; a
    # failing judge falls back to the similarity.
    calls: list[tuple[str, str]] = []

    def judge(predicted: str, golden: str) -> float:
        calls.append((predicted, golden))
        return 0.42

    def broken(predicted: str, golden: str) -> float:
        raise RuntimeError("judge offline")

    completions = [HALF, SAME_BARE_DIFF, NO_OP, "prose"]
    assert swe_reward(completions, [GOLDEN] * 4, judge=judge) == [0.42, 1.0, 0.0, -1.0]
    assert len(calls) == 1 and calls[0][1] == GOLDEN
    assert swe_reward([HALF], [GOLDEN], judge=broken) == swe_reward([HALF], [GOLDEN])


# (a, b) — the line-then-character similarity stays close to difflib's character ratio.
SIMILARITY_PAIRS = [
    ("-    return a - b\n+    return a + b", "-    return a - b\n+    return a + b + 0"),  # one line differs
    ("-x = 1\n+x = 2\n-y = 3", "-x = 1\n+x = 20\n-y = 4"),  # two lines differ slightly
    ("=== a.py\n@@\n-foo()\n+bar()", "=== b.py\n@@\n-baz()\n+qux()"),  # mostly different
]


@pytest.mark.parametrize(("a", "b"), SIMILARITY_PAIRS)
def test_similarity_tracks_difflib(a: str, b: str) -> None:
    reference = difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
    assert similarity(a, b) == pytest.approx(reference, abs=0.03)
    assert similarity(a, a) == 1.0


def test_large_patches_are_scored_quickly() -> None:
    # A 5,000-line answer against the golden patch: bounded time, no quadratic blow-up.
    body = "".join(f"-line {i} old\n+line {i} new {i * 7 % 13}\n" for i in range(5000))
    start = time.perf_counter()
    score = swe_reward([fenced_diff("--- a/pkg/calc.py\n+++ b/pkg/calc.py\n@@ -1 +1 @@\n" + body)], [GOLDEN])[
        0
    ]
    assert 0.0 <= score < 1.0
    assert time.perf_counter() - start < 5.0


def test_picklable_and_thread_safe() -> None:
    assert pickle.loads(pickle.dumps(swe_reward)) is swe_reward
    completions = [case[0] for case in TEXT_CASES[:-1]]
    expected = swe_reward(completions, [GOLDEN] * len(completions))
    got: list = []
    threads = [
        threading.Thread(target=lambda: got.append(swe_reward(completions, [GOLDEN] * len(completions))))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == [expected] * 4


def test_reports_statistics() -> None:
    # Unusable answers and unclosed thinking are parse failures; a golden patch without hunks is a data error.
    from rewards import stats

    before = stats.snapshot().get("swe", {})
    scores = swe_reward(["prose", "<think>open", SAME_BARE_DIFF], [GOLDEN, GOLDEN, "not a diff"])
    assert scores == [-1.0, 0.0, None]
    after = stats.snapshot()["swe"]
    assert after["parse_failures"] - before.get("parse_failures", 0.0) == 2.0
    assert after["errors"] - before.get("errors", 0.0) == 1.0
