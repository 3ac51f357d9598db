"""Tests of the cascade report: the JSON table, report.md, report.png and the command line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.gates import check_stage, latest_records
from pipeline.report import build_report, main, render_markdown, report_table_rows, write_report

REPO = Path(__file__).resolve().parents[1]

# name: (domain, prompts, samples per prompt, metric)
BENCHMARKS = {
    "arena_win": ("chat", 300, 1, "win_rate"),
    "ifeval": ("instruction", 400, 1, "accuracy"),
    "math500": ("math", 400, 1, "accuracy"),
    "livecodebench": ("code", 160, 4, "accuracy"),
    "swe_verified": ("swe", 200, 1, "accuracy"),
}

# name, kind, domain, target score per benchmark (None: the stage is not evaluated, e.g. a reward model)
STAGES: list[tuple[str, str, str | None, list[float] | None, float]] = [
    ("sft1", "sft", "chat", [0.45, 0.55, 0.52, 0.25, 0.10], 5400.0),
    ("sft2", "sft", "chat", [0.52, 0.60, 0.58, 0.31, 0.14], 3600.0),
    ("rm", "reward_model", None, None, 1800.0),
    ("rlhf", "grpo", "chat", [0.70, 0.62, 0.60, 0.32, 0.15], 7200.0),
    ("if_rl", "grpo", "instruction", [0.69, 0.78, 0.59, 0.33, 0.15], 3000.0),
    ("math_rl", "grpo", "math", [0.68, 0.77, 0.74, 0.36, 0.16], 9000.0),
    ("code_rl", "grpo", "code", [0.67, 0.69, 0.74, 0.52, 0.20], 8000.0),  # ifeval −9 points
    ("swe_rl", "grpo", "swe", [0.67, 0.70, 0.73, 0.53, 0.31], 12000.0),
]
BASE_TARGETS = [0.20, 0.35, 0.30, 0.12, 0.05]


def _benchmark_record(name: str, target: float, latent: np.ndarray, rng: np.random.Generator) -> dict:
    """One benchmark of an eval file: prompts with a fixed difficulty, so stages are paired and correlated."""
    domain, n, spp, metric = BENCHMARKS.get(name, ("chat", 200, 1, "mean_reward"))
    if metric == "mean_reward":  # a raw reward-model score, not a fraction
        per_prompt = latent * 0.0 + target + rng.normal(0.0, 1.0, n)
        correct = [[] for _ in range(n)]
        scores = [[float(s)] for s in per_prompt]
    else:
        hits = (latent[:, None] + rng.normal(0.0, 0.05, (n, spp))) < target
        per_prompt = hits.mean(axis=1)
        correct = [[bool(h) for h in row] for row in hits]
        scores = [[float(h) for h in row] for row in hits]
    return {
        "domain": domain,
        "score": float(per_prompt.mean()),
        "stderr": float(per_prompt.std() / math.sqrt(n)),
        "n": n,
        "samples_per_prompt": spp,
        "threshold": 1.0,
        "metric": metric,
        "wall_s": 3.0,
        "tokens": 1000,
        "samples": [
            {
                "id": f"{name}-{i:04d}",
                "prompt": "…",
                "completions": ["…"] * len(scores[i]),
                "scores": scores[i],
                "correct": correct[i],
                "score": float(per_prompt[i]),
            }
            for i in range(n)
        ],
    }


def make_run(
    root: Path,
    *,
    name: str = "demo",
    policy: str = "warn",
    finished: int = len(STAGES),
    last: str = "running",
    with_gates: bool = True,
    raw_benchmark: bool = False,
    seed: int = 0,
) -> Path:
    """A run directory as the runner writes it: ledger.json plus evals/*.json, gates from check_stage.

    ``finished`` stages are done (or regressed/discarded as the gate decides); the next one has status
    ``last`` ("running" or "failed") and the rest are pending.
    """
    rng = np.random.default_rng(seed)
    names = list(BENCHMARKS) + (["chat_rm"] if raw_benchmark else [])
    sizes = [BENCHMARKS.get(n, (None, 200))[1] for n in names]
    latent = {n: rng.permutation(size) / size for n, size in zip(names, sizes, strict=True)}
    domains = {n: BENCHMARKS.get(n, ("chat",))[0] for n in names}
    run = root / name
    (run / "evals").mkdir(parents=True)

    def evaluate(stage: str, index: int, targets: list[float]) -> tuple[str, dict]:
        rm_target = [0.4 + 0.3 * index]  # the raw reward keeps climbing
        records = {
            n: _benchmark_record(n, t, latent[n], rng)
            for n, t in zip(names, targets + rm_target, strict=False)
        }
        path = f"evals/{index:02d}-{stage}.json"
        data = {"stage": stage, "index": index, "checkpoint": "…", "benchmarks": records}
        (run / path).write_text(json.dumps(data))
        return path, records

    def scores(records: dict) -> dict:
        return {n: {"score": r["score"], "stderr": r["stderr"], "n": r["n"]} for n, r in records.items()}

    base_file, base_records = evaluate("base", 0, BASE_TARGETS)
    ledger: dict[str, Any] = {
        "version": 1,
        "run_name": name,
        "recipe": "nemotron_cascade_8b",
        "created": "2026-11-22T08:00:00Z",
        "updated": "2026-11-23T10:00:00Z",
        "status": "running",
        "wall_s": 0.0,
        "sessions": [],
        "base": {"status": "done", "eval_file": base_file, "scores": scores(base_records), "wall_s": 600.0},
        "stages": [],
    }
    accepted = [base_records]  # eval records of the checkpoints the cascade kept
    history = [ledger["base"]["scores"]]
    trained: set[str] = set()
    init = "base"
    stopped = False
    for index, (stage, kind, domain, targets, wall) in enumerate(STAGES, start=1):
        row: dict[str, Any] = {
            "name": stage,
            "index": index,
            "kind": kind,
            "domain": domain,
            "status": "pending",
            "config_hash": f"{index:04x}",
            "init_from": init,
            "gate": None,
            "discarded": False,
            "scores": {},
        }
        ledger["stages"].append(row)
        if stopped or index > finished + 1:
            continue
        if index == finished + 1:
            row["status"] = last
            continue
        checkpoint = f"stages/{index:02d}-{stage}/final"
        row.update(status="done", checkpoint=checkpoint, wall_s=wall, next_init=checkpoint)
        ledger["wall_s"] += wall
        if targets is not None:
            row["eval_file"], records = evaluate(stage, index, targets)
            row["scores"] = scores(records)
            if with_gates:
                gate = check_stage(
                    stage,
                    domain,
                    set(trained),
                    latest_records(accepted),
                    records,
                    history,
                    policy=policy,
                    tolerance=0.02,
                    alpha=0.05,
                    benchmark_domains=domains,
                    n_resamples=2000,  # keeps the fixture fast; p floors at 1/2001
                )
                row["gate"] = gate.to_dict()
                if gate.action == "stop":
                    row["status"], stopped = "regressed", True
                elif gate.action == "rollback":
                    row.update(discarded=True, next_init=init)
            history.append(row["scores"])
            if not row["discarded"]:
                accepted.append(records)
        if not row["discarded"]:
            init = checkpoint
            trained |= {domain} if domain else set()
    ledger["wall_s"] += 600.0
    if stopped:
        ledger["status"] = "regressed"
    elif finished >= len(STAGES):
        ledger["status"] = "done"
    elif last == "failed":
        ledger["status"] = "failed"
    (run / "ledger.json").write_text(json.dumps(ledger, indent=2))
    return run


def ledger_rows(run: Path) -> list[dict]:
    ledger = json.loads((run / "ledger.json").read_text())
    return [{"name": "base", **ledger["base"]}, *ledger["stages"]] if "base" in ledger else ledger["stages"]


def test_report_json_matches_the_ledger(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    report = build_report(run)
    ledger = json.loads((run / "ledger.json").read_text())
    assert [row["name"] for row in report["stages"]] == ["base"] + [s[0] for s in STAGES]
    assert report["stages"][0]["kind"] == "base"
    assert report["wall_s"] == ledger["wall_s"]
    assert report["benchmarks"]["livecodebench"] == {"domain": "code", "metric": "accuracy", "unit": "%"}
    for row, raw in zip(report["stages"], ledger_rows(run), strict=True):
        assert row["scores"] == {b: s["score"] for b, s in raw["scores"].items()}
        assert row["stderr"] == {b: s["stderr"] for b, s in raw["scores"].items()}
        assert row["gate"] == (raw.get("gate") or {}).get("verdict")
        assert all(0.0 <= s <= 1.0 for s in row["scores"].values())
    code_rl = report["stages"][7]
    assert code_rl["regressed"] == ["ifeval"] and code_rl["change"]["ifeval"] == "down"
    assert code_rl["change"]["livecodebench"] == "up"  # its own domain, +16 points
    # rlhf follows the reward model, which has no scores: its delta is against sft2
    assert report["stages"][4]["reference"] == "sft2"


def test_write_report_files(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    markdown, image = write_report(run)
    assert (markdown, image) == (run / "report.md", run / "report.png")
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = markdown.read_text()
    assert text.startswith("# Cascade report: demo\n")
    assert "Recipe `nemotron_cascade_8b` · status **done** · total time 14h 03m" in text
    for stage in ["base", *(s[0] for s in STAGES)]:
        assert f"\n| {stage} |" in text
    code_row = next(line for line in text.splitlines() if line.startswith("| code_rl |"))
    assert "**" in code_row and "▼)**" in code_row  # the regressed ifeval cell, bold with its mark
    assert "**regressed** → warn" in code_row
    assert "- code_rl regressed ifeval by" in text  # the flagged-stages list


def test_rows_without_gate_marks_come_from_the_eval_files(tmp_path: Path) -> None:
    # No gate records: ▲/▼ are computed with the paired tests against the previous row's eval file.
    run = make_run(tmp_path, with_gates=False, finished=2)
    report = build_report(run)
    sft1 = report["stages"][1]
    assert sft1["gate"] is None
    assert sft1["change"] == {b: "up" for b in BENCHMARKS}  # every benchmark rises by 5–25 points
    sft1_row = next(line for line in render_markdown(report).splitlines() if line.startswith("| sft1 |"))
    assert sft1_row.count("▲") == len(BENCHMARKS)


@pytest.mark.parametrize(
    ("finished", "last", "statuses"),
    [
        # two stages done, the third running, the rest pending
        (2, "running", ["done", "done", "done", "running", "pending"]),
        # four stages done, the fifth failed
        (4, "failed", ["done", "done", "done", "done", "done", "failed", "pending"]),
        # only the base evaluated
        (0, "pending", ["done", "pending", "pending"]),
    ],
)
def test_partially_finished_runs(tmp_path: Path, finished: int, last: str, statuses: list[str]) -> None:
    run = make_run(tmp_path, finished=finished, last=last)
    markdown, image = write_report(run)
    report = build_report(run)
    assert [row["status"] for row in report["stages"]][: len(statuses)] == statuses
    assert report["stages"][finished + 1]["scores"] == {}
    assert image.stat().st_size > 0
    row = next(
        line for line in markdown.read_text().splitlines() if line.startswith(f"| {STAGES[finished][0]} |")
    )
    assert row.endswith(f"| {last} | — |")


@pytest.mark.parametrize("damage", ["delete", "corrupt"])
def test_report_survives_missing_or_broken_eval_files(tmp_path: Path, damage: str) -> None:
    # The ledger and its gate records alone still give domains and ▲/▼ marks.
    run = make_run(tmp_path, finished=3)
    for path in (run / "evals").glob("*.json"):
        path.unlink() if damage == "delete" else path.write_text("{broken")
    report = build_report(run)
    assert report["benchmarks"]["ifeval"]["domain"] == "instruction"
    assert report["stages"][1]["change"] == {b: "up" for b in BENCHMARKS}  # sft1: +6 to +23 points
    assert write_report(run)[1].exists()


def test_ledger_without_base_yet(tmp_path: Path) -> None:
    # A ledger written before the baseline evaluation finished: an empty table, no crash.
    run = tmp_path / "fresh"
    run.mkdir()
    stage = {"name": "sft1", "index": 1, "kind": "sft", "domain": "chat", "status": "pending"}
    (run / "ledger.json").write_text(
        json.dumps({"run_name": "fresh", "status": "running", "stages": [stage]})
    )
    markdown, image = write_report(run)
    report = build_report(run)
    assert [(r["name"], r["status"]) for r in report["stages"]] == [("base", "pending"), ("sft1", "pending")]
    assert report["benchmarks"] == {} and image.exists() and "| sft1 |" in markdown.read_text()


def test_rollback_marks_discarded_stage_and_reference(tmp_path: Path) -> None:
    # With policy rollback the regressed code_rl is discarded; swe_rl is compared with math_rl.
    run = make_run(tmp_path, policy="rollback")
    report = build_report(run)
    rows = {row["name"]: row for row in report["stages"]}
    assert rows["code_rl"]["discarded"] and rows["code_rl"]["action"] == "rollback"
    assert rows["swe_rl"]["reference"] == "math_rl"
    ifeval_delta = rows["swe_rl"]["scores"]["ifeval"] - rows["math_rl"]["scores"]["ifeval"]
    assert rows["swe_rl"]["delta"]["ifeval"] == pytest.approx(ifeval_delta)
    text = render_markdown(report)
    assert "| ~~code_rl~~ |" in text and "code_rl: weights discarded by rollback" in text
    write_report(run)  # the plot draws discarded points hollow, off the line


def test_stop_policy_run_and_raw_reward_benchmark(tmp_path: Path) -> None:
    # A run stopped by the gate, with a reward-model benchmark in raw units (second plot panel).
    run = make_run(tmp_path, policy="stop", raw_benchmark=True)
    report = build_report(run)
    assert report["status"] == "regressed"
    assert report["benchmarks"]["chat_rm"]["unit"] == "raw"
    assert [r["status"] for r in report["stages"]][-2:] == ["regressed", "pending"]  # stopped at code_rl
    markdown, _ = write_report(run)
    assert "chat_rm (chat) [raw]" in markdown.read_text()


def test_report_table_rows_for_wandb(tmp_path: Path) -> None:
    report = build_report(make_run(tmp_path, finished=3))
    columns, rows = report_table_rows(report)
    assert columns[:6] == ["stage", "kind", "domain", "status", "gate", "wall_s"]
    assert len(columns) == 6 + 2 * len(BENCHMARKS) and all(len(r) == len(columns) for r in rows)
    assert (
        rows[0][0] == "base" and rows[1][columns.index("ifeval")] == report["stages"][1]["scores"]["ifeval"]
    )
    assert rows[3][columns.index("ifeval")] is None  # the reward model has no scores


def test_cli_json_prints_only_the_table(tmp_path: Path) -> None:
    run = make_run(tmp_path, finished=3)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.report", str(run), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(json.dumps(build_report(run)))
    assert not (run / "report.md").exists()  # --json writes nothing


def test_cli_writes_files_and_logs_paths(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = make_run(tmp_path, finished=2)
    with caplog.at_level("INFO", logger="pipeline.report"):
        assert main([str(run)]) == 0
    assert f"wrote {run / 'report.md'}" in caplog.text and f"wrote {run / 'report.png'}" in caplog.text


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: root / "nope", "is not a directory"),  # no such directory
        (lambda root: root, "has no ledger.json"),  # a directory that is not a run
        (lambda root: (root / "ledger.json").write_text("{oops") and root, "could not be read as JSON"),
    ],
)
def test_cli_bad_path_exits_2(tmp_path: Path, setup, message: str) -> None:
    path = setup(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.report", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unscored_samples_are_listed_per_evaluation(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    assert "## Unscored samples" not in render_markdown(build_report(run))
    ledger = json.loads((run / "ledger.json").read_text())
    ledger["base"]["scores"]["ifeval"]["unscored"] = 25
    ledger["stages"][0]["scores"]["ifeval"]["unscored"] = 24
    (run / "ledger.json").write_text(json.dumps(ledger))
    report = build_report(run)
    assert report["stages"][1]["unscored"] == {"ifeval": 24}
    text = render_markdown(report)
    assert "## Unscored samples" in text
    assert "- ifeval: base 25, sft1 24" in text
