"""The "did you mean" hint of every error that names something unknown (a reward, a recipe key, a stage).

It lives in ``rewards`` because ``rewards`` is usable alone and must not import ``pipeline``; the pipeline's
errors use this same function.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the option closest to ``name``, or an empty string when none is close."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""
