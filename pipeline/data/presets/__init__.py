"""Dataset and benchmark presets: ``preset: NAME`` on a data source or a benchmark (docs/data.md).

One module per family (code, math, instruction, swe, preference, chat); each lists its ``PRESETS``.
"""

from __future__ import annotations

from pipeline.data.presets import chat, code, instruction, math, preference, swe
from pipeline.data.presets.base import SKIP, Preset, RowError, Scorer

__all__ = ["PRESETS", "SKIP", "Preset", "RowError", "Scorer", "get_preset"]

PRESETS: dict[str, Preset] = {
    p.name: p for module in (code, math, instruction, swe, preference, chat) for p in module.PRESETS
}


def get_preset(name: str) -> Preset:
    """The preset ``name``; KeyError with the closest name and the list otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise KeyError(f"unknown preset '{name}'{hint}; known: {', '.join(PRESETS)}") from None
