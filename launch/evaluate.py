"""Evaluate one checkpoint on a recipe's benchmarks, outside a cascade (to pick checkpoints, compare runs).

    python launch/evaluate.py recipe=tiny checkpoint=runs/tiny/stages/05-if_rl/final
    python launch/evaluate.py recipe=tiny checkpoint=math_rl                 # a stage of runs/<run.name>
    accelerate launch --num_processes 2 launch/evaluate.py recipe=tiny checkpoint=… benchmarks=math,code out=m.json

``benchmarks=`` picks some (default: all of the recipe); ``out=`` writes the eval record (default:
print the scores only). Other arguments are recipe overrides, as for launch/cascade.py.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable from a plain checkout

from pipeline.cli import parse_args, setup_logging  # noqa: E402
from pipeline.schema import ConfigError  # noqa: E402

log = logging.getLogger("evaluate")


def main(argv: list[str]) -> int:
    setup_logging()
    try:
        args = parse_args(argv, extra_keys=("checkpoint", "benchmarks", "out"))
        from pipeline.config import load_recipe
        from pipeline.evaluation import resolve_checkpoint

        recipe = load_recipe(args.recipe, args.overrides)
        checkpoint = resolve_checkpoint(recipe, args.extra.get("checkpoint", ""))
        names = [n for n in args.extra.get("benchmarks", "").split(",") if n] or list(recipe.benchmarks)
        unknown = [n for n in names if n not in recipe.benchmarks]
        if unknown:
            raise ConfigError(
                f"benchmark '{unknown[0]}' is not in recipe '{args.recipe}' ({', '.join(recipe.benchmarks)})"
            )
    except ConfigError as exc:
        log.error("%s", exc)
        return 2

    from pipeline.distributed import process_state
    from pipeline.evaluation import evaluate_checkpoint

    out = Path(args.extra["out"]) if "out" in args.extra else None
    from pipeline.evaluation import stage_judges

    record = evaluate_checkpoint(
        recipe, checkpoint, names, out_file=out, stage="eval", index=0, judges=stage_judges(recipe)
    )
    if process_state().is_main_process:
        scores = {n: {k: b[k] for k in ("score", "stderr", "n")} for n, b in record["benchmarks"].items()}
        sys.stdout.write(
            json.dumps({"checkpoint": checkpoint, "scores": scores, "skipped": record["skipped"]}) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
