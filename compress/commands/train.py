"""``compress train``: wires the experiment, the loop and the run directory together, and owns
what happens when a run stops early (signals, a diverged loss)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compress.checkpoint import save_checkpoint
from compress.commands.summary import evaluate_test, finish
from compress.config import RunConfig
from compress.errors import CompressError
from compress.experiment import Experiment, build_experiment
from compress.resume import Resume, load_weights, restore_rng, rng_state
from compress.runs import BestRule, RunFiles, create_run_dir, default_run_name
from compress.schedule.model import Schedule
from compress.sparsity import format_table, measure_sparsity
from compress.tensorboard import TensorBoardLogger, require_tensorboard
from compress.training import Diverged, EpochResult, EpochTotals, Interrupted, fit


def tqdm_progress(iterable, total: int, description: str):
    from tqdm import tqdm

    return tqdm(
        iterable, total=total, desc=description, leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=0.5
    )


def format_epoch(result: EpochResult, sparsity: float) -> str:
    rules = "".join(f", {name} {value:.4g}" for name, value in result.rule_losses.items())
    return (
        f"epoch {result.epoch}  lr {result.lr:.4g}  loss {result.train_loss:.4f} (data {result.data_loss:.4f}{rules})  "
        f"val_loss {result.val_loss:.4f}  top1 {result.top1:.2f}  top5 {result.top5:.2f}  "
        f"sparsity {sparsity:.2f}%  {result.seconds:.1f}s"
    )


@dataclass
class Progress:
    """Where the run stands: what a checkpoint records besides the tensors."""

    next_epoch: int = 0
    next_step: int = 0
    totals: EpochTotals | None = None
    best_top1: float = float("-inf")
    best_epoch: int | None = None
    best_key: list | None = None  # BestRule.key of best.pt, compared with each new epoch's


def checkpoint_state(exp: Experiment, at: Progress, *, top1: float | None, interrupted: bool = False) -> dict[str, Any]:
    return {
        "arch": exp.config.arch,
        "state_dict": exp.model.state_dict(),
        "optimizer": exp.optimizer.state_dict(),
        "scheduler": exp.scheduler.state_dict(),
        "epoch": at.next_epoch - 1,  # the last completed epoch
        "next_epoch": at.next_epoch,
        "next_step": at.next_step,
        "epoch_totals": at.totals.state_dict() if at.totals else None,
        "interrupted": interrupted,
        "top1": top1,
        "best_top1": at.best_top1,
        "best_epoch": at.best_epoch,
        "best_key": at.best_key,
        "rng": rng_state(),
        "thinned_spec": exp.thinned_spec,
        "config": exp.config.to_dict(),
        "schedule_text": exp.schedule.text,
        "schedule_source": exp.schedule.source,
    }


def _restore(exp: Experiment, resume: Resume) -> Progress:
    state = resume.state
    load_weights(exp.model, state, resume.path, exp.config.arch)
    if not resume.exact:
        return Progress()
    exp.optimizer.load_state_dict(state["optimizer"])
    exp.scheduler.load_state_dict(state["scheduler"])
    restore_rng(state["rng"])
    # the saved sums are every process's together: one process carries them on
    own = state.get("epoch_totals") if exp.world.is_main else None
    totals = EpochTotals(exp.device, own) if own else None
    return Progress(state["next_epoch"], state["next_step"], totals, state["best_top1"], state["best_epoch"],
                    state.get("best_key"))  # fmt: skip


def _report_thinning(exp: Experiment, epoch: int, echo: Callable[..., None]) -> None:
    thinner = exp.scheduler.thinner
    for event in thinner.events if thinner is not None else []:
        if event.epoch == epoch:
            changes = "; ".join(event.result.plan.describe()) or "nothing was exactly zero"
            when = "at the start of" if event.timing == "begin" else "after"
            diff = event.result.max_abs_diff
            echo(f"thinned {when} epoch {epoch}: {changes} (max abs output difference {diff:.2g})")


class StopOnSignal:
    """SIGINT / SIGTERM ask the loop to stop after the current step; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _open_run(exp: Experiment, config: RunConfig, schedule: Schedule, resume: Resume | None, overwrite: bool):
    if resume is not None and resume.exact and resume.in_run_dir:
        files = RunFiles(resume.run_dir, exp.scheduler.rule_names)
        files.reopen(resume.state["next_epoch"])
        return resume.run_dir, files
    name = config.name or default_run_name(schedule.source)
    run_dir = create_run_dir(config.out_dir, name, overwrite=overwrite)
    files = RunFiles(run_dir, exp.scheduler.rule_names)
    files.write_start({**config.to_dict(), "name": name}, schedule.text, schedule.name)
    return run_dir, files


