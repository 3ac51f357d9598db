"""The Hugging Face Hub as a run meets it: offline or not, what the local caches hold, and the ways out.

Asked for a hub id it cannot reach, ``datasets`` retries for about 30 seconds before it looks in its
cache, and then says only that it "couldn't reach" the hub. So before a hub id is loaded, Cascade
decides from the environment and the caches, never from a library's error text:

- offline: ``HF_HUB_OFFLINE`` (or ``HF_DATASETS_OFFLINE`` / ``TRANSFORMERS_OFFLINE``) is set, or one
  short request to the hub's endpoint (``HF_ENDPOINT``) fails, asked once per process;
- cached: a model's ``config.json`` is in the hub cache (``HF_HUB_CACHE``, under ``HF_HOME``); a data
  set has a prepared copy in the datasets cache (``HF_DATASETS_CACHE``), where ``load_dataset`` (and so
  ``dry_run=data``) leaves it.

Offline and cached: the load is made offline (models with ``local_files_only``, data sets with the
libraries' offline switch), so it reads the cache at once. Offline and not cached: one sentence
naming the ways out (:func:`unavailable`), before anything waits.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.schema import ConfigError

log = logging.getLogger(__name__)

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
PROBE_TIMEOUT_S = 3.0


class HubUnavailable(ConfigError):
    """A hub id that is neither reachable nor in the local cache."""


def offline_by_environment() -> str | None:
    """The variable that makes this process offline, or None."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return name
    return None


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """Whether the hub's endpoint answers one request within a few seconds (asked once per process)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=PROBE_TIMEOUT_S)
    except Exception as exc:  # any failure to get an answer means the same here: not reachable
        log.info("the Hugging Face Hub (%s) is unreachable: %s", constants.ENDPOINT, type(exc).__name__)
        return False
    return True


def offline() -> bool:
    return offline_by_environment() is not None or not hub_reachable()


def why_offline() -> str:
    variable = offline_by_environment()
    return f"{variable} is set" if variable else "the hub does not answer"


def hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def datasets_cache() -> str:
    return os.environ.get("HF_DATASETS_CACHE") or str(
        Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "datasets"
    )


def model_cached(repo_id: str, revision: str | None = None) -> bool:
    """Whether the hub cache holds model ``repo_id`` (its ``config.json`` at ``revision``)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError:  # not a valid repository id
        return False
    return isinstance(found, str)


def dataset_cached(repo_id: str, config: str | None = None) -> bool:
    """Whether the datasets cache holds a prepared copy of ``repo_id`` (of ``config``, when given).

    The layout is the one ``datasets`` reads offline: ``<cache>/<namespace>___<name>/<config>/<version>/<hash>/``.
    """
    from datasets.naming import camelcase_to_snakecase

    parts = repo_id.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    root = Path(datasets_cache()) / "___".join(parts)
    pattern = str(root / glob.escape(config) if config else root / "*")
    return any(Path(p).is_dir() for p in glob.glob(os.path.join(pattern, "*", "*")))


def unavailable(kind: str, ref: str, key: str | None = None) -> str:
    """The sentence for hub id ``ref`` (a ``model`` or a ``dataset``) that is offline and not in the cache."""
    where = f"key '{key}': " if key else ""
    cache = datasets_cache() if kind == "dataset" else hub_cache()
    local = "a local file or folder as its 'source:'" if kind == "dataset" else "a local checkpoint path"
    return (
        f"{where}{kind} '{ref}' is not in the local cache ({cache}) and the Hugging Face Hub is out of reach "
        f"({why_offline()}): run this recipe once with dry_run=data on a machine with network and copy its "
        f"HF_HOME here (or point HF_HOME / HF_DATASETS_CACHE at a cache that has it), unset HF_HUB_OFFLINE "
        f"if this machine has network, or give {local}"
    )


@contextlib.contextmanager
def offline_mode() -> Iterator[None]:
    """``datasets`` and ``huggingface_hub`` offline inside the block, whatever the environment said at import.

    Both libraries read ``HF_HUB_OFFLINE`` once, when imported, into a module constant that every call
    consults; the block sets those constants and restores them after.
    """
    import datasets.config
    from huggingface_hub import constants

    flags = [
        (m, n)
        for m in (datasets.config, constants)
        for n in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
        if hasattr(m, n)
    ]
    saved = [getattr(m, n) for m, n in flags]
    for module, name in flags:
        setattr(module, name, True)
    try:
        yield
    finally:
        for (module, name), value in zip(flags, saved, strict=True):
            setattr(module, name, value)


def model_load_kwargs(ref: str, revision: str | None = None, key: str | None = None) -> dict[str, bool]:
    """``from_pretrained`` arguments for hub id ``ref``: ``local_files_only`` when offline and cached.

    Raises :class:`HubUnavailable` when it is offline and not cached. A local path gets nothing.
    """
    from pipeline.models import is_hub_id

    if Path(ref).expanduser().exists() or not is_hub_id(ref) or not offline():
        return {}
    if not model_cached(ref, revision):
        raise HubUnavailable(unavailable("model", ref, key))
    return {"local_files_only": True}
