"""The console and the log file: what a launch prints, and where everything else goes.

At the default level the console reads like a report: a line when a stage starts and one when it ends
(:mod:`pipeline.report.text` words them), the closing table, Cascade's warnings and errors, and the
one sentence the launch ends with, always last. Everything goes to the run's log file
(``runs/<name>/cascade.log``): every logger at INFO, the trainers' metrics, library warnings (each
distinct one once) and the traceback of a crash. ``-v`` or ``CASCADE_LOG_LEVEL=INFO`` shows Cascade's
INFO lines and library warnings on the console too; ``-vv`` or ``DEBUG`` shows everything;
``CASCADE_LOG_LEVEL=WARNING`` only warnings, errors and the last sentence.

Libraries print in their own ways, and each is brought under these rules with the means it offers:
``warnings`` go through :func:`logging.captureWarnings`; transformers, datasets and huggingface_hub
loggers lose their own stderr handlers and propagate; DeepSpeed's logger, which prints to stdout by
itself from the moment it is imported, gets a filter that hands its records to Cascade's handlers;
the trainers' progress bar is transformers' own ``DEFAULT_PROGRESS_CALLBACK`` hook (the one it uses for
notebooks) set to :class:`StageProgress`, which writes metrics to the log file instead of printing
dicts. Log lines reach the console through ``tqdm.contrib.logging``, so a line never lands inside a
progress bar; bars are drawn on a terminal only, and the libraries' housekeeping bars (loading weights,
writing shards, tokenizing) only from ``-v`` on.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.schema import ConfigError

CONSOLE = "cascade"  # the report lines: shown at the default level
METRICS = "pipeline.metrics"  # trainer metrics: the log file (and the console from -vv)
OURS = ("cascade", "pipeline", "rewards", "__main__")
FILE_ONLY = {"console": False}  # ``extra=`` of a record the console never shows (a traceback)
LEVELS = {"WARNING": -1, "REPORT": 0, "INFO": 1, "DEBUG": 2}
# Library loggers that add their own stderr handler: Cascade's handlers take over.
ADOPTED = ("transformers", "datasets", "huggingface_hub", "trl", "peft", "accelerate")
DIVERTED = ("DeepSpeed",)  # print by themselves from import time on, without propagating
_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def verbosity(flags: int = 0) -> int:
    """-1 quiet, 0 report (default), 1 info, 2 debug: ``-v`` flags, else ``CASCADE_LOG_LEVEL``."""
    if flags:
        return min(flags, 2)
    value = os.environ.get("CASCADE_LOG_LEVEL", "").strip().upper()
    if not value:
        return 0
    if value not in LEVELS:
        raise ConfigError(f"CASCADE_LOG_LEVEL must be one of {', '.join(LEVELS)}, got '{value}'")
    return LEVELS[value]


def _ours(name: str) -> bool:
    return name.split(".", 1)[0] in OURS


@dataclass
class _ConsoleFilter(logging.Filter):
    """Which records the console shows, by who logged them, how loud and how verbose the launch is."""

    level: int
    main: bool

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "last", False):
            return self.main
        if getattr(record, "console", True) is False:
            return False
        if record.name == METRICS:
            return self.main and self.level >= 2
        if not self.main:
            return record.levelno >= (logging.WARNING if _ours(record.name) else logging.ERROR)
        if _ours(record.name):
            floor = {-1: logging.WARNING, 0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}[self.level]
            if record.name == CONSOLE and self.level >= 0:
                floor = min(floor, logging.INFO)
            return record.levelno >= floor
        return (
            record.levelno
            >= {-1: logging.ERROR, 0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}[self.level]
        )


class _Once(logging.Filter):
    """A library's warning is written once per launch: 24 copies of a FutureWarning tell nothing more.

    The console and the log file share one instance; the decision is kept on the record, so both
    handlers (and the log file reading records buffered before it opened) agree on each record.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()
        self.count = 0  # distinct library warnings so far

    def filter(self, record: logging.LogRecord) -> bool:
        decided = getattr(record, "cascade_once", None)
        if decided is None:
            decided = self._first(record)
            record.cascade_once = decided
        return bool(decided)

    def _first(self, record: logging.LogRecord) -> bool:
        if _ours(record.name) or record.levelno < logging.WARNING:
            return True
        key = (record.name, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        self.count += 1
        return True


class _ConsoleFormatter(logging.Formatter):
    """Report lines as they are, ``warning:``/``error:`` before the others; from ``-v`` on, the log format.

    A traceback never reaches the console (it is in the log file), whoever logs it.
    """

    def __init__(self, level: int, prefix: str):
        super().__init__(datefmt="%H:%M:%S")
        self.level, self.prefix = level, prefix

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if self.level >= 1 and not getattr(record, "last", False):
            when = self.formatTime(record, self.datefmt)
            return f"{when} {self.prefix}{record.levelname} {record.name}: {message}"
        if record.levelno >= logging.ERROR:
            return f"{self.prefix}error: {message}"
        if record.levelno >= logging.WARNING:
            return f"{self.prefix}warning: {message}"
        return self.prefix + message


class _Divert(logging.Filter):
    """On a library logger that prints by itself: give each record to Cascade's handlers instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        logging.getLogger().handle(record)
        return False


class _RunLog(logging.FileHandler):
    """The run's log file. On a full disk it stops writing instead of printing logging's own traceback
    on the console for every record: the console still shows what matters, and the launch's last
    sentence says the disk is full."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if isinstance(sys.exc_info()[1], OSError):
            self.setLevel(logging.CRITICAL + 1)
            return
        super().handleError(record)


@dataclass
class Console:
    """The logging set-up of one process of a launch (:func:`setup` makes it)."""

    level: int
    rank: int
    handler: logging.Handler
    once: _Once
    buffer: logging.handlers.MemoryHandler | None = None
    log_file: Path | None = None
    previous: tuple[list[logging.Handler], int] = ([], logging.WARNING)  # the root logger before setup

    @property
    def main(self) -> bool:
        return self.rank == 0

    def open_log(self, path: Path, header: str) -> None:
        """Append this launch's records to ``path``, starting with those logged before the run had a folder."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = _RunLog(path, encoding="utf-8", delay=False)
        handler.setLevel(logging.DEBUG if self.level >= 2 else logging.INFO)
        handler.setFormatter(logging.Formatter(_FILE_FORMAT))
        handler.addFilter(self.once)
        handler.stream.write(f"\n==== {header}\n")
        root = logging.getLogger()
        if self.buffer is not None:
            self.buffer.setTarget(handler)
            self.buffer.flush()
            root.removeHandler(self.buffer)
            self.buffer = None
        root.addHandler(handler)
        self.log_file = path

    def quiet_libraries(self) -> None:
        """Bring the libraries of a training run under the console's rules (see the module docstring)."""
        import datasets
        import huggingface_hub.utils
        import transformers
        import transformers.trainer

        for name in ADOPTED:  # after the imports: each library adds its handler when first imported
            _adopt(logging.getLogger(name))
        transformers.utils.logging.set_verbosity(logging.INFO if self.level >= 2 else logging.WARNING)
        transformers.trainer.DEFAULT_PROGRESS_CALLBACK = stage_progress_class()
        if self.level < 1:
            transformers.utils.logging.disable_progress_bar()
            datasets.disable_progress_bars()
            huggingface_hub.utils.disable_progress_bars()

    def library_warnings(self) -> int:
        """How many distinct library warnings this launch wrote to the log file."""
        return self.once.count

    def last_line(self, sentence: str, ok: bool) -> None:
        """The sentence the launch ends with: on the console last (main process only), and in the log."""
        log = logging.getLogger(CONSOLE)
        log.log(logging.INFO if ok else logging.ERROR, "%s", sentence, extra={"last": True})
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()

    def close(self) -> None:
        """Give the root logger back as :func:`setup` found it, to a caller that had set it up (a test).

        A process of its own (the command line) had none: it keeps Cascade's handlers until it exits, so
        that what libraries log at exit is filtered like the rest instead of printed after the last line.
        """
        root = logging.getLogger()
        handlers, level = self.previous
        if not handlers:
            return
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)
        self.buffer = None

    @contextlib.contextmanager
    def around_bars(self) -> Iterator[None]:
        """Log lines written above progress bars, never inside one."""
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm(loggers=[logging.getLogger()]):
            yield


