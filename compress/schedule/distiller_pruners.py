"""Distiller's ``pruners:`` and their ``PruningPolicy`` arguments, read into ``PruneRule``s that run as
Distiller ran them (the numerics of ``PruneRule``: Distiller's ties, never all structures of a
layer, no momentum clearing, its Bernoulli rescaling, activation statistics from validation, the
signed gradient of the last step). Sample::

    pruners:
      fc_agp:
        class: AutomatedGradualPruner
        initial_sparsity: 0.05
        final_sparsity: 0.80
        weights: [fc1.weight, fc2.weight]
      conv_filters:
        class: L1RankedStructureParameterPruner_AGP
        initial_sparsity: 0.10
        final_sparsity: 0.50
        group_type: Filters
        weights: [conv1.weight, conv2.weight]
    policies:
      - pruner: {instance_name: fc_agp}
        starting_epoch: 0
        ending_epoch: 6
        frequency: 2
      - pruner: {instance_name: conv_filters, args: {keep_mask: true}}
        starting_epoch: 1
        ending_epoch: 4
        frequency: 1
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from compress.errors import suggest
from compress.schedule.model import Epochs, Level, Masking, PruneRule, PruneTarget
from compress.yamlio import FieldChecker, YamlList, YamlMap, brief

# class -> (criterion, level kind, ties, stats) ; "agp" classes take initial/final_sparsity
RANKED = {
    "L1RankedStructureParameterPruner": "l1", "L2RankedStructureParameterPruner": "l2",
    "ActivationAPoZRankedFilterPruner": "apoz", "ActivationMeanRankedFilterPruner": "mean_activation",
    "GradientRankedFilterPruner": "gradient", "RandomRankedFilterPruner": "random",
    "BernoulliFilterPruner": "bernoulli",
}  # fmt: skip
FILTERS_ONLY = {"apoz", "mean_activation", "gradient", "random", "bernoulli"}
GROUP_TYPES = {"3D": "filters", "Filters": "filters", "Channels": "channels", "Rows": "channels"}
STRUCTURE_GROUPS = {"2D": "kernels", "3D": "filters", "Filters": "filters", "Channels": "channels", "4D": "layer",
                    "Rows": "rows", "Cols": "cols"}  # fmt: skip
MAPPED = {"AutomatedGradualPruner", "SparsityLevelParameterPruner", "MagnitudeParameterPruner", "SensitivityPruner",
          "SplicingPruner", "StructureParameterPruner", "RandomLevelStructureParameterPruner",
          *RANKED, *(f"{name}_AGP" for name in RANKED)}  # fmt: skip
POLICY_ARGS = {
    "levels", "keep_mask", "mini_batch_pruning_frequency", "mask_on_forward_only", "mask_gradients",
    "use_double_copies", "discard_masks_at_minibatch_end", "skip_first_minibatch", "fold_batchnorm",
}  # fmt: skip
DISTILLER = {"ties": "distiller", "clear_momentum": False, "stats": "eval"}


@dataclass
class PrunerDefinition:
    """A ``pruners:`` entry: its YAML and the rule it makes (epochs and masking come from its
    policy), or None when it is broken; ``agp`` rules need a starting/ending_epoch range."""

    m: YamlMap
    rule: PruneRule | None
    agp: bool = False


def read_pruner(check: FieldChecker, m: YamlMap, field: str, name: str, cls: str) -> PrunerDefinition:
    """One definition of a class in MAPPED."""
    agp = cls == "AutomatedGradualPruner" or cls.endswith("_AGP")
    base = cls[: -len("_AGP")] if cls.endswith("_AGP") else cls
    if base in RANKED:
        rule = _ranked(check, m, field, name, base, agp)
    elif cls == "AutomatedGradualPruner":
        rule = _with_weights(check, m, field, name, "l1", "elements", _agp_level(check, m, field), {"initial_sparsity",
                             "final_sparsity"})  # fmt: skip
    elif cls == "StructureParameterPruner":
        rule = _structure(check, m, field, name)
    elif cls == "RandomLevelStructureParameterPruner":
        rule = _random_level(check, m, field, name)
    else:
        rule = _per_parameter(check, m, field, name, cls)
    return PrunerDefinition(m, rule, agp)


def _agp_level(check: FieldChecker, m: YamlMap, field: str) -> Level | None:
    initial = check.number(m, "initial_sparsity", field, None, minimum=0)
    final = check.number(m, "final_sparsity", field, None, minimum=0)
    for key in ("initial_sparsity", "final_sparsity"):
        if key not in m:
            check.error(m.line, f"{field}.{key}", "required key is missing")
    if initial is None or final is None:
        return None
    if not initial < final <= 1:
        check.error(m.line_of("final_sparsity"), f"{field}.final_sparsity", "AGP goes up: expected 0 <= "
                    f"initial_sparsity < final_sparsity <= 1, got {initial:g} and {final:g}")  # fmt: skip
        return None
    return Level("agp", float(final), initial=float(initial))


def _weights(check: FieldChecker, m: YamlMap, field: str) -> tuple[PruneTarget, ...] | None:
    weights, path = m.get("weights"), f"{field}.weights"
    if "weights" not in m:
        check.error(m.line, path, "required key is missing (the parameters to prune)")
        return None
    if isinstance(weights, str):
        weights = YamlList([weights])
        weights.line, weights.item_lines = m.line_of("weights"), [m.line_of("weights")]
    if not isinstance(weights, YamlList) or not weights or not all(isinstance(w, str) for w in weights):
        check.error(m.line_of("weights"), path, "expected a list of parameter names")
        return None
    return tuple(PruneTarget(w, None, weights.line_of(i), path) for i, w in enumerate(weights))


def _with_weights(check: FieldChecker, m: YamlMap, field: str, name: str, criterion: str, group: str | None,
                  level: Level | None, keys: set[str], **extra) -> PruneRule | None:  # fmt: skip
    check.keys(m, field, {"class", "weights", *keys})
    targets = _weights(check, m, field)
    if targets is None or level is None or group is None:
        return None
    return PruneRule(name, criterion, group, level, targets, line=m.line, **DISTILLER, **extra)


def _ranked(check: FieldChecker, m: YamlMap, field: str, name: str, base: str, agp: bool) -> PruneRule | None:
    criterion = RANKED[base]
    keys = {"group_type", "group_dependency", "kwargs"} | ({"initial_sparsity", "final_sparsity"} if agp else
                                                          {"desired_sparsity"})  # fmt: skip
    level = _agp_level(check, m, field) if agp else _fraction(check, m, field, "desired_sparsity", "sparsity")
    group = _group_type(check, m, field, criterion)
    dependency = check.string(m, "group_dependency", field, None, {"Leader"})
    extra = {"dependency": "leader" if dependency else None, "structures_keep_one": criterion in ("l1", "l2"),
             "rescale": criterion == "bernoulli", "signed_gradient": criterion == "gradient"}  # fmt: skip
    if criterion not in ("l1", "l2"):
        extra["ties"] = "exact"  # Distiller sorted these with argsort and cut exactly the count
    if criterion == "mean_activation":
        extra["highest_go"] = True  # Distiller's argsort(mean)[:-k] cut the k highest means
    rule = _with_weights(check, m, field, name, criterion, group, level, keys)
    return replace(rule, **extra) if rule is not None else None


def _fraction(check: FieldChecker, m: YamlMap, field: str, key: str, kind: str) -> Level | None:
    if key not in m:
        check.error(m.line, f"{field}.{key}", "required key is missing")
        return None
    value = check.number(m, key, field, None, minimum=0)
    if value is not None and value > 1:
        check.error(m.line_of(key), f"{field}.{key}", f"a fraction: expected 0..1, got {value:g}")
        return None
    return Level(kind, float(value)) if value is not None else None


def _group_type(check: FieldChecker, m: YamlMap, field: str, criterion: str) -> str | None:
    value = check.string(m, "group_type", field, None)
    line, path = m.line_of("group_type") if "group_type" in m else m.line, f"{field}.group_type"
    if value is None:
        if "group_type" not in m:
            check.error(line, path, "required key is missing (Filters, Channels, Rows or Blocks)")
        return None
    if value == "Blocks" and criterion in ("l1", "l2"):
        return _blocks(check, m, field)
    valid = ("3D", "Filters") if criterion in FILTERS_ONLY else (*GROUP_TYPES, "Blocks")
    if value not in valid:
        check.error(line, path, f"unknown group_type {value!r}{suggest(value, valid)}; valid here: {', '.join(valid)}")
        return None
    return GROUP_TYPES[value]


def _blocks(check: FieldChecker, m: YamlMap, field: str) -> str | None:
    """Distiller's block_shape [repetitions, depth, 1, 1]: ``repetitions`` consecutive filters (depth
    1) or ``depth`` consecutive input channels (repetitions 1) at each kernel position."""
    kwargs = m.get("kwargs")
    shape = kwargs.get("block_shape") if isinstance(kwargs, YamlMap) else None
    line = kwargs.line_of("block_shape") if isinstance(kwargs, YamlMap) and "block_shape" in kwargs else m.line
    ok = isinstance(shape, list) and len(shape) == 4 and all(isinstance(v, int) and v >= 1 for v in shape)
    if not ok:
        check.error(line, f"{field}.kwargs.block_shape", "group_type Blocks needs kwargs: {block_shape: [repetitions,"
                    " depth, 1, 1]} with positive integers")  # fmt: skip
        return None
    reps, depth, height, width = shape
    if height != 1 or width != 1 or (reps > 1 and depth > 1):
        check.error(line, f"{field}.kwargs.block_shape", f"{brief(shape)}: Distiller ran blocks of [R, 1, 1, 1] or "
                    "[1, D, 1, 1] only (its other shapes grouped consecutive channels across filters)")  # fmt: skip
        return None
    return f"blocks({reps}x{depth}x1x1)"


def _structure(check: FieldChecker, m: YamlMap, field: str, name: str) -> PruneRule | None:
    """StructureParameterPruner: ``reg_regims: {param: [threshold, group_type]}``, one group type."""
    check.keys(m, field, {"class", "reg_regims", "threshold_criteria"}, required=("reg_regims", "threshold_criteria"))
    statistic = {"Max": "max", "Mean_Abs": "mean_abs"}.get(check.string(m, "threshold_criteria", field, None,
                                                                        {"Max", "Mean_Abs"}))  # fmt: skip
    regims = m.get("reg_regims")
    if not isinstance(regims, YamlMap) or not regims:
        if "reg_regims" in m:
            check.error(m.line_of("reg_regims"), f"{field}.reg_regims", "expected param: [threshold, group_type]")
        return None
    targets, groups = [], set()
    for param, value in regims.items():
        path, line = f"{field}.reg_regims.{param}", regims.line_of(param)
        ok = isinstance(value, list) and len(value) == 2 and value[1] in STRUCTURE_GROUPS
        if not ok or not isinstance(value[0], (int, float)) or isinstance(value[0], bool) or value[0] < 0:
            valid = ", ".join(STRUCTURE_GROUPS)
            check.error(line, path, f"expected [threshold >= 0, group_type], group_type one of {valid}")
            continue
        groups.add(STRUCTURE_GROUPS[value[1]])
        targets.append(PruneTarget(str(param), float(value[0]), line, path))
    if len(groups) > 1:
        check.error(m.line_of("reg_regims"), f"{field}.reg_regims", "compress runs one group_type per "
                    "StructureParameterPruner: define one pruner per group type")  # fmt: skip
        return None
    if not targets or statistic is None:
        return None
    group = groups.pop()
    if statistic == "mean_abs" and group in ("rows", "cols"):
        statistic = "distiller_mean_abs"
    return PruneRule(name, "l1", group, Level("threshold", 0.0), tuple(targets), line=m.line,
                     threshold_statistic=statistic, **DISTILLER)  # fmt: skip


def _random_level(check: FieldChecker, m: YamlMap, field: str, name: str) -> PruneRule | None:
    """A level drawn uniformly from ``sparsity_range`` at each pruning step; L1 ranking."""
    raw = m.get("sparsity_range")
    ok = isinstance(raw, list) and len(raw) == 2 and all(isinstance(v, (int, float)) for v in raw) \
        and 0 <= raw[0] <= raw[1] <= 1  # fmt: skip
    if not ok:
        check.error(m.line_of("sparsity_range") if "sparsity_range" in m else m.line, f"{field}.sparsity_range",
                    "expected [low, high] with 0 <= low <= high <= 1")  # fmt: skip
    level = Level("uniform", float(raw[1]), initial=float(raw[0])) if ok else None
    group = _group_type(check, m, field, "l1")
    rule = _with_weights(check, m, field, name, "l1", group, level, {"sparsity_range", "group_type",
                         "group_dependency", "kwargs"})  # fmt: skip
    return replace(rule, structures_keep_one=True) if rule is not None else None


PER_PARAMETER = {  # class -> (its mapping of parameter -> value, level kind)
    "SparsityLevelParameterPruner": ("levels", "sparsity"),
    "MagnitudeParameterPruner": ("thresholds", "threshold"),
    "SensitivityPruner": ("sensitivities", "sensitivity"),
    "SplicingPruner": ("sensitivities", "splicing"),
}


def _per_parameter(check: FieldChecker, m: YamlMap, field: str, name: str, cls: str) -> PruneRule | None:
    """Pruners with a number per parameter name, and ``'*'`` for every other parameter of the model
    (biases and BatchNorm weights included, as in Distiller)."""
    key, kind = PER_PARAMETER[cls]
    splicing = {"low_thresh_mult", "hi_thresh_mult", "sensitivity_multiplier"} if kind == "splicing" else set()
    check.keys(m, field, {"class", key, *splicing}, required=(key, *sorted(splicing - {"sensitivity_multiplier"})))
    values = m.get(key)
    if not isinstance(values, YamlMap) or not values:
        if key in m:
            check.error(m.line_of(key), f"{field}.{key}", "expected a mapping of parameter name (or '*') -> number")
        return None
    if cls == "MagnitudeParameterPruner" and "*" not in values:
        check.error(m.line_of(key), f"{field}.{key}", "Distiller requires a '*' entry: the threshold of every other "
                    "parameter")  # fmt: skip
    targets = _valued_targets(check, values, f"{field}.{key}", kind)
    level = Level(kind, 0.0) if kind != "splicing" else _splicing(check, m, field)
    if not targets or level is None:
        return None
    return PruneRule(name, "l1", "elements", level, targets, line=m.line, **DISTILLER)


def _valued_targets(check: FieldChecker, values: YamlMap, path: str, kind: str) -> tuple[PruneTarget, ...]:
    targets = []
    for param in values:
        value = check.number(values, param, path, None, minimum=0)
        if value is None:
            continue
        if kind == "sparsity" and value > 1:
            check.error(values.line_of(param), f"{path}.{param}", f"a fraction: expected 0..1, got {value:g}")
            continue
        targets.append(PruneTarget(str(param), float(value), values.line_of(param), f"{path}.{param}",
                                   fallback=str(param) == "*"))  # fmt: skip
    return tuple(targets)


def _splicing(check: FieldChecker, m: YamlMap, field: str) -> Level | None:
    low = check.number(m, "low_thresh_mult", field, None, minimum=0)
    high = check.number(m, "hi_thresh_mult", field, None, minimum=0)
    growth = check.number(m, "sensitivity_multiplier", field, 0.0, minimum=0)
    if low is None or high is None:
        return None
    return Level("splicing", 0.0, low=float(low), high=float(high), growth=float(growth))


def read_policy_args(check: FieldChecker, policy: YamlMap, field: str, definition: PrunerDefinition,
                     epochs: Epochs) -> PruneRule | None:  # fmt: skip
    """The definition's rule in this policy: its epochs, and ``args`` as Distiller's ``PruningPolicy``
    read them."""
    rule = definition.rule
    ref = policy.get("pruner")
    args = ref.get("args") if isinstance(ref, YamlMap) else None
    path = f"{field}.pruner.args"
    if args is not None:
        args = check.mapping(args, ref.line_of("args"), path)
    args = args if args is not None else YamlMap()
    check.keys(args, path, POLICY_ARGS)
    masking = _masking(check, args, path, policy.line)
    if definition.agp and epochs.listed is not None:
        check.error(policy.line_of("epochs"), f"{field}.epochs", "an AGP pruner needs starting_epoch, ending_epoch "
                    "and frequency (Distiller's AGP cannot run on an epochs list)")  # fmt: skip
        return None
    if rule is None or masking is None:
        return None
    if rule.rescale and not masking.forward_only:
        check.error(policy.line_of("pruner"), f"{field}.pruner.args", "BernoulliFilterPruner scales the filters it "
                    "keeps by 1 / the kept fraction; applied after every step (no mask_on_forward_only) that scaling "
                    "compounds at each step, as it did in Distiller: add mask_on_forward_only: true and "
                    "use_double_copies: true, as Distiller's DropFilter schedules did")  # fmt: skip
        return None
    rule = replace(rule, epochs=epochs, masking=masking, line=policy.line)
    levels = args.get("levels")
    if levels is not None:
        rule = _policy_levels(check, args, path, rule)
    if check.boolean(args, "fold_batchnorm", path, False):
        rule = replace(rule, fold_batchnorm=True) if rule is not None else None
    return rule


def _masking(check: FieldChecker, args: YamlMap, path: str, line: int) -> Masking | None:
    flag = {key: check.boolean(args, key, path, False) for key in
            ("keep_mask", "mask_on_forward_only", "mask_gradients", "use_double_copies",
             "discard_masks_at_minibatch_end", "skip_first_minibatch")}  # fmt: skip
    every = check.number(args, "mini_batch_pruning_frequency", path, 0, integer=True, minimum=0)
    if flag["mask_gradients"] and not flag["mask_on_forward_only"]:
        check.error(args.line_of("mask_gradients"), f"{path}.mask_gradients", "needs mask_on_forward_only: true (in "
                    "Distiller the two are mutually exclusive otherwise)")  # fmt: skip
        return None
    if flag["skip_first_minibatch"]:
        check.error(args.line_of("skip_first_minibatch"), f"{path}.skip_first_minibatch",
                    "Distiller's skip_first_minibatch is not supported yet")  # fmt: skip
        return None
    forward_only = flag["mask_on_forward_only"]
    return Masking(forward_only=forward_only, dense_copy=flag["use_double_copies"] and forward_only,
                   gradients=flag["mask_gradients"], recompute_every=every,
                   discard_each_step=flag["discard_masks_at_minibatch_end"], keep_at_end=flag["keep_mask"])  # fmt: skip


def _policy_levels(check: FieldChecker, args: YamlMap, path: str, rule: PruneRule) -> PruneRule | None:
    """``args: {levels: {...}}`` replaced a SparsityLevelParameterPruner's levels for the policy."""
    if rule.level.kind != "sparsity" or rule.criterion != "l1" or rule.groups != "elements":
        check.error(args.line_of("levels"), f"{path}.levels", "levels apply to SparsityLevelParameterPruner only")
        return None
    levels = args["levels"]
    if not isinstance(levels, YamlMap) or not levels:
        check.error(args.line_of("levels"), f"{path}.levels", "expected a mapping of parameter name (or '*') -> level")
        return None
    targets = _valued_targets(check, levels, f"{path}.levels", "sparsity")
    return replace(rule, targets=targets) if targets else None
