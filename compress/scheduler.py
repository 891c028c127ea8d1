"""Binds a ``Schedule`` to a model and applies it at the training loop's four hooks.

    on_epoch_begin(epoch)          which rules are active this epoch; lr schedulers that start now set
                                   their rate; Distiller-timed thinning (its first mini-batch)
    before_step()                  after backward: penalty-mode gradients into .grad
    after_step(lr)                 after optimizer.step(): proximal steps, kept masks, then thresholds
                                   (Distiller's order), clearing the momentum of what they zero where
                                   the rule says so
    on_epoch_end(epoch, metrics)   keep_mask fires at the rule's epoch; thinning; lr schedulers step

The loop knows nothing else about regularization; this class knows nothing about data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from compress import groups as G
from compress import regularizers as R
from compress.errors import CompressError, Diagnostic
from compress.lr import build_rates, check_lr_scheduler
from compress.matching import match_parameters, no_match, strip_dataparallel  # noqa: F401  (re-exported)
from compress.optim import moments
from compress.pruning.binding import BoundPruneRule, bind_pruning
from compress.pruning.runtime import Pruning
from compress.schedule.model import Rule, Schedule
from compress.training import Participant


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
    penalty: R.Penalty = field(init=False)

    def __post_init__(self) -> None:
        self.penalty = R.get(self.rule.penalty)

    def eps(self, group: str) -> float:
        return self.rule.channel_epsilon if group == "channels" else 0.0


def bind(
    schedule: Schedule, model: nn.Module, *, epochs: int, weight_decay: float = 0.0, model_name: str | None = None,
    lr: float = 1.0,
) -> tuple[list[BoundRule | BoundPruneRule], list[Diagnostic]]:
    """Resolve every rule against the model: the penalty rules, then the pruning rules. Raises one
    ``CompressError`` with every problem; returns the bound rules and the warnings."""
    params = dict(model.named_parameters())
    out: list[Diagnostic] = list(schedule.problems)
    unmatched: list[Diagnostic] = []
    bound = []
    for rule in schedule.rules:
        targets = _bind_targets(rule, params, schedule.source, out, unmatched)
        _timing_warnings(rule, epochs, schedule.source, out)
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
        bound.append(BoundRule(rule, targets))
    bound += bind_pruning(schedule.pruning, model, epochs, schedule.source, out, unmatched)
    _check_orphans(schedule, params, unmatched)
    out += _summarized(unmatched, schedule, model_name)
    for spec in schedule.lr_schedulers:
        out.extend(check_lr_scheduler(spec, schedule.source, epochs, lr))
        if not spec.epochs.active_epochs(epochs):
            message = f"never steps in a run of {epochs} epochs ({spec.epochs.describe()})"
            out.append(Diagnostic(message, schedule.source, spec.line, f"lr_scheduler {spec.cls}", warning=True))
    for step in schedule.thinning:
        _thinning_warnings(step, epochs, schedule.source, out)
    errors = [d for d in out if not d.warning]
    if errors:
        raise CompressError(errors)
    return bound, out


def _summarized(unmatched: list[Diagnostic], schedule: Schedule, model_name: str | None) -> list[Diagnostic]:
    """When most names of the schedule match nothing, the schedule is for another model: say that once
    (and show a few of the names) instead of one line per parameter."""
    total = sum(len(rule.targets) for rule in (*schedule.rules, *schedule.pruning)) + len(schedule.orphans)
    if len(unmatched) < 4 or len(unmatched) * 2 <= total:
        return unmatched
    model = f"model {model_name}" if model_name else "the model"
    first = unmatched[0]
    summary = Diagnostic(f"{len(unmatched)} of the {total} parameter names match nothing in {model}: is the schedule "
                         "written for another model? give --arch (compress models lists them)", first.file, first.line,
                         first.field)  # fmt: skip
    rest = Diagnostic(f"... and {len(unmatched) - 3} more names that match nothing", first.file, unmatched[3].line,
                      unmatched[3].field)  # fmt: skip
    return [summary, *unmatched[:3], rest]


def _check_orphans(schedule: Schedule, params: dict[str, nn.Parameter], out: list[Diagnostic]) -> None:
    """The parameter names of rules left out for their own errors: still checked, so that one round
    reports every mistake."""
    names = list(params)
    for target in schedule.orphans:
        if not match_parameters(target.pattern, names):
            out.append(no_match(target, names, schedule.source, target.where or "layers"))


def _thinning_warnings(step, epochs: int, source: str, out: list[Diagnostic]) -> None:
    outside = [e for e in (step.epochs.listed or ()) if e >= epochs] if step.epochs is not None else []
    never = step.epochs is not None and not step.at_end and not step.epochs_in(epochs)
    if outside or never:
        shown = ", ".join(map(str, outside)) or step.epochs.describe()
        out.append(Diagnostic(f"thins in epoch {shown}, outside this run of {epochs} epochs (0-{epochs - 1}): "
                              "it never fires there", source, step.line, step.name, warning=True))  # fmt: skip


def _bind_targets(rule: Rule, params: dict[str, nn.Parameter], source: str, out: list[Diagnostic],
                  unmatched: list[Diagnostic]) -> list[BoundTarget]:  # fmt: skip
    names = list(params)
    claimed: dict[str, str] = {}
    targets = []
    for target in rule.targets:
        field = target.where or f"rules[{rule.name}].layers"
        matched = match_parameters(target.pattern, names)
        if not matched:
            unmatched.append(no_match(target, names, source, field))
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


def _timing_warnings(rule: Rule, epochs: int, source: str, out: list[Diagnostic]) -> None:
    field = f"rules[{rule.name}].epochs"
    active = rule.epochs.active_epochs(epochs)
    at = rule.keep_mask_at
    if not active:
        message = f"never active in a run of {epochs} epochs ({rule.epochs.describe()})"
        out.append(Diagnostic(message, source, rule.line, field, warning=True))
    elif rule.keep_mask and at is not None and at >= epochs:
        message = f"keep_mask fires after epoch {at}, beyond this run's {epochs} epochs: no mask will be kept"
        out.append(Diagnostic(message, source, rule.line, field, warning=True))
    elif rule.keep_mask and at is None and rule.epochs.last_active() is None:
        message = "keep_mask needs an end epoch: this rule runs to the end of the run, so no mask is ever kept"
        out.append(Diagnostic(message, source, rule.line, field, warning=True))


class CompressionScheduler(Participant):
    """Applies bound rules and steps the learning rates at the loop's hooks. ``state_dict`` holds the
    kept masks, the lr schedulers' state and the position in the epoch."""

    def __init__(
        self,
        rules: list[BoundRule | BoundPruneRule],
        optimizer: torch.optim.Optimizer | None = None,
        schedule: Schedule | None = None,
        value_every: int = 1,
        *,
        model: nn.Module | None = None,
        seed: int = 0,
        steps_per_epoch: int | None = None,
        compile_hooks: bool = False,
    ):
        self.rules = [r for r in rules if isinstance(r, BoundRule)]
        prune_rules = [r for r in rules if isinstance(r, BoundPruneRule)]
        # pruning rules: masks, their evidence and their state (None without pruning rules)
        self.pruning = Pruning(prune_rules, optimizer, model, seed=seed, steps_per_epoch=steps_per_epoch) \
            if prune_rules else None  # fmt: skip
        # rule values are for logging: computing them is a pass over the weights, so the training
        # run samples them every ``value_every`` steps (the first step of each epoch included)
        self.value_every = value_every
        self._epoch, self._step = -1, 0  # position in the epoch, for sampling; kept in state_dict
        self.optimizer = optimizer  # its momentum is cleared where a proximal step or threshold zeroes
        self.rates = build_rates(schedule.lr_schedulers, optimizer) if schedule and optimizer else []
        self.masks: dict[str, torch.Tensor] = {}
        self.params = {t.param_name: t.param for r in rules for t in r.targets}
        # nothing acts until the loop says which epoch it is
        self.active: list[BoundRule] = []
        self._proximal_rules = self._thresholded = self.active
        self._gradient_plan: list[list[_Term]] = []
        self._proximal_plan: list[_Term] = []
        # each rule's terms, made once: the plans of every epoch reuse them, so a compiled plan is
        # compiled once per set of active rules, not once per epoch
        self._rule_terms = {id(bound): _terms(bound) for bound in self.rules}
        # --compile: the per-step arithmetic of the penalty and proximal terms as compiled graphs (a few
        # fused loops instead of dozens of small ops); the first step of each plan pays the compilation
        self._gradients, self._proximal_steps = (torch.compile(_penalty_gradients), torch.compile(_proximal_steps)) \
            if compile_hooks else (_penalty_gradients, _proximal_steps)  # fmt: skip

    @property
    def rule_names(self) -> list[str]:
        """The penalty rules: each has a loss."""
        return [r.rule.name for r in self.rules]

    @property
    def prune_names(self) -> list[str]:
        return [b.rule.name for b in self.pruning.rules] if self.pruning else []

    @property
    def touched(self) -> list[str]:
        """Every parameter some rule acts on (reports show them even when they are not weights)."""
        bound = [*self.rules, *(self.pruning.rules if self.pruning else [])]
        return list(dict.fromkeys(t.param_name for b in bound for t in b.targets))

    def pruning_report(self) -> dict[str, tuple[float | None, float]]:
        return self.pruning.report() if self.pruning else {}

    def on_epoch_begin(self, epoch: int) -> None:
        fresh = epoch != self._epoch
        if fresh:  # a resumed epoch keeps its position (load_state_dict)
            self._epoch, self._step = epoch, 0
        if self.pruning is not None:
            self.pruning.on_epoch_begin(epoch, fresh)
        self.active = [r for r in self.rules if r.rule.epochs.active(epoch)]
        self._proximal_rules = [r for r in self.active if r.rule.mode == "proximal"]
        self._thresholded = [r for r in self.active if any(t.threshold is not None for t in r.targets)]
        self._gradient_plan = _by_parameter([t for r in self.active if r.rule.mode == "penalty"
                                             for t in self._rule_terms[id(r)]])  # fmt: skip
        self._proximal_plan = [term for bound in self._proximal_rules for term in self._rule_terms[id(bound)]]
        for rate in self.rates:
            rate.on_epoch_begin(epoch)

    @torch.no_grad()
    def before_step(self) -> dict[str, torch.Tensor]:
        """Penalty mode: add each term's exact gradient into ``.grad``; returns the terms' values.

        A weight under several terms gets their sum added at once, summed last term first: the order
        in which autograd accumulates the gradients of terms added to the loss one after the other
        (Distiller's way), so both give the same bits."""
        if self.pruning is not None:
            self.pruning.gather_gradients()
        plan = self._gradient_plan
        losses = _record(plan, self._gradients(plan, self._step % self.value_every == 0)) if plan else {}
        if self.pruning is not None:
            self.pruning.before_update()
        return losses

    @torch.no_grad()
    def after_step(self, lr: float) -> dict[str, torch.Tensor]:
        """Proximal steps, kept masks, then thresholds (Distiller's order: masks first, so a threshold
        sees the masked weights); returns proximal rules' values at the new weights.

        Where the rule says so (``clear_momentum``, our default), what a proximal step or threshold
        zeroes also loses its optimizer momentum, so a zero stays zero unless the next gradient step
        alone moves it out (what the proximal gradient method means). Kept masks are re-applied every
        step, so their momentum cannot matter."""
        if self._proximal_plan:
            buffers = [moments(self.optimizer, t.target.param) if t.clear_momentum else [] for t in self._proximal_plan]
            self._proximal_steps(self._proximal_plan, buffers, lr)
        for name, mask in self.masks.items():
            self.params[name].mul_(mask)
        if self.pruning is not None:
            self.pruning.after_step()
        for bound in self._thresholded:
            self._threshold(bound)
        sample = self._step % self.value_every == 0
        self._step += 1
        return {bound.rule.name: self._value(bound) for bound in self._proximal_rules} if sample else {}

    def _threshold(self, bound: BoundRule) -> None:
        """Zero every group whose statistic is at or below the threshold (Distiller's boundary)."""
        for t in bound.targets:
            if t.threshold is None:
                continue
            for group in t.groups:
                keep = G.kept_by_threshold(t.param, group, bound.rule.threshold_criterion, t.threshold)
                t.param.mul_(keep)
                if bound.rule.clear_momentum:
                    R.clear(moments(self.optimizer, t.param), keep)

    @staticmethod
    def _value(bound: BoundRule) -> torch.Tensor:
        values = [bound.penalty.value(t.param, g, t.strength, bound.eps(g)) for t in bound.targets for g in t.groups]
        return torch.stack(values).sum()

    @torch.no_grad()
    def penalty_values(self) -> dict[str, float]:
        """Every rule's current value, active or not (for reports)."""
        return {b.rule.name: float(self._value(b)) for b in self.rules}

    @torch.no_grad()
    def on_epoch_end(self, epoch: int, metrics: dict[str, float] | None) -> None:
        for bound in self.rules:
            if bound.rule.keep_mask_at == epoch:
                self._keep_mask(bound)
        if self.pruning is not None:
            self.pruning.on_epoch_end(epoch)
        for rate in self.rates:
            rate.on_epoch_end(epoch, metrics)

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
        if self.pruning is not None:
            self.pruning.rebind(params, thin)

    def state_dict(self) -> dict[str, Any]:
        return {
            "masks": {k: v.cpu() for k, v in self.masks.items()},
            "lr_schedulers": [rate.state_dict() for rate in self.rates],
            "position": [self._epoch, self._step],
            **({"pruning": self.pruning.state_dict()} if self.pruning is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masks = {k: v.to(self.params[k].device) for k, v in state.get("masks", {}).items() if k in self.params}
        for rate, saved in zip(self.rates, state.get("lr_schedulers", []), strict=False):
            rate.load_state_dict(saved)
        self._epoch, self._step = state.get("position", [-1, 0])
        if self.pruning is not None:
            self.pruning.load_state_dict(state.get("pruning", {}))


@dataclass(frozen=True)
class _Term:
    """One group of one parameter under one rule, resolved once so that each step is only the
    arithmetic (the Python that looked these up every step was a fifth of the hooks' time)."""

    bound: BoundRule
    target: BoundTarget
    group: str
    penalty: R.Penalty
    strength: float
    eps: float
    clear_momentum: bool


def _terms(bound: BoundRule) -> list[_Term]:
    return [_Term(bound, t, group, bound.penalty, t.strength, bound.eps(group), bound.rule.clear_momentum)
            for t in bound.targets for group in t.groups]  # fmt: skip


def _by_parameter(terms: list[_Term]) -> list[list[_Term]]:
    """The penalty-mode terms grouped by parameter, in rule order: a weight under several terms gets
    their sum added at once (``before_step``)."""
    by_param: dict[str, list[_Term]] = {}
    for term in terms:
        by_param.setdefault(term.target.param_name, []).append(term)
    return list(by_param.values())


def _record(plan: list[list[_Term]], values: list[torch.Tensor | None]) -> dict[str, torch.Tensor]:
    """Each rule's value: the sum of its terms' values, in plan order (``values`` follows the plan's
    terms, ``None`` where a term was not sampled)."""
    losses: dict[str, torch.Tensor] = {}
    for term, value in zip((t for terms in plan for t in terms), values, strict=True):
        if value is not None:
            name = term.bound.rule.name
            losses[name] = losses[name] + value if name in losses else value
    return losses


def _penalty_gradients(plan: list[list[_Term]], sample: bool) -> list[torch.Tensor | None]:
    """Penalty mode's step (``before_step``): every term's gradient into ``.grad``; returns each term's
    value (``None`` unless ``sample``), in plan order. A function of its arguments alone that reads
    no rule names, so that ``torch.compile`` takes it and compiles it once per structure (penalty,
    group, weight shape), not once per rule."""
    values: list[torch.Tensor | None] = []
    for terms in plan:
        param = terms[0].target.param
        if len(terms) == 1 and param.grad is not None:  # one term: added in place, no sum to order
            term = terms[0]
            values.append(term.penalty.add_gradient(param, param.grad, term.group, term.strength, sample, term.eps))
            continue
        gradients = []
        for term in terms:
            gradient, value = term.penalty.gradient(param, term.group, term.strength, sample, term.eps)
            gradients.append(gradient)
            values.append(value)
        total = gradients[-1]
        for gradient in reversed(gradients[:-1]):
            total = total.add_(gradient)
        if param.grad is None:
            param.grad = total
        else:
            param.grad.add_(total)
    return values


def _proximal_steps(plan: list[_Term], buffers: list[list[torch.Tensor]], lr: float) -> None:
    """Proximal mode's step (``after_step``): each term's operator in turn, and the momentum
    ``buffers`` of each term's weight cleared where its operator zeroed."""
    for term, moment_buffers in zip(plan, buffers, strict=True):
        term.penalty.proximal_step(term.target.param, term.group, lr * term.strength, moment_buffers)
