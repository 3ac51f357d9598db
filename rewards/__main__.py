"""Command line for the rewards: score a JSONL file of completions, or list the registry.

    python -m rewards list
    python -m rewards score --reward math --input completions.jsonl --output scored.jsonl \\
        [--column completion=response] [--column answer=gold] [--arg timeout_s=2] [--batch-size 256]

``--column NAME=FILE_COLUMN`` maps the reward's column name onto the file's, as recipes do; every
other column of the file reaches the reward under its own name (the way TRL passes dataset columns),
and a ``prompt`` column also arrives as ``prompts``. The completion column defaults to ``completion``.
``--arg key=value`` values are read as JSON when they parse (``2``, ``true``, ``["hash"]``), else as
strings. Each output row is the input row plus ``score`` and what the reward's preflight found (the
code reward: ``isolation`` and ``isolation_detail``, the sandbox layer that ran the programs); the file
is written whole at the end, or not at all; a summary, with the isolation, goes to stdout. Text is kept
exactly: a row holding an unpaired UTF-16 surrogate (valid in JSON as ``"\\ud800"``, not encodable in
UTF-8) is written with ASCII escapes. Exit status 2 means bad usage or input (unknown reward, unreadable
file, a line that is not UTF-8 or not JSON, a missing column) or a reward that cannot run here (the code
reward on a host where no isolating layer works, unless ``--arg isolation=none``); 1 means a
``module:function`` reward raised; each with one sentence saying why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rewards import build_reward, describe_rewards, stats
from rewards.registry import columns as reward_columns

logger = logging.getLogger("rewards")


class UsageError(Exception):
    """A mistake of the caller's, reported in one sentence with exit status 2."""


