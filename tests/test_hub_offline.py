"""A hub id without the hub: at once, one sentence with the ways out; from the cache when the cache has it.

Each case runs in a fresh interpreter, because the HF libraries read ``HF_HUB_OFFLINE`` / ``HF_HOME``
when imported. "Unreachable" is an endpoint that refuses connections: the libraries' own retries would
take about 30 seconds there before giving up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused


def run(program: str, home: Path, offline: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_OFFLINE"))}
    env.update(PYTHONPATH=str(ROOT), HF_HOME=str(home), HF_ENDPOINT=UNREACHABLE)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    wrapped = (
        "import json, time\nt0 = time.monotonic()\nout = {}\ntry:\n"
        + "".join(f"    {line}\n" for line in program.strip().splitlines())
        + "except Exception as exc:\n    out['error'] = f'{type(exc).__name__}: {exc}'\n"
        + "out['seconds'] = time.monotonic() - t0\nprint(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapped], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOAD_DATASET = """
from pipeline.config import DataSource
from pipeline.data.sources import load_rows
load_rows([DataSource(source="some-org/some-dataset")], {}, seed=0)
"""


@pytest.mark.parametrize(("offline", "why", "way_back"), [
    (True, "HF_HUB_OFFLINE is set", "unset HF_HUB_OFFLINE if this machine has network"),
    (False, f"{UNREACHABLE} does not answer", "set HF_HUB_OFFLINE=1 to use the cache"),
])  # fmt: skip
def test_an_uncached_hub_dataset_fails_at_once_with_the_ways_out(
    tmp_path: Path, offline: bool, why: str, way_back: str
) -> None:
    out = run(LOAD_DATASET, tmp_path / "hf", offline)
    error = out["error"]
    assert error.startswith("DataError: dataset 'some-org/some-dataset' is not in the local cache")
    assert why in error and way_back in error and "\n" not in error
    assert "dry_run=data on a machine with network" in error and "HF_DATASETS_CACHE" in error
    assert "a local file or folder as its 'source:'" in error
    assert out["seconds"] < 15, out  # no retries against an unreachable hub


def write_cached_model(home: Path, repo: str) -> None:
    """The builtin model laid out in the hub cache as a download of ``repo`` leaves it."""
    from pipeline.config import BuiltinModelConfig
    from pipeline.models import build_builtin_model

    commit = "0" * 40
    root = home / "hub" / f"models--{repo.replace('/', '--')}"
    small = BuiltinModelConfig(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                               intermediate_size=64, tokenizer_corpus_rows=10)  # fmt: skip
    build_builtin_model("builtin:tiny", small, root / "snapshots" / commit, seed=0)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)


LOAD_MODEL = """
from pipeline.config import ModelConfig
from pipeline.models import load_causal_lm, load_tokenizer
model = ModelConfig(name_or_path="some-org/tiny")
tok = load_tokenizer("some-org/tiny", model)
lm = load_causal_lm("some-org/tiny", "fp32", model=model)
out["parameters"] = sum(p.numel() for p in lm.parameters())
"""


@pytest.mark.parametrize("offline", [True, False])
def test_a_cached_hub_model_loads_from_the_cache_without_waiting(tmp_path: Path, offline: bool) -> None:
    write_cached_model(tmp_path / "hf", "some-org/tiny")
    out = run(LOAD_MODEL, tmp_path / "hf", offline)
    assert "error" not in out and out["parameters"] > 0, out
    assert out["seconds"] < 30, out


def test_an_uncached_hub_model_fails_at_once(tmp_path: Path) -> None:
    out = run(LOAD_MODEL, tmp_path / "hf", offline=False)
    assert out["error"].startswith("HubUnavailable: model 'some-org/tiny' is not in the local cache"), out
    assert "a local checkpoint path" in out["error"] and out["seconds"] < 15


def test_the_datasets_cache_is_read_as_datasets_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.hub import dataset_cached

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    assert not dataset_cached("openai/gsm8k", "main")
    (tmp_path / "openai___gsm8k" / "main" / "0.0.0" / "abc123").mkdir(parents=True)
    assert dataset_cached("openai/gsm8k", "main") and dataset_cached("openai/gsm8k")
    assert not dataset_cached("openai/gsm8k", "socratic")
    (tmp_path / "nvidia___help_steer3" / "preference" / "0.0.0" / "f00").mkdir(parents=True)
    assert dataset_cached("nvidia/HelpSteer3", "preference")  # names as datasets writes them: snake_case
