"""What ``--resume`` means, and putting a checkpoint's state back.

Two ways to go on from a checkpoint:
- exact (``--resume RUN``): same schedule, same settings, same run directory; only the settings that
  do not change the numbers (``--epochs`` to train longer, ``--device``, where files go) may change.
  Model, optimizer, lr schedulers, masks, RNG states and the position in the epoch come back, so
  the result is bit-identical to a run never stopped.
- fine-tuning (``--resume RUN --reset-optimizer``, Distiller's workflow): only the weights come
  back; a new run starts at epoch 0 with a fresh optimizer and whatever schedule and settings are
  given.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from compress.checkpoint import RunState, load_checkpoint
from compress.config import PINNED, SETTINGS, RunConfig, checked, layered_settings, load_config_file, resolve_config
from compress.errors import CompressError, Diagnostic

if TYPE_CHECKING:
    from compress.experiment import Experiment
    from compress.schedule import Schedule
    from compress.training import Position


def checkpoint_file(path: Path) -> Path:
    """A run directory means its latest checkpoint."""
    from compress.files import path_kind

    return path / "checkpoint.pt" if path_kind(path, "--resume") == "dir" else path


@dataclass
class Resume:
    state: RunState
    path: Path
    exact: bool

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def in_run_dir(self) -> bool:
        """False for a checkpoint on its own (``compress thin``'s output): it continues in a new run."""
        return (self.run_dir / "metrics.csv").exists()


def load_resume(path: Path, *, exact: bool, arch: str | None = None) -> Resume:
    """``arch``: the ``--arch`` of the command line (a user's own model must be named again)."""
    from compress.models.user import confirm_named

    file = checkpoint_file(path)
    state = load_checkpoint(file, "--resume")
    for stored in dict.fromkeys((state.arch, str(state.config.get("arch", "")))):
        confirm_named(stored, arch, f"--resume: {file}")
    checked(state.config, lambda key: f"--resume: {file}: config.{key}")
    resume = Resume(state, file, exact)
    if exact:
        _check_latest(resume)
    return resume


def _check_latest(resume: Resume) -> None:
    """Continuing from an older checkpoint would overwrite later epochs of the same run."""
    if not resume.in_run_dir:
        return
    latest = resume.run_dir / "checkpoint.pt"
    if resume.path.name != "checkpoint.pt" and latest.exists():
        newer = load_checkpoint(latest, "--resume")
        if (newer.next_epoch, newer.next_step) != (resume.state.next_epoch, resume.state.next_step):
            raise CompressError(
                f"--resume: {resume.path} is older than {latest}; resuming it would overwrite later "
                "epochs. Resume the run directory, or add --reset-optimizer to branch a new run"
            )


def resumed_run(path: Path, *, reset: bool, schedule: Schedule | None, config_path: Path | None,
                flags: dict[str, Any]) -> tuple[Schedule, RunConfig, Resume]:  # fmt: skip
    """The schedule, settings and checkpoint a ``--resume`` run goes on with. ``schedule``: the one
    given with ``--schedule`` (an exact resume refuses another than the run's)."""
    from compress.schedule import parse_schedule

    resume = load_resume(path, exact=not reset, arch=flags.get("arch"))
    state = resume.state
    if schedule is None:
        try:
            schedule = parse_schedule(state.schedule_text, state.schedule_source, defer_errors=True)
        except CompressError as exc:  # the text is the checkpoint's copy: name the checkpoint
            raise CompressError([Diagnostic(d.message, f"{resume.path}: its schedule {d.file}", d.line, d.field)
                                 for d in exc.diagnostics]) from None  # fmt: skip
    elif not reset:
        check_same_schedule(resume, schedule)
    if reset:
        base = {k: v for k, v in state.config.items() if k != "name"}
        return schedule, layered_settings(schedule, config_path, flags, base).config, resume
    layers = [load_config_file(config_path)] if config_path else []
    return schedule, exact_config(resume, [*layers, flags]), resume


def exact_config(resume: Resume, layers: list[dict[str, Any]]) -> RunConfig:
    """The checkpoint's settings; a layer that changes a pinned one is refused, naming it."""
    saved = resume.state.config
    asked = resolve_config([saved, *layers])
    before = resolve_config([saved])  # a setting newer than the checkpoint has its default there
    changed = [k for k in PINNED if getattr(asked, k) != getattr(before, k)]
    if changed:
        what = ", ".join(f"{k}={getattr(before, k)!r} -> {getattr(asked, k)!r}" for k in changed)
        raise CompressError(
            f"--resume: the run was trained with other settings ({what}); an exact resume keeps them. "
            "Drop those flags, or add --reset-optimizer to fine-tune from its weights in a new run"
        )
    free = {k: getattr(asked, k) for k, s in SETTINGS.items() if s.resume == "free"}
    given = {k: v for layer in layers for k, v in layer.items() if v is not None}
    # where a new run directory goes (a checkpoint outside any run); the run's own stays recorded
    free.update(out_dir=given.get("out_dir", saved.get("out_dir", "runs")), name=given.get("name"))
    return resolve_config([{**saved, "name": None}, free])


def check_same_schedule(resume: Resume, schedule: Schedule) -> None:
    if schedule.text != resume.state.schedule_text:
        raise CompressError(
            f"--schedule: {schedule.source} differs from the schedule the run was trained with "
            f"({resume.state.schedule_source}); an exact resume keeps it. Leave out --schedule, "
            "or add --reset-optimizer to fine-tune from its weights under the new schedule"
        )


def restore(exp: Experiment, resume: Resume) -> Position:
    """Put the checkpoint back into the experiment; where training goes on from."""
    from compress.training import EpochTotals, Position

    state = resume.state
    load_weights(exp.model, state, resume.path, exp.config.arch)
    if not resume.exact:
        return Position()
    exp.optimizer.load_state_dict(state.optimizer)
    exp.scheduler.load_state_dict(state.scheduler or {})
    if exp.thinner is not None:
        exp.thinner.load_state_dict(state.thinner or {})
    if exp.scaler is not None and state.scaler:
        exp.scaler.load_state_dict(state.scaler)
    restore_rng(state.rng)
    # the saved sums are every process's together: one process carries them on
    own = state.epoch_totals if exp.world.is_main else None
    return Position(state.next_epoch, state.next_step, EpochTotals(exp.device, own) if own else None)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": _plain(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy

        kind, key, pos, has_gauss, gauss = numpy.random.get_state()
        state["numpy"] = (kind, torch.from_numpy(key.astype("int64")), pos, has_gauss, gauss)
    except ImportError:
        pass
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        try:
            import numpy

            kind, key, pos, has_gauss, gauss_value = state["numpy"]
            numpy.random.set_state((kind, key.numpy().astype("uint32"), pos, has_gauss, gauss_value))
        except ImportError:
            pass


def _plain(python_state: tuple) -> tuple:
    version, internal, gauss = python_state
    return (version, list(internal), gauss)


def load_weights(model: torch.nn.Module, state: RunState, path: Path, arch: str, what: str = "--resume") -> None:
    try:
        model.load_state_dict(state.state_dict)
    except (RuntimeError, KeyError, AttributeError, TypeError) as exc:
        lines = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in lines[:3])[:300]
        raise CompressError(
            f"{what}: {path} (trained as {state.arch!r}) does not fit model {arch!r}: {detail}"
        ) from None
