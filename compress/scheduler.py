"""Binds a ``Schedule`` to a model and applies it at the training loop's four hooks.

    on_epoch_begin(epoch)          which rules are active this epoch
    before_step()                  after backward: penalty-mode gradients into .grad
    after_step(lr)                 after optimizer.step(): proximal steps and thresholds (clearing the
                                   optimizer momentum of what they zero), kept masks
    on_epoch_end(epoch, metrics)   keep_mask fires at a rule's last active epoch; lr schedulers step

The loop knows nothing else about regularization; this class knows nothing about data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from compress import groups as G
from compress import regularizers as R
from compress.errors import CompressError, Diagnostic
from compress.optim import build_lr_scheduler, check_lr_scheduler, moments
from compress.schedule.model import Rule, Schedule

_DP_PREFIX = re.compile(r"(^|\.)module\.")


@dataclass
class BoundTarget:
    """One parameter under one rule."""

    param_name: str
    param: nn.Parameter
    strength: float
    groups: tuple[str, ...]
    threshold: float | None


@dataclass
class BoundRule:
    rule: Rule
    targets: list[BoundTarget]
    last_epoch: int | None  # the last active epoch, None when the rule never ends inside the run
    penalty: R.Penalty = field(init=False)

    def __post_init__(self) -> None:
        self.penalty = R.get(self.rule.penalty)


def strip_dataparallel(name: str) -> str:
    """``module.layer1.conv.weight`` and ``features.module.0.weight`` -> the plain names."""
    return _DP_PREFIX.sub(r"\1", name)


def match_parameters(pattern: str, names: list[str]) -> list[str]:
    found = [n for n in names if fnmatchcase(n, pattern)]
    return found or [n for n in names if fnmatchcase(n, strip_dataparallel(pattern))]


def bind(
    schedule: Schedule, model: nn.Module, *, epochs: int, weight_decay: float = 0.0
) -> tuple[list[BoundRule], list[Diagnostic]]:
    """Resolve every rule against the model. Raises one ``CompressError`` with every problem;
    returns the bound rules and the warnings."""
    params = dict(model.named_parameters())
    out: list[Diagnostic] = list(schedule.problems)
    bound = []
    for rule in schedule.rules:
        targets = _bind_targets(rule, params, schedule.source, out)
        last = _last_active_epoch(rule, epochs)
        _timing_warnings(rule, epochs, last, schedule.source, out)
        if rule.penalty == "l2" and weight_decay > 0 and targets:
            out.append(
                Diagnostic(
                    f"rule's L2 and the optimizer's weight_decay={weight_decay} both decay "
                    f"{', '.join(t.param_name for t in targets)}",
                    schedule.source,
                    rule.line,
                    f"rules[{rule.name}]",
                    warning=True,
                )
            )
        bound.append(BoundRule(rule, targets, last))
    for spec in schedule.lr_schedulers:
        out.extend(check_lr_scheduler(spec, schedule.source))
        if not spec.epochs.active_epochs(epochs):
            message = f"never steps in a run of {epochs} epochs ({spec.epochs.describe()})"
            out.append(Diagnostic(message, schedule.source, spec.line, f"lr_scheduler {spec.cls}", warning=True))
    errors = [d for d in out if not d.warning]
    if errors:
        raise CompressError(errors)
    return bound, out


def _bind_targets(rule: Rule, params: dict[str, nn.Parameter], source: str, out: list[Diagnostic]) -> list[BoundTarget]:
    import difflib

    names = list(params)
    claimed: dict[str, str] = {}
    targets = []
    for target in rule.targets:
        field = target.where or f"rules[{rule.name}].layers"
        matched = match_parameters(target.pattern, names)
        if not matched:
            close = difflib.get_close_matches(strip_dataparallel(target.pattern), names, n=3, cutoff=0.4)
            hint = f"; closest: {', '.join(close)}" if close else "; `compress check --list-params` lists them"
            out.append(
                Diagnostic(f"{target.pattern!r} matches no parameter of the model{hint}", source, target.line, field)
            )
            continue
        for name in matched:
            if name in claimed:
                out.append(
                    Diagnostic(
                        f"{name} is matched by both {claimed[name]!r} and {target.pattern!r}",
                        source,
                        target.line,
                        field,
                    )
                )
                continue
            claimed[name] = target.pattern
            shape = tuple(params[name].shape)
            misfits = [m for g in target.groups if (m := G.get(g).misfit(shape))]
            for misfit in misfits:
                out.append(Diagnostic(f"{name}: {misfit}", source, target.line, field))
            if not misfits:
                targets.append(BoundTarget(name, params[name], target.strength, target.groups, target.threshold))
    return targets


def _last_active_epoch(rule: Rule, run_epochs: int) -> int | None:
    """keep_mask fires at the end of this epoch. Found by walking the rule's own range, so a
    frequency that skips the range's last epoch still fires (Distiller's bug)."""
    e = rule.epochs
    if e.listed is not None:
        return max(e.listed)
    if e.end is None:
        return None
    return e.start + (e.end - 1 - e.start) // e.frequency * e.frequency


def _timing_warnings(rule: Rule, epochs: int, last: int | None, source: str, out: list[Diagnostic]) -> None:
    field = f"rules[{rule.name}].epochs"
    active = rule.epochs.active_epochs(epochs)
    if not active:
        out.append(
            Diagnostic(
                f"never active in a run of {epochs} epochs ({rule.epochs.describe()})",
                source,
                rule.line,
                field,
                warning=True,
            )
        )
    elif rule.keep_mask and last is None:
        message = "keep_mask needs an end epoch: this rule runs to the end of the run, so no mask is ever kept"
        out.append(Diagnostic(message, source, rule.line, field, warning=True))
    elif rule.keep_mask and last >= epochs:
        message = f"keep_mask fires after epoch {last}, beyond this run's {epochs} epochs: no mask will be kept"
        out.append(Diagnostic(message, source, rule.line, field, warning=True))


class CompressionScheduler:
    """Applies bound rules and steps lr schedulers. ``state_dict`` holds the kept masks."""

    def __init__(
        self,
        rules: list[BoundRule],
        optimizer: torch.optim.Optimizer | None = None,
        schedule: Schedule | None = None,
        thinner: Any = None,
        value_every: int = 1,
    ):
        self.rules = rules
        # rule values are for logging: computing them is a pass over the weights, so the training
        # run samples them every ``value_every`` steps (the first step of each epoch included)
        self.value_every = value_every
        self._epoch, self._step = -1, 0  # position in the epoch, for sampling; kept in state_dict
        self.thinner = thinner  # compress.thinning.state.Thinner: removes zero structures at its epochs
        self.optimizer = optimizer  # its momentum is cleared where a proximal step or threshold zeroes
        self.lr_schedulers = []
        if schedule is not None and optimizer is not None:
            self.lr_schedulers = [
                (s, build_lr_scheduler(s, optimizer, schedule.source)) for s in schedule.lr_schedulers
            ]
        self.masks: dict[str, torch.Tensor] = {}
        self.params = {t.param_name: t.param for r in rules for t in r.targets}
        # nothing acts until the loop says which epoch it is
        self.active: list[BoundRule] = []
        self._penalty_rules = self._proximal_rules = self._thresholded = self.active

    @property
    def rule_names(self) -> list[str]:
        return [r.rule.name for r in self.rules]

    def on_epoch_begin(self, epoch: int) -> None:
        if epoch != self._epoch:  # a resumed epoch keeps its position (load_state_dict)
            self._epoch, self._step = epoch, 0
        self.active = [r for r in self.rules if r.rule.epochs.active(epoch)]
        self._penalty_rules = [r for r in self.active if r.rule.mode == "penalty"]
        self._proximal_rules = [r for r in self.active if r.rule.mode == "proximal"]
        self._thresholded = [r for r in self.active if any(t.threshold is not None for t in r.targets)]

    @torch.no_grad()
    def before_step(self) -> dict[str, torch.Tensor]:
        """Penalty mode: add each term's exact gradient into ``.grad``; returns the terms' values."""
        losses = {}
        sample = self._step % self.value_every == 0
        for bound in self._penalty_rules:
            total = None
            for t in bound.targets:
                if t.param.grad is None:
                    t.param.grad = torch.zeros_like(t.param)
                for group in t.groups:
                    value = bound.penalty.add_gradient(t.param, t.param.grad, group, t.strength, value=sample)
                    if value is not None:
                        total = value if total is None else total + value
            if total is not None:
                losses[bound.rule.name] = total
        return losses

    @torch.no_grad()
    def after_step(self, lr: float) -> dict[str, torch.Tensor]:
        """Proximal steps, thresholds, then kept masks; returns proximal rules' values at the new weights.

        What a proximal step or threshold zeroes also loses its optimizer momentum, so a zero stays
        zero unless the next gradient step alone moves it out (what the proximal gradient method means)."""
        for bound in self._proximal_rules:
            for t in bound.targets:
                for group in t.groups:
                    self._clear_moments(t.param, bound.penalty.proximal(t.param, group, lr * t.strength))
        for bound in self._thresholded:
            for t in bound.targets:
                if t.threshold is not None:
                    for group in t.groups:
                        keep = G.group_statistic(t.param, group, bound.rule.threshold_criterion) >= t.threshold
                        t.param.mul_(keep)
                        self._clear_moments(t.param, keep)
        for name, mask in self.masks.items():  # re-applied every step, so their momentum cannot matter
            self.params[name].mul_(mask)
        sample = self._step % self.value_every == 0
        self._step += 1
        return {bound.rule.name: self._value(bound) for bound in self._proximal_rules} if sample else {}

    def _clear_moments(self, param: nn.Parameter, keep: torch.Tensor | None) -> None:
        if keep is not None:
            for buffer in moments(self.optimizer, param):
                buffer.mul_(keep)

    @staticmethod
    def _value(bound: BoundRule) -> torch.Tensor:
        values = [bound.penalty.value(t.param, g, t.strength) for t in bound.targets for g in t.groups]
        return torch.stack(values).sum()

    @torch.no_grad()
    def penalty_values(self) -> dict[str, float]:
        """Every rule's current value, active or not (for reports)."""
        return {b.rule.name: float(self._value(b)) for b in self.rules}

    @torch.no_grad()
    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        for bound in self.rules:
            if bound.rule.keep_mask and bound.last_epoch == epoch:
                self._keep_mask(bound)
        if self.thinner is not None:
            self.thinner(epoch, self)
        for spec, scheduler in self.lr_schedulers:
            if spec.epochs.active(epoch):
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(metrics["val_loss"])
                else:
                    scheduler.step()

    def _keep_mask(self, bound: BoundRule) -> None:
        """Zero structures (of the rule's own groups) become permanent zeros."""
        for t in bound.targets:
            keep = torch.ones_like(t.param, dtype=torch.bool)
            for group in t.groups:
                keep = keep & ~G.zero_groups(t.param, group)
            keep = keep.to(t.param.dtype)
            old = self.masks.get(t.param_name)
            self.masks[t.param_name] = keep if old is None else old * keep

    def rebind(self, params: dict[str, nn.Parameter], thin: Any) -> None:
        """After thinning: point every target at the new parameter of the same name and shrink the
        kept masks with ``thin(name, tensor)``."""
        for bound in self.rules:
            for t in bound.targets:
                t.param = params[t.param_name]
        self.params = {name: params[name] for name in self.params}
        self.masks = {name: thin(name, mask) for name, mask in self.masks.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "masks": {k: v.cpu() for k, v in self.masks.items()},
            "lr_schedulers": [s.state_dict() for _, s in self.lr_schedulers],
            "position": [self._epoch, self._step],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masks = {k: v.to(self.params[k].device) for k, v in state.get("masks", {}).items() if k in self.params}
        for (_, scheduler), s in zip(self.lr_schedulers, state.get("lr_schedulers", []), strict=False):
            scheduler.load_state_dict(s)
        self._epoch, self._step = state.get("position", [-1, 0])
