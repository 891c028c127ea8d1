"""Distiller's schedule spelling, read unchanged. Sample::

    version: 1
    regularizers:
      filters_reg:
        class: GroupLassoRegularizer
        reg_regims:
          module.conv1.weight: [0.005, 3D]     # DataParallel's prefix is matched to plain names
          conv2.weight: [0.005, Filters]
        threshold_criteria: Mean_Abs          # optional; the threshold is each strength, as in Distiller
    lr_schedulers:
      training_lr: {class: StepLR, step_size: 10, gamma: 0.1}
    policies:
      - regularizer: {instance_name: filters_reg, args: {keep_mask: true}}
        starting_epoch: 0
        ending_epoch: 20        # exclusive
        frequency: 1
      - lr_scheduler: {instance_name: training_lr}
        epochs: [3, 6, 9]

Where Distiller stayed silent we are strict. Our extensions: ``mode: proximal`` on a regularizer,
``L2Regularizer``, and a top-level ``config``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from compress.errors import suggest
from compress.schedule.epochs import checked_range, read_listed
from compress.schedule.model import Epochs, LRSchedulerSpec, Rule, Target, Thinning
from compress.schedule.native import check_group_name
from compress.schedule.vocabulary import Vocabulary
from compress.yamlio import FieldChecker, YamlList, YamlMap

TOP_KEYS = {"version", "config", "regularizers", "lr_schedulers", "policies", "extensions"}
UNSUPPORTED = {"pruners", "quantizers"}
THINNERS = {"FilterRemover", "ChannelRemover"}  # ours removes both kinds at once, wherever it is exact
THINNER_KEYS = {"class", "thinning_func_str", "arch", "dataset"}  # the last three name Distiller's internals
CLASSES = {"L1Regularizer": "l1", "L2Regularizer": "l2", "GroupLassoRegularizer": "group_lasso"}
GROUPS = {
    "2D": ("kernels",),
    "3D": ("filters",),
    "4D": ("layer",),
    "Filters": ("filters",),
    "Channels": ("channels",),
    "Rows": ("rows",),
    "Cols": ("cols",),
    "Rows+Cols": ("rows", "cols"),
    "Channels+4D": ("channels", "layer"),
}
CRITERIA = {"Mean_Abs": "mean_abs", "Max": "max"}
POLICY_KINDS = ("regularizer", "lr_scheduler", "extension")
POLICY_KEYS = {
    *POLICY_KINDS,
    "pruner",
    "quantizer",
    "extension",
    "epochs",
    "starting_epoch",
    "ending_epoch",
    "frequency",
}


def read_distiller(check: FieldChecker, doc: YamlMap, vocab: Vocabulary) -> tuple[tuple[Rule, ...], tuple, Any]:
    for key in doc:
        if key in UNSUPPORTED:
            check.error(
                doc.line_of(key),
                str(key),
                f"Distiller's {key} are not supported yet; only regularizers, lr_schedulers and extensions are",
            )
    check.keys(doc, "", TOP_KEYS | UNSUPPORTED | {"rules"})  # rules: beside these is reported by the caller
    regularizers = _read_regularizers(check, doc, vocab)
    lr_defs = _named_section(check, doc, "lr_schedulers")
    thinners = _read_thinners(check, doc)
    rules, lrs, used, thinning = [], [], set(), None
    policies = doc.get("policies") or YamlList()
    if not isinstance(policies, YamlList):
        check.error(doc.line_of("policies"), "policies", "expected a list of policies")
        policies = YamlList()
    for i, raw in enumerate(policies):
        field = f"policies[{i}]"
        policy = check.mapping(raw, policies.line_of(i), field)
        if policy is None:
            continue
        kind, name = _policy_target(check, policy, field, regularizers, lr_defs, thinners)
        epochs = _policy_epochs(check, policy, field)
        keep_mask = _keep_mask(check, policy, field) if kind == "regularizer" else False
        if name is None:
            continue
        used.add(name)
        if kind == "regularizer":
            template = regularizers[name][1]
            if template is not None:
                rules.append(replace(template, epochs=epochs, keep_mask=keep_mask, line=policy.line))
        elif kind == "extension":
            if thinning is not None:
                check.error(policy.line, field, f"a second thinning policy (the first is at line {thinning.line}); "
                                                "list all its epochs in one policy")  # fmt: skip
            thinning = Thinning(epochs=epochs, line=policy.line)
        else:
            lrs.append(_lr_for(check, lr_defs[name], name, epochs))
    defined = {**{name: m for name, (m, _) in regularizers.items()}, **lr_defs, **thinners}
    for name, m in defined.items():
        if name not in used:
            check.warn(m.line, name, "defined but no policy uses it, so it never acts")
    return _unique_names(rules), tuple(lrs), thinning


def _read_thinners(check: FieldChecker, doc: YamlMap) -> dict[str, YamlMap]:
    """``extensions``: FilterRemover / ChannelRemover definitions (thinning)."""
    found = _named_section(check, doc, "extensions")
    for name, m in found.items():
        check.keys(m, f"extensions.{name}", THINNER_KEYS, required=("class",))
        check.string(m, "class", f"extensions.{name}", None, THINNERS)
    return found


def _named_section(check: FieldChecker, doc: YamlMap, key: str) -> dict[str, YamlMap]:
    section = doc.get(key)
    if section is None:
        return {}
    if not isinstance(section, YamlMap):
        check.error(doc.line_of(key), key, "expected a mapping of instance name -> definition")
        return {}
    found = {}
    for name, value in section.items():
        m = check.mapping(value, section.line_of(name), f"{key}.{name}")
        if m is not None:
            found[str(name)] = m
    return found


def _read_regularizers(check: FieldChecker, doc: YamlMap, vocab: Vocabulary) -> dict[str, tuple[YamlMap, Rule | None]]:
    """name -> (its YAML, a Rule without timing, or None when the definition is broken)."""
    found = {}
    for name, m in _named_section(check, doc, "regularizers").items():
        field = f"regularizers.{name}"
        check.keys(m, field, {"class", "reg_regims", "threshold_criteria", "mode"}, required=("class", "reg_regims"))
        cls = check.string(m, "class", field, None, set(CLASSES))
        criterion = check.string(m, "threshold_criteria", field, None, set(CRITERIA))
        mode = check.string(m, "mode", field, "penalty", {"penalty", "proximal"})
        targets = _read_regims(check, m, field, vocab, CLASSES.get(cls), criterion is not None)
        rule = None
        if cls is not None and targets:
            rule = Rule(name, CLASSES[cls], targets, mode=mode, threshold_criterion=CRITERIA.get(criterion, "norm"))
        found[name] = (m, rule)
    return found


def _read_regims(
    check: FieldChecker, m: YamlMap, field: str, vocab: Vocabulary, penalty: str | None, thresholded: bool
) -> tuple[Target, ...]:
    regims, field = m.get("reg_regims"), f"{field}.reg_regims"
    if not isinstance(regims, YamlMap) or not regims:
        if "reg_regims" in m:
            check.error(
                m.line_of("reg_regims"), field, "expected a mapping of parameter name -> strength or [strength, group]"
            )
        return ()
    targets = []
    for param, value in regims.items():
        line, path = regims.line_of(param), f"{field}.{param}"
        strength, groups = _read_regim(check, line, field, param, value, penalty, vocab)
        if strength is not None:
            threshold = strength if thresholded else None
            targets.append(Target(str(param), strength, groups, threshold, line, path))
    return tuple(targets)


def _read_regim(check: FieldChecker, line: int, field: str, param, value, penalty: str | None, vocab: Vocabulary):
    path = f"{field}.{param}"
    grouped = penalty == "group_lasso"
    if grouped:
        if not (isinstance(value, YamlList) and len(value) == 2 and isinstance(value[1], str)):
            check.error(line, path, f"GroupLassoRegularizer needs [strength, group], group one of {', '.join(GROUPS)}")
            return None, ()
        value, group = value
        if group not in GROUPS:
            check.error(line, path, f"unknown group {group!r}{suggest(group, GROUPS)}; valid: {', '.join(GROUPS)}")
            return None, ()
        groups = tuple(check_group_name(check, line, path, g, penalty, vocab) for g in GROUPS[group])
        if None in groups:
            return None, ()
    else:
        groups = ("elements",)
    holder = YamlMap({param: value})  # so the strength is checked under the parameter's own field
    holder.line, holder.key_lines = line, {param: line}
    strength = check.number(holder, param, field, None, minimum=0)
    return (float(strength) if strength is not None else None), groups


def _policy_target(check: FieldChecker, policy: YamlMap, field: str, regularizers: dict, lr_defs: dict, thinners: dict):
    check.keys(policy, field, POLICY_KEYS)
    for kind in ("pruner", "quantizer"):
        if kind in policy:
            check.error(policy.line_of(kind), f"{field}.{kind}", f"{kind} policies are not supported yet")
    kinds = [k for k in POLICY_KINDS if k in policy]
    if len(kinds) != 1:
        if not any(k in policy for k in ("pruner", "quantizer")):
            check.error(policy.line, field, f"a policy needs exactly one of: {', '.join(POLICY_KINDS)}")
        return None, None
    kind = kinds[0]
    ref = check.mapping(policy[kind], policy.line_of(kind), f"{field}.{kind}")
    if ref is None:
        return kind, None
    check.keys(ref, f"{field}.{kind}", {"instance_name", "args"}, required=("instance_name",))
    name = check.string(ref, "instance_name", f"{field}.{kind}")
    section = {"regularizer": "regularizers", "lr_scheduler": "lr_schedulers", "extension": "extensions"}[kind]
    defined = {"regularizer": regularizers, "lr_scheduler": lr_defs, "extension": thinners}[kind]
    if name is not None and name not in defined:
        check.error(
            ref.line_of("instance_name"),
            f"{field}.{kind}.instance_name",
            f"no {section} entry named {name!r}{suggest(name, defined)}",
        )
        return kind, None
    return kind, name


def _policy_epochs(check: FieldChecker, policy: YamlMap, field: str) -> Epochs:
    if "epochs" in policy:
        if "frequency" in policy:
            check.error(policy.line_of("frequency"), f"{field}.frequency",
                        "frequency applies to starting_epoch/ending_epoch ranges, not to an epochs list")  # fmt: skip
        if "starting_epoch" in policy or "ending_epoch" in policy:
            check.error(
                policy.line_of("epochs"),
                f"{field}.epochs",
                "give either epochs or starting_epoch/ending_epoch, not both",
            )
        return read_listed(check, policy, field)
    if "starting_epoch" not in policy or "ending_epoch" not in policy:
        check.error(policy.line, field, "needs epochs: [...] or starting_epoch and ending_epoch (exclusive)")
        return Epochs()
    start = check.number(policy, "starting_epoch", field, None, integer=True, minimum=0)
    end = check.number(policy, "ending_epoch", field, None, integer=True, minimum=0)
    frequency = check.number(policy, "frequency", field, 1, integer=True, minimum=1)
    if start is None or end is None:
        return Epochs()
    return checked_range(check, policy.line_of("ending_epoch"), f"{field}.ending_epoch", start, end, frequency)


def _keep_mask(check: FieldChecker, policy: YamlMap, field: str) -> bool:
    ref = policy.get("regularizer")
    args = ref.get("args") if isinstance(ref, YamlMap) else None
    if args is None:
        return False
    args_map = check.mapping(args, ref.line_of("args"), f"{field}.regularizer.args")
    if args_map is None:
        return False
    check.keys(args_map, f"{field}.regularizer.args", {"keep_mask"})
    return check.boolean(args_map, "keep_mask", f"{field}.regularizer.args", False)


def _lr_for(check: FieldChecker, m: YamlMap, name: str, epochs: Epochs) -> LRSchedulerSpec:
    cls = check.string(m, "class", f"lr_schedulers.{name}")
    if "class" not in m:
        check.error(m.line, f"lr_schedulers.{name}.class", "required key is missing (a torch.optim.lr_scheduler class)")
    args = tuple((str(k), v) for k, v in m.items() if k != "class")
    return LRSchedulerSpec(cls or "", args, epochs, m.line)


def _unique_names(rules: list[Rule]) -> tuple[Rule, ...]:
    """One regularizer used by two policies becomes two rules: name, name#2."""
    seen: dict[str, int] = {}
    out = []
    for rule in rules:
        seen[rule.name] = seen.get(rule.name, 0) + 1
        out.append(rule if seen[rule.name] == 1 else replace(rule, name=f"{rule.name}#{seen[rule.name]}"))
    return tuple(out)
