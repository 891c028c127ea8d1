"""Pruning rules in our spelling: an entry of ``rules:`` with ``prune:`` where a penalty rule has
``penalty:``. Sample::

    rules:
      - name: fc-agp
        prune: l1                  # the criterion: l1 | l2 | random | bernoulli | apoz | mean_activation | gradient
        groups: elements           # what goes: any group type (default elements)
        sparsity: {from: 0.05, to: 0.9}   # AGP; or sparsity: 0.5, threshold: 0.01, sensitivity: 0.5, splicing: {...}
        layers: [fc1.weight, fc2.weight]  # or {fc1.weight: 0.9, fc2.weight: 0.8}: each layer's own (final) value
        epochs: [0, 8]
        frequency: 2
        release: 12                # from epoch 12 on the masks are gone (DSD's dense phase)
"""

from __future__ import annotations

from compress.errors import suggest
from compress.schedule.epochs import read_range
from compress.schedule.model import Epochs, Level, Masking, PruneRule, PruneTarget
from compress.schedule.vocabulary import Vocabulary
from compress.yamlio import FieldChecker, YamlList, YamlMap, kind_of

PRUNE_KEYS = {
    "name", "prune", "groups", "layers", "epochs", "frequency", "sparsity", "threshold", "sensitivity", "splicing",
    "release", "dependency", "clear_momentum", "recompute_every",
}  # fmt: skip
LEVEL_KEYS = ("sparsity", "threshold", "sensitivity", "splicing")
SPLICING_KEYS = {"sensitivity", "low", "high", "growth"}


def read_prune_rule(check: FieldChecker, m: YamlMap, field: str, vocab: Vocabulary) -> tuple[PruneRule | None, tuple]:
    """The rule, or None after its errors; and its targets either way (their names are checked)."""
    name = check.string(m, "name", field, f"rule{field[5:]}")
    field = f"rules[{name}]" if "name" in m else field
    check.keys(m, field, PRUNE_KEYS, required=("name", "prune", "layers"))
    criterion = check.string(m, "prune", field, None, set(vocab.criteria) or None)
    group = _read_group(check, m, field, criterion, vocab)
    epochs = read_range(check, m, field)
    level = _read_level(check, m, field, criterion, group, epochs, vocab)
    targets = _read_targets(check, m, field, level)
    rule = PruneRule(
        name=name, criterion=criterion or "", groups=group or "elements", level=level or Level("sparsity", 0.0),
        targets=targets or (), epochs=epochs, masking=_read_masking(check, m, field, level),
        dependency=check.string(m, "dependency", field, None, {"leader"}), line=m.line,
        clear_momentum=check.boolean(m, "clear_momentum", field, True),
    )  # fmt: skip
    ok = criterion is not None and group is not None and level is not None and targets
    return (rule, targets or ()) if ok else (None, targets or ())


def _read_group(check: FieldChecker, m: YamlMap, field: str, criterion: str | None, vocab: Vocabulary) -> str | None:
    raw = m.get("groups", "elements")
    line, path = m.line_of("groups") if "groups" in m else m.line, f"{field}.groups"
    if not isinstance(raw, str):
        check.error(line, path, f"expected one group name, got {kind_of(raw)} (a pruning rule prunes one kind)")
        return None
    group = vocab.canonical_group(raw)
    if group is None:
        problem = vocab.group_problem(raw) if hasattr(vocab, "group_problem") else None
        valid = sorted(set(vocab.groups))
        check.error(line, path, problem or f"unknown group {raw!r}{suggest(raw, valid)}; valid: {', '.join(valid)}")
        return None
    only = vocab.criteria.get(criterion, (None, ()))[0] if criterion else None
    if only is not None and group not in only:
        check.error(line, path, f"{criterion} ranks {', '.join(only)} only, got {group}")
        return None
    return group


