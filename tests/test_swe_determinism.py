"""Same seed, same numbers: the SWE data and the SWE reward do not depend on hash randomisation or load.

Each process of a launch (and each launch) gets its own ``PYTHONHASHSEED``, so anything that iterates a
set or a dict built from one in an order that reaches a score or a row would differ between runs. The
SWE rows and their scores are computed in two fresh interpreters with different hash seeds and compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = """
import json
from pipeline.data.synthetic import generate
from rewards.swe import swe_reward

rows = generate("swe", "train", 60, seed=7, flaw_rate=0.3)
answers = [r["response"] for r in rows] + [r["response"].replace("+", "-") for r in rows]
golden = [r["golden_patch"] for r in rows] * 2
original = [r["original_code"] for r in rows] * 2
print(json.dumps({"rows": rows, "scores": swe_reward(answers, golden, original),
                  "text_scores": swe_reward(answers, golden)}, sort_keys=True))
"""


def _run(hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout)


def test_swe_rows_and_scores_do_not_depend_on_hash_randomisation() -> None:
    first, second = _run("1"), _run("4242")
    assert first["rows"] == second["rows"]
    assert first["scores"] == second["scores"] and first["text_scores"] == second["text_scores"]
    assert len(set(first["scores"])) > 2  # a spread of scores, not a constant that would hide a difference
