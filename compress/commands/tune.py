"""``compress tune``: check the search, open (or resume) the study in its directory, run the trials
in this process or in ``--jobs`` workers with one line per finished trial, then write and print
what the study found (``pareto.csv``, ``pareto.png``, ``best/*.yaml``, the table, the command that
trains the chosen schedule for longer). The search itself is ``compress.tuning``."""

from __future__ import annotations

import json
import math
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from compress.config import RunConfig
from compress.errors import CompressError
from compress.schedule.model import Schedule
from compress.tuning.document import ScheduleDocument
from compress.tuning.engine import counts, enqueue_start, fail_running, open_storage, open_study, require_optuna, work
from compress.tuning.front import best_schedules, choose, front_table, header_lines, pareto_front, points_of, write_csv
from compress.tuning.measure import Measures, measure_run
from compress.tuning.setup import TuneSetup, masked, parse_objective
from compress.tuning.space import format_value, parse_searches, short_names

Echo = Callable[..., None]
NOT_RERUN = ("epochs", "limit_batches", "out_dir", "name")  # what the re-run command sets itself or not at all


def prepare(schedule: Schedule, config: RunConfig, searches: tuple[str, ...], *, objective: str,
            min_top1: float | None, stop_margin: float, trials: int, jobs: int, study_dir: Path | None,
            study_name: str | None, storage: str | None, arch: str | None) -> TuneSetup:  # fmt: skip
    """Every check that needs no trial: Optuna is there, the schedule and settings are valid (as
    ``compress check`` sees them), each ``--search`` names a number with a sound range."""
    from compress.experiment import plan

    require_optuna()
    document = ScheduleDocument(schedule.text, schedule.source)
    dims = parse_searches(searches, document)
    name = parse_objective(objective)
    if min_top1 is not None and not (math.isfinite(min_top1) and 0 <= min_top1 <= 100):
        raise CompressError(f"--min-top1: a top1 in percent, 0 to 100, got {min_top1}")
    if not (math.isfinite(stop_margin) and stop_margin >= 0):
        raise CompressError(f"--stop-margin: points of top1, 0 or more, got {stop_margin}")
    plan(schedule, config)
    study_dir = study_dir or Path("tune") / Path(schedule.source).stem
    return TuneSetup(schedule.source, schedule.text, dims, config, name, min_top1, stop_margin, trials, jobs, study_dir,
                     study_name or study_dir.resolve().name, storage, arch)  # fmt: skip


def rerun_command(epochs: int, flags: dict[str, Any], config_path: Path | None) -> Callable[[Path], str]:
    """``compress train --schedule BEST --epochs E`` with the settings the study was given."""
    parts = [f"--epochs {epochs}"] + ([f"--config {shlex.quote(str(config_path))}"] if config_path else [])
    for key, value in flags.items():
        if value is None or key in NOT_RERUN:
            continue
        flag = "--" + key.replace("_", "-")
        parts.append(flag if value is True else f"--no-{flag[2:]}" if value is False else
                     f"{flag} {shlex.quote(str(value))}")  # fmt: skip
    return lambda path: f"compress train --schedule {shlex.quote(str(path))} {' '.join(parts)}"


def run_tune(setup: TuneSetup, *, resume: bool, baseline_run: Path | None, plots: bool, progress: bool, echo: Echo,
             rerun: Callable[[Path], str]) -> None:  # fmt: skip
    """The study from start (or resume) to its summary. Ctrl-C raises KeyboardInterrupt after the
    running trials are marked failed; everything finished is in the study."""
    baseline = measure_run(baseline_run, arch=setup.arch, what="--baseline") if baseline_run else None
    with study_dir_lock(setup, resume):
        study = open_study(setup, open_storage(setup.storage_url))
        _start(study, setup, resume, echo)
        _run(study, setup, echo, progress)
        summarize(study, setup, baseline=baseline, plots=plots, echo=echo, rerun=rerun)


def _check_study_dir(setup: TuneSetup, resume: bool) -> None:
    folder = setup.study_dir
    if folder.exists() and not folder.is_dir():
        raise CompressError(f"--study-dir: {folder} exists and is not a directory")
    used = folder.is_dir() and any(p.name != ".lock" for p in folder.iterdir())
    if setup.storage is None:
        if used and not resume:
            raise CompressError(f"--study-dir: {folder} already holds a study; add --resume to continue it, or pick "
                                "another --study-dir")  # fmt: skip
        if resume and not (folder / "study.db").exists():
            gone = " (the trials there belong to a study that is gone)" if used else ""
            raise CompressError(f"--resume: {folder} holds no study.db to continue{gone}")
    elif used and not resume and _recorded(folder).get("study_name") != setup.study_name:
        raise CompressError(f"--study-dir: {folder} already holds another study; add --resume to continue it, or pick "
                            "another --study-dir")  # fmt: skip