def run_training(
    schedule: Schedule,
    config: RunConfig,
    *,
    overwrite: bool,
    progress: bool,
    echo: Callable[..., None],
    warn: Callable,
    resume: Resume | None = None,
    plots: bool = True,
) -> list[EpochResult]:
    exp = build_experiment(schedule, config, resume.state.get("thinned_spec") if resume is not None else None)
    main = exp.world.is_main  # under torchrun only the first process prints and writes
    if not main:
        echo, warn = _silent, _silent
    warn(exp.warnings)
    best_rule = BestRule(config.best)
    if config.tensorboard:
        require_tensorboard()
    at = _restore(exp, resume) if resume is not None else Progress()
    run_dir, files = _open_run(exp, config, schedule, resume, overwrite) if main else (None, None)
    board = TensorBoardLogger(run_dir / "tensorboard", layer_groups_of(exp)) if config.tensorboard and main else None
    if resume is not None:
        how = "continuing" if resume.exact else "fine-tuning from the weights of"
        echo(f"{how} {resume.path}: epoch {at.next_epoch}, step {at.next_step}")
    touched = [t.param_name for r in exp.scheduler.rules for t in r.targets]

    def after_epoch(result: EpochResult) -> None:
        at.next_epoch, at.next_step, at.totals = result.epoch + 1, 0, None
        if not main:
            return
        _report_thinning(exp, result.epoch, echo)
        layers = measure_sparsity(exp.model, touched)
        totals = files.write_epoch(result, layers)
        line = format_epoch(result, totals["sparsity"])
        echo(line)
        echo(format_table(layers))
        files.log(line)
        if board is not None:
            board.log_epoch(result, layers, totals["sparsity"], exp.model)
        key = best_rule.key(result.top1, totals["sparsity"])
        is_best = at.best_key is None or key > tuple(at.best_key)
        if is_best:
            at.best_top1, at.best_epoch, at.best_key = result.top1, result.epoch, list(key)
        state = checkpoint_state(exp, at, top1=result.top1)
        save_checkpoint(state, run_dir / "checkpoint.pt")
        if is_best:
            save_checkpoint(state, run_dir / "best.pt")
            why = f"top1 {result.top1:.2f}, sparsity {totals['sparsity']:.2f}%; rule: {best_rule.describe()}"
            echo(f"best.pt <- epoch {result.epoch} ({why})")

    together = False  # whether every process ended at the same point (then they leave together)
    try:
        with StopOnSignal() as stop:
            try:
                results = fit(
                    exp.train_model or exp.model,
                    exp.data.train,
                    exp.data.val,
                    exp.optimizer,
                    exp.scheduler,
                    epochs=config.epochs,
                    device=exp.device,
                    start_epoch=at.next_epoch,
                    start_step=at.next_step,
                    start_totals=at.totals,
                    limit_batches=config.limit_batches,
                    progress=tqdm_progress if progress and main else None,
                    on_epoch_end=after_epoch,
                    should_stop=stop.requested,
                    world=exp.world,
                )
            except Interrupted as stopped:  # every process stops at the same step (World.any)
                together = True
                _save_interrupted(exp, at, stopped, run_dir)
                signum = exp.world.max(stop.signum or 0, exp.device)  # a process may stop for another's signal
                echo(f"{signal.Signals(signum).name}: stopped in epoch {stopped.epoch} before step {stopped.step}; "
                     f"saved {run_dir and run_dir / 'checkpoint.pt'}")  # fmt: skip
                echo(f"resume with: compress train --resume {run_dir}")
                sys.exit(128 + signum)
            except Diverged as diverged:  # decided for every process at the same step (World.any)
                together = True
                last = f"{run_dir / 'checkpoint.pt'} (after epoch {at.next_epoch - 1})" if at.next_epoch else "none yet"
                raise CompressError(
                    f"{diverged}. Stopped; the last good checkpoint is {last}. "
                    "Lower the rule strengths or the learning rate"
                ) from None
            finally:
                if board is not None:
                    board.close()
        test = evaluate_test(exp)  # every process takes part
        if main:
            best = {"top1": at.best_top1, "epoch": at.best_epoch, "rule": best_rule.describe()}
            layers = measure_sparsity(exp.model, touched)
            finish(exp, files, results, best, layers, echo, plots=plots, test=test)
        together = True
    finally:
        exp.close(together=together)  # after the first process has written everything
    echo(f"run directory: {run_dir}")
    return results


def _save_interrupted(exp: Experiment, at: Progress, stopped: Interrupted, run_dir) -> None:
    at.next_epoch, at.next_step, at.totals = stopped.epoch, stopped.step, stopped.totals.summed(exp.world)
    if exp.world.is_main:
        save_checkpoint(checkpoint_state(exp, at, top1=None, interrupted=True), run_dir / "checkpoint.pt")


def _silent(*_args: Any, **_kwargs: Any) -> None:
    """What echo and warn are on every torchrun process but the first."""


def layer_groups_of(exp: Experiment) -> dict[str, str]:
    """The group whose norms TensorBoard histograms, per regularized weight."""
    out: dict[str, str] = {}
    for bound in exp.scheduler.rules:
        for t in bound.targets:
            out.setdefault(t.param_name, next((g for g in t.groups if g != "elements"), "elements"))
    return out
