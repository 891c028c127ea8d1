"""Distiller's schedule spelling, read unchanged, and run as Distiller ran it. Sample::

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
    extensions:
      net_thinner: {class: StructureRemover, thinning_func_str: remove_filters, arch: resnet20_cifar, dataset: cifar10}
    policies:
      - regularizer: {instance_name: filters_reg, args: {keep_mask: true}}
        starting_epoch: 0
        ending_epoch: 20        # exclusive
        frequency: 1
      - lr_scheduler: {instance_name: training_lr}
        epochs: [3, 6, 9]
      - extension: {instance_name: net_thinner}
        epochs: [20]

Distiller's numerics are the default for these files (see ``Rule``): penalty mode, thresholds
that keep a group only when its statistic is above the strength and never touch the optimizer's
momentum, keep_mask on Distiller's clock, its channel-norm epsilon, learning rates on its absolute
clock (``compress.lr``), thinning at the first mini-batch of an epoch. Where Distiller stayed silent
we are strict. Our extensions: ``mode: proximal`` and ``clear_momentum`` on a regularizer,
``L2Regularizer``, and a top-level ``config``.
"""

from __future__ import annotations

from dataclasses import replace

from compress.errors import suggest
from compress.schedule import distiller_classes as DC
from compress.schedule import distiller_pruners as DP
from compress.schedule.distiller_pruners import PrunerDefinition, read_policy_args
from compress.schedule.epochs import checked_range, read_listed
from compress.schedule.model import Epochs, LRSchedulerSpec, PruneRule, PruneTarget, Reading, Rule, Target, Thinning
from compress.schedule.native import check_group_name, check_traits
from compress.schedule.vocabulary import Vocabulary
from compress.yamlio import FieldChecker, YamlList, YamlMap

TOP_KEYS = {"version", "config", "regularizers", "lr_schedulers", "policies", "extensions", "pruners", "quantizers"}
THINNER_KEYS = {"class", "thinning_func_str", "arch", "dataset"}  # arch, dataset name Distiller's internals
REGULARIZER_KEYS = {"class", "reg_regims", "threshold_criteria", "mode", "clear_momentum"}
GROUPS = {
    "2D": ("kernels",),
    "3D": ("filters",),
    "4D": ("layer",),
    "Filters": ("filters",),
    "Channels": ("channels",),
    "Rows": ("rows",),
    "Cols": ("cols",),
    "Rows+Cols": ("rows", "cols"),
    "Cols+Rows": ("rows", "cols"),
    "Channels+4D": ("channels", "layer"),
    "4D+Channels": ("channels", "layer"),
}
# threshold_criteria each regularizer accepts in Distiller -> the statistic compared with the strength.
# GroupLassoRegularizer asserts Max or Mean_Abs; L1Regularizer thresholds single weights, where every
# criterion Distiller knows is |w|.
GROUP_CRITERIA = {"Mean_Abs": "mean_abs", "Max": "max"}
ELEMENT_CRITERIA = {name: "max" for name in ("Mean_Abs", "Mean_L1", "L1", "Mean_L2", "L2", "Max")}
CHANNEL_EPSILON = 1e-8  # Distiller's EPSILON under the square root of each channel norm
POLICY_KINDS = ("regularizer", "lr_scheduler", "extension", "pruner", "quantizer")
POLICY_KEYS = {*POLICY_KINDS, "epochs", "starting_epoch", "ending_epoch", "frequency"}
SECTIONS = {"regularizer": "regularizers", "lr_scheduler": "lr_schedulers", "extension": "extensions",
            "pruner": "pruners", "quantizer": "quantizers"}  # fmt: skip


