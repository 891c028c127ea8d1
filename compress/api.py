"""Compression in your own training loop: the scheduler ``compress train`` uses, for any model and
optimizer. Four calls in your loop (README, "Your own training loop"); nothing else changes.

    hooks = build_scheduler("schedules/lenet5-filters.yaml", model, optimizer, epochs=10)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from compress.errors import CompressError
from compress.schedule import Schedule, load_schedule
from compress.scheduler import CompressionScheduler, bind
from compress.training import HookChain, Hooks


def build_scheduler(schedule: Schedule | str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, epochs: int,
                    *, example: torch.Tensor | None = None, weight_decay: float = 0.0, seed: int = 0,
                    steps_per_epoch: int | None = None) -> Hooks:  # fmt: skip
    """The hooks of ``schedule`` (a path, or a loaded ``Schedule``) bound to ``model``'s parameters
    and ``optimizer``'s learning rate, for a run of ``epochs``. Every mistake in the schedule is one
    ``CompressError`` naming file, line and field. ``example``: one input batch, needed only when the
    schedule thins the model during training (it traces the model). Pruning rules hook ``model``
    where they need to (activation statistics, Distiller's forward-only masks); ``seed`` seeds the
    random criteria, ``steps_per_epoch`` is Distiller's mini-batch count for
    ``mini_batch_pruning_frequency``."""
    if not isinstance(schedule, Schedule):
        schedule = load_schedule(schedule)
    rules, _warnings = bind(schedule, model, epochs=epochs, weight_decay=weight_decay)
    scheduler = CompressionScheduler(rules, optimizer, schedule, model=model, seed=seed,
                                     steps_per_epoch=steps_per_epoch)  # fmt: skip
    if not schedule.thinning:
        return scheduler
    if example is None:
        raise CompressError(f"{schedule.source}: the schedule thins the model; give build_scheduler an example batch")
    from compress.thinning.state import Thinner

    return HookChain([scheduler, Thinner(schedule.thinning, epochs, model, example, optimizer, scheduler)])
