"""The runner: plan → baseline evaluation → for each stage: train → evaluate → gate → record.

Every process runs this same code. The main process alone writes the run directory's files; all
processes read the ledger and make the same resume decision, and meet at a barrier between phases.
Exit codes: 0 done, 1 a stage failed, 2 a recipe/run-directory problem, 3 stopped by the regression gate.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import ledger as L
from pipeline.config import Recipe, stage_hashes
from pipeline.distributed import process_state
from pipeline.schema import ConfigError, to_dict

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_REGRESSED = 0, 1, 2, 3


@dataclass
class _Progress:
    """Where the cascade stands while it walks the stages."""

    current: str  # the policy checkpoint the next stage starts from
    trained: set[str] = field(default_factory=set)  # domains of accepted stages: what the gate protects
    accepted: dict[str, Any] | None = None  # eval record of the last accepted checkpoint
    history: list[dict[str, Any]] = field(default_factory=list)  # eval records of every accepted row
    finished: dict[str, str] = field(default_factory=dict)  # stage name → final checkpoint

    def accept(self, record: dict[str, Any]) -> None:
        self.accepted = record
        self.history.append(record)


class Cascade:
    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.state = process_state()
        self.is_main = self.state.is_main_process
        self.run_dir = recipe.run_dir
        self.ledger: L.Ledger | None = None
        self.tracker: Any = None
        self.lock = L.RunLock(self.run_dir)

    # ---------------------------------------------------------------------------------------------
    def barrier(self) -> None:
        self.state.wait_for_everyone()

    def run(self) -> int:
        """Run (or resume) the cascade; returns the process exit code."""
        t0 = time.monotonic()
        try:
            self._open()
        except ConfigError as exc:
            log.error("%s", exc)
            self.lock.release()
            return EXIT_CONFIG
        assert self.ledger is not None
        self.ledger.open_session(self.state.num_processes, t0)
        self.ledger.data["status"] = L.RUNNING
        self.ledger.save()
        code = EXIT_FAILED
        try:
            code = self._run_stages()
        except ConfigError as exc:  # e.g. a data source that turns out unusable when loaded
            log.error("%s", exc)
            code = EXIT_CONFIG
        except Exception as exc:
            log.error("cascade failed: %s: %s", type(exc).__name__, exc, exc_info=True)
            self.ledger.data["status"] = L.FAILED
            code = EXIT_FAILED
        finally:
            if code == EXIT_OK:
                self.ledger.data["status"] = L.DONE
            self.ledger.close_session(code)
            self._refresh_report()
            if self.tracker is not None:
                self.tracker.summary({"exit_code": code, "wall_s": self.ledger.data["wall_s"]})
                self.tracker.finish(exit_code=code)
            self.lock.release()
        return code

    # ---------------------------------------------------------------------------------------------
    def _open(self) -> None:
        """Reconcile the run directory with the recipe (all processes), then write it (main)."""
        recipe = self.recipe
        holder = self.lock.acquire() if self.is_main else None
        if self.state.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            holder = broadcast_object_list([holder])[0]
        if holder is not None:
            raise ConfigError(
                f"run directory '{self.run_dir}' is in use by {holder}: wait for that launch to end, "
                "or choose another run.name"
            )
        previous = L.Ledger.read(self.run_dir)
        stages = [(name, s.kind, s.domain) for name, s in recipe.stages.items()]
        plan = L.plan(
            previous,
            recipe.source,
            stages,
            stage_hashes(recipe),
            recipe.run.rerun_from,
            checkpoint_ok=self._checkpoint_ok,
        )
        self.barrier()  # everyone has read the old ledger before the main process rewrites it
        data = previous or L.Ledger.new(self.run_dir, recipe.run.name, recipe.source, [])
        data["stages"] = plan.stages
        if plan.stale:
            # stages after rerun_from lose their evaluation of the base as well if base must be redone
            log.info("re-running from %s: %s marked stale", recipe.run.rerun_from, ", ".join(plan.stale))
        self.plan = plan
        self.ledger = L.Ledger(self.run_dir, data, writer=self.is_main)
        if self.is_main:
            import yaml

            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(
                f"# resolved recipe '{recipe.source}'\n" + yaml.safe_dump(recipe.to_dict(), sort_keys=False)
            )
        self.ledger.save()
        self.barrier()
        from pipeline.tracking import Tracker

        self.tracker = Tracker(recipe, self.run_dir, self.is_main)
        if plan.reused:
            log.info("resuming run %s: %s already done", recipe.run.name, ", ".join(plan.reused))

    def _checkpoint_ok(self, entry: dict[str, Any]) -> bool:
        from pipeline.models import checkpoint_exists

        return bool(entry.get("checkpoint")) and checkpoint_exists(self.run_dir / entry["checkpoint"])

    def _base_checkpoint(self) -> str:
        """The starting model; the builtin model is materialised once in ``runs/<name>/base``."""
        from pipeline.models import build_builtin_model, is_builtin

        model = self.recipe.model
        if not is_builtin(model.name_or_path):
            return model.name_or_path
        base = self.run_dir / "base"
        if self.is_main:
            build_builtin_model(model.name_or_path, model.builtin, base, self.recipe.run.seed)
        self.barrier()
        return str(base)

    # ---------------------------------------------------------------------------------------------
    def _run_stages(self) -> int:
        assert self.ledger is not None
        progress = _Progress(current=self._base_checkpoint())
        progress.accepted = self._evaluate_base(progress.current)
        progress.history = [progress.accepted] if progress.accepted else []
        for name, cfg in self.recipe.stages.items():
            entry = self.ledger.stage(name)
            if name in self.plan.reused:
                code = self._reuse(name, cfg, entry, progress)
            else:
                code = self._train(name, cfg, entry, progress)
            if code is not None:
                return code
        return EXIT_OK

    def _reuse(self, name: str, cfg: Any, entry: dict[str, Any], progress: _Progress) -> int | None:
        """Take a finished stage as it is; a stage the gate stopped is judged by the policy in force now."""
        assert self.ledger is not None
        progress.finished[name] = str(self.run_dir / entry["checkpoint"])
        if entry["status"] == L.REGRESSED:
            policy = self.recipe.gate.policy  # not part of the stage hash: it may change between runs
            message = (entry.get("gate") or {}).get("message", f"stage {name} regressed")
            if policy == "stop":
                self._announce(
                    logging.ERROR,
                    "stage %s was stopped by the regression gate (%s); re-run it with run.rerun_from=%s, "
                    "or go on with gate.policy=warn or gate.policy=rollback",
                    name, message, name,
                )  # fmt: skip
                self.ledger.data["status"] = L.REGRESSED
                return EXIT_REGRESSED
            entry.update(status=L.DONE, discarded=policy == "rollback")
            if policy == "rollback":
                entry["next_init"] = self._rel(progress.current)
                self._announce(
                    logging.WARNING,
                    "rolling back %s now (gate.policy=rollback): its weights are discarded",
                    name,
                )
            self.ledger.save()
        if not entry.get("discarded"):
            progress.current = self._abs(entry.get("next_init") or entry["checkpoint"])
            if cfg.domain:
                progress.trained.add(cfg.domain)
            record = _read_eval(self.run_dir / entry["eval_file"]) if entry.get("eval_file") else None
            if record:
                progress.accept(record)
        return None

    def _train(self, name: str, cfg: Any, entry: dict[str, Any], progress: _Progress) -> int | None:
        """Train a stage, evaluate, gate, and record; returns an exit code when the cascade must end."""
        from pipeline.models import end_deepspeed_stage
        from pipeline.stages import stage_module
        from pipeline.stages.base import StageContext

        assert self.ledger is not None
        ledger = self.ledger
        init = progress.current if cfg.init is None else progress.finished.get(cfg.init, cfg.init)
        entry.update(
            status=L.RUNNING,
            started=L.now(),
            ended=None,
            init_from=self._rel(init),
            attempts=entry.get("attempts", 0) + 1,
        )
        ledger.save()
        log.info(
            "━━ stage %d/%d %s (%s) from %s", entry["index"], len(self.recipe.stages), name, cfg.kind, init
        )
        t0 = time.monotonic()
        module = stage_module(cfg.kind)
        ctx = StageContext(
            recipe=self.recipe,
            name=name,
            index=entry["index"],
            config=cfg,
            init_path=init,
            stage_dir=self.run_dir / "stages" / L.stage_dirname(entry["index"], name),
            resume=entry.pop("resumable", False),
            tracker=self.tracker,
            stage_checkpoints=dict(progress.finished),
            record=lambda fields: ledger.update_stage(name, **fields),
        )
        try:
            result = module.run(ctx)
        except Exception as exc:
            ledger.update_stage(
                name,
                status=L.FAILED,
                ended=L.now(),
                error=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(limit=20),
            )
            log.error("stage %s failed: %s: %s", name, type(exc).__name__, exc)
            raise
        finally:
            end_deepspeed_stage()  # the stage's DeepSpeed config ends with it: later loads are whole
        checkpoint = self._rel(ctx.final_dir)
        progress.finished[name] = str(ctx.final_dir)
        entry.update(
            summary=result.summary, checkpoint=checkpoint, train_wall_s=round(time.monotonic() - t0, 2)
        )
        ledger.save()
        log.info("stage %s trained in %.1fs: %s", name, time.monotonic() - t0, _brief(result.summary))

        # a reward-model stage leaves the policy as it was: evaluate (and go on from) the current policy
        policy = str(ctx.final_dir) if getattr(module, "PRODUCES_POLICY", True) else progress.current
        domains = progress.trained | ({cfg.domain} - {None})
        scores = self._evaluate_stage(name, entry, policy, domains, progress.finished)
        verdict = self._gate(
            name, cfg.domain, entry, progress.accepted, scores, progress.history, progress.trained
        )
        entry.update(ended=L.now(), wall_s=round(time.monotonic() - t0, 2))
        action = verdict.get("action", "continue") if verdict else "continue"
        if action == "stop":
            entry.update(status=L.REGRESSED, next_init=checkpoint)
            ledger.data["status"] = L.REGRESSED
            ledger.save()
            self._announce(
                logging.ERROR, "cascade stopped by the regression gate: %s", verdict.get("message", "")
            )
            return EXIT_REGRESSED
        if action == "rollback":
            entry.update(status=L.DONE, discarded=True, next_init=self._rel(progress.current))
            self._announce(
                logging.WARNING,
                "rolling back %s: its weights are discarded; next stage starts from %s",
                name,
                progress.current,
            )
        else:
            entry.update(status=L.DONE, next_init=self._rel(policy))
            progress.current = policy
            if cfg.domain:
                progress.trained.add(cfg.domain)
            if scores:
                progress.accept(scores)
        ledger.save()
        self._refresh_report()
        return None

    # ---------------------------------------------------------------------------------------------
    # Evaluation and gates (pipeline.evaluation / pipeline.gates)

    def _benchmarks_after(self, trained_domains: set[str] | None) -> list[str]:
        recipe = self.recipe
        if not recipe.eval.enabled:
            return []
        if trained_domains is None or recipe.eval.after == "all":
            return list(recipe.benchmarks)
        return [n for n, b in recipe.benchmarks.items() if b.always or b.domain in trained_domains]

    def _evaluate_base(self, checkpoint: str) -> dict[str, Any] | None:
        assert self.ledger is not None
        names = self._benchmarks_after(None)
        base = self.ledger.data["base"]
        if not names:
            return None
        if base.get("status") == L.DONE and set(base.get("benchmarks", [])) >= set(names):
            return _read_eval(self.run_dir / base["eval_file"])
        record = self._evaluate("base", 0, checkpoint, names, {})
        self.ledger.data["base"] = {
            "status": L.DONE,
            "eval_file": f"evals/{L.stage_dirname(0, 'base')}.json",
            "benchmarks": names,
            "scores": _scores(record),
            "wall_s": record.get("wall_s"),
        }
        self.ledger.save()
        return record.get("benchmarks")

    def _evaluate_stage(
        self, name: str, entry: dict[str, Any], checkpoint: str, trained: set[str], finished: dict[str, str]
    ) -> dict[str, Any] | None:
        names = self._benchmarks_after(trained)
        if not names:
            return None
        record = self._evaluate(name, entry["index"], checkpoint, names, finished)
        entry.update(
            eval_file=f"evals/{L.stage_dirname(entry['index'], name)}.json",
            scores=_scores(record),
            eval_wall_s=record.get("wall_s"),
        )
        assert self.ledger is not None
        self.ledger.save()
        return record.get("benchmarks")

    def _evaluate(
        self, tag: str, index: int, checkpoint: str, names: list[str], finished: dict[str, str]
    ) -> dict[str, Any]:
        from pipeline.evaluation import evaluate_checkpoint

        out = self.run_dir / "evals" / f"{L.stage_dirname(index, tag)}.json"
        return evaluate_checkpoint(
            self.recipe,
            checkpoint,
            names,
            out_file=out,
            stage=tag,
            index=index,
            judges=finished,
        )

    def _gate(
        self,
        name: str,
        domain: str | None,
        entry: dict[str, Any],
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        history: list[dict[str, Any]],
        trained_domains: set[str],  # domains of earlier accepted stages: the ones the gate protects
    ) -> dict[str, Any] | None:
        if not before or not after:
            return None
        from pipeline.gates import check_stage

        gate = self.recipe.gate
        result = check_stage(
            name,
            domain,
            trained_domains,
            before,
            after,
            history,
            policy=gate.policy,
            tolerance=gate.tolerance,
            alpha=gate.alpha,
            benchmark_tolerance={
                n: b.tolerance for n, b in self.recipe.benchmarks.items() if b.tolerance is not None
            },
            benchmark_domains={n: b.domain for n, b in self.recipe.benchmarks.items()},
            seed=self.recipe.eval.seed,
            n_resamples=gate.n_resamples,
        )
        verdict = result.to_dict()
        verdict["message"] = result.summary()
        entry["gate"] = verdict
        assert self.ledger is not None
        self.ledger.save()
        level = logging.WARNING if verdict.get("verdict") != "pass" else logging.INFO
        self._announce(level, "gate after %s: %s", name, verdict["message"])
        return verdict

    def _announce(self, level: int, message: str, *args: Any) -> None:
        """Log a decision of the whole run (every process takes the same one) once, from the main process."""
        if self.is_main:
            log.log(level, message, *args)

    def _refresh_report(self) -> None:
        if not self.is_main:
            return
        try:
            from pipeline.report import build_report, report_table_rows, write_report

            _, png = write_report(self.run_dir)
            if self.tracker is not None and self.tracker.run is not None:
                cols, rows = report_table_rows(build_report(self.run_dir))
                self.tracker.log_report(cols, rows, png)
        except Exception as exc:  # a report problem must never lose a trained stage
            log.warning("report could not be refreshed: %s", exc)

    def _abs(self, ref: str) -> str:
        """Inverse of ``_rel``: a path relative to the run directory, else the reference as is."""
        inside = self.run_dir / ref
        return str(inside) if inside.exists() else ref

    def _rel(self, path: str | Path) -> str:
        p = Path(path)
        try:
            return str(p.resolve().relative_to(self.run_dir.resolve()))
        except ValueError:
            return str(path)


def _read_eval(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(path.read_text()).get("benchmarks")
    except (OSError, ValueError):
        return None


def _scores(record: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {k: b.get(k) for k in ("score", "stderr", "n", "domain", "metric")}
        for name, b in record.get("benchmarks", {}).items()
    }


def _brief(summary: dict[str, Any]) -> str:
    keys = ("steps", "final_loss", "tokens", "train_wall_s")
    return ", ".join(f"{k}={summary[k]}" for k in keys if summary.get(k) is not None)


# --------------------------------------------------------------------------------------------------
# The plan, as dry_run=true prints it


def describe_plan(recipe: Recipe) -> str:
    """A human-readable plan: stages in order with kind, data, steps, main hyper-parameters; benchmarks."""
    lines = [
        f"recipe {recipe.source or '?'} → run directory {recipe.run_dir}",
        f"model: {recipe.model.name_or_path}",
    ]
    lines.append(f"seed {recipe.run.seed}, precision {recipe.run.precision}, tracking {recipe.tracking.mode}")
    lines.append("stages:")
    for i, (name, s) in enumerate(recipe.stages.items(), start=1):
        t = s.train
        phases = getattr(s, "phases", None)
        if phases:
            steps = f"{sum(p.steps for p in phases)} steps in {len(phases)} phases"
        else:
            steps = f"{t.max_steps} steps" if t.max_steps > 0 else f"{t.epochs:g} epochs"
        lines.append(
            f"  {i:02d} {name:<10} kind={s.kind:<12} domain={s.domain or '-':<11} {steps}, lr {t.learning_rate:g}, "
            f"batch {t.batch_size}×{t.grad_accum}, max_length {t.max_length}, prompts {s.prompt_mode}"
            + (f", LoRA r={s.lora.r}" if s.lora.enabled else "")
            + (f", init {s.init}" if s.init else "")
        )
        for src in s.data:
            size = f"{src.size} rows" if src.size else "all rows"
            lines.append(f"       data {src.source} [{src.split}] {size}, weight {src.weight:g}")
        extra = getattr(s, "describe", None)
        if callable(extra):
            lines.extend(f"       {line}" for line in extra())
    lines.append(f"benchmarks (evaluated after: {recipe.eval.after if recipe.eval.enabled else 'never'}):")
    for name, b in recipe.benchmarks.items():
        g = b.generation
        lines.append(
            f"  {name:<14} domain={b.domain:<11} {b.data.source} [{b.data.split}] {b.data.size or 'all'} prompts, "
            f"scorer {b.scorer.reward} ({b.scorer.metric}), n={g.n}, max_new_tokens {g.max_new_tokens}, "
            f"T={g.temperature:g}, {b.prompt_mode}" + (", always" if b.always else "")
        )
    gate = recipe.gate
    lines.append(f"gate: policy {gate.policy}, tolerance {gate.tolerance:g}, alpha {gate.alpha:g}")
    return "\n".join(lines)


__all__ = ["Cascade", "describe_plan", "to_dict"]
