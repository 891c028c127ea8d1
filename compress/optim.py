"""Optimizers (a registry; each entry says which settings it takes) and the optimizer state that
proximal steps and thresholds clear. Importing this module does not import torch: the CLI reads
the optimizer names from here to build ``--optimizer``'s choices."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from compress.errors import CompressError
from compress.registry import Registry

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class OptimizerEntry:
    """``build(params, lr=..., weight_decay=..., [momentum=..., nesterov=...])``; the flags say which
    of the run's settings it takes beside lr and weight decay (``--nesterov`` for one without is an
    error; the momentum default is simply not passed)."""

    build: Callable[..., Any]
    has_momentum: bool = False
    has_nesterov: bool = False


def _sgd(params, *, lr, weight_decay, momentum, nesterov):
    import torch

    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


def _adam(params, *, lr, weight_decay):
    import torch

    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _adamw(params, *, lr, weight_decay):
    import torch

    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


OPTIMIZERS: Registry[OptimizerEntry] = Registry("optimizer", "--optimizer")
OPTIMIZERS.register("sgd", OptimizerEntry(_sgd, has_momentum=True, has_nesterov=True), "SGD with momentum")
OPTIMIZERS.register("adam", OptimizerEntry(_adam), "Adam (its betas are PyTorch's defaults)")
OPTIMIZERS.register("adamw", OptimizerEntry(_adamw), "AdamW (decoupled weight decay)")


def build_optimizer(
    name: str, params: Iterable[Any], *, lr: float, momentum: float, nesterov: bool, weight_decay: float
) -> torch.optim.Optimizer:
    entry = OPTIMIZERS.get(name)
    if nesterov and not (entry.has_nesterov and momentum > 0):
        raise CompressError(f"--nesterov: needs an optimizer with momentum (sgd) and --momentum > 0, not {name}")
    if not entry.has_momentum:
        return entry.build(params, lr=lr, weight_decay=weight_decay)
    return entry.build(params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov)


# Optimizer state that carries a weight's past steps forward (SGD's momentum, Adam's first moment).
# A proximal step that zeroes a group clears these entries too: left alone, the momentum of the
# steps before pushes the group straight back out of zero on the next step (LeNet-5 SSL schedule,
# seed 1, 6 epochs: 149 of 200 filter zeroings undone within one step; 10 of 63 with clearing).
# Second moments only scale steps and are left alone.
MOMENT_KEYS = ("momentum_buffer", "exp_avg")


def moments(optimizer: torch.optim.Optimizer | None, param: torch.nn.Parameter) -> list[torch.Tensor]:
    """The momentum-like state tensors the optimizer holds for ``param`` (none before its first step)."""
    if optimizer is None:
        return []
    state = optimizer.state.get(param)
    if not state:
        return []
    return [value for key in MOMENT_KEYS if (value := state.get(key)) is not None and hasattr(value, "mul_")]
