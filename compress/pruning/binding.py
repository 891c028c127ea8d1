"""Pruning rules against a model: every name matched, every group fitting, every criterion able to
work (a ReLU after an activation-ranked layer, an epoch of statistics before its first pruning),
every problem collected, none raised here."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from compress import groups as G
from compress.errors import Diagnostic
from compress.matching import match_parameters, no_match
from compress.pruning import criteria
from compress.pruning.activations import activation_source, following_batchnorm
from compress.schedule.model import PruneRule


@dataclass
class BoundPruneTarget:
    """One parameter under one pruning rule; ``value`` is its level value (final sparsity, threshold
    or sensitivity), the rule's unless the target gave its own."""

    param_name: str
    param: nn.Parameter
    value: float


@dataclass
class BoundPruneRule:
    rule: PruneRule
    targets: list[BoundPruneTarget]
    sources: dict[str, str] = field(default_factory=dict)  # parameter -> module whose output feeds its ReLU
    norms: dict[str, str] = field(default_factory=dict)  # parameter -> its BatchNorm (fold_batchnorm)
    criterion: criteria.Criterion = field(init=False)

    def __post_init__(self) -> None:
        self.criterion = criteria.get(self.rule.criterion)


def bind_pruning(rules: tuple[PruneRule, ...], model: nn.Module, epochs: int, source: str, out: list[Diagnostic],
                 unmatched: list[Diagnostic]) -> list[BoundPruneRule]:  # fmt: skip
    """Bound rules; problems go to ``out`` (names that match nothing to ``unmatched``, summarized
    with the penalty rules' by the caller)."""
    params = dict(model.named_parameters())
    bound = []
    for rule in rules:
        targets = _targets(rule, params, source, out, unmatched)
        result = BoundPruneRule(rule, targets)
        _check_rule(result, model, epochs, source, out)
        bound.append(result)
    return bound


def _targets(rule: PruneRule, params: dict[str, nn.Parameter], source: str, out: list[Diagnostic],
             unmatched: list[Diagnostic]) -> list[BoundPruneTarget]:  # fmt: skip
    names, claimed, targets = list(params), {}, []
    ordered = [t for t in rule.targets if not t.fallback] + [t for t in rule.targets if t.fallback]
    for target in ordered:
        field_ = target.where or f"rules[{rule.name}].layers"
        if target.fallback:  # Distiller's '*': every parameter the others did not name
            matched = [n for n in names if n not in claimed]
        else:
            matched = match_parameters(target.pattern, names)
        if not matched and not target.fallback:
            unmatched.append(no_match(target, names, source, field_))
        for name in matched:
            if name in claimed:
                out.append(Diagnostic(f"{name} is matched by both {claimed[name]!r} and {target.pattern!r}",
                                      source, target.line, field_))  # fmt: skip
                continue
            claimed[name] = target.pattern
            misfit = G.get(rule.groups).misfit(tuple(params[name].shape))
            if misfit:
                out.append(Diagnostic(f"{name}: {misfit}", source, target.line, field_))
                continue
            value = rule.level.value if target.value is None else target.value
            targets.append(BoundPruneTarget(name, params[name], float(value)))
    return targets


def _check_rule(bound: BoundPruneRule, model: nn.Module, epochs: int, source: str, out: list[Diagnostic]) -> None:
    rule, field_ = bound.rule, f"rules[{bound.rule.name}]"
    active = rule.epochs.active_epochs(epochs)
    if not active:
        message = f"never prunes in a run of {epochs} epochs ({rule.epochs.describe()})"
        out.append(Diagnostic(message, source, rule.line, f"{field_}.epochs", warning=True))
    needs = bound.criterion.needs
    first = active[0] if active else None
    if needs and first == 0:
        gathered = "activation statistics" if needs == "activations" else "gradients"
        out.append(Diagnostic(f"{rule.criterion} ranks by {gathered} gathered over an epoch, but the rule prunes in "
                              "epoch 0 before any: start it at epoch 1 or later", source, rule.line,
                              f"{field_}.epochs"))  # fmt: skip
    if needs == "activations":
        _find_sources(bound, model, source, out)
    if rule.fold_batchnorm:
        for t in bound.targets:
            norm = following_batchnorm(model, t.param_name.rsplit(".", 1)[0]) if t.param.dim() == 4 else None
            if norm is not None:
                bound.norms[t.param_name] = norm
    _check_leader(bound, source, out)
    release = rule.masking.release_at
    if release is not None and first is not None and release <= first:
        out.append(Diagnostic(f"release: {release} is not after the first pruning epoch ({first})", source,
                              rule.line, f"{field_}.release"))  # fmt: skip
    elif release is not None and release >= epochs:
        out.append(Diagnostic(f"release: {release} is beyond this run's {epochs} epochs: the masks hold to the end",
                              source, rule.line, f"{field_}.release", warning=True))  # fmt: skip
    if rule.level.kind == "agp":
        for t in bound.targets:
            if not rule.level.initial < t.value <= 1:
                out.append(Diagnostic(f"{t.param_name}: AGP's final sparsity {t.value:g} must be above its initial "
                                      f"{rule.level.initial:g} and at most 1", source, rule.line, field_))  # fmt: skip


def _find_sources(bound: BoundPruneRule, model: nn.Module, source: str, out: list[Diagnostic]) -> None:
    for t in bound.targets:
        layer = t.param_name.rsplit(".", 1)[0]
        try:
            bound.sources[t.param_name] = activation_source(model, layer)
        except ValueError as exc:
            out.append(Diagnostic(f"{t.param_name}: {bound.rule.criterion} cannot rank it: {exc}", source,
                                  bound.rule.line, f"rules[{bound.rule.name}].prune"))  # fmt: skip


def _check_leader(bound: BoundPruneRule, source: str, out: list[Diagnostic]) -> None:
    """``dependency: leader``: every layer takes the first layer's structures, so they must count alike."""
    if bound.rule.dependency != "leader" or len(bound.targets) < 2:
        return
    group = G.get(bound.rule.groups)
    lead = bound.targets[0]
    want = group.count(tuple(lead.param.shape))
    for t in bound.targets[1:]:
        have = group.count(tuple(t.param.shape))
        if have != want:
            out.append(Diagnostic(f"{t.param_name} has {have} {bound.rule.groups}, the leader {lead.param_name} "
                                  f"{want}: a dependent layer must have as many", source, bound.rule.line,
                                  f"rules[{bound.rule.name}].dependency"))  # fmt: skip
