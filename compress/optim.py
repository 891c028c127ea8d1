"""Optimizers (registry) and ``torch.optim.lr_scheduler`` classes by name, checked against their signatures."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import torch
from torch.optim import lr_scheduler as torch_lr

from compress.errors import CompressError, Diagnostic, suggest
from compress.schedule.model import LRSchedulerSpec

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


def lr_scheduler_classes() -> dict[str, type]:
    names = {}
    for name, obj in vars(torch_lr).items():
        if inspect.isclass(obj) and not name.startswith("_") and name not in ("LRScheduler", "_LRScheduler"):
            if issubclass(obj, torch_lr.LRScheduler) or name == "ReduceLROnPlateau":
                names[name] = obj
    return names


def check_lr_scheduler(spec: LRSchedulerSpec, source: str) -> list[Diagnostic]:
    """Problems with one spec, found by building it on a throwaway optimizer (so torch checks types too)."""
    field = f"lr_scheduler {spec.cls}"
    classes = lr_scheduler_classes()
    if spec.cls not in classes:
        valid = ", ".join(sorted(classes))
        return [
            Diagnostic(
                f"unknown class {spec.cls!r}{suggest(spec.cls, classes)}; valid: {valid}", source, spec.line, field
            )
        ]
    cls = classes[spec.cls]
    params = inspect.signature(cls.__init__).parameters
    accepted = {n for n in params if n not in ("self", "optimizer")}
    problems = []
    for key, _ in spec.args:
        if key not in accepted:
            hint = suggest(key, accepted) or f"; valid: {', '.join(sorted(accepted))}"
            problems.append(
                Diagnostic(f"{spec.cls} takes no argument {key!r}{hint}", source, spec.line, f"{field}.{key}")
            )
    required = [n for n, p in params.items() if n in accepted and p.default is inspect.Parameter.empty]
    required = [
        n for n in required if params[n].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    for name in required:
        if name not in dict(spec.args):
            problems.append(Diagnostic(f"{spec.cls} needs argument {name!r}", source, spec.line, field))
    if not problems:
        dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        try:
            cls(dummy, **dict(spec.args))
        except Exception as exc:  # user-supplied arguments: whatever torch raises is the user's to fix
            problems.append(Diagnostic(f"{spec.cls} rejects its arguments: {exc}", source, spec.line, field))
    return problems


def build_lr_scheduler(spec: LRSchedulerSpec, optimizer: torch.optim.Optimizer, source: str):
    problems = check_lr_scheduler(spec, source)
    if problems:
        raise CompressError(problems)
    return lr_scheduler_classes()[spec.cls](optimizer, **dict(spec.args))
