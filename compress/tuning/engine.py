"""Optuna, the search engine: its storage, the sampler, the study, the objective, and the loop
each worker process runs. Optuna is an optional extra: ``require_optuna`` is the one place that
imports it, and says how to install it.

Choices, and why:

- **Storage**: an ``RDBStorage`` (SQLite in ``STUDY_DIR/study.db`` by default, any SQLAlchemy URL
  with ``--storage``) with a heartbeat: a trial whose process died stops sending it, and after the
  grace period any process of the study marks it failed. Several processes on one machine share
  SQLite (a lock timeout lets writers wait); several machines share a server database.
- **Sampler**: multi-objective TPE. NSGA-II's first generation (50 by default) is random, more
  than most studies' whole budget; TPE models the front after ``n_startup_trials`` random ones.
  Each process seeds it from (``--seed``, trials already in the study, worker index): the same
  seed and study give the same sequence on one process, a resumed study does not draw the first
  trials' values again, and parallel workers do not draw the same values.
- **Constraint**: ``--min-top1`` is ``min_top1 - top1 <= 0`` (``Trial.set_constraint``, or the
  sampler's ``constraints_func`` on Optuna before 5), so TPE learns where accuracy is lost.
- **Budget**: ``--trials N`` counts finished trials (complete, stopped early, or failed because
  their values made an invalid schedule), so a resumed study runs only what is missing; trials
  lost to a crash do not count and are replaced.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from compress.errors import CompressError, RunIOError
from compress.tuning.measure import measure_run
from compress.tuning.setup import TuneSetup, masked
from compress.tuning.trial import run_trial

INSTALL_HINT = 'compress tune needs Optuna: pip install -e ".[tune]" (or pip install optuna)'
# a trial whose heartbeat is older than GRACE_S is failed by the next process that looks: long
# enough that a live trial on a loaded machine (whose heartbeat writes wait for the database
# lock) is never taken for dead; a crash on this machine needs no grace (--resume fails the
# running trials at once)
HEARTBEAT_S, GRACE_S = 30, 600
DIRECTIONS = ["maximize", "maximize"]  # top1, then the sparsity the objective names


def require_optuna() -> Any:
    """The optuna module, or a one-line error with the install hint."""
    try:
        import optuna
    except ImportError:
        raise CompressError(INSTALL_HINT) from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print one line per trial ourselves
    for category in (optuna.exceptions.ExperimentalWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=r"optuna(\..*)?$")
    return optuna


class InvalidTrial(Exception):
    """The trial's values made a schedule that is not valid (or its run diverged): the trial fails,
    the study goes on."""


def open_storage(url: str) -> Any:
    optuna = require_optuna()
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S,
                                              grace_period=GRACE_S)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors (bad URL, no driver, no server) are many
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise CompressError(f"--storage {masked(url)}: cannot open it: {type(exc).__name__}: {detail}") from None


def sampler_seed(seed: int, existing: int, worker: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([seed, existing, worker]).generate_state(1)[0])


def make_sampler(setup: TuneSetup, *, existing: int, worker: int = 0) -> Any:
    optuna = require_optuna()
    extra = {}
    if setup.min_top1 is not None and not hasattr(optuna.trial.Trial, "set_constraint"):
        extra["constraints_func"] = _constraint_of
    return optuna.samplers.TPESampler(seed=sampler_seed(setup.config.seed, existing, worker),
                                      n_startup_trials=min(10, max(1, setup.trials // 3)), **extra)  # fmt: skip


def _constraint_of(trial: Any) -> tuple[float]:
    return (float(trial.user_attrs.get("constraint", 0.0)),)


def open_study(setup: TuneSetup, storage: Any, *, worker: int = 0) -> Any:
    """The study in ``storage`` (created when it is not there), with this process's sampler."""
    optuna = require_optuna()
    existing = 0
    try:
        existing = len(optuna.load_study(study_name=setup.study_name, storage=storage).trials)
    except KeyError:
        pass
    study = optuna.create_study(storage=storage, study_name=setup.study_name, directions=DIRECTIONS,
                                sampler=make_sampler(setup, existing=existing, worker=worker),
                                load_if_exists=True)  # fmt: skip
    stored = study.user_attrs.get("objective")
    if stored is None:
        study.set_user_attr("objective", setup.objective)
    elif stored != setup.objective:
        raise CompressError(f"--objective: the study {setup.study_name!r} searches top1,{stored}; "
                            f"give --objective top1,{stored} or another --study-dir / --study-name")  # fmt: skip
    return study


