"""Where rows come from (``data:`` of a stage or a benchmark) and how a prompt becomes the user turn."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pipeline.config.checks import environment_problem, looks_local
from pipeline.schema import (
    FRACTION,
    POSITIVE,
    ConfigError,
    Range,
    closest,
)


@dataclass
class DataSource:
    """One source of rows: ``builtin:<task>``, a hub dataset id, or a local .jsonl/.json/.parquet/.csv file."""

    source: str = ""  # with a preset: empty for its hub id, "package" for the copy a pip package ships
    split: str | None = None  # None: the preset's split, else "train"
    size: int | None = None  # rows to take (None: all; builtin tasks need a size)
    weight: float = 1.0  # multiplies the source's rows in the mix: 0.5 takes half of them, 2.0 each twice
    columns: dict[str, str] = field(default_factory=dict)  # stage column -> source column
    config: str | None = None  # hub dataset config name
    revision: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # builtin task or preset options (flaw_rate, …)
    preset: str | None = None  # a dataset preset (pipeline/data/presets): hub defaults + a row adapter
    max_dropped: float = 0.01  # share of unusable rows tolerated (dropped and counted) before loading fails

    RANGES: ClassVar[dict[str, Range]] = {"size": POSITIVE, "weight": POSITIVE, "max_dropped": FRACTION}

    def validate(self, key: str) -> None:
        if self.preset is not None:
            self._apply_preset(key)
        if not self.source:
            raise ConfigError(
                f"missing required key '{key}.source' (a builtin task, hub id or file, or a preset)"
            )
        if self.split is None:
            self.split = "train"
        if self.source.startswith("builtin:"):
            from pipeline.data.synthetic import TASKS

            task = self.source.removeprefix("builtin:")
            if task not in TASKS:
                raise ConfigError(
                    f"key '{key}.source' names unknown builtin task '{task}'{closest(task, TASKS)}; "
                    f"known: {', '.join('builtin:' + t for t in TASKS)}"
                )
            if self.size is None:
                raise ConfigError(f"key '{key}.size' is required for builtin source '{self.source}'")
        elif looks_local(self.source) and not Path(self.source).expanduser().exists():
            raise ConfigError(f"key '{key}.source' points to '{self.source}', which does not exist")

    def known_columns(self) -> frozenset[str] | None:
        """The stage columns this source's rows will have, when the recipe shows them; else None.

        Builtin tasks declare theirs; a local Parquet or CSV file states its schema in its first bytes.
        Hub datasets and JSON files show theirs only when read (the data loader checks those rows).
        """
        path = Path(self.source).expanduser()
        if self.source.startswith("builtin:"):
            from pipeline.data.synthetic import TASKS, task_columns

            task = self.source.removeprefix("builtin:")
            raw = set(task_columns(task)) if task in TASKS else None
        elif path.suffix == ".parquet" and path.is_file():
            import pyarrow.parquet as pq

            raw = set(pq.read_schema(path).names)
        elif path.suffix == ".csv" and path.is_file():
            import csv

            with path.open(newline="") as handle:
                raw = set(next(csv.reader(handle), []))
        else:
            raw = None
        if raw is None:
            return None
        # as pipeline.data.sources.map_columns renames them: a mapped column replaces its source column
        mapped = {stage for stage, col in self.columns.items() if col in raw}
        return frozenset((raw - set(self.columns.values())) | mapped)

    def _apply_preset(self, key: str) -> None:
        """Fill the preset's defaults (hub id, config, split) and check its options."""
        from pipeline.data.presets import get_preset

        try:
            preset = get_preset(self.preset)
            preset.resolve_options(self.options)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"key '{key}.preset': {str(exc).strip(chr(34) + chr(39))}") from None
        if self.source == "package":
            if preset.packaged is None:
                raise ConfigError(
                    f"key '{key}.source': preset '{self.preset}' has no copy shipped in a package"
                )
            try:
                self.source = str(preset.packaged())
            except Exception as exc:  # the package is not installed: this machine's problem, not the recipe's
                environment_problem(f"key '{key}.source': {exc}")
            self.split = self.split or "train"
        elif not self.source:
            if preset.hub is None:
                raise ConfigError(
                    f"key '{key}.source' is required: preset '{self.preset}' has no default hub id"
                )
            self.source, self.config = preset.hub, self.config or preset.config
        self.split = self.split or preset.split


@dataclass
class PromptConfig:
    """How prompts become the user turn: a system prompt, a template around the prompt, a suffix."""

    system: str | None = None  # a system turn added to conversations that have none
    template: str | None = None  # a text with one "{prompt}", e.g. "Question: {prompt}"
    suffix: str | None = None  # e.g. "Put the final answer in \\boxed{}."

    def validate(self, key: str) -> None:
        if self.template is not None and self.template.count("{prompt}") != 1:
            raise ConfigError(
                f"key '{key}.template' must contain '{{prompt}}' exactly once, got {self.template!r}"
            )

    def format(self) -> Any:
        from pipeline.data.formatting import PromptFormat

        return PromptFormat(self.system, self.template, self.suffix)
