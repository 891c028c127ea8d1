"""Our own schedule spelling (``rules:``). Sample::

    version: 1
    config: ../configs/lenet5-mnist5k.yaml
    rules:
      - name: conv-filters
        penalty: group_lasso
        groups: filters
        strength: 0.005
        layers: ["conv*.weight"]
        epochs: [0, 20]
        mode: proximal
        keep_mask: true
    lr_scheduler: {class: StepLR, step_size: 10, gamma: 0.1}
"""

from __future__ import annotations

from compress.schedule.epochs import read_range
from compress.schedule.model import (
    CRITERIA,
    MODES,
    Epochs,
    LRSchedulerSpec,
    PruneRule,
    Reading,
    Rule,
    Target,
    Thinning,
)
from compress.schedule.native_pruning import read_prune_rule
from compress.schedule.vocabulary import Vocabulary
from compress.yamlio import FieldChecker, YamlList, YamlMap

TOP_KEYS = {"version", "config", "rules", "lr_scheduler", "thin"}
RULE_KEYS = {
    "name",
    "penalty",
    "groups",
    "strength",
    "layers",
    "epochs",
    "frequency",
    "mode",
    "threshold",
    "threshold_criterion",
    "keep_mask",
    "clear_momentum",
}


def read_native(check: FieldChecker, doc: YamlMap, vocab: Vocabulary) -> Reading:
    check.keys(doc, "", TOP_KEYS)
    rules, orphans = [], []
    raw_rules = doc.get("rules") or YamlList()
    if not isinstance(raw_rules, YamlList):
        check.error(doc.line_of("rules"), "rules", "expected a list of rules")
        raw_rules = YamlList()
    names: dict[str, int] = {}
    for i, raw in enumerate(raw_rules):
        field = f"rules[{i}]"
        m = check.mapping(raw, raw_rules.line_of(i), field)
        if m is None:
            continue
        if "prune" in m and "penalty" in m:
            check.error(m.line_of("prune"), f"{field}.prune", "a rule either regularizes (penalty:) or prunes "
                        "(prune:), not both: write two rules")  # fmt: skip
            continue
        reader = read_prune_rule if "prune" in m else _read_rule
        rule, targets = reader(check, m, field, vocab)
        if rule is None:
            orphans.extend(targets)
            continue
        if rule.name in names:
            check.error(
                m.line_of("name"),
                f"{field}.name",
                f"duplicate rule name {rule.name!r} (first at line {names[rule.name]})",
            )
        names[rule.name] = m.line_of("name")
        rules.append(rule)
    lr = read_lr_schedulers(check, doc, "lr_scheduler")
    penalties = tuple(r for r in rules if isinstance(r, Rule))
    pruning = tuple(r for r in rules if isinstance(r, PruneRule))
    return Reading(penalties, lr, _read_thin(check, doc), tuple(orphans), pruning)


def _read_thin(check: FieldChecker, doc: YamlMap) -> tuple[Thinning, ...]:
    """``thin: true`` (after the last epoch), ``thin: 12`` or ``thin: [8, 12]`` (after those epochs)."""
    if "thin" not in doc or doc["thin"] is None or doc["thin"] is False:
        return ()
    value, line = doc["thin"], doc.line_of("thin")
    if value is True:
        return (Thinning(at_end=True, line=line),)
    epochs = [value] if isinstance(value, int) else value
    if not isinstance(epochs, list) or not epochs or not all(type(e) is int and e >= 0 for e in epochs):
        check.error(line, "thin", "expected true (after the last epoch), an epoch, or a list of epochs (0-based)")
        return ()
    return (Thinning(epochs=Epochs(listed=tuple(sorted(set(epochs)))), line=line),)


def _read_rule(check: FieldChecker, m: YamlMap, field: str, vocab: Vocabulary) -> tuple[Rule | None, tuple]:
    """The rule, or None after its errors; and its targets either way (their names are checked)."""
    name = check.string(m, "name", field, f"rule{field[5:]}")
    field = f"rules[{name}]" if "name" in m else field
    check.keys(m, field, RULE_KEYS, required=("name", "penalty", "layers"))
    penalty = check.string(m, "penalty", field, None, set(vocab.penalties) or None)
    groups = _read_groups(check, m, field, penalty, vocab)
    threshold = check.number(m, "threshold", field, None, minimum=0)
    if "threshold_criterion" in m and "threshold" not in m:
        check.warn(m.line_of("threshold_criterion"), f"{field}.threshold_criterion", "has no effect without threshold")
    targets = _read_targets(check, m, field, groups, threshold)
    epochs = read_range(check, m, field)
    keep_mask = check.boolean(m, "keep_mask", field, False)
    mode = check.string(m, "mode", field, "proximal", set(MODES))
    fits = check_traits(check, m, field, penalty, mode, groups, vocab)
    rule = Rule(
        name=name,
        penalty=penalty or "",
        targets=targets or (),
        epochs=epochs,
        mode=mode,
        threshold_criterion=check.string(m, "threshold_criterion", field, "norm", set(CRITERIA)),
        keep_mask=keep_mask,
        line=m.line,
        keep_mask_at=epochs.last_active() if keep_mask else None,
        clear_momentum=check.boolean(m, "clear_momentum", field, True),
    )
    ok = penalty and targets and None not in groups and fits
    return (rule, targets or ()) if ok else (None, targets or ())