def counts(study: Any) -> tuple[int, int]:
    """(finished trials that count toward --trials, trials running now)."""
    from optuna.trial import TrialState

    done = running = 0
    for t in study.get_trials(deepcopy=False):
        invalid = t.state == TrialState.FAIL and "error" in t.user_attrs  # not a crash: its values were invalid
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or invalid:
            done += 1
        elif t.state == TrialState.RUNNING:
            running += 1
    return done, running


def fail_running(study: Any) -> list[int]:
    """Mark every running trial failed: on ``--resume`` of a study only this command uses, they
    were running when it stopped. Returns their numbers."""
    from optuna.trial import TrialState

    numbers = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for number in numbers:
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    return numbers


def enqueue_start(study: Any, setup: TuneSetup) -> None:
    """The first trial of a new study runs the schedule's own values (brought into the ranges)."""
    study.enqueue_trial({d.path: d.start() for d in setup.dims}, user_attrs={"start": True})


def work(study: Any, setup: TuneSetup, on_trial: Callable[[Any], None]) -> None:
    """Run trials until the study holds ``setup.trials`` finished ones (counting those running in
    other processes); ``on_trial(frozen_trial)`` after each."""
    optuna = require_optuna()
    objective = Objective(setup)
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)
        done, running = counts(study)
        if done + running >= setup.trials:
            return
        try:
            study.optimize(objective, n_trials=1, catch=(InvalidTrial,), callbacks=[lambda _s, t: on_trial(t)],
                           gc_after_trial=False)  # fmt: skip
        except (ValueError, RuntimeError) as exc:
            if "Cannot tell" not in str(exc):
                raise
            # another process took this trial for dead (its heartbeat came late) and failed it:
            # it does not count, and the loop runs a trial in its place
            warnings.warn(f"a trial of this process was failed by another one: {exc}", stacklevel=1)


class Objective:
    """One trial: the values, the schedule they make, the run, its measures -> (top1, sparsity)."""

    def __init__(self, setup: TuneSetup):
        self.setup, self.document = setup, setup.document()

    def __call__(self, trial: Any) -> tuple[float, float]:
        optuna = require_optuna()
        setup = self.setup
        values = {d.path: d.suggest(trial) for d in setup.dims}
        run_dir = setup.trial_dir(trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        try:
            run = self._run(trial, values, run_dir)
            measures = measure_run(run.run_dir, arch=setup.arch)
        except RunIOError:
            raise
        except CompressError as exc:
            message = "; ".join(str(d) for d in exc.diagnostics)
            trial.set_user_attr("error", message)
            _leave_note(run_dir, message)
            raise InvalidTrial(message) from None
        trial.set_user_attr("measures", measures.to_dict())
        if setup.min_top1 is not None:
            _set_constraint(trial, setup.min_top1 - measures.top1)
        if run.stopped:
            trial.set_user_attr("stopped", run.stopped)
            raise optuna.TrialPruned(run.stopped)
        return measures.top1, measures.sparsity(setup.objective)

    def _run(self, trial: Any, values: dict[str, Any], run_dir: Path) -> Any:
        from compress.schedule import parse_schedule

        text = self.document.with_values(values)
        source = str(run_dir / Path(self.setup.schedule_path).name)
        try:
            schedule = parse_schedule(text, source)
        except CompressError:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / f"schedule-{Path(source).stem}.yaml").write_text(text, encoding="utf-8")
            raise
        config = replace(self.setup.config, out_dir=str(self.setup.trials_dir), name=run_dir.name)
        seen: list[float] = []

        def report(epoch: int, top1: float) -> None:  # the per-epoch report, visible to the study
            seen.append(round(top1, 4))
            trial.set_user_attr("top1_by_epoch", list(seen))

        return run_trial(schedule, config, self.setup.stop_rule(schedule), report)


def _set_constraint(trial: Any, value: float) -> None:
    if hasattr(trial, "set_constraint"):
        trial.set_constraint("top1", value)
    trial.set_user_attr("constraint", value)  # what constraints_func reads on Optuna before 5


def _leave_note(run_dir: Path, message: str) -> None:
    """An invalid trial's directory says why (its schedule copy is there too)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(message + "\n", encoding="utf-8")
    except OSError:
        pass