def _recorded(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "tune.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@contextmanager
def study_dir_lock(setup: TuneSetup, resume: bool) -> Iterator[None]:
    """The study directory, checked and created; with the default SQLite storage, held by this
    command alone (so that ``--resume`` may fail the trials that were running: nobody else runs them)."""
    _check_study_dir(setup, resume)
    try:
        setup.study_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CompressError(f"--study-dir: cannot create {setup.study_dir}: {exc.strerror}") from None
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock
        fcntl = None
    if setup.storage is not None or fcntl is None:
        yield
        return
    with open(setup.study_dir / ".lock", "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CompressError(f"--study-dir: another compress tune is running on {setup.study_dir}; wait for it, "
                                "or run more workers with --jobs") from None  # fmt: skip
        yield


def _start(study: Any, setup: TuneSetup, resume: bool, echo: Echo) -> None:
    if resume and setup.storage is None:
        for number in fail_running(study):
            kept = setup.trial_dir(number)
            echo(f"trial {number} was running when the study stopped: marked failed ({kept} is kept)")
    if not study.trials:
        enqueue_start(study, setup)
    (setup.study_dir / "tune.json").write_text(json.dumps(setup.describe(), indent=1) + "\n", encoding="utf-8")
    done, running = counts(study)
    others = f", {running} running elsewhere" if running else ""
    echo(f"study {setup.study_name} ({masked(setup.storage_url)}): {done} of {setup.trials} trials done{others}; "
         f"maximize top1 and {setup.objective}" + (f", top1 >= {setup.min_top1:g}" if setup.min_top1 is not None
                                                    else ""))  # fmt: skip
    for d in setup.dims:
        echo(f"  search {d.describe()}")


class TrialProgress:
    """A bar over the study's trials on a terminal (stderr), with each trial's line printed above it."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=min(initial, total), desc="trials", file=sys.stderr,
                            dynamic_ncols=True, leave=False)  # fmt: skip

    def line(self, text: str, echo: Echo) -> None:
        if self.bar is None:
            echo(text)
            return
        with self.bar.external_write_mode(file=sys.stderr):
            echo(text)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run(study: Any, setup: TuneSetup, echo: Echo, progress: bool) -> None:
    from compress.tuning.workers import run_workers

    names = short_names([d.path for d in setup.dims])
    bar = TrialProgress(setup.trials, counts(study)[0], progress)

    def on_trial(trial: Any) -> None:
        bar.line(trial_line(trial, setup, names), echo)

    try:
        if setup.jobs == 1:
            work(study, setup, on_trial)
        else:
            run_workers(setup, on_trial, study)
    finally:
        bar.close()


def trial_line(trial: Any, setup: TuneSetup, names: dict[str, str]) -> str:
    """One finished trial: its values, then top1 and sparsity, or why it failed or stopped."""
    values = "  ".join(f"{names[d.path]}={format_value(trial.params[d.path])}" for d in setup.dims
                       if d.path in trial.params)  # fmt: skip
    attrs = trial.user_attrs
    head = f"trial {trial.number}  {values}"
    if "measures" not in attrs:
        return f"{head}  failed: {attrs.get('error', trial.state.name.lower())}"
    measures = Measures.from_dict(attrs["measures"])
    seconds = trial.duration.total_seconds() if trial.duration is not None else 0.0
    notes = ("  (the schedule as written)" if attrs.get("start") else "") + \
        (f"  stopped early: {attrs['stopped']}" if attrs.get("stopped") else "")  # fmt: skip
    return f"{head}  {measures.describe(setup.objective)}  {seconds:.0f}s  {attrs.get('run_dir', '')}{notes}"


def summarize(study: Any, setup: TuneSetup, *, baseline: Measures | None, plots: bool, echo: Echo,
              rerun: Callable[[Path], str]) -> None:  # fmt: skip
    """pareto.csv, best/*.yaml, pareto.png; the table and the command for the chosen point."""
    trials = study.get_trials(deepcopy=False)
    points = points_of(trials)
    front = pareto_front(points, setup.objective, setup.min_top1)
    chosen = choose(front, setup.objective, setup.min_top1)
    best_dir = setup.study_dir / "best"
    headers = {p.number: [*header_lines(p, setup.dims, setup.objective, setup.study_name, setup.config.epochs),
                          f"train it: {rerun(best_dir / f'trial-{p.number:03d}.yaml')}"] for p in front}  # fmt: skip
    schedules = best_schedules(best_dir, front, setup.document(), headers)
    write_csv(setup.study_dir / "pareto.csv", front, setup.dims, setup.objective, schedules)
    states = [t.state.name for t in trials]
    plural = "s" if len(trials) != 1 else ""
    echo(f"{len(trials)} trial{plural}: {states.count('COMPLETE')} complete, {states.count('PRUNED')} stopped early, "
         f"{states.count('FAIL')} failed")  # fmt: skip
    if not front:
        best = max((p.measures.top1 for p in points), default=None)
        echo("no trial is on a front: " + (f"none reached --min-top1 {setup.min_top1:g} (best top1 {best:.2f})"
                                           if best is not None else "none trained"))  # fmt: skip
    else:
        limit = f"; top1 >= {setup.min_top1:g}" if setup.min_top1 is not None else ""
        echo(f"Pareto front ({len(front)} trial{'s' if len(front) > 1 else ''}{limit}; * = the chosen one):")
        for line in front_table(front, setup.dims, setup.objective, chosen, baseline):
            echo("  " + line)
    _plot(setup, points, front, baseline, plots, echo)
    echo(f"wrote {setup.study_dir / 'pareto.csv'}, {best_dir}/ ({len(schedules)} schedules)")
    if chosen is not None:
        echo(f"train the chosen one longer: {rerun(schedules[chosen.number])}")


def _plot(setup: TuneSetup, points: list, front: list, baseline: Measures | None, plots: bool, echo: Echo) -> None:
    """pareto.png when matplotlib is there; else one line on how to get it."""
    if not plots or not points:
        return
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        from compress.plots import INSTALL_HINT

        echo(f"no pareto.png: {INSTALL_HINT}")
        return
    from compress.tuning.plot import plot_front

    path = plot_front(setup.study_dir / "pareto.png", points, front, setup.objective, setup.min_top1, baseline)
    echo(f"wrote {path}")
