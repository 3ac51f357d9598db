"""Memory per process of loading a large SFT mix: Cascade's Arrow loader against Python lists per process.

    python bench/bench_data.py                         # 1M rows, 2 processes, both loaders
    python bench/bench_data.py --rows 200000 --modes arrow

The mix is two local Parquet files (60% ``messages`` conversations, 40% ``prompt`` + ``response``
rows), loaded by an SFT stage under ``accelerate launch`` with two CPU processes (gloo). Each process
builds the stage's conversations (:func:`pipeline.stages.sft.build_dataset`), then reads every row once,
as training does, and reports:

* peak RSS (``ru_maxrss``): the most memory the process held at any time, mapped files included;
* RSS anon and RSS file at the end (``/proc/self/status``): private memory, and pages of memory-mapped
  files (shared between the processes through the page cache, not a copy per process).

``--modes list`` measures the loader as it was before: every process reads every source into Python
lists (``to_list()``) and builds its own ``Dataset.from_list`` of the conversations.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = [
    "the",
    "a",
    "model",
    "data",
    "row",
    "token",
    "answer",
    "question",
    "stage",
    "reward",
    "train",
    "value",
    "cache",
    "memory",
    "arrow",
    "map",
]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_mix(folder: Path, rows: int, seed: int = 0) -> list[Path]:
    """Two Parquet files: conversations (60% of the rows) and prompt/response rows (40%)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    chat, qa = folder / f"chat-{rows}.parquet", folder / f"qa-{rows}.parquet"
    if chat.exists() and qa.exists():
        return [chat, qa]
    rng = random.Random(seed)
    n_chat = rows * 6 // 10
    messages = [
        [{"role": "user", "content": sentence(rng, 20)}, {"role": "assistant", "content": sentence(rng, 40)}]
        for _ in range(n_chat)
    ]
    pq.write_table(pa.table({"messages": messages}), chat)
    del messages
    n_qa = rows - n_chat
    pq.write_table(
        pa.table(
            {
                "prompt": [sentence(rng, 20) for _ in range(n_qa)],
                "response": [sentence(rng, 40) for _ in range(n_qa)],
            }
        ),
        qa,
    )
    return [chat, qa]


def memory() -> dict[str, float]:
    """Peak RSS and the current anonymous / file-backed resident memory of this process, in MiB."""
    status = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line
    )

    def kib(key: str) -> float:
        return float(status.get(key, "0 kB").split()[0])

    return {
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_anon_mib": kib("RssAnon") / 1024,
        "rss_file_mib": kib("RssFile") / 1024,
    }


def recipe_file(folder: Path, files: list[Path], out: Path) -> Path:
    path = folder / "bench-data.yaml"
    sources = "".join(f"      - {{source: {f}}}\n" for f in files)
    path.write_text(
        f"run: {{name: bench-data, output_dir: {out}}}\n"
        "model: {name_or_path: 'builtin:tiny'}\n"
        "tracking: {mode: disabled}\n"
        "stages:\n  sft:\n    kind: sft\n    prompt_mode: mixed\n"
        f"    data:\n{sources}"
    )
    return path


def worker(args: argparse.Namespace) -> None:
    from pipeline.config import load_recipe
    from pipeline.distributed import process_state
    from pipeline.stages.base import StageContext

    state = process_state()
    folder = Path(args.data)
    files = write_mix(folder, args.rows) if state.is_main_process else None
    state.wait_for_everyone()
    files = files or write_mix(folder, args.rows)
    out = folder / f"run-{args.mode}"
    recipe = load_recipe(
        str(recipe_file(folder, files, out) if state.is_main_process else folder / "bench-data.yaml")
    )
    stage = recipe.stages["sft"]
    ctx = StageContext(recipe=recipe, name="sft", index=1, config=stage, init_path="", tracker=None,
                       stage_dir=out / "stages" / "01-sft", resume=False)  # fmt: skip
    before = memory()
    t0 = time.perf_counter()
    dataset = build_dataset(ctx) if args.mode == "arrow" else list_loader(ctx)
    built_s = time.perf_counter() - t0
    chars = 0
    for table in dataset.with_format("arrow").iter(
        batch_size=10_000
    ):  # every row read once, as training does
        chars += sum(len(m["content"]) for conv in table["messages"].to_pylist() for m in conv)
    record = {
        "mode": args.mode,
        "process": state.process_index,
        "rows": len(dataset),
        "chars": chars,
        "build_s": round(built_s, 1),
        "start": before,
        **memory(),
    }
    Path(args.out).joinpath(f"{args.mode}-{state.process_index}.json").write_text(json.dumps(record))
    state.wait_for_everyone()


def build_dataset(ctx):
    from pipeline.stages.sft import build_dataset as sft_dataset

    return sft_dataset(ctx)


def list_loader(ctx):
    """The loader before Arrow: every process holds every source as Python lists and builds its own table."""
    import datasets

    from pipeline.data.formatting import sft_messages
    from pipeline.data.sources import row_mode

    cfg = ctx.config
    rows = []
    for source in cfg.data:
        rows += datasets.load_dataset("parquet", data_files=source.source, split="train").to_list()
    random.Random(ctx.seed).shuffle(rows)
    return datasets.Dataset.from_list(
        [
            {"messages": sft_messages(r, row_mode(cfg.prompt_mode, cfg.think_fraction, i, ctx.seed))}
            for i, r in enumerate(rows)
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--modes", default="arrow,list")
    parser.add_argument("--data", default="/tmp/cascade-bench-data")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="arrow", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    folder = Path(args.data)
    write_mix(folder, args.rows)
    results = []
    for mode in args.modes.split(","):
        out = folder / f"results-{mode}"
        out.mkdir(parents=True, exist_ok=True)
        launch = [sys.executable, "-m", "accelerate.commands.launch",
                  *(["--multi_gpu"] if args.processes > 1 else ["--cpu"]), "--num_processes", str(args.processes),
                  "--mixed_precision", "no", "--dynamo_backend", "no", __file__, "--worker",
                  "--mode", mode, "--rows", str(args.rows), "--data", str(folder), "--out", str(out)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        subprocess.run(launch, check=True, env=env)
        results += [json.loads((out / f"{mode}-{p}.json").read_text()) for p in range(args.processes)]
    print(f"{args.rows} rows, {args.processes} processes")
    print(
        f"{'loader':<6} {'proc':>4} {'rows':>8} {'build s':>8} {'peak RSS MiB':>13} {'anon MiB':>9} {'file MiB':>9}  (at start: anon MiB)"
    )
    for r in results:
        print(f"{r['mode']:<6} {r['process']:>4} {r['rows']:>8} {r['build_s']:>8} {r['peak_rss_mib']:>13.0f} "
              f"{r['rss_anon_mib']:>9.0f} {r['rss_file_mib']:>9.0f}  ({r['start']['rss_anon_mib']:.0f})")  # fmt: skip


if __name__ == "__main__":
    main()
