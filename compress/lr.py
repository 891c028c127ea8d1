"""Learning rates: the scheduler classes a schedule may name, the rate each gives at every epoch, and
the two clocks they are stepped on.

- ``own`` (our format): the scheduler is a ``torch.optim.lr_scheduler`` object stepped once after
  each of its active epochs, so ``step_size``, ``milestones`` and ``T_max`` count its own active
  epochs from 0 at the first one, as PyTorch's ``scheduler.step()`` per epoch does. It leaves the
  rate alone before its first epoch and sets it (to its rate at 0) when that epoch begins, so phases
  chain: a warm-up in epochs [0, 5) then a cosine from epoch 5.
- ``absolute`` (Distiller's): after each active epoch ``e`` the rate becomes the scheduler's closed
  form at ``e + 1`` (Distiller called ``step(epoch=e + 1)``, and PyTorch then used the closed form),
  whatever epoch the policy started at; every scheduler sets its rate at 0 when the run starts, as
  Distiller built them all before training. Only classes with a closed form can run on this clock.

``ReduceLROnPlateau`` runs on both: it steps after each active epoch with the validation loss
(``mode: min``) or top1 (``mode: max``), the metrics Distiller passed it.
"""

from __future__ import annotations

import inspect
import math
import warnings
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import lr_scheduler as torch_lr

from compress.config import FLOAT32_MAX
from compress.errors import Diagnostic, suggest
from compress.schedule.model import Epochs, LRSchedulerSpec


class MultiStepMultiGammaLR(torch_lr.LRScheduler):
    """Distiller's scheduler: like ``MultiStepLR``, with a gamma of its own per milestone (the rate is
    the base times the product of the gammas of the milestones passed). YAML::

        lr_scheduler: {class: MultiStepMultiGammaLR, milestones: [30, 60], gammas: [0.1, 0.5]}
    """

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: Sequence[int], gammas: Sequence[float],
                 last_epoch: int = -1):  # fmt: skip
        self.milestones, self.gammas = list(milestones), list(gammas)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [_multi_gamma(base, self.last_epoch, self.milestones, self.gammas) for base in self.base_lrs]


def _multi_gamma(base: float, epoch: int, milestones: Sequence[int], gammas: Sequence[float]) -> float:
    return base * math.prod(gammas[: bisect_right(list(milestones), epoch)])


@dataclass(frozen=True)
class ClosedForm:
    """A scheduler whose rate at an epoch is a formula of the epoch (Distiller's clock needs one)."""

    required: tuple[str, ...]
    optional: dict[str, Any]
    rate: Callable[..., float]  # (base, epoch, **args) -> rate


def _step(base, epoch, step_size, gamma=0.1):
    return base * gamma ** (epoch // step_size)


def _multistep(base, epoch, milestones, gamma=0.1):
    return base * gamma ** bisect_right(sorted(milestones), epoch)


def _exponential(base, epoch, gamma):
    return base * gamma**epoch


def _cosine(base, epoch, T_max, eta_min=0.0):  # noqa: N803 (PyTorch's argument name)
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * epoch / T_max)) / 2


def _polynomial(base, epoch, T_max, power):  # noqa: N803 (Distiller's argument name)
    return base * (1 - epoch / T_max) ** power


def _multigamma(base, epoch, milestones, gammas):
    return _multi_gamma(base, epoch, milestones, gammas)


CLOSED_FORMS: dict[str, ClosedForm] = {
    "StepLR": ClosedForm(("step_size",), {"gamma": 0.1}, _step),
    "MultiStepLR": ClosedForm(("milestones",), {"gamma": 0.1}, _multistep),
    "ExponentialLR": ClosedForm(("gamma",), {}, _exponential),
    "CosineAnnealingLR": ClosedForm(("T_max",), {"eta_min": 0.0}, _cosine),
    "MultiStepMultiGammaLR": ClosedForm(("milestones", "gammas"), {}, _multigamma),
    # Distiller's own PolynomialLR (T_max, power); PyTorch's class of that name takes total_iters
    "PolynomialLR": ClosedForm(("T_max", "power"), {}, _polynomial),
}
PLATEAU = "ReduceLROnPlateau"
# LRScheduler subclasses of ours, beside torch.optim.lr_scheduler's, for the own clock
OWN_CLASSES: dict[str, type] = {"MultiStepMultiGammaLR": MultiStepMultiGammaLR}


def torch_classes() -> dict[str, type]:
    """Every class the own clock takes: PyTorch's lr schedulers and ours."""
    names = {}
    for name, obj in vars(torch_lr).items():
        if inspect.isclass(obj) and not name.startswith("_") and name not in ("LRScheduler", "_LRScheduler"):
            if issubclass(obj, torch_lr.LRScheduler) or name == PLATEAU:
                names[name] = obj
    return {**names, **OWN_CLASSES}