def _adopt(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            logger.removeHandler(handler)
    logger.propagate = True


def setup(level: int = 0, rank: int | None = None, world: int | None = None) -> Console:
    """Logging for one process of a launch: the console now, the log file once the run has a folder."""
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) if rank is None else rank
    world = int(os.environ.get("WORLD_SIZE", "1")) if world is None else world
    prefix = f"[rank {rank}] " if world > 1 else ""
    root = logging.getLogger()
    previous = (list(root.handlers), root.level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.DEBUG if level >= 2 else logging.INFO)
    once = _Once()
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(_ConsoleFilter(level, rank == 0))
    console.addFilter(once)
    console.setFormatter(_ConsoleFormatter(level, prefix))
    root.addHandler(console)
    # what is logged before the run directory exists waits here for the log file (dropped if it never opens)
    buffer = logging.handlers.MemoryHandler(capacity=1 << 30, flushLevel=logging.CRITICAL + 1)
    root.addHandler(buffer)
    logging.captureWarnings(True)
    for name in DIVERTED:
        library = logging.getLogger(name)
        if not any(isinstance(f, _Divert) for f in library.filters):
            library.addFilter(_Divert())
    for noisy in ("httpx", "urllib3", "filelock", "torch.distributed", "accelerate.utils.other"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return Console(level=level, rank=rank, handler=console, once=once, buffer=buffer, previous=previous)


# --------------------------------------------------------------------------------------------------
# The trainers' progress bar


def stage_progress_class() -> type:
    """:class:`StageProgress`, built on first use (transformers is imported only by runs that train)."""
    global StageProgress
    if StageProgress is None:
        from transformers.trainer_callback import ProgressCallback

        class _StageProgress(ProgressCallback):
            """A training bar named after the stage, drawn on a terminal only and gone when the stage ends;
            the trainer's metrics go to the log file (and wandb, through the stage's own callback)."""

            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if state.is_world_process_zero:
                    from tqdm.auto import tqdm

                    stage = str(getattr(args, "run_name", "") or "train").rsplit("/", 1)[-1]
                    self.training_bar = tqdm(
                        total=state.max_steps, desc=stage, unit="step", leave=False, dynamic_ncols=True,
                        disable=None,  # None: drawn on a terminal, not into a pipe or a Slurm log
                    )  # fmt: skip
                self.current_step = 0

            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
                if not state.is_world_process_zero or not logs:
                    return
                stage = str(getattr(args, "run_name", "") or "train").rsplit("/", 1)[-1]
                values = " ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in logs.items()
                    if k != "total_flos"
                )
                logging.getLogger(METRICS).info("%s step %d: %s", stage, state.global_step, values)

            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if state.is_world_process_zero and self.training_bar is not None:
                    self.training_bar.close()
                    self.training_bar = None

        StageProgress = _StageProgress
    return StageProgress


StageProgress: Any = None