def read_distiller(check: FieldChecker, doc: YamlMap, vocab: Vocabulary) -> Reading:
    check.keys(doc, "", TOP_KEYS | {"rules"})  # rules: beside these is reported by the caller
    regularizers, orphans = _read_regularizers(check, doc, vocab)
    defined = {
        "regularizer": regularizers,
        "lr_scheduler": _read_lr_schedulers(check, doc),
        "extension": _read_thinners(check, doc),
        "pruner": _read_pruners(check, doc),
        "quantizer": _read_unsupported(check, doc, "quantizers"),
    }
    rules, pruning, lrs, thinning, used = [], [], [], [], set()
    policies = doc.get("policies") or YamlList()
    if not isinstance(policies, YamlList):
        check.error(doc.line_of("policies"), "policies", "expected a list of policies")
        policies = YamlList()
    for i, raw in enumerate(policies):
        field = f"policies[{i}]"
        policy = check.mapping(raw, policies.line_of(i), field)
        if policy is None:
            continue
        kind, name = _policy_target(check, policy, field, defined)
        epochs = _policy_epochs(check, policy, field)
        keep_mask = _keep_mask(check, policy, field) if kind == "regularizer" else False
        if name is None:
            continue
        used.add((kind, name))
        item = defined[kind][name]
        if kind == "regularizer" and item.rule is not None:
            rules.append(_timed(check, item.rule, policy, field, epochs, keep_mask))
        elif kind == "pruner" and item is not None:
            rule = read_policy_args(check, policy, field, item, epochs)
            pruning += [rule] if rule is not None else []
        elif kind == "extension" and item is not None:
            thinning.append(replace(item, epochs=epochs, line=policy.line))
        elif kind == "lr_scheduler":
            lrs.append(replace(item, epochs=epochs))
    _warn_unused(check, doc, defined, used)
    named = _unique_names([*rules, *pruning])
    return Reading(named[: len(rules)], tuple(lrs), tuple(thinning), (*orphans, *_pruner_orphans(defined)),
                   named[len(rules):])  # fmt: skip


class _Regularizer:
    """A definition: its YAML, and the rule it makes (without timing) or None when it is broken."""

    def __init__(self, m: YamlMap, rule: Rule | None):
        self.m, self.rule = m, rule


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


def _class_of(check: FieldChecker, m: YamlMap, field: str, supported, section: str) -> str | None:
    """The class of a definition when compress runs it; else None after one error that says what it is:
    a class of Distiller's that compress does not run yet, or an unknown name (with a suggestion)."""
    if "class" not in m:
        check.error(m.line, f"{field}.class", "required key is missing")
        return None
    cls = check.string(m, "class", field)
    if cls is None or cls in supported:
        return cls
    homes = DC.homes(cls)
    where = m.line_of("class"), f"{field}.class"
    if homes and section not in homes:
        check.error(*where, f"{cls} is one of Distiller's {' / '.join(homes)}; define it under {homes[0]}:")
    elif DC.distillers(cls):
        check.error(*where, DC.not_supported(cls))
    else:
        choices = supported or DC.SECTIONS.get(section, ())
        check.error(*where, f"unknown class {cls!r}{suggest(cls, choices)}; valid: {', '.join(sorted(choices))}")
    return None


def _read_unsupported(check: FieldChecker, doc: YamlMap, section: str) -> dict:
    """``pruners`` / ``quantizers``: each definition is one error naming its class; its arguments are
    not checked (no follow-on errors), and policies that use it add nothing."""
    found = {}
    for name, m in _named_section(check, doc, section).items():
        _class_of(check, m, f"{section}.{name}", (), section)
        found[name] = None
    return found


def _read_pruners(check: FieldChecker, doc: YamlMap) -> dict[str, PrunerDefinition | None]:
    """``pruners``: each definition read into a rule without timing (its policy gives the epochs)."""
    found = {}
    for name, m in _named_section(check, doc, "pruners").items():
        field = f"pruners.{name}"
        cls = _class_of(check, m, field, DP.MAPPED, "pruners")
        found[name] = DP.read_pruner(check, m, field, name, cls) if cls is not None else None
    return found


def _pruner_orphans(defined: dict[str, dict]) -> list:
    """The parameter names of broken pruner definitions: still checked against the model."""
    out = []
    for item in defined["pruner"].values():
        if item is not None and item.rule is None and isinstance(item.m.get("weights"), list):
            weights = item.m["weights"]
            out += [PruneTarget(str(w), None, weights.line_of(i), "weights") for i, w in enumerate(weights)
                    if isinstance(w, str)]  # fmt: skip
    return out


