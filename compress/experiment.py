"""Assembles a run from a ``RunConfig`` and a ``Schedule``: seed, data, model, optimizer,
compression scheduler. Every user mistake surfaces here, before a run directory exists."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn

from compress.config import RunConfig
from compress.data import DataBundle, build_dataset, dataset_entry
from compress.errors import CompressError, Diagnostic
from compress.models import build_model
from compress.optim import build_optimizer
from compress.schedule.model import Schedule
from compress.scheduler import BoundRule, CompressionScheduler, bind


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CompressError(f"--device: unknown device {name!r}; valid: cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CompressError(f"--device: {name} asked for, but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CompressError(f"--device: {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise CompressError(f"--device: {name!r} is not supported; valid: cpu, cuda, cuda:N")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:
        pass


def build_model_for(config: RunConfig) -> nn.Module:
    entry = dataset_entry(config.dataset)
    return build_model(
        config.arch, num_classes=entry.num_classes, in_channels=entry.in_channels, input_size=entry.input_size
    )


def plan(
    schedule: Schedule, config: RunConfig, device: torch.device | None = None
) -> tuple[nn.Module, list[BoundRule], list[Diagnostic]]:
    """What ``compress check`` shows: the model and every rule bound to it, without data."""
    seed_everything(config.seed)
    model = build_model_for(config).to(device or "cpu")
    rules, warnings = bind(schedule, model, epochs=config.epochs, weight_decay=config.weight_decay)
    return model, rules, warnings


@dataclass
class Experiment:
    config: RunConfig
    schedule: Schedule
    device: torch.device
    model: nn.Module
    data: DataBundle
    optimizer: torch.optim.Optimizer
    scheduler: CompressionScheduler
    warnings: list[Diagnostic]


def build_experiment(schedule: Schedule, config: RunConfig) -> Experiment:
    device = resolve_device(config.device)
    model, rules, warnings = plan(schedule, config, device)
    optimizer = build_optimizer(
        config.optimizer,
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    scheduler = CompressionScheduler(rules, optimizer, schedule)
    data = build_dataset(config.dataset, batch_size=config.batch_size, seed=config.seed, device=str(device))
    return Experiment(config, schedule, device, model, data, optimizer, scheduler, warnings)