class RewardFailed(Exception):
    """The reward raised (registry rewards never do; a ``module:function`` one may): exit status 1."""


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} expects NAME=VALUE, got '{item}'")
        result[key.strip()] = value
    return result


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UsageError(f"input file '{path}' does not exist")
    rows = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UsageError(
                    f"line {number} of '{path}' is not UTF-8 ({exc.reason} at byte {exc.start})"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise UsageError(
                    f"line {number} of '{path}' is not valid JSON ({getattr(exc, 'msg', exc)})"
                ) from None
            if not isinstance(row, dict):
                raise UsageError(f"line {number} of '{path}' is a JSON {type(row).__name__}, not an object")
            rows.append(row)
    return rows


def _json_line(row: dict[str, Any]) -> str:
    """A row as one line of JSON: UTF-8 text as it is, ASCII escapes when it holds a lone surrogate."""
    line = json.dumps(row, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(row)  # "\ud800" escapes read back to the same string
    return line + "\n"


def _batches(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def score_file(
    reward_name: str,
    input_path: Path,
    output_path: Path,
    columns: dict[str, str],
    args: dict[str, Any],
    batch_size: int = 256,
) -> dict[str, Any]:
    """Score every row of ``input_path`` and write them with ``score`` to ``output_path``; returns the
    summary (numbers, and the reward's ``facts`` such as the code sandbox's isolation)."""
    try:
        reward = build_reward(reward_name, args)  # runs the reward's preflight
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    except (ImportError, TypeError, ValueError) as exc:
        raise UsageError(f"reward '{reward_name}' could not be built: {exc}") from None
    except RuntimeError as exc:  # e.g. SandboxUnavailableError: the sentence names the ways out
        raise UsageError(f"reward '{reward_name}' cannot run here: {exc}") from None
    facts = dict(getattr(reward, "facts", {}))
    rows = _read_rows(input_path)
    completion_column = columns.pop("completion", columns.pop("completions", "completion"))
    present = set().union(*(row.keys() for row in rows)) if rows else set()
    missing = [c for c in [completion_column, *columns.values()] if rows and c not in present]
    if missing:
        raise UsageError(f"input file '{input_path}' has no column '{missing[0]}'")
    mapped = {name: columns.get(name, name) for name in reward_columns(reward_name, args)}
    absent = [name for name, col in mapped.items() if rows and col not in present]
    if absent:
        raise UsageError(
            f"reward '{reward_name}' needs column '{absent[0]}', which '{input_path}' lacks "
            f"(map one with --column {absent[0]}=NAME)"
        )

    stats.reset()
    started = time.perf_counter()
    scores: list[float | None] = []
    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_name(f".{output_path.name}.partial")
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(lambda: partial.unlink(missing_ok=True))
        with partial.open("w", encoding="utf-8") as out:
            for batch, completions, kwargs in _calls(rows, present, columns, completion_column, batch_size):
                batch_scores = _call(reward, reward_name, completions, kwargs, first_row=len(scores) + 1)
                for row, score in zip(batch, batch_scores, strict=True):
                    out.write(_json_line({**row, "score": score, **facts}))
                scores.extend(batch_scores)
                logger.info("scored %d/%d rows", len(scores), len(rows))
        os.replace(partial, output_path)
    elapsed = time.perf_counter() - started

    counted = stats.snapshot(reset=True).values()
    present_scores = [s for s in scores if s is not None]
    return {
        "n": float(len(scores)),
        "mean": sum(present_scores) / len(present_scores) if present_scores else 0.0,
        "ones": float(sum(1 for s in present_scores if s == 1.0)),
        "zeros": float(sum(1 for s in present_scores if s == 0.0)),
        "none": float(len(scores) - len(present_scores)),
        "timeouts": sum(c["timeouts"] for c in counted),
        "errors": sum(c["errors"] for c in counted),
        "parse_failures": sum(c["parse_failures"] for c in counted),
        "seconds": elapsed,
        "rows_per_s": len(scores) / elapsed if elapsed > 0 else 0.0,
        "facts": facts,
    }


Batch = list[dict[str, Any]]


def _calls(
    rows: Batch, present: set[str], columns: dict[str, str], completion_column: str, batch_size: int
) -> Iterator[tuple[Batch, list[Any], dict[str, list[Any]]]]:
    """Each batch of rows with the completions and keyword columns the reward is called with."""
    for batch in _batches(rows, max(1, batch_size)):
        kwargs: dict[str, list[Any]] = {key: [row.get(key) for row in batch] for key in present}
        if "prompt" in present:
            kwargs.setdefault("prompts", kwargs["prompt"])
        for name, col in columns.items():
            kwargs[name] = [row.get(col) for row in batch]
        kwargs.pop(completion_column, None)
        kwargs.pop("completions", None)
        yield batch, [row.get(completion_column) for row in batch], kwargs


def _call(
    reward: Any, reward_name: str, completions: list[Any], kwargs: dict[str, list[Any]], first_row: int
) -> list[float | None]:
    """The reward's scores of one batch; a reward that rejects its arguments or raises says so in one sentence."""
    try:
        scores = list(reward(completions, **kwargs))
    except (TypeError, ValueError) as exc:  # bad --arg values or columns, not bad completions
        raise UsageError(f"reward '{reward_name}' rejected its arguments or columns: {exc}") from None
    except Exception as exc:
        last = first_row + len(completions) - 1
        raise RewardFailed(
            f"reward '{reward_name}' raised on rows {first_row}-{last} ({type(exc).__name__}: {exc})"
        ) from exc
    if len(scores) != len(completions):
        raise UsageError(f"reward '{reward_name}' returned {len(scores)} scores for {len(completions)} rows")
    return scores


def _list_rewards() -> str:
    rows = describe_rewards()
    width = max(len(name) for name, _, _ in rows)
    lines = []
    for name, signature, doc in rows:
        lines.append(f"{name:<{width}}  {doc}")
        lines.append(f"{'':<{width}}  {signature}")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rewards", description="Cascade's verifiable rewards.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print every reward of the registry")
    score = commands.add_parser("score", help="score a JSONL file of completions")
    score.add_argument("--reward", required=True, help="registry name, e.g. math")
    score.add_argument("--input", required=True, type=Path, help="JSONL, one object per line")
    score.add_argument("--output", required=True, type=Path, help="JSONL written with a 'score' per row")
    score.add_argument("--column", action="append", default=[], metavar="NAME=FILE_COLUMN")
    score.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE")
    score.add_argument("--batch-size", type=int, default=256)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "list":
        sys.stdout.write(_list_rewards())
        return 0
    try:
        columns = _pairs(args.column, "--column")
        reward_args = {k: _parse_value(v) for k, v in _pairs(args.arg, "--arg").items()}
        summary = score_file(args.reward, args.input, args.output, columns, reward_args, args.batch_size)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except RewardFailed as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    sys.stdout.write(
        f"{args.reward}: n={summary['n']:.0f} mean={summary['mean']:.4f} "
        f"ones={summary['ones']:.0f} zeros={summary['zeros']:.0f} none={summary['none']:.0f} "
        f"timeouts={summary['timeouts']:.0f} errors={summary['errors']:.0f} "
        f"parse_failures={summary['parse_failures']:.0f} "
        f"time={summary['seconds']:.2f}s throughput={summary['rows_per_s']:.1f} rows/s\n"
    )
    facts = summary["facts"]
    if "isolation" in facts:
        sys.stdout.write(f"isolation={facts['isolation']} ({facts.get('isolation_detail', '')})\n")
    sys.stdout.write(f"wrote {args.output}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
