"""The data check before a run: every stage's and benchmark's rows against what its rewards and scorer read.

A reward given rows it cannot read scores them 0 (or leaves them unscored), and a long run then trains
or reports on nothing while looking healthy. So before any model loads, each source is loaded through
its preset or mapping and its rows are checked: tests parse, instruction ids exist in the checker
registry, answers are present and non-empty, golden patches parse. A source with more unusable rows than
its ``max_dropped`` share stops the launch with one sentence naming the stage or benchmark, the column
and an example row (exit 2). ``dry_run=data`` runs the same check on every row and prints what it found.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.config import DataSource, Recipe
from pipeline.data.sources import (
    DataError,
    RowCheck,
    SourceReport,
    check_source,
    is_prompt,
    is_str,
    read_source,
    seed_for,
)


def _tests(value: Any) -> bool:
    from rewards.code_tests import parse_tests

    try:
        parse_tests(value)
    except ValueError:
        return False
    return True


def _answer(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def _ifeval_ids(value: Any) -> bool:
    from rewards.ifeval import INSTRUCTIONS

    return _ids(value, INSTRUCTIONS.__contains__)


def _ifbench_ids(value: Any) -> bool:
    from rewards.ifbench import known_instruction

    return _ids(value, known_instruction)


def _ids(value: Any, known: Callable[[str], bool]) -> bool:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.lstrip().startswith("[") else [value]
        except ValueError:
            return False
    return isinstance(value, list) and bool(value) and all(isinstance(i, str) and known(i) for i in value)


def _patch(value: Any) -> bool:
    from rewards.swe import parse_unified_diff

    return is_str(value) and parse_unified_diff(value) is not None


PREFLIGHT_ROWS = 256  # rows per source the launch checks (dry_run=data checks them all)


def _present(value: Any) -> bool:
    return value is not None


# How a column's values must look; the columns a reward reads are the registry's (rewards.registry.columns).
COLUMN_CHECKS: dict[str, RowCheck] = {
    "answer": _answer,
    "tests": _tests,
    "instruction_id_list": _ifeval_ids,
    "golden_patch": _patch,
}
# Rewards that read a column against another registry than the column's usual one.
READER_CHECKS: dict[tuple[str, str], RowCheck] = {("ifbench", "instruction_id_list"): _ifbench_ids}


def reward_checks(name: str, args: dict[str, Any] | None = None) -> dict[str, RowCheck]:
    """The columns reward ``name`` reads from a row, each with the check its values must pass."""
    from rewards import registry

    return {
        column: READER_CHECKS.get((name, column), COLUMN_CHECKS.get(column, _present))
        for column in registry.columns(name, args)
    }


@dataclass
class Check:
    """One source of one stage or benchmark, and what loading it gave."""

    owner: str  # "stage 'sft1'" or "benchmark 'math'"
    source: DataSource
    required: dict[str, RowCheck]
    transform: Callable[[dict[str, Any]], Any] | None = None
    report: SourceReport | None = None


def checks_of(recipe: Recipe) -> list[Check]:
    """What to check for every source of the recipe: the columns its stage kind and rewards read."""
    out = []
    for name, stage in recipe.stages.items():
        owner = f"stage '{name}'"
        required: dict[str, RowCheck] = {}
        transform = None
        if stage.kind == "sft":
            from pipeline.data.formatting import sft_row

            transform = sft_row
        elif stage.kind == "reward_model":
            from pipeline.stages.reward_model import to_pair

            pair_format = getattr(stage, "pair_format", "auto")
            transform = lambda row, f=pair_format: to_pair(row, f, "no_think")  # noqa: E731
        else:
            required = {"prompt": is_prompt}
            for term in getattr(stage, "rewards", []):
                required.update(reward_checks(term.name, term.args))
        sources = [*stage.data, *getattr(stage, "eval_data", [])]
        out += [Check(owner, source, required, transform) for source in sources]
    for name, bench in recipe.benchmarks.items():
        required = {
            "prompt": is_prompt,
            **(reward_checks(bench.scorer.reward, bench.scorer.args) if bench.scorer else {}),
        }
        out.append(Check(f"benchmark '{name}'", bench.data, required))
    return out


def check_data(recipe: Recipe, rows: int | None = None) -> list[Check]:
    """Load every source of the recipe (its first ``rows`` rows, or all) and check them; DataError if unusable.

    Checking every row (``dry_run=data``) also fills the local caches for an offline run: every data set
    is prepared in the datasets cache as it is loaded, and the recipe's hub models are downloaded.
    """
    checks = checks_of(recipe)
    if rows is None:
        from pipeline.hub import prefetch_models

        prefetch_models(recipe)
    for check in checks:
        source = check.source
        if rows is not None and not source.source.startswith("builtin:"):
            source = dataclasses.replace(source, size=min(source.size or rows, rows))
        try:
            raw = read_source(source, seed_for(source, recipe.run.seed))
            check.report = check_source(source, raw, check.required, check.transform)
        except DataError as exc:
            raise DataError(f"{check.owner}: {exc}") from None
    return checks


def describe_checks(checks: list[Check]) -> str:
    """What dry_run=data prints: per source, rows, dropped and why, skipped, and one mapped example."""
    lines = []
    for check in checks:
        report = check.report
        assert report is not None
        lines.append(
            f"{check.owner}: {report.source} [{check.source.split}] {report.rows} rows, "
            f"{report.dropped} dropped, {report.skipped} skipped"
        )
        for reason, n in report.reasons.most_common():
            lines.append(f"    dropped {n}: {reason}")
        if report.example is not None:
            shown = {k: _short(v) for k, v in report.example.items()}
            lines.append(f"    example: {json.dumps(shown, ensure_ascii=False, default=str)}")
    return "\n".join(lines)


def _short(value: Any, limit: int = 160) -> Any:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"