def valid_classes(clock: str) -> list[str]:
    return sorted(torch_classes()) if clock == "own" else sorted([*CLOSED_FORMS, PLATEAU])


class Rate:
    """One scheduler on one clock, driving the optimizer's learning rate at the epoch hooks."""

    def __init__(self, spec: LRSchedulerSpec, optimizer: torch.optim.Optimizer):
        self.spec, self.optimizer = spec, optimizer
        self.first = _first_epoch(spec.epochs)
        before = [group["lr"] for group in optimizer.param_groups]
        args = dict(spec.args)
        if spec.cls == PLATEAU:
            self.torch = torch_lr.ReduceLROnPlateau(optimizer, **args)
            self.form = None
        elif spec.clock == "absolute":
            self.torch, self.form = None, CLOSED_FORMS[spec.cls]
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
            self._set(0)  # Distiller built every scheduler before training: each set its rate at 0
        else:
            self.torch, self.form = torch_classes()[spec.cls](optimizer, **args), None
            self.start = self.torch.get_last_lr()  # its rate at 0, set when its first epoch begins
            for group, lr in zip(optimizer.param_groups, before, strict=True):
                group["lr"] = lr

    def _set(self, epoch: int) -> None:
        for group in self.optimizer.param_groups:
            try:
                group["lr"] = self.form.rate(group["initial_lr"], epoch, **dict(self.spec.args))
            except OverflowError:  # a float power past 1e308: check_lr_scheduler reports it as inf
                group["lr"] = math.inf

    def on_epoch_begin(self, epoch: int) -> None:
        if self.spec.clock == "own" and self.form is None and self.spec.cls != PLATEAU and epoch == self.first:
            for group, lr in zip(self.optimizer.param_groups, self.start, strict=True):
                group["lr"] = lr

    def on_epoch_end(self, epoch: int, metrics: dict[str, float] | None) -> None:
        if not self.spec.epochs.active(epoch):
            return
        if self.spec.cls == PLATEAU:
            if metrics is not None:
                self.torch.step(metrics["top1"] if self.torch.mode == "max" else metrics["val_loss"])
        elif self.form is not None:
            self._set(epoch + 1)
        else:
            self.torch.step()

    def state_dict(self) -> dict[str, Any]:
        return self.torch.state_dict() if self.torch is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.torch is not None and state:
            self.torch.load_state_dict(state)


def _first_epoch(epochs: Epochs) -> int:
    return min(epochs.listed) if epochs.listed is not None else epochs.start


def build_rates(specs: Sequence[LRSchedulerSpec], optimizer: torch.optim.Optimizer) -> list[Rate]:
    return [Rate(spec, optimizer) for spec in specs]


