"""The runner: plan → baseline evaluation → for each stage: train → evaluate → gate → record.

Every process runs this same code. The main process alone writes the run directory's files; all
processes read the ledger and make the same resume decision, and meet at a barrier between phases.
Each step of a stage is one verb of the ledger (:mod:`pipeline.ledger`), written as it happens, and
however the launch ends (:mod:`pipeline.outcome`: 0 done or paused by run.until, 1 a stage crashed, 2 a
recipe/data/run-directory problem, 3 stopped by the gate, 75 stopped early at a saved step, 128 + N
stopped by signal N after recording where to resume) the ledger, the report and the console say the same.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline import peak_memory
from pipeline.config import Recipe, StageConfig, stage_hashes
from pipeline.console import CONSOLE, FILE_ONLY, Console
from pipeline.distributed import process_state
from pipeline.gates import GateResult
from pipeline.ledger import Ledger, Plan, heartbeat_seconds, new_state, plan, read_state
from pipeline.outcome import Ending, Interrupted, ending_for, finished, paused, regressed, stopped
from pipeline.preemption import EXIT_PREEMPTED, StopRequest, StopRun, newest_checkpoint, trainer_callback
from pipeline.report import text
from pipeline.run_state import StageEntry, Status, StopRecord, scores_of
from pipeline.rundir import BASE, RunDir
from pipeline.runlock import RunLock
from pipeline.schema import ConfigError
from pipeline.slurm import SlurmJob
from pipeline.stages.base import StageContext, StageResult, settle_stage_files

log = logging.getLogger(__name__)
say = logging.getLogger(CONSOLE)  # the report lines of the console (pipeline.console)

Benchmarks = dict[str, dict[str, Any]]  # an evaluation's records: benchmark → record (evals/*.json)


@dataclass
class _Progress:
    """Where the cascade stands while it walks the stages."""

    current: str  # the policy checkpoint the next stage starts from
    trained: set[str] = field(default_factory=set)  # domains of kept stages: what the gate protects
    accepted: Benchmarks | None = None  # evaluation of the last kept checkpoint
    history: list[Benchmarks] = field(default_factory=list)  # evaluations of every kept row, base first
    finished: dict[str, str] = field(default_factory=dict)  # stage name → final checkpoint

    def keep(self, policy: str, domain: str | None, evaluation: Benchmarks | None) -> None:
        """A stage's weights are kept: the next stage starts from them and the gate protects its domain."""
        self.current = policy
        if domain:
            self.trained.add(domain)
        if evaluation:
            self.accepted = evaluation
            self.history.append(evaluation)