def check_traits(check: FieldChecker, m: YamlMap, field: str, penalty: str | None, mode: str, groups: tuple,
                 vocab: Vocabulary) -> bool:  # fmt: skip
    """A penalty without a proximal operator in proximal mode, or on groups it is not defined for."""
    if penalty not in vocab.traits:
        return True
    has_proximal, only = vocab.traits[penalty]
    ok = True
    if mode == "proximal" and not has_proximal:
        check.error(m.line_of("mode") if "mode" in m else m.line, f"{field}.mode",
                    f"{penalty} has no proximal operator; add mode: penalty")  # fmt: skip
        ok = False
    bad = [g for g in groups if g is not None and only is not None and g not in only]
    if bad:
        check.error(m.line_of("groups") if "groups" in m else m.line, f"{field}.groups",
                    f"{penalty} is defined for groups {', '.join(only)} only, got {', '.join(bad)}")  # fmt: skip
        ok = False
    return ok


def _read_groups(check: FieldChecker, m: YamlMap, field: str, penalty: str | None, vocab: Vocabulary) -> tuple:
    grouped = vocab.penalties.get(penalty, True) if penalty else True
    raw = m.get("groups")
    if raw is None:
        if grouped and penalty is not None and vocab.penalties:
            valid = sorted(set(vocab.groups.values()) - {"elements"})
            check.error(m.line, f"{field}.groups", f"{penalty} needs groups; valid: {', '.join(valid)}")
        return ("elements",)
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        check.error(m.line_of("groups"), f"{field}.groups", "expected a group name or a list of group names")
        return ("elements",)
    line = m.line_of("groups")
    canonical = [check_group_name(check, line, f"{field}.groups", n, penalty, vocab) for n in names]
    for i, name in enumerate(canonical):
        if name in canonical[:i]:
            check.error(line, f"{field}.groups", f"{names[i]!r} names group {name!r} a second time; list a group once")
    return tuple(dict.fromkeys(canonical))  # may hold None: the rule is then left out


def check_group_name(
    check: FieldChecker, line: int, field: str, name: str, penalty: str | None, vocab: Vocabulary
) -> str | None:
    """Canonical group name, or None after an error listing the valid ones (shared with the Distiller
    reader); a rule with a None group is left out, so that binding never sees an unknown group."""
    from compress.errors import suggest

    canonical = vocab.canonical_group(name)
    if canonical is None:
        valid = sorted(set(vocab.groups))
        problem = vocab.group_problem(name)  # a parametrized family's malformed parameters
        check.error(line, field, problem or f"unknown group {name!r}{suggest(name, valid)}; valid: {', '.join(valid)}")
        return None
    grouped = vocab.penalties.get(penalty, True) if penalty else True
    if not grouped and canonical != "elements":
        check.error(line, field, f"{penalty} acts on single weights; use penalty: group_lasso for groups {name!r}")
        return None
    if grouped and canonical == "elements" and vocab.penalties:
        check.error(line, field, "group lasso over elements is plain L1; use penalty: l1")
        return None
    return canonical


def _read_targets(check: FieldChecker, m: YamlMap, field: str, groups: tuple, threshold: float | None):
    layers, line = m.get("layers"), m.line_of("layers")
    strength = check.number(m, "strength", field, None, minimum=0)
    if isinstance(layers, YamlMap):
        if "strength" in m:
            check.error(
                m.line_of("strength"),
                f"{field}.strength",
                "give either strength or per-layer strengths in layers, not both",
            )
        targets = []
        for pattern in layers:
            s = check.number(layers, pattern, f"{field}.layers", None, minimum=0)
            if s is not None:
                line = layers.line_of(pattern)
                targets.append(Target(str(pattern), float(s), groups, threshold, line, f"{field}.layers.{pattern}"))
        return tuple(targets) if targets else None
    if isinstance(layers, str):
        layers = YamlList([layers])
        layers.line, layers.item_lines = line, [line]
    if not isinstance(layers, YamlList) or not layers or not all(isinstance(p, str) for p in layers):
        if layers is not None:
            check.error(
                line, f"{field}.layers", "expected a list of parameter names or globs, or a mapping name -> strength"
            )
        return None
    if strength is None:
        if "strength" not in m:
            check.error(m.line, f"{field}.strength", "required key is missing (or give per-layer strengths in layers)")
        return None
    path = f"{field}.layers"
    return tuple(Target(p, float(strength), groups, threshold, layers.line_of(i), path) for i, p in enumerate(layers))


def read_lr_schedulers(check: FieldChecker, doc: YamlMap, key: str) -> tuple[LRSchedulerSpec, ...]:
    raw = doc.get(key)
    if raw is None:
        return ()
    items = raw if isinstance(raw, YamlList) else YamlList([raw])
    if not isinstance(raw, YamlList):
        items.line, items.item_lines = doc.line_of(key), [doc.line_of(key)]
    specs = []
    for i, item in enumerate(items):
        field = key if len(items) == 1 else f"{key}[{i}]"
        m = check.mapping(item, items.line_of(i), field)
        if m is None:
            continue
        cls = check.string(m, "class", field)
        if cls is None:
            if "class" not in m:
                check.error(
                    m.line, f"{field}.class", "required key is missing (a torch.optim.lr_scheduler class, e.g. StepLR)"
                )
            continue
        args = tuple((str(k), v) for k, v in m.items() if k not in ("class", "epochs", "frequency"))
        specs.append(LRSchedulerSpec(cls, args, read_range(check, m, field), m.line))
    return tuple(specs)