def _read_thinners(check: FieldChecker, doc: YamlMap) -> dict[str, Thinning | None]:
    """``extensions``: StructureRemover and its aliases (thinning), each a step without epochs yet."""
    found = {}
    for name, m in _named_section(check, doc, "extensions").items():
        field = f"extensions.{name}"
        found[name] = None
        cls = _class_of(check, m, field, DC.THINNERS, "extensions")
        if cls is None:
            continue
        check.keys(m, field, THINNER_KEYS, required=("thinning_func_str",))
        func = check.string(m, "thinning_func_str", field, None, set(DC.THINNING_FUNCS))
        if func is not None:
            found[name] = Thinning(timing=DC.THINNERS[cls], structures=DC.THINNING_FUNCS[func], name=field)
    return found


def _read_lr_schedulers(check: FieldChecker, doc: YamlMap) -> dict[str, LRSchedulerSpec]:
    found = {}
    for name, m in _named_section(check, doc, "lr_schedulers").items():
        cls = check.string(m, "class", f"lr_schedulers.{name}")
        if "class" not in m:
            check.error(m.line, f"lr_schedulers.{name}.class", "required key is missing (an lr scheduler class)")
        args = tuple((str(k), v) for k, v in m.items() if k != "class")
        found[name] = LRSchedulerSpec(cls or "", args, Epochs(), m.line, clock="absolute")
    return found


def _read_regularizers(check: FieldChecker, doc: YamlMap, vocab: Vocabulary):
    """name -> _Regularizer; and the targets of broken definitions (their names are still checked)."""
    found, orphans = {}, []
    for name, m in _named_section(check, doc, "regularizers").items():
        field = f"regularizers.{name}"
        cls = _class_of(check, m, field, DC.REGULARIZERS, "regularizers")
        if cls is None:
            found[name] = _Regularizer(m, None)
            if not DC.distillers(m.get("class")):  # a typo: its parameter names are still checked
                orphans.extend(_regim_names(m, field))
            continue
        check.keys(m, field, REGULARIZER_KEYS, required=("reg_regims",))
        penalty = DC.REGULARIZERS[cls]
        criterion = _criterion(check, m, field, cls, penalty)
        mode = check.string(m, "mode", field, "penalty", {"penalty", "proximal"})
        targets = _read_regims(check, m, field, vocab, cls, penalty, criterion is not None)
        groups = tuple(g for t in targets for g in t.groups)
        if criterion == "mean_abs" and {"rows", "cols"} & set(groups):
            criterion = "distiller_mean_abs"  # its rows and columns divide by the other dimension's length
        fits = check_traits(check, m, field, penalty, mode, groups, vocab)
        rule = None
        if targets and fits:
            eps = CHANNEL_EPSILON if mode == "penalty" and "channels" in groups else 0.0
            rule = Rule(name, penalty, targets, mode=mode, threshold_criterion=criterion or "norm",
                        clear_momentum=check.boolean(m, "clear_momentum", field, mode == "proximal"),
                        channel_epsilon=eps)  # fmt: skip
        else:
            orphans.extend(targets)
        found[name] = _Regularizer(m, rule)
    return found, orphans


def _regim_names(m: YamlMap, field: str) -> list[Target]:
    regims = m.get("reg_regims")
    if not isinstance(regims, YamlMap):
        return []
    return [Target(str(k), 0.0, (), None, regims.line_of(k), f"{field}.reg_regims.{k}") for k in regims]


def _criterion(check: FieldChecker, m: YamlMap, field: str, cls: str, penalty: str) -> str | None:
    if "threshold_criteria" not in m or m["threshold_criteria"] is None:
        return None
    if penalty == "group_variance":
        check.error(m.line_of("threshold_criteria"), f"{field}.threshold_criteria",
                    f"{cls} takes no threshold_criteria (nor did Distiller's)")  # fmt: skip
        return None
    valid = GROUP_CRITERIA if penalty == "group_lasso" else ELEMENT_CRITERIA
    value = check.string(m, "threshold_criteria", field, None, set(valid))
    return valid.get(value)


def _read_regims(check: FieldChecker, m: YamlMap, field: str, vocab: Vocabulary, cls: str, penalty: str,
                 thresholded: bool) -> tuple[Target, ...]:  # fmt: skip
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
        strength, groups = _read_regim(check, line, field, param, value, cls, penalty, vocab)
        if strength is not None:
            threshold = strength if thresholded else None
            targets.append(Target(str(param), strength, groups, threshold, line, path))
    return tuple(targets)