class Cascade:
    def __init__(self, recipe: Recipe, console: Console | None = None):
        self.recipe = recipe
        self.console = console
        self.state = process_state()
        self.is_main = self.state.is_main_process
        self.run_dir = RunDir(recipe.run_dir)
        self.lock = RunLock(self.run_dir.lock)
        self.heartbeat_s = heartbeat_seconds()  # a bad CASCADE_HEARTBEAT_S stops the launch here
        self.tracker: Any = None
        self.plan: Plan | None = None
        self._ledger: Ledger | None = None
        self.stop_request = StopRequest.from_env(recipe.run.deadline)
        self._where: str | None = None  # what is running, for the sentence of a failure
        self._current: str | None = None  # the stage whose attempt is open in the ledger

    @property
    def ledger(self) -> Ledger:
        assert self._ledger is not None, "the ledger is opened by run()"
        return self._ledger

    def barrier(self) -> None:
        self.state.wait_for_everyone()

    # ---------------------------------------------------------------------------------------------
    def run(self) -> Ending:
        """Run (or resume) the cascade; returns how it ended, which the ledger has recorded."""
        t0 = time.monotonic()
        self.stop_request.install()
        try:
            self._open()
        except BaseException as exc:  # the run directory is unusable or holds another run: nothing to record
            self.lock.release()
            self.stop_request.uninstall()
            return self._ending(exc)
        self.ledger.open_session(
            self.state.num_processes, t0, self.heartbeat_s, slurm=SlurmJob.from_env(os.environ)
        )
        try:
            ending = self._run_stages(t0)
        except (StopRun, KeyboardInterrupt, Interrupted) as stop:  # resumable, not failed
            self.stop_request.closing()
            ending = self._record_stop(_as_stop(stop))
        except BaseException as exc:  # every other way out is recorded with its reason
            ending = self._ending(exc)
            self._record_failure(ending, exc)
        self.ledger.end_session(ending)
        self._refresh_report()
        self._close_report(ending)
        if self.tracker is not None:
            self.tracker.summary({"exit_code": ending.code, "wall_s": self.ledger.state.wall_s})
            self.tracker.finish(exit_code=ending.code)
        self.lock.release()
        self.stop_request.uninstall()
        if ending.code == EXIT_PREEMPTED:
            # leave together, after the main process has written everything: under srun
            # --kill-on-bad-exit a rank that exits first has the others killed mid-write
            self.barrier()
        return ending

    def _ending(self, exc: BaseException) -> Ending:
        """The ending ``exc`` makes; its traceback goes to the log file (never the console)."""
        log_file = self.console.log_file if self.console is not None else None
        ending = ending_for(exc, where=self._where, run_dir=self.run_dir.root, log_file=log_file)
        if not isinstance(exc, ConfigError | StopRun):
            log.error("%s", ending.sentence, exc_info=exc, extra=FILE_ONLY)
        return ending

    def _record_failure(self, ending: Ending, exc: BaseException) -> None:
        """The open stage (or the baseline) failed: the ledger says so, with the reason."""
        try:
            if self._current is None:
                if self._where == _BASELINE:
                    self.ledger.fail_baseline(ending.sentence)
            else:
                trace = None if isinstance(exc, ConfigError) else _traceback(exc)
                self.ledger.fail_stage(self._current, ending.sentence, trace)
        except OSError as write_error:  # a full disk: the session's end is still tried
            log.warning("the ledger could not record the failure of %s: %s", self._current, write_error)

    def _open(self) -> None:
        """Reconcile the run directory with the recipe (all processes), then write it (main)."""
        recipe = self.recipe
        if self.console is not None:
            self.console.open_log(
                self.run_dir.log_file(self.state.process_index),
                f"{time.strftime('%Y-%m-%d %H:%M:%S')} launch of recipe {recipe.source}, "
                f"{self.state.num_processes} process(es)",
            )
        holder = self.lock.acquire() if self.is_main else None
        if self.state.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            holder = broadcast_object_list([holder])[0]
        if holder is not None:
            raise ConfigError(
                f"run directory '{self.run_dir.root}' is in use by {holder}: wait for that launch to end, "
                "or choose another run.name"
            )
        previous = read_state(self.run_dir.root)
        stages = [(name, s.kind, s.domain) for name, s in recipe.stages.items()]
        self.plan = plan(
            previous,
            recipe.source,
            stages,
            stage_hashes(recipe),
            recipe.run.rerun_from,
            checkpoint_ok=self._checkpoint_ok,
        )
        self.barrier()  # everyone has read the old ledger before the main process rewrites it
        state = previous or new_state(recipe.run.name, recipe.source)
        state.stages = self.plan.stages
        if self.plan.stale:
            self._say(
                "re-running from %s: %s marked stale", recipe.run.rerun_from, ", ".join(self.plan.stale)
            )
        self._ledger = Ledger(self.run_dir, state, writer=self.is_main)
        if self.is_main:
            import yaml

            from pipeline.atomic import write_text

            resolved = yaml.safe_dump(recipe.to_dict(), sort_keys=False)
            write_text(self.run_dir.config, f"# resolved recipe '{recipe.source}'\n{resolved}")
        self.ledger.save()
        self.barrier()
        from pipeline.tracking import Tracker

        self.tracker = Tracker(recipe, self.run_dir.root, self.is_main)
        if self.console is not None:
            self.console.quiet_libraries()
        log_file = self.console.log_file if self.console is not None else None
        self._say(
            "%s",
            text.run_header(
                recipe.run.name, recipe.source, len(recipe.stages), len(recipe.benchmarks),
                str(self.run_dir.root), str(log_file or "none"), self.plan.reused,
            ),
        )  # fmt: skip

    def _checkpoint_ok(self, entry: StageEntry) -> bool:
        from pipeline.models import checkpoint_exists

        return bool(entry.checkpoint) and checkpoint_exists(self.run_dir.root / str(entry.checkpoint))

    def _base_checkpoint(self) -> str:
        """The starting model; a builtin or GGUF model is materialised once in ``runs/<name>/base``."""
        from pipeline.gguf import is_gguf
        from pipeline.models import is_builtin, starting_model

        model = self.recipe.model
        if not (is_builtin(model.name_or_path) or is_gguf(model.name_or_path)):
            return model.name_or_path
        base = self.run_dir.base_model
        self._where = "building the starting model"
        if self.is_main:
            starting_model(model, base, self.recipe.run.seed)
        self.barrier()
        self._where = None
        return str(base)

    # ---------------------------------------------------------------------------------------------
    def _run_stages(self, t0: float) -> Ending:
        assert self.plan is not None
        base = self._base_checkpoint()
        evaluation = self._evaluate_base(base)
        progress = _Progress(current=base)
        progress.keep(base, None, evaluation)
        last = list(self.recipe.stages)[-1]
        for name, cfg in self.recipe.stages.items():
            if name in self.plan.reused:
                ending = self._reuse(self.ledger.stage(name), cfg, progress)
            else:
                reason = self.stop_request.agreed()  # a warning during the last evaluation stops here
                if reason is not None:
                    raise self.stop_request.stop(reason)
                ending = self._train(self.ledger.stage(name), cfg, progress)
            if ending is not None:
                return ending
            if name == self.recipe.run.until and name != last:
                self.ledger.run_paused()
                return paused(name)
        return finished(self.run_dir.root, time.monotonic() - t0)

    def _record_stop(self, stop: StopRun) -> Ending:
        """Record where a run that stops early resumes; how the launch ends.

        The stage in progress becomes ``interrupted`` with the checkpoint the stop saved or, after
        SIGTERM, the newest complete one of the stage (none: it restarts from its beginning).
        """
        record = StopRecord(reason=stop.reason)
        for entry in self.ledger.state.stages:
            if entry.status != Status.RUNNING:
                continue
            stage_dir = self.run_dir.stage_dir(entry.index, entry.name)
            found = (stop.checkpoint, stop.step) if stop.checkpoint else newest_checkpoint(stage_dir)
            checkpoint, step = found or (None, None)
            record = StopRecord(
                reason=stop.reason,
                stage=entry.name,
                step=step,
                checkpoint=self.run_dir.ref(checkpoint) if checkpoint else None,
                saved_on_stop=stop.checkpoint is not None,
            )
            self.ledger.interrupt_stage(entry.name, record)
        self.ledger.run_interrupted(record)
        return stopped(stop.reason, stop.exit_code, record.stage, record.step, record.checkpoint)

    def _reuse(self, entry: StageEntry, cfg: StageConfig, progress: _Progress) -> Ending | None:
        """Take a finished stage as it is; a stage the gate stopped is judged by the policy in force now."""
        name, checkpoint = entry.name, str(entry.checkpoint)
        progress.finished[name] = str(self.run_dir.root / checkpoint)
        if entry.status == Status.REGRESSED:
            policy = self.recipe.gate.policy  # not part of the stage hash: it may change between runs
            message = entry.gate.message if entry.gate and entry.gate.message else f"stage {name} regressed"
            if policy == "stop":
                return regressed(
                    f"stage {name} was stopped by the regression gate ({message}); re-run it with "
                    f"run.rerun_from={name}, or go on with gate.policy=warn or gate.policy=rollback"
                )
            rollback = policy == "rollback"
            start = self.run_dir.ref(progress.current) if rollback else None
            self.ledger.settle_regression(name, discard=rollback, next_init=start)
            if rollback:
                self._say("rolling back %s now (gate.policy=rollback): its weights are discarded", name)
        if not entry.discarded:
            evaluation = _read_eval(self.run_dir.root / entry.eval_file) if entry.eval_file else None
            progress.keep(self.run_dir.path(entry.next_init or checkpoint), cfg.domain, evaluation)
        return None

    def _train(self, entry: StageEntry, cfg: StageConfig, progress: _Progress) -> Ending | None:
        """Train a stage, evaluate it, gate it, keep or drop it; an ending when the cascade must end."""
        from pipeline.stages import stage_module

        name, ledger, total = entry.name, self.ledger, len(self.recipe.stages)
        init = progress.current if cfg.init is None else progress.finished.get(cfg.init, cfg.init)
        resume = ledger.start_stage(name, init_from=self.run_dir.ref(init))
        self._current, self._where = name, f"stage {name} while training"
        self._say("%s", text.stage_start_line(entry, total, self.run_dir.ref(init), resume))
        t0 = time.monotonic()
        peak_memory.reset()
        module = stage_module(cfg.kind)
        ctx = StageContext(
            recipe=self.recipe,
            name=name,
            index=entry.index,
            config=cfg,
            init_path=init,
            stage_dir=self.run_dir.stage_dir(entry.index, name),
            resume=resume,
            tracker=self.tracker,
            stage_checkpoints=dict(progress.finished),
            record=lambda fields: ledger.record(name, fields),
            callbacks=[trainer_callback(self.stop_request)],
        )
        result = self._run_stage(module, ctx)
        progress.finished[name] = str(ctx.final_dir)
        ledger.finish_training(
            name, result.summary, self.run_dir.ref(ctx.final_dir), round(time.monotonic() - t0, 2)
        )
        log.info("stage %s trained in %.1fs: %s", name, time.monotonic() - t0, result.summary)

        # a reward-model stage leaves the policy as it was: evaluate (and go on from) the current policy
        policy = str(ctx.final_dir) if getattr(module, "PRODUCES_POLICY", True) else progress.current
        domains = progress.trained | ({cfg.domain} if cfg.domain else set())
        self._where = f"stage {name} while evaluating"
        evaluation = self._evaluate_stage(entry, policy, domains, progress.finished)
        self._where = f"stage {name} at the gate"
        verdict = self._gate(entry, progress, evaluation)
        wall_s = round(time.monotonic() - t0, 2)
        ledger.record(name, {"memory": peak_memory.read()})  # training, evaluation and gate
        ending = None
        if verdict is None or verdict.keeps_weights:  # passed, or regressed under gate.policy=warn
            ledger.accept_stage(name, next_init=self.run_dir.ref(policy), wall_s=wall_s)
            progress.keep(policy, cfg.domain, evaluation)
        elif verdict.action == "rollback":
            ledger.discard_stage(name, next_init=self.run_dir.ref(progress.current), wall_s=wall_s)
        else:  # stop
            ledger.stop_stage(name, wall_s)
            ending = regressed(
                f"the regression gate stopped the cascade after stage {name}: {verdict.message}"
            )
        if self.is_main:  # the stage is over: what only its resume needed goes, its sizes go to the ledger
            settle_stage_files(ctx)
        self._current = self._where = None
        self._say("%s", text.stage_end_line(ledger.stage(name), total))
        self._refresh_report()
        return ending

    def _run_stage(self, module: ModuleType, ctx: StageContext) -> StageResult:
        """The stage kind's ``run`` (a failure is recorded by :meth:`run`, which knows how the launch ends)."""
        from pipeline.models import end_deepspeed_stage

        try:
            return module.run(ctx)
        finally:
            end_deepspeed_stage()  # the stage's DeepSpeed config ends with it: later loads are whole

    # ---------------------------------------------------------------------------------------------
    # Evaluation and gates (pipeline.evaluation / pipeline.gates)

    def _benchmarks_after(self, trained_domains: set[str] | None) -> list[str]:
        return self.recipe.benchmarks_after(trained_domains)

    def _evaluate_base(self, checkpoint: str) -> Benchmarks | None:
        names = self._benchmarks_after(None)
        if not names:
            return None
        base = self.ledger.state.base
        if base.status == Status.DONE and base.eval_file and set(base.benchmarks) >= set(names):
            return _read_eval(self.run_dir.root / base.eval_file)
        eval_file = self.run_dir.eval_file(0, BASE)
        self._where = _BASELINE
        record = self._evaluate(BASE, 0, eval_file, checkpoint, names, {})
        self.ledger.record_baseline(eval_file, names, scores_of(record), record.get("wall_s"))
        self._where = None
        self._say("%s", text.baseline_line(self.ledger.state.base))
        return record.get("benchmarks")

    def _evaluate_stage(
        self, entry: StageEntry, checkpoint: str, trained: set[str], finished: dict[str, str]
    ) -> Benchmarks | None:
        names = self._benchmarks_after(trained)
        if not names:
            return None
        eval_file = self.run_dir.eval_file(entry.index, entry.name)
        record = self._evaluate(entry.name, entry.index, eval_file, checkpoint, names, finished)
        self.ledger.record_evaluation(entry.name, eval_file, scores_of(record), record.get("wall_s"))
        return record.get("benchmarks")

    def _evaluate(
        self, tag: str, index: int, eval_file: str, checkpoint: str, names: list[str], judges: dict[str, str]
    ) -> dict[str, Any]:
        from pipeline.evaluation import evaluate_checkpoint

        out = self.run_dir.root / eval_file
        return evaluate_checkpoint(
            self.recipe, checkpoint, names, out_file=out, stage=tag, index=index, judges=judges
        )

    def _gate(self, entry: StageEntry, progress: _Progress, after: Benchmarks | None) -> GateResult | None:
        """The gate's verdict on ``entry`` against the last kept evaluation, recorded and announced."""
        if not progress.accepted or not after:
            return None
        from pipeline.gates import check_stage

        gate, benchmarks = self.recipe.gate, self.recipe.benchmarks
        verdict = check_stage(
            entry.name,
            entry.domain,
            progress.trained,  # domains of earlier kept stages: the ones the gate protects
            progress.accepted,
            after,
            progress.history,
            policy=gate.policy,
            tolerance=gate.tolerance,
            alpha=gate.alpha,
            benchmark_tolerance={n: b.tolerance for n, b in benchmarks.items() if b.tolerance is not None},
            benchmark_domains={n: b.domain for n, b in benchmarks.items()},
            seed=self.recipe.eval.seed,
            n_resamples=gate.n_resamples,
        )
        self.ledger.record_verdict(entry.name, verdict)
        log.info("gate after %s: %s", entry.name, verdict.message)
        return verdict

    def _say(self, message: str, *args: Any) -> None:
        """A report line of the console (every process takes the same decisions): once, from the main process."""
        if self.is_main:
            say.info(message, *args)

    def _refresh_report(self) -> None:
        if not self.is_main:
            return
        try:
            from pipeline.report import build_report, report_table_rows, write_report

            _, png = write_report(self.run_dir.root)
            if self.tracker is not None and self.tracker.run is not None:
                cols, rows = report_table_rows(build_report(self.run_dir.root))
                self.tracker.log_report(cols, rows, png)
        except Exception as exc:  # a report problem must never lose a trained stage
            log.warning("report could not be refreshed: %s", exc)

    def _close_report(self, ending: Ending) -> None:
        """The closing table and where the report is (the launch's last sentence follows, from the caller)."""
        if not self.is_main or not self.run_dir.ledger.exists():
            return
        try:
            from pipeline.report import build_report

            table = text.closing_table(build_report(self.run_dir.root))
        except Exception as exc:  # the ledger says it all; a table is a convenience
            log.warning("the closing table could not be drawn: %s", exc)
            return
        say.info("%s", table)  # one record: with -v the table gets one time stamp, not one per row
        if not ending.ok:  # a finished run's last sentence names the report itself
            say.info("report: %s", self.run_dir.report_md)


def _read_eval(path: Path) -> Benchmarks | None:
    try:
        return json.loads(path.read_text()).get("benchmarks")
    except (OSError, ValueError):
        return None


_BASELINE = "the baseline evaluation"


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=20))


__all__ = ["Cascade"]


def _as_stop(exc: BaseException) -> StopRun:
    """A signal that reached the runner as an exception (Ctrl-C where no handler of the run's own was
    installed, SIGTERM before it was) is recorded like the stops ``pipeline.preemption`` raises."""
    if isinstance(exc, StopRun):
        return exc
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    return StopRun(signal.Signals(signum).name, 128 + signum)
