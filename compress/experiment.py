"""Assembles a run from a ``RunConfig`` and a ``Schedule``: seed, data, model, optimizer,
compression scheduler. Every user mistake surfaces here, before a run directory exists."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from compress.config import RunConfig
from compress.datasets import DataBundle, DataOptions, build_dataset, dataset_shape
from compress.distributed import SINGLE, World, init_world, leave, wrap
from compress.errors import CompressError, Diagnostic
from compress.models import build_model
from compress.models.pretrained import load_pretrained
from compress.optim import build_optimizer
from compress.schedule.model import Schedule
from compress.scheduler import BoundRule, CompressionScheduler, bind
from compress.training import HookChain, Hooks, Loop, evaluate

if TYPE_CHECKING:
    from compress.thinning.state import Thinner


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

        numpy.random.seed(seed % 2**32)  # NumPy's legacy seed takes 32 bits; ours may be up to 2**63 - 1
    except ImportError:
        pass


def data_options(config: RunConfig, device: torch.device | None = None) -> DataOptions:
    return DataOptions(
        data_dir=config.data_dir,
        download=config.download,
        val_split=config.val_split,
        workers=config.workers,
        input_size=config.input_size,
        pin_memory=device is not None and device.type == "cuda",
        test=config.test,
    )


def build_model_for(config: RunConfig) -> nn.Module:
    """The model for the dataset's classes, channels and image size; no data is loaded (an image
    folder's class count is read from its directory listing)."""
    shape = dataset_shape(config.dataset, data_options(config))
    return build_model(
        config.arch, num_classes=shape.num_classes, in_channels=shape.in_channels, input_size=shape.input_size
    )


VALUE_EVERY = 10  # steps between two samples of each rule's value (the logged rule losses)


def example_input(config: RunConfig) -> torch.Tensor:
    """One input of the shape the dataset gives (zeros: for tracing and counting MACs)."""
    shape = dataset_shape(config.dataset, data_options(config))
    return torch.zeros(1, shape.in_channels, shape.input_size, shape.input_size)


def plan(
    schedule: Schedule, config: RunConfig, device: torch.device | None = None, thinned_spec: dict | None = None
) -> tuple[nn.Module, list[BoundRule], list[Diagnostic]]:
    """What ``compress check`` shows: the model and every rule bound to it, without data.
    ``thinned_spec`` (from a thinned checkpoint) turns the model into its smaller architecture."""
    seed_everything(config.seed)
    model = build_model_for(config)
    if thinned_spec:
        from compress.thinning import rebuild

        rebuild(model, thinned_spec)
    notes = load_pretrained(model, config.pretrained) if config.pretrained else []
    model = model.to(device or "cpu")
    rules, warnings = bind(schedule, model, epochs=config.epochs, weight_decay=config.weight_decay,
                           model_name=config.arch, lr=config.lr)  # fmt: skip
    return model, rules, [Diagnostic(note) for note in notes] + warnings


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
    base_spec: dict | None = None  # the thinned architecture the run started from, if any
    world: World = SINGLE  # the torchrun processes (one process: SINGLE)
    train_model: nn.Module | None = None  # what the loop calls: the model, or its DDP wrapper
    thinner: Thinner | None = None  # thins during training, where the schedule says so
    scaler: torch.amp.GradScaler | None = None  # --amp fp16: its state goes into checkpoints

    @property
    def hooks(self) -> Hooks:
        """What the loop calls: the compression scheduler, then the thinner."""
        return self.scheduler if self.thinner is None else HookChain([self.scheduler, self.thinner])

    @property
    def loop(self) -> Loop:
        c = self.config
        return Loop(c.epochs, self.device, c.limit_batches, self.world, c.amp, c.grad_clip, c.channels_last,
                    self.scaler)  # fmt: skip

    @property
    def thinned_spec(self) -> dict | None:
        """The architecture now: the starting spec plus every thinning done in this run."""
        return self.thinner.spec if self.thinner is not None else self.base_spec

    def evaluate_test(self) -> dict[str, float] | None:
        """``--test``: the weights now on the test split (``None`` without ``--test``); every process
        takes part (the sums are reduced over them)."""
        if self.data.test is None:
            return None
        return evaluate(self.train_model or self.model, self.data.test, device=self.device,
                        limit_batches=self.config.limit_batches, world=self.world, loop=self.loop)  # fmt: skip

    def close(self, *, together: bool) -> None:
        """Under torchrun: drop the DDP wrapper, then leave the process group (see ``leave``)."""
        self.train_model = None
        leave(self.world, together=together)


def build_experiment(schedule: Schedule, config: RunConfig, thinned_spec: dict | None = None) -> Experiment:
    world, device = init_world(resolve_device(config.device))
    if world.distributed and schedule.thinning:
        raise CompressError("thin: thinning during a torchrun run is not supported yet; thin the checkpoint "
                            "afterwards with compress thin, then fine-tune it with --resume")  # fmt: skip
    model, rules, warnings = plan(schedule, config, device, thinned_spec)
    speed_switches(model, config, device)
    optimizer = build_optimizer(config.optimizer, model.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=config.nesterov, weight_decay=config.weight_decay)  # fmt: skip
    data = build_dataset(config.dataset, batch_size=config.batch_size, seed=config.seed, device=device, world=world,
                         options=data_options(config, device))  # fmt: skip
    steps = len(data.train) if config.limit_batches is None else min(len(data.train), config.limit_batches)
    scheduler = CompressionScheduler(rules, optimizer, schedule, value_every=VALUE_EVERY, model=model,
                                     seed=config.seed, steps_per_epoch=steps, compile_hooks=config.compile)  # fmt: skip
    thinner = None
    if schedule.thinning:
        from compress.thinning.state import Thinner

        thinner = Thinner(schedule.thinning, config.epochs, model, example_input(config), optimizer, scheduler,
                          thinned_spec)  # fmt: skip
    warnings = warnings + [Diagnostic(note) for note in data.notes]
    scaler = torch.amp.GradScaler(device.type) if config.amp == "fp16" else None
    return Experiment(config, schedule, device, model, data, optimizer, scheduler, warnings, thinned_spec, world,
                      wrap(model, world, device), thinner, scaler)  # fmt: skip


def speed_switches(model: nn.Module, config: RunConfig, device: torch.device) -> None:
    """``--channels-last`` and ``--compile``. Compiling ``model.forward`` (an attribute of the
    instance) leaves the module itself as it was: parameter names, ``state_dict``, ``torch.fx``
    tracing for thinning (which reads the class's forward) and forward hooks (which run around the
    compiled forward) are those of the plain model."""
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if config.compile:
        compile_forward(model, device)


def compile_forward(model: nn.Module, device: torch.device) -> None:
    """``--compile``: the forward compiled in place (see ``speed_switches``), after checking that the
    machine can build what torch.compile makes."""
    check_compiler(device)
    if device.type == "cpu":
        # torch's C++ builder says "No CUDA runtime is found" on every CPU compile: true, and
        # nothing a CPU run needs to hear
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    model.forward = torch.compile(model.forward)


def check_compiler(device: torch.device) -> None:
    """torch.compile builds C++ for the CPU and Triton kernels for CUDA: say so before training if the
    machine cannot, instead of a traceback at the first batch."""
    import shutil

    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise CompressError("--compile: torch.compile needs a C++ compiler for CPU code (g++, c++ or clang++ on "
                            "PATH); none was found")  # fmt: skip
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            raise CompressError("--compile: torch.compile needs Triton for CUDA code (pip install triton)") from None
