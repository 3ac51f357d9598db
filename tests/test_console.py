"""The console reads like a report: which records it shows at each level, how it words them, the log file
that keeps everything, and the report lines of a stage's start and end (pipeline.console, pipeline.report.text).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from pipeline import console as consoles
from pipeline.gates import BenchmarkCheck, GateResult
from pipeline.report import text
from pipeline.run_state import BaseEntry, BenchmarkScore, StageEntry, Status
from pipeline.schema import ConfigError


def record(name: str, level: int, message: str = "m", **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, message, (), None)
    rec.__dict__.update(extra)
    return rec


INFO, WARN, ERR = logging.INFO, logging.WARNING, logging.ERROR


@pytest.mark.parametrize(
    ("level", "main", "name", "levelno", "extra", "shown"),
    [
        # default level: the report lines, Cascade's warnings, libraries' errors
        (0, True, "cascade", INFO, {}, True),
        (0, True, "pipeline.evaluation", INFO, {}, False),  # per-benchmark details: the log file
        (0, True, "pipeline.stages.sft", WARN, {}, True),
        (0, True, "rewards.sandbox", ERR, {}, True),
        (0, True, "transformers.trainer", WARN, {}, False),  # library warnings: the log file, once
        (0, True, "py.warnings", WARN, {}, False),
        (0, True, "DeepSpeed", ERR, {}, True),
        (0, True, consoles.METRICS, INFO, {}, False),  # trainer metrics: the log file
        (0, True, "pipeline.cascade", ERR, {"console": False}, False),  # a traceback: the log file only
        # -v: Cascade's INFO and library warnings; -vv: everything, metrics included
        (1, True, "pipeline.evaluation", INFO, {}, True),
        (1, True, "transformers.trainer", WARN, {}, True),
        (1, True, consoles.METRICS, INFO, {}, False),
        (2, True, consoles.METRICS, INFO, {}, True),
        (2, True, "transformers.trainer", INFO, {}, True),
        # quiet (CASCADE_LOG_LEVEL=WARNING): no report lines, but warnings and the last sentence
        (-1, True, "cascade", INFO, {}, False),
        (-1, True, "pipeline.ledger", WARN, {}, True),
        (-1, True, "cascade", INFO, {"last": True}, True),
        # other processes of a launch: Cascade's warnings, never the report lines or the last sentence
        (0, False, "cascade", INFO, {}, False),
        (0, False, "pipeline.ledger", WARN, {}, True),
        (0, False, "cascade", ERR, {"last": True}, False),
        (2, False, "transformers.trainer", WARN, {}, False),
    ],
)  # fmt: skip
def test_what_the_console_shows(level, main, name, levelno, extra, shown) -> None:
    assert consoles._ConsoleFilter(level, main).filter(record(name, levelno, **extra)) is shown


@pytest.mark.parametrize(
    ("level", "prefix", "name", "levelno", "message", "line"),
    [
        (0, "", "cascade", INFO, "[1/8] sft1 · sft from base", "[1/8] sft1 · sft from base"),
        (0, "", "pipeline.ledger", WARN, "disk slow", "warning: disk slow"),
        (0, "", "cascade", ERR, "stage sft2 crashed", "error: stage sft2 crashed"),
        (0, "[rank 1] ", "pipeline.ledger", WARN, "x", "[rank 1] warning: x"),
    ],
)
def test_how_the_console_words_a_record(level, prefix, name, levelno, message, line) -> None:
    assert consoles._ConsoleFormatter(level, prefix).format(record(name, levelno, message)) == line


def test_a_traceback_never_reaches_the_console() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        rec = logging.LogRecord("pipeline.cascade", ERR, __file__, 1, "stage x crashed", (), sys.exc_info())
    logging.Formatter().format(rec)  # the log file's formatter fills the record's traceback text first
    assert consoles._ConsoleFormatter(0, "").format(rec) == "error: stage x crashed"


def test_a_library_warning_is_written_once() -> None:
    once = consoles._Once()
    first, again = (
        record("py.warnings", WARN, "FutureWarning: x"),
        record("py.warnings", WARN, "FutureWarning: x"),
    )
    assert once.filter(first) and once.filter(first)  # the console and the log file agree on one record
    assert not once.filter(again) and once.count == 1
    assert once.filter(record("pipeline.ledger", WARN, "ours")) and once.filter(
        record("pipeline.ledger", WARN, "ours")
    )


@pytest.mark.parametrize(
    ("flags", "env", "level"),
    [
        (0, "", 0),
        (1, "", 1),
        (3, "", 2),
        (0, "info", 1),
        (0, "DEBUG", 2),
        (0, "WARNING", -1),
        (1, "WARNING", 1),
    ],
)
def test_verbosity(flags: int, env: str, level: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_LOG_LEVEL", env)
    assert consoles.verbosity(flags) == level


def test_a_bad_log_level_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_LOG_LEVEL", "loud")
    with pytest.raises(
        ConfigError, match="CASCADE_LOG_LEVEL must be one of WARNING, REPORT, INFO, DEBUG, got 'LOUD'"
    ):
        consoles.verbosity(0)


@pytest.fixture
def restored_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level
    logging.captureWarnings(False)


def test_the_log_file_keeps_everything_including_what_came_before_it(
    tmp_path: Path, restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    console = consoles.setup(0, rank=0, world=1)
    logging.getLogger("pipeline.data").info("320 conversations")  # before the run has a folder
    console.open_log(tmp_path / "cascade.log", "launch")
    logging.getLogger("cascade").info("[1/2] sft1 · sft from base")
    logging.getLogger(consoles.METRICS).info("sft1 step 2: loss=6.2")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        for _ in range(3):
            warnings.warn("`x` is deprecated", FutureWarning, stacklevel=1)
    logging.getLogger("DeepSpeed").warning("Setting accelerator to CPU")  # a library that prints by itself
    console.last_line("done in 3.0s", ok=True)
    err = capsys.readouterr().err
    assert err.splitlines() == ["[1/2] sft1 · sft from base", "done in 3.0s"]
    log = (tmp_path / "cascade.log").read_text()
    for expected in (
        "320 conversations",
        "sft1 step 2: loss=6.2",
        "Setting accelerator to CPU",
        "done in 3.0s",
    ):
        assert expected in log
    assert log.count("FutureWarning: `x` is deprecated") == 1 and console.library_warnings() == 2


# --------------------------------------------------------------------------------------------------
# The report lines


def entry(**fields: object) -> StageEntry:
    base = {
        "name": "math_rl",
        "index": 6,
        "kind": "grpo",
        "domain": "math",
        "status": Status.DONE,
        "wall_s": 83.4,
    }
    return StageEntry(**{**base, **fields})  # type: ignore[arg-type]


def gate(
    verdict: str = "pass", own: bool | None = True, action: str = "continue", delta: float = -0.12
) -> GateResult:
    check = BenchmarkCheck(
        name="ifeval", domain="instruction", role="earlier", gated=True, verdict=verdict, before=0.5, after=0.38,
        delta=delta, p_value=0.001, test="mcnemar", n_paired=100, tolerance=0.02, best_so_far=0.5,
        drop_from_best=0.12, improved=None,
    )  # fmt: skip
    return GateResult(
        stage="math_rl", stage_domain="math", verdict=verdict, action=action, policy="stop", tolerance=0.02,
        alpha=0.05, trained_domains=["instruction"], own_domain_improved=own, benchmarks={"ifeval": check},
    )  # fmt: skip


MATH = BenchmarkScore(score=0.625, stderr=0.05, n=64, domain="math", metric="accuracy")
IFEVAL = BenchmarkScore(score=0.5, stderr=0.05, n=64, domain="instruction", metric="accuracy")


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"summary": {"steps": 4, "rows": 320, "final_loss": 6.22618}, "kind": "sft", "domain": None, "gate": gate()},
         "[6/8] math_rl done in 1m 23s · 4 steps on 320 rows · loss 6.226 · gate pass"),
        ({"summary": {"steps": 2, "pairs": 64, "pairwise_accuracy": 0.5625}, "kind": "reward_model", "domain": "chat"},
         "[6/8] math_rl done in 1m 23s · 2 steps on 64 pairs · held-out accuracy 56.2% · gate —"),
        ({"summary": {"steps": 40, "prompts": 512, "reward_mean": -0.25, "final_loss": 0.1},
          "scores": {"math": MATH, "ifeval": IFEVAL}, "gate": gate(own=False)},
         "[6/8] math_rl done in 1m 23s · 40 steps on 512 prompts · mean reward −0.250 · math 62.5% · gate pass (own domain flat)"),
        ({"summary": {"steps": 40}, "gate": gate("regressed", action="rollback"), "discarded": True},
         "[6/8] math_rl done in 1m 23s · 40 steps · gate regressed (ifeval −12.0%) → rolled back"),
        ({"summary": {"steps": 40}, "status": Status.REGRESSED, "gate": gate("regressed", action="stop")},
         "[6/8] math_rl stopped after 1m 23s · 40 steps · gate regressed (ifeval −12.0%) → stop"),
        ({"summary": {}}, "[6/8] math_rl done in 1m 23s · trained · gate —"),
    ],
)  # fmt: skip
def test_stage_end_line(fields: dict, line: str) -> None:
    assert text.stage_end_line(entry(**fields), 8) == line


@pytest.mark.parametrize(
    ("attempts", "resume", "line"),
    [
        (1, False, "[6/8] math_rl · grpo from stages/05-if_rl/final"),
        (
            2,
            True,
            "[6/8] math_rl · grpo from stages/05-if_rl/final · attempt 2, resuming from its last checkpoint",
        ),
    ],
)
def test_stage_start_line(attempts: int, resume: bool, line: str) -> None:
    assert text.stage_start_line(entry(attempts=attempts), 8, "stages/05-if_rl/final", resume) == line


def test_baseline_line_and_raw_scores() -> None:
    swe = BenchmarkScore(score=-1.0, domain="swe", metric="mean_reward")
    base = BaseEntry(status=Status.DONE, scores={"math": MATH, "swe": swe}, wall_s=5.2)
    assert text.baseline_line(base) == "[base] evaluated in 5.2s: math 62.5%, swe −1.000"


def test_closing_table() -> None:
    report = {
        "benchmarks": {"math": {"unit": "%"}, "chat": {"unit": "raw"}},
        "stages": [
            {"name": "base", "status": "done", "scores": {"math": 0.5}, "change": {}, "gate": None,
             "discarded": False, "own_domain_improved": None, "wall_s": 5.0},
            {"name": "math_rl", "status": "done", "scores": {"math": 0.625, "chat": -0.25}, "change": {"math": "up"},
             "gate": "pass", "discarded": False, "own_domain_improved": True, "wall_s": 83.4},
            {"name": "code_rl", "status": "failed", "scores": {}, "change": {}, "gate": None, "discarded": False,
             "own_domain_improved": None, "wall_s": None},
        ],
    }  # fmt: skip
    assert text.closing_table(report).splitlines() == [
        "stage    math %  chat [raw]  gate      time",
        "base       50.0           —  —         5.0s",
        "math_rl   62.5▲      −0.250  pass    1m 23s",
        "code_rl       —           —  failed       —",
    ]
