"""Text for ``compress check``: the resolved plan, and the model's parameter list."""

from __future__ import annotations

from torch import nn

from compress import groups as G
from compress.config import RunConfig
from compress.lr import describe_rates, simulate
from compress.pruning.binding import BoundPruneRule
from compress.pruning.levels import target_sparsity
from compress.schedule.model import Schedule
from compress.scheduler import BoundRule
from compress.yamlio import brief


def _shape(shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def format_params(model: nn.Module, arch: str) -> str:
    rows = [(name, _shape(p.shape), str(p.numel())) for name, p in model.named_parameters()]
    width = max(len(r[0]) for r in rows)
    lines = [f"{arch}: {len(rows)} parameter tensors, {sum(p.numel() for p in model.parameters()):,} weights"]
    lines += [f"  {n.ljust(width)}  {s.ljust(14)}  {c}" for n, s, c in rows]
    return "\n".join(lines)


def format_plan(schedule: Schedule, config: RunConfig, rules: list[BoundRule], model: nn.Module,
                arch_given: bool = True) -> str:  # fmt: skip
    model_text = config.arch if arch_given else f"{config.arch} (the default; --arch names another)"
    lines = [f"schedule {schedule.source}: model {model_text}, dataset {config.dataset}, {config.epochs} epochs"]
    for bound in rules:
        lines += _prune_lines(bound, config.epochs) if isinstance(bound, BoundPruneRule) else _rule_lines(
            bound, config.epochs)  # fmt: skip
    for spec in schedule.lr_schedulers:
        args = ", ".join(f"{k}={brief(v)}" for k, v in spec.args)
        clock = "; Distiller's clock: closed form at epoch + 1" if spec.clock == "absolute" else ""
        lines.append(f"lr_scheduler {spec.cls}({args}), {spec.epochs.describe(config.epochs)}{clock}")
    lines.append(f"learning rate {describe_rates(simulate(schedule.lr_schedulers, config.lr, config.epochs))}")
    for step in schedule.thinning:
        fires = step.epochs_in(config.epochs)
        shown = ", ".join(map(str, fires)) if fires else "never in this run"
        lines.append(f"{step.describe()}: {shown}")
    n_params = len({t.param_name for b in rules for t in b.targets})
    lines.append(f"OK: {len(rules)} rule(s) on {n_params} parameter(s), {len(schedule.lr_schedulers)} lr scheduler(s)")
    return "\n".join(lines)


def _rule_lines(bound: BoundRule, run_epochs: int) -> list[str]:
    rule = bound.rule
    extras = [f"mode {rule.mode}", rule.epochs.describe(run_epochs)]
    if rule.keep_mask:
        at = rule.keep_mask_at
        extras.append(f"keep_mask ({'never in this run' if at is None or at >= run_epochs else f'after epoch {at}'})")
    lines = [f"rule {rule.name}: {rule.penalty}, " + ", ".join(extras)]
    width = max((len(t.param_name) for t in bound.targets), default=0)
    for t in bound.targets:
        shape = tuple(t.param.shape)
        counts = " + ".join(f"{G.get(g).count(shape)} {g}" for g in t.groups)
        thr = f"  threshold {t.threshold:g} ({rule.threshold_criterion})" if t.threshold is not None else ""
        name, shape_text = t.param_name.ljust(width), _shape(shape).ljust(12)
        lines.append(f"  {name}  {shape_text}  {counts.ljust(16)}  strength {t.strength:g}{thr}")
    return lines


def _prune_lines(bound: BoundPruneRule, run_epochs: int) -> list[str]:
    """The pruner, when its masks act, and each parameter with its number of groups and level."""
    rule = bound.rule
    own = all(t.value != rule.level.value for t in bound.targets) and rule.level.value == 0 and bound.targets
    level = f"{rule.level.kind} per parameter" if own else rule.level.describe()
    lines = [f"rule {rule.name}: prune {rule.criterion} {rule.groups}, {level}, "
             f"{rule.epochs.describe(run_epochs)}{_masks_until(rule, run_epochs)}"]  # fmt: skip
    steps = _sparsity_steps(bound, run_epochs)
    if steps:
        lines.append(f"  sparsity by epoch: {steps}")
    width = max((len(t.param_name) for t in bound.targets), default=0)
    for t in bound.targets:
        shape = tuple(t.param.shape)
        count = f"{G.get(rule.groups).count(shape)} {rule.groups}"
        value = rule.level.describe(t.value)
        value = "final sparsity " + value.split(" -> ")[-1] if rule.level.kind == "agp" else value
        lead = "  (leader)" if rule.dependency == "leader" and t is bound.targets[0] else ""
        lines.append(f"  {t.param_name.ljust(width)}  {_shape(shape).ljust(12)}  {count.ljust(16)}  {value}{lead}")
    return lines


def _masks_until(rule, run_epochs: int) -> str:
    release = rule.masking.release_at
    if release is not None and release < run_epochs:
        return f"; masks released at epoch {release} (dense again)"
    if rule.masking.forward_only:
        return "; masks on the forward pass of its epochs only"
    return "; masks hold to the end"


def _sparsity_steps(bound: BoundPruneRule, run_epochs: int) -> str:
    """AGP's levels at each pruning epoch (of the first parameter's final value), at most 8 shown."""
    rule = bound.rule
    if rule.level.kind != "agp" or not bound.targets:
        return ""
    epochs = rule.epochs.active_epochs(run_epochs)
    value = bound.targets[0].value
    shown = [f"{target_sparsity(rule.level, value, e, rule.epochs):.1%} ({e})" for e in epochs[:8]]
    return ", ".join(shown) + (f", ... ({len(epochs)} steps)" if len(epochs) > 8 else "")
