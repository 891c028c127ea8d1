"""``compress train``: build the experiment, put a checkpoint back, run the loop with a recorder
watching it, finish; and turn a stop (a signal, a diverged loss) into an exception that ``cli.py``
gives its exit code. Reads like torchvision's ``main``: build, restore, loop, finish."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compress.config import RunConfig
from compress.errors import CompressError, Diagnostic
from compress.experiment import Experiment, build_experiment
from compress.recorder import Recorder
from compress.resume import Resume, restore
from compress.schedule.model import Schedule
from compress.training import Diverged, EpochResult, Interrupted, Observers, Position, fit


class StoppedBySignal(Exception):
    """SIGINT / SIGTERM stopped the run after a step; the checkpoint to resume from is saved."""

    def __init__(self, signum: int, epoch: int, step: int, saved: Path | None, run_dir: Path | None):
        super().__init__(f"{signal.Signals(signum).name}: stopped in epoch {epoch} before step {step}")
        self.signum, self.saved, self.run_dir = signum, saved, run_dir


def tqdm_progress(iterable, total: int, description: str):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=description, leave=False, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5)  # fmt: skip


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


def run_training(schedule: Schedule, config: RunConfig, *, overwrite: bool, progress: bool, echo: Callable[..., None],
                 warn: Callable[[list[Diagnostic]], None], resume: Resume | None = None, plots: bool = True,
                 table: str = "end") -> list[EpochResult]:  # fmt: skip
    exp = build_experiment(schedule, config, resume.state.thinned_spec if resume is not None else None)
    if not exp.world.is_main:  # under torchrun only the first process prints and writes
        echo = warn = _silent
    together = False  # whether every process ended at the same point (then they leave together)
    try:
        warn(exp.warnings)
        start = restore(exp, resume) if resume is not None else Position()
        recorder = Recorder.open(exp, resume, overwrite=overwrite, echo=echo, table=table)
        recorder.position = start
        if resume is not None:
            how = "continuing" if resume.exact else "fine-tuning from the weights of"
            echo(f"{how} {resume.path}: epoch {start.epoch}, step {start.step}")
        try:
            results = _train(exp, start, recorder, progress)
        except (StoppedBySignal, CompressError):  # decided by every process at the same step (World.any)
            together = True
            raise
        finally:
            recorder.close()
        recorder.finish(results, exp.evaluate_test(), plots=plots)
        together = True
    finally:
        exp.close(together=together)  # after the first process has written everything
    echo(f"run directory: {recorder.run_dir}")
    return results


def _silent(*_args: Any, **_kwargs: Any) -> None:
    """What echo and warn are on every torchrun process but the first."""


def _train(exp: Experiment, start: Position, recorder: Recorder, progress: bool) -> list[EpochResult]:
    """The loop, and what its two ways of stopping early mean for the run."""
    with StopOnSignal() as stop:
        observers = Observers(tqdm_progress if progress and exp.world.is_main else None, recorder.epoch_done,
                              stop.requested)  # fmt: skip
        try:
            return fit(exp.train_model or exp.model, exp.data.train, exp.data.val, exp.optimizer, exp.hooks,
                       loop=exp.loop, start=start, observers=observers)  # fmt: skip
        except Interrupted as stopped:
            saved = recorder.interrupted(stopped.position)
            signum = exp.world.max(stop.signum or 0, exp.device)  # a process may stop for another's signal
            at = stopped.position
            raise StoppedBySignal(signum, at.epoch, at.step, saved, recorder.run_dir) from None
        except Diverged as diverged:
            done = recorder.position.epoch
            last = f"the last good checkpoint is {recorder.run_dir / 'checkpoint.pt'} (after epoch {done - 1})" \
                if done > 0 and recorder.run_dir else "no epoch ended well, so no checkpoint was written"  # fmt: skip
            raise CompressError(f"{diverged}. Stopped; {last}. Lower the rule strengths or the learning rate") \
                from None  # fmt: skip