def _read_regim(check: FieldChecker, line: int, field: str, param, value, cls: str, penalty: str,
                vocab: Vocabulary):  # fmt: skip
    path = f"{field}.{param}"
    if penalty in ("group_lasso", "group_variance"):
        if not (isinstance(value, YamlList) and len(value) == 2 and isinstance(value[1], str)):
            check.error(line, path, f"{cls} needs [strength, group], group one of {', '.join(GROUPS)}")
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


def _policy_target(check: FieldChecker, policy: YamlMap, field: str, defined: dict[str, dict]):
    """(kind, instance name) of a policy; the name is None when it names nothing compress runs."""
    check.keys(policy, field, POLICY_KEYS)
    kinds = [k for k in POLICY_KINDS if k in policy]
    if len(kinds) != 1:
        check.error(policy.line, field, f"a policy needs exactly one of: {', '.join(POLICY_KINDS)}")
        return None, None
    kind = kinds[0]
    ref = check.mapping(policy[kind], policy.line_of(kind), f"{field}.{kind}")
    if ref is None:
        return kind, None
    check.keys(ref, f"{field}.{kind}", {"instance_name", "args"}, required=("instance_name",))
    name = check.string(ref, "instance_name", f"{field}.{kind}")
    if name is not None and name not in defined[kind]:
        check.error(ref.line_of("instance_name"), f"{field}.{kind}.instance_name",
                    f"no {SECTIONS[kind]} entry named {name!r}{suggest(name, defined[kind])}")  # fmt: skip
        return kind, None
    if kind == "quantizer":
        return kind, None  # its definition was reported; nothing of it runs
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


def _timed(check: FieldChecker, template: Rule, policy: YamlMap, field: str, epochs: Epochs, keep_mask: bool) -> Rule:
    """The regularizer's rule in this policy's epochs, keep_mask on Distiller's clock: its
    ``RegularizationPolicy`` keeps the threshold's mask in the last mini-batch of epoch
    ``ending_epoch - 1`` (the last listed epoch, as written, for a list), if the policy runs then."""
    at = None
    if keep_mask:
        last = _ending(policy, epochs) - 1
        thresholded = any(t.threshold is not None for t in template.targets) or template.mode == "proximal"
        where = f"{field}.regularizer.args.keep_mask"
        if not thresholded:
            message = ("keep_mask has no effect without threshold_criteria (Distiller keeps the threshold's mask); "
                       "add threshold_criteria, or mode: proximal")  # fmt: skip
            check.warn(policy.line, where, message)
        elif not epochs.active(last):
            check.warn(policy.line, where, f"keep_mask never fires: Distiller keeps the mask in epoch {last} "
                       f"(ending_epoch - 1), which this policy skips ({epochs.describe()}); nothing is kept, "
                       "as in Distiller")  # fmt: skip
        else:
            at = last
    return replace(template, epochs=epochs, keep_mask=keep_mask, keep_mask_at=at, line=policy.line)


def _ending(policy: YamlMap, epochs: Epochs) -> int:
    """Distiller's ``ending_epoch`` of a policy: as given, or the last listed epoch (as written) + 1."""
    if epochs.listed is not None:
        written = policy.get("epochs")
        return (written[-1] if isinstance(written, list) and written else max(epochs.listed)) + 1
    return epochs.end if epochs.end is not None else 0


def _warn_unused(check: FieldChecker, doc: YamlMap, defined: dict[str, dict], used: set) -> None:
    for kind in ("regularizer", "lr_scheduler", "extension", "pruner"):
        section = doc.get(SECTIONS[kind])
        if not isinstance(section, YamlMap):
            continue
        for key, m in section.items():
            if (kind, str(key)) not in used and str(key) in defined[kind] and isinstance(m, YamlMap):
                check.warn(m.line, str(key), "defined but no policy uses it, so it never acts")


def _unique_names(rules: list[Rule | PruneRule]) -> tuple[Rule | PruneRule, ...]:
    """One regularizer (or pruner) used by two policies becomes two rules: name, name#2."""
    seen: dict[str, int] = {}
    out = []
    for rule in rules:
        seen[rule.name] = seen.get(rule.name, 0) + 1
        out.append(rule if seen[rule.name] == 1 else replace(rule, name=f"{rule.name}#{seen[rule.name]}"))
    return tuple(out)
