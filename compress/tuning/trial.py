"""One trial: a real ``compress train`` run (the same experiment, recorder and loop as
``commands/train.run_training``, so the run directory is like any other: ``compress report``,
``thin``, ``plot`` and ``train --resume`` work on it), with an observer after each epoch that reports
top1 to the study and may stop the run early.

Why not call ``run_training`` itself: it has no way to hand each epoch's result to the caller or
to stop the loop without a signal, and the per-epoch report is what early stopping needs.

Early stopping (``StopRule``): Optuna's pruners decide on a single objective's intermediate values
and are not available to multi-objective studies, and a low top1 alone says nothing in a
two-objective search (a sparse, less accurate model is a legitimate point of the front). With
``--min-top1`` it does: a trial whose best top1 is still more than ``margin`` points under it is
stopped (pruned) once half of its epochs are done *and* every rule of its schedule has had its last
active epoch, plus one epoch to settle. While a penalty or a pruner acts, top1 is held down and
recovers once it stops (LeNet-5 under ``lenet5-filters.yaml`` gains 3 points after regularization
ends), so judging earlier would stop exactly the trials that regularize hard and then recover.
Without ``--min-top1`` every trial runs to the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from compress.config import RunConfig
from compress.errors import CompressError
from compress.experiment import Experiment, build_experiment
from compress.recorder import Recorder
from compress.schedule.model import Schedule
from compress.training import Diverged, EpochResult, Observers, Position, fit


class _Stop(Exception):
    """Raised by the epoch observer (after the epoch is recorded and checkpointed) to end the loop."""


@dataclass(frozen=True)
class StopRule:
    """Stop a trial whose best top1 is under ``min_top1 - margin`` once ``earliest`` epochs are done."""

    min_top1: float | None
    margin: float
    epochs: int
    earliest: int  # epochs done before a decision: half the run, and the rules' last epoch + 1

    @classmethod
    def for_schedule(cls, schedule: Schedule, min_top1: float | None, margin: float, epochs: int) -> StopRule:
        last = -1
        for rule in (*schedule.rules, *schedule.pruning):
            active = rule.epochs.active_epochs(epochs)
            last = max(last, active[-1] if active else -1)
        return cls(min_top1, margin, epochs, max(-(-epochs // 2), last + 2))

    def should_stop(self, epoch: int, best_top1: float) -> bool:
        done = epoch + 1
        if self.min_top1 is None or done >= self.epochs or done < self.earliest:
            return False
        return best_top1 < self.min_top1 - self.margin

    def reason(self, best_top1: float) -> str:
        return f"best top1 {best_top1:.2f} < {self.min_top1:g} - {self.margin:g} after {self.earliest} epochs"


@dataclass(frozen=True)
class TrialRun:
    run_dir: Path
    top1_by_epoch: tuple[float, ...]
    stopped: str | None  # why it stopped early, or None


def _quiet(*_args: object, **_kwargs: object) -> None:
    """A trial prints nothing; its epoch lines and summary are in its train.log."""


def run_trial(schedule: Schedule, config: RunConfig, rule: StopRule,
              report: Callable[[int, float], None] | None = None) -> TrialRun:  # fmt: skip
    """Train ``schedule`` under ``config`` (its ``out_dir`` / ``name`` are the trial's directory);
    ``report(epoch, top1)`` after each epoch. A schedule or setting that is not valid is a
    ``CompressError``, as is a loss that diverges."""
    exp = build_experiment(schedule, config)
    together = False
    try:
        recorder = Recorder.open(exp, None, overwrite=False, echo=_quiet, table="none")
        for warning in exp.warnings:
            recorder.files.log(str(warning))
        try:
            results, stopped = _fit(exp, recorder, rule, report)
        finally:
            recorder.close()
        if stopped:
            recorder.files.log(f"stopped early by compress tune: {stopped}")
        recorder.finish(results, exp.evaluate_test(), plots=False)
        together = True
    finally:
        exp.close(together=together)
    return TrialRun(recorder.run_dir, tuple(r.top1 for r in results), stopped)


def _fit(exp: Experiment, recorder: Recorder, rule: StopRule,
         report: Callable[[int, float], None] | None) -> tuple[list[EpochResult], str | None]:  # fmt: skip
    results: list[EpochResult] = []

    def epoch_done(result: EpochResult) -> None:
        recorder.epoch_done(result)
        results.append(result)
        if report is not None:
            report(result.epoch, result.top1)
        if rule.should_stop(result.epoch, max(r.top1 for r in results)):
            raise _Stop

    try:
        fit(exp.train_model or exp.model, exp.data.train, exp.data.val, exp.optimizer, exp.hooks, loop=exp.loop,
            start=Position(), observers=Observers(None, epoch_done, None))  # fmt: skip
    except _Stop:
        return results, rule.reason(max(r.top1 for r in results))
    except Diverged as diverged:
        raise CompressError(f"{diverged}") from None
    return results, None