def _read_level(check: FieldChecker, m: YamlMap, field: str, criterion: str | None, group: str | None,
                epochs: Epochs, vocab: Vocabulary) -> Level | None:  # fmt: skip
    given = [key for key in LEVEL_KEYS if key in m]
    if len(given) != 1:
        what = "none" if not given else ", ".join(given)
        check.error(m.line, field, f"give exactly one of {', '.join(LEVEL_KEYS)} (how much to prune); got {what}")
        return None
    key = given[0]
    level = _level_value(check, m, field, key, epochs)
    if level is None:
        return None
    serves = vocab.criteria.get(criterion, (None, LEVEL_KEYS + ("agp",)))[1] if criterion else ()
    if criterion and level.kind not in serves:
        check.error(m.line_of(key), f"{field}.{key}", f"{criterion} cannot prune by {key}: it serves "
                    f"{', '.join(k for k in serves)}")  # fmt: skip
        return None
    if level.kind in ("sensitivity", "splicing") and group not in (None, "elements"):
        check.error(m.line_of(key), f"{field}.{key}", f"{key} prunes single weights: use groups: elements")
        return None
    return level


def _level_value(check: FieldChecker, m: YamlMap, field: str, key: str, epochs: Epochs) -> Level | None:
    line, path = m.line_of(key), f"{field}.{key}"
    raw = m[key]
    if key == "sparsity" and isinstance(raw, YamlMap):
        check.keys(raw, path, {"from", "to"}, required=("from", "to"))
        start, end = check.number(raw, "from", path, None, minimum=0), check.number(raw, "to", path, None, minimum=0)
        if start is None or end is None:
            return None
        if not start < end <= 1:
            check.error(line, path, f"AGP goes up: expected 0 <= from < to <= 1, got from {start:g} to {end:g}")
            return None
        if epochs.end is None:
            check.error(line, path, "AGP needs an end: give epochs: [start, end]")
            return None
        return Level("agp", float(end), initial=float(start))
    if key == "splicing":
        return _splicing(check, m, path)
    value = check.number(m, key, field, None, minimum=0)
    if value is None:
        if m[key] is None:
            check.error(line, path, "expected a number")
        return None
    if key == "sparsity" and value > 1:
        check.error(line, path, f"a fraction of the groups: expected 0..1, got {value:g}")
        return None
    return Level(key, float(value))


def _splicing(check: FieldChecker, m: YamlMap, path: str) -> Level | None:
    raw = check.mapping(m["splicing"], m.line_of("splicing"), path)
    if raw is None:
        return None
    check.keys(raw, path, SPLICING_KEYS, required=("sensitivity",))
    value = check.number(raw, "sensitivity", path, None, minimum=0)
    low, high = check.number(raw, "low", path, 0.9, minimum=0), check.number(raw, "high", path, 1.1, minimum=0)
    growth = check.number(raw, "growth", path, 0.0, minimum=0)
    if value is None:
        return None
    if low > high:
        check.error(raw.line_of("low"), f"{path}.low", f"must not exceed high ({high:g}), got {low:g}")
        return None
    return Level("splicing", float(value), low=float(low), high=float(high), growth=float(growth))


def _read_targets(check: FieldChecker, m: YamlMap, field: str, level: Level | None) -> tuple[PruneTarget, ...] | None:
    layers, line, path = m.get("layers"), m.line_of("layers"), f"{field}.layers"
    if isinstance(layers, YamlMap):
        targets = []
        for pattern in layers:
            value = check.number(layers, pattern, path, None, minimum=0)
            at = layers.line_of(pattern)
            if value is not None and level is not None and level.kind in ("sparsity", "agp") and value > 1:
                check.error(at, f"{path}.{pattern}", f"a fraction of the groups: expected 0..1, got {value:g}")
                continue
            if value is not None:
                targets.append(PruneTarget(str(pattern), float(value), at, f"{path}.{pattern}"))
        return tuple(targets) or None
    if isinstance(layers, str):
        layers = YamlList([layers])
        layers.line, layers.item_lines = line, [line]
    if not isinstance(layers, YamlList) or not layers or not all(isinstance(p, str) for p in layers):
        if layers is not None:
            check.error(line, path, "expected a list of parameter names or globs, or a mapping name -> value")
        return None
    return tuple(PruneTarget(p, None, layers.line_of(i), path) for i, p in enumerate(layers))


def _read_masking(check: FieldChecker, m: YamlMap, field: str, level: Level | None) -> Masking:
    release = check.number(m, "release", field, None, integer=True, minimum=0)
    every = check.number(m, "recompute_every", field, 0, integer=True, minimum=1)
    splicing = level is not None and level.kind == "splicing"
    return Masking(release_at=release, dense_copy=splicing, recompute_every=every)
