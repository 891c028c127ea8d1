"""What ``--resume`` means, and putting a checkpoint's state back.

Two ways to go on from a checkpoint:
- exact (``--resume RUN``): same schedule, same settings, same run directory; only ``--epochs`` (to
  train longer) and ``--device`` may change. Model, optimizer, lr schedulers, masks, RNG states and
  the position in the epoch come back, so the result is bit-identical to a run never stopped.
- fine-tuning (``--resume RUN --reset-optimizer``, Distiller's workflow): only the weights come
  back; a new run starts at epoch 0 with a fresh optimizer and whatever schedule and settings are
  given.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from compress.checkpoint import load_checkpoint
from compress.config import RunConfig, resolve_config
from compress.errors import CompressError

# Settings that change the numbers a run computes: an exact resume must keep them.
PINNED = (
    "val_split",
    "input_size",
    "arch",
    "dataset",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "seed",
    "limit_batches",
)


def checkpoint_file(path: Path) -> Path:
    """A run directory means its latest checkpoint."""
    return path / "checkpoint.pt" if path.is_dir() else path


@dataclass
class Resume:
    state: dict[str, Any]
    path: Path
    exact: bool

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def in_run_dir(self) -> bool:
        """False for a checkpoint on its own (``compress thin``'s output): it continues in a new run."""
        return (self.run_dir / "metrics.csv").exists()


def load_resume(path: Path, *, exact: bool) -> Resume:
    file = checkpoint_file(path)
    state = load_checkpoint(file, "--resume")
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
        if (newer.get("next_epoch"), newer.get("next_step")) != (
            resume.state.get("next_epoch"),
            resume.state.get("next_step"),
        ):
            raise CompressError(
                f"--resume: {resume.path} is older than {latest}; resuming it would overwrite later "
                "epochs. Resume the run directory, or add --reset-optimizer to branch a new run"
            )


def exact_config(resume: Resume, layers: list[dict[str, Any]]) -> RunConfig:
    """The checkpoint's settings; a layer that changes a pinned one is refused, naming it."""
    saved = resume.state["config"]
    asked = resolve_config([saved, *layers])
    changed = [k for k in PINNED if getattr(asked, k) != saved.get(k)]
    if changed:
        what = ", ".join(f"{k}={saved.get(k)!r} -> {getattr(asked, k)!r}" for k in changed)
        raise CompressError(
            f"--resume: the run was trained with other settings ({what}); an exact resume keeps them. "
            "Drop those flags, or add --reset-optimizer to fine-tune from its weights in a new run"
        )
    given = resolve_config(layers)  # for where a new run directory goes (a checkpoint outside any run)
    free = {"epochs": asked.epochs, "device": asked.device, "out_dir": given.out_dir, "name": given.name,
            "best": asked.best, "tensorboard": asked.tensorboard, "data_dir": asked.data_dir,
            "workers": asked.workers, "test": asked.test}  # fmt: skip
    return resolve_config([{**saved, "name": None}, free])


def check_same_schedule(resume: Resume, text: str | None, source: str | None) -> None:
    if text is not None and text != resume.state["schedule_text"]:
        raise CompressError(
            f"--schedule: {source} differs from the schedule the run was trained with "
            f"({resume.state['schedule_source']}); an exact resume keeps it. Leave out --schedule, "
            "or add --reset-optimizer to fine-tune from its weights under the new schedule"
        )


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


def load_weights(model: torch.nn.Module, state: dict[str, Any], path: Path, arch: str) -> None:
    try:
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError) as exc:
        lines = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in lines[:3])[:300]
        raise CompressError(
            f"--resume: {path} (trained as {state.get('arch')!r}) does not fit model {arch!r}: {detail}"
        ) from None
