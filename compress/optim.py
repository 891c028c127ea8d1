"""Optimizers (registry) and the optimizer state that proximal steps and thresholds clear."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from compress.errors import CompressError, suggest

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda params, lr, momentum, nesterov, weight_decay: torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    ),
    "adam": lambda params, lr, momentum, nesterov, weight_decay: torch.optim.Adam(
        params, lr=lr, weight_decay=weight_decay
    ),
    "adamw": lambda params, lr, momentum, nesterov, weight_decay: torch.optim.AdamW(
        params, lr=lr, weight_decay=weight_decay
    ),
}


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
    return [state[k] for k in MOMENT_KEYS if isinstance(state.get(k), torch.Tensor)]


def build_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], *, lr: float, momentum: float, nesterov: bool, weight_decay: float
) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise CompressError(
            f"--optimizer: unknown optimizer {name!r}{suggest(name, OPTIMIZERS)}; valid: {', '.join(OPTIMIZERS)}"
        )
    if nesterov and (name != "sgd" or momentum <= 0):
        raise CompressError("--nesterov: needs --optimizer sgd with --momentum > 0")
    return OPTIMIZERS[name](params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