def simulate(specs: Sequence[LRSchedulerSpec], base_lr: float, run_epochs: int) -> list[float | None]:
    """The rate of every epoch of a run, as the hooks will set it; ``None`` from where a
    ``ReduceLROnPlateau`` first acts (it depends on the validation metrics)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    out: list[float | None] = []
    unknown = False
    with warnings.catch_warnings():  # PyTorch warns of a scheduler stepped before its optimizer ever was
        warnings.simplefilter("ignore", UserWarning)
        rates = build_rates(specs, optimizer)
        for epoch in range(run_epochs):
            for rate in rates:
                rate.on_epoch_begin(epoch)
            out.append(None if unknown else optimizer.param_groups[0]["lr"])
            for rate in rates:
                rate.on_epoch_end(epoch, None)
                unknown = unknown or (rate.spec.cls == PLATEAU and rate.spec.epochs.active(epoch))
    return out


def describe_rates(rates: list[float | None]) -> str:
    """``0.1 (epochs 0-45), 0.01 (46-89)``: one entry per run of equal rates."""
    parts, start = [], 0
    for epoch in range(1, len(rates) + 1):
        if epoch == len(rates) or rates[epoch] != rates[start]:
            span = f"{start}-{epoch - 1}" if epoch - 1 > start else f"{start}"
            value = f"{rates[start]:.4g}" if rates[start] is not None else "on plateau of validation"
            parts.append(f"{value} ({'epochs ' if not parts else ''}{span})")
            start = epoch
    return ", ".join(parts)


def check_lr_scheduler(spec: LRSchedulerSpec, source: str, run_epochs: int | None = None,
                       base_lr: float = 1.0) -> list[Diagnostic]:  # fmt: skip
    """Every problem with one spec: its class on its clock, its arguments, and the rates it gives over
    the run (a division by zero, a rate that is not a finite positive number, or one beyond what an
    optimizer can apply to float32 weights at the run's ``base_lr``), found before training."""
    field = f"lr_scheduler {spec.cls}"

    def problem(message: str, key: str | None = None) -> list[Diagnostic]:
        return [Diagnostic(message, source, spec.line, f"{field}.{key}" if key else field)]

    valid = valid_classes(spec.clock)
    if spec.cls not in valid:
        return problem(_unknown_class(spec, valid))
    problems = _check_arguments(spec, source, field)
    if problems:
        return problems
    for key, value in spec.args:
        message = _bad_value(key, value)
        if message:
            problems += problem(message, key)
    if problems:
        return problems
    given = dict(spec.args)
    if spec.cls == "MultiStepMultiGammaLR" and len(given["milestones"]) != len(given["gammas"]):
        return problem("milestones and gammas must have the same length (one gamma per milestone)")
    try:
        rates = simulate([spec], 1.0, run_epochs or 1)
    except Exception as exc:  # user-supplied arguments: whatever the class raises is the user's to fix
        return problem(f"{spec.cls} rejects its arguments: {type(exc).__name__}: {exc}")
    for epoch, rate in enumerate(rates):
        if rate is not None and (isinstance(rate, complex) or not math.isfinite(rate) or rate < 0):
            return problem(f"gives a learning rate of {rate} (times the base rate) in epoch {epoch}; "
                           "rates must be finite and not negative")  # fmt: skip
        if rate is not None and rate * base_lr > FLOAT32_MAX:
            return problem(f"gives a learning rate of {rate * base_lr:.3g} in epoch {epoch} (base {base_lr:g}), "
                           "beyond float32's range: no optimizer step can apply it")  # fmt: skip
    return []


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# argument -> (test, what it must be): the arguments of the common schedulers, checked by name so that
# a value that would only fail epochs into the run (step_size 0, gamma .nan) fails at check time
_VALUES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "step_size": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "T_max": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "total_iters": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "gamma": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "factor": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "power": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "eta_min": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "min_lr": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "milestones": (
        lambda v: isinstance(v, list) and v and all(_is_int(m) and m >= 0 for m in v),
        "a non-empty list of epochs (integers >= 0)",
    ),
    "gammas": (
        lambda v: isinstance(v, list) and v and all(_is_number(g) and g > 0 for g in v),
        "a non-empty list of positive numbers",
    ),
}


def _bad_value(key: str, value: Any) -> str | None:
    if key in _VALUES:
        test, what = _VALUES[key]
        return None if test(value) else f"must be {what}, got {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    return None


def _unknown_class(spec: LRSchedulerSpec, valid: list[str]) -> str:
    if spec.clock == "absolute" and spec.cls in torch_classes():
        return (f"Distiller stepped its lr schedulers with step(epoch=e + 1), which gives {spec.cls} no "
                f"well-defined rate; compress reproduces it for {', '.join(valid)}")  # fmt: skip
    return f"unknown class {spec.cls!r}{suggest(spec.cls, valid)}; valid: {', '.join(valid)}"


def _check_arguments(spec: LRSchedulerSpec, source: str, field: str) -> list[Diagnostic]:
    """Unknown and missing arguments, against the closed form's or the class's own signature."""
    if spec.clock == "absolute" and spec.cls in CLOSED_FORMS:
        form = CLOSED_FORMS[spec.cls]
        accepted, required = set(form.required) | set(form.optional) | {"last_epoch"}, form.required
    else:
        params = inspect.signature(torch_classes()[spec.cls].__init__).parameters
        accepted = {n for n in params if n not in ("self", "optimizer")}
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        required = tuple(n for n in accepted if params[n].default is inspect.Parameter.empty
                         and params[n].kind not in variadic)  # fmt: skip
    problems = []
    for key, _ in spec.args:
        if key not in accepted:
            hint = suggest(key, accepted) or f"; valid: {', '.join(sorted(accepted))}"
            problems.append(Diagnostic(f"{spec.cls} takes no argument {key!r}{hint}", source, spec.line,
                                       f"{field}.{key}"))  # fmt: skip
    given = dict(spec.args)
    problems += [Diagnostic(f"{spec.cls} needs argument {name!r}", source, spec.line, field)
                 for name in required if name not in given]  # fmt: skip
    if "last_epoch" in given:
        problems.append(Diagnostic("last_epoch is set by compress (the run's epoch); leave it out", source, spec.line,
                                   f"{field}.last_epoch"))  # fmt: skip
    return problems
