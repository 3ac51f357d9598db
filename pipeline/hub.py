"""The Hugging Face Hub as a run meets it: offline or not, what the local caches hold, and the ways out.

Asked for a hub id it cannot reach, ``datasets`` retries for about 30 seconds before it looks in its
cache, and then says only that it "couldn't reach" the hub. So before a hub id is loaded, Cascade
decides from the environment and the caches, never from a library's error text:

- offline: ``HF_HUB_OFFLINE`` (or ``HF_DATASETS_OFFLINE`` / ``TRANSFORMERS_OFFLINE``) is set, or one
  short request to the hub's endpoint (``HF_ENDPOINT``) fails, asked once per process;
- cached: a model's ``config.json`` is in the hub cache (``HF_HUB_CACHE``, under ``HF_HOME``); a data
  set has a prepared copy in the datasets cache (``HF_DATASETS_CACHE``), where ``load_dataset`` (and so
  ``dry_run=data``) leaves it.

Offline and cached: the load runs with the libraries switched offline (:func:`offline_mode`), so it
reads the cache at once. Offline and not cached: one sentence naming the ways out (:func:`unavailable`),
before anything waits. ``dry_run=data`` on a machine with network fills both caches.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.schema import ConfigError

if TYPE_CHECKING:
    from pipeline.config import Recipe

log = logging.getLogger(__name__)

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
PROBE_TIMEOUT_S = 3.0


class HubUnavailable(ConfigError):
    """A hub id that is neither reachable nor in the local cache."""


def is_remote(ref: str) -> bool:
    """Whether ``ref`` is a hub id to fetch (the shape ``owner/name``, and no such local path)."""
    from pipeline.models import is_hub_id

    return is_hub_id(ref) and not Path(ref).expanduser().exists()


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


def _hf_home() -> Path:
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser()


def hub_cache() -> str:
    """Where models are downloaded (``HF_HUB_CACHE``, else ``HF_HOME/hub``), as the environment says now."""
    return os.environ.get("HF_HUB_CACHE") or str(_hf_home() / "hub")


def datasets_cache() -> str:
    """Where data sets are prepared (``HF_DATASETS_CACHE``, else ``HF_HOME/datasets``)."""
    return os.environ.get("HF_DATASETS_CACHE") or str(_hf_home() / "datasets")


def model_cached(repo_id: str, revision: str | None = None) -> bool:
    """Whether the hub cache holds model ``repo_id`` (its ``config.json`` at ``revision``)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=hub_cache(), revision=revision)
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
    from huggingface_hub import constants

    where = f"key '{key}': " if key else ""
    cache = datasets_cache() if kind == "dataset" else hub_cache()
    local = "a local file or folder as its 'source:'" if kind == "dataset" else "a local checkpoint path"
    variable = offline_by_environment()
    if variable:
        why, network = f"{variable} is set", f"unset {variable} if this machine has network"
    else:
        why = f"{constants.ENDPOINT} does not answer"
        network = "set HF_HUB_OFFLINE=1 to use the cache without asking the hub"
    return (
        f"{where}{kind} '{ref}' is not in the local cache ({cache}) and the Hugging Face Hub is out of reach "
        f"({why}): run this recipe once with dry_run=data on a machine with network and copy its HF_HOME "
        f"here (or point HF_HOME / HF_DATASETS_CACHE at a cache that has it), {network}, or give {local}"
    )


@contextlib.contextmanager
def offline_mode() -> Iterator[None]:
    """The HF libraries offline inside the block, whatever the environment said when they were imported.

    ``huggingface_hub`` (which transformers asks) and ``datasets`` read ``HF_HUB_OFFLINE`` once, at
    import, into module constants that every call consults; the block sets them and restores them after.
    Passing ``local_files_only`` is not enough: a model load still asks the hub for side files (a PEFT
    adapter config) and retries for half a minute.
    """
    import sys

    from huggingface_hub import constants

    modules = [m for m in (constants, sys.modules.get("datasets.config")) if m is not None]
    flags = [(m, n) for m in modules for n in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if hasattr(m, n)]
    saved = [getattr(m, n) for m, n in flags]
    for module, name in flags:
        setattr(module, name, True)
    try:
        yield
    finally:
        for (module, name), value in zip(flags, saved, strict=True):
            setattr(module, name, value)


@contextlib.contextmanager
def loading(ref: str, revision: str | None = None) -> Iterator[None]:
    """The block that loads model ``ref``: offline, from the cache, when the hub is out of reach.

    Raises :class:`HubUnavailable` at once when the hub is out of reach and the cache lacks the model.
    A local path, or a hub id with the hub in reach, loads as usual.
    """
    if not is_remote(ref) or not offline():
        yield
        return
    if not model_cached(ref, revision):
        raise HubUnavailable(unavailable("model", ref))
    with offline_mode():
        yield


def uncached(recipe: Recipe) -> list[str]:
    """The recipe's hub ids that are not in the local caches, one line each (what a dry run cannot check).

    Looks at the caches only: no request is made.
    """
    lines = []
    sources = [
        (f"stage '{n}'", s)
        for n, st in recipe.stages.items()
        for s in [*st.data, *getattr(st, "eval_data", [])]
    ]
    sources += [(f"benchmark '{n}'", b.data) for n, b in recipe.benchmarks.items()]
    for owner, source in sources:
        if is_remote(source.source) and not dataset_cached(source.source, source.config):
            lines.append(
                f"dataset '{source.source}' ({owner}) is not in the datasets cache ({datasets_cache()})"
            )
    for key, ref, revision in model_refs(recipe):
        if not model_cached(ref, revision):
            lines.append(f"model '{ref}' ({key}) is not in the hub cache ({hub_cache()})")
    return lines


def model_refs(recipe: Recipe) -> list[tuple[str, str, str | None]]:
    """(key, hub id, revision) of every hub model the recipe starts a stage from."""
    refs = [("model.name_or_path", recipe.model.name_or_path, recipe.model.revision)]
    refs += [(f"stages.{n}.init", st.init, None) for n, st in recipe.stages.items() if st.init]
    return [(key, ref, rev) for key, ref, rev in refs if ref not in recipe.stages and is_remote(ref)]


def prefetch_models(recipe: Recipe) -> None:
    """Download the recipe's hub models into the hub cache (``dry_run=data``), so an offline run finds them.

    Weights come in one format: safetensors when the repository has them (not also its .bin copies).
    """
    from huggingface_hub import HfApi, snapshot_download

    for key, ref, revision in model_refs(recipe):
        if model_cached(ref, revision):
            log.info("model %s (%s) is in the hub cache", ref, key)
        elif offline():
            log.warning("model %s (%s): %s", ref, key, unavailable("model", ref))
        else:
            files = HfApi().list_repo_files(ref, revision=revision)
            skip = ["*.bin", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.gguf", "original/*"]
            if not any(f.endswith(".safetensors") for f in files):
                skip = [p for p in skip if p not in ("*.bin", "*.pt", "*.pth")]
            path = snapshot_download(ref, revision=revision, ignore_patterns=skip)
            log.info("model %s (%s) downloaded into the hub cache: %s", ref, key, path)
