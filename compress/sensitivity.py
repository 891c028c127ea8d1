"""Pruning sensitivity analysis (Distiller's ``--sense``): each conv / linear weight pruned alone at
a series of levels, the model evaluated at each, then the weight put back bit for bit; and the
pruning schedule the curves suggest.

Pruning is what a native ``prune: l1`` rule does at a fixed ``sparsity:``: exactly
``floor(level x groups)`` groups with the lowest L1 (mean ``|w|`` of the group, ``|w|`` for single
weights) go, ties broken by position (``pruning.masks``). ``suggest_levels`` picks, per layer, the
highest tested level up to which top1 stays within DROP points of the unpruned model, and
``schedule_text`` writes the layers with a level above 0 as one pruning rule. Sample::

    version: 1
    rules:
      - name: sensitivity
        prune: l1
        groups: elements
        sparsity: 0.8            # the largest level below; each layer's own value overrides it
        layers:
          conv2.weight: 0.6
          fc1.weight: 0.8
        epochs: [0, 1]           # prunes once as epoch 0 begins; the masks hold after it
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from compress import groups as G
from compress.errors import CompressError, suggest
from compress.matching import match_parameters
from compress.pruning.criteria import Evidence
from compress.pruning.criteria import get as get_criterion
from compress.pruning.masks import count_to_prune, expand, keep_lowest_out
from compress.report import csv_table, text_table
from compress.sparsity import reported_parameters

CRITERION = "l1"
DEFAULT_LEVELS = tuple(i / 10 for i in range(10))  # 0.0, 0.1, ..., 0.9
CSV_COLUMNS = ("layer", "level", "top1", "top5", "loss")
Evaluate = Callable[[], dict[str, float]]  # the model's metrics now: val_loss, top1, top5 (training.evaluate)
Progress = Callable[[Any, int, str], Any]  # (iterable, total, description) -> iterable: a progress bar


@dataclass(frozen=True)
class Point:
    """The model's metrics with ``layer`` pruned at ``level`` (every other layer as it was)."""

    layer: str
    level: float
    top1: float
    top5: float
    loss: float


def parse_levels(text: str | None) -> list[float]:
    """``0,0.1,0.5`` -> sorted distinct levels, each a fraction 0..1 of the groups; 0 (the unpruned
    baseline) is always among them. None: ``DEFAULT_LEVELS``."""
    if text is None:
        return list(DEFAULT_LEVELS)
    levels = set()
    for word in (w.strip() for w in text.split(",")):
        if not word:
            raise CompressError(f"--levels: an empty entry in {text!r}; give fractions such as 0,0.25,0.5,0.75")
        try:
            value = float(word)
        except ValueError:
            raise CompressError(f"--levels: {word!r} is not a number; give fractions such as 0,0.25,0.5,0.75") from None
        if not math.isfinite(value) or not 0 <= value <= 1:
            raise CompressError(f"--levels: {word} is not a fraction of the groups: expected 0..1")
        levels.add(value)
    return sorted(levels | {0.0})


def check_drop(drop: float | None) -> None:
    if drop is not None and not (math.isfinite(drop) and drop >= 0):
        raise CompressError(f"--suggest: expected a top1 drop in points >= 0 (such as 1.0), got {drop:g}")


def select_layers(model: nn.Module, patterns: Sequence[str], group: str) -> tuple[list[tuple[str, nn.Parameter]],
                                                                                  list[str]]:  # fmt: skip
    """The conv / linear weights the globs match (all without globs), in model order, whose shape
    has ``group``; and the names of those that do not (skipped)."""
    candidates = reported_parameters(model)
    names = [name for name, _ in candidates]
    if not names:
        raise CompressError("the model has no conv or linear weight to prune")
    chosen = set() if patterns else set(names)
    for pattern in patterns:
        found = match_parameters(pattern, names)
        if not found:
            listed = f"they are: {', '.join(names)}" if len(names) <= 8 else "`compress report` lists them"
            raise CompressError(f"--layers: {pattern!r} matches no conv or linear weight{suggest(pattern, names)}; "
                                f"{listed}")  # fmt: skip
        chosen.update(found)
    kind = G.get(group)
    layers = [(name, p) for name, p in candidates if name in chosen]
    fit = [(name, p) for name, p in layers if kind.misfit(tuple(p.shape)) is None]
    if not fit:
        which = "none of the layers asked for" if patterns else "no conv or linear weight of the model"
        raise CompressError(f"--groups {group}: {which} has {group}: {kind.misfit(tuple(layers[0][1].shape))}")
    return fit, [name for name, p in layers if kind.misfit(tuple(p.shape)) is not None]


def prune_mask(weight: torch.Tensor, group: str, level: float) -> torch.Tensor:
    """The weight-shaped 0/1 mask that removes ``floor(level x groups)`` groups of lowest L1."""
    scores = get_criterion(CRITERION).scores(weight, group, Evidence())
    return expand(keep_lowest_out(scores, count_to_prune(scores.numel(), level)), group, weight)


@torch.no_grad()
def analyze(layers: Sequence[tuple[str, torch.Tensor]], group: str, levels: Sequence[float], evaluate: Evaluate,
            progress: Progress | None = None) -> list[Point]:  # fmt: skip
    """One point per layer and level. The model is evaluated once unpruned (level 0, and any level
    that removes no group: the same model); each layer is put back exactly, even on an error."""
    baseline = evaluate()
    points = []
    bar = progress(layers, len(layers), "layers") if progress is not None else layers
    for name, weight in bar:
        original = weight.detach().clone()
        groups = G.get(group).count(tuple(weight.shape))
        try:
            for level in levels:
                metrics = baseline
                if count_to_prune(groups, level) > 0:
                    weight.mul_(prune_mask(original, group, level))
                    metrics = evaluate()
                    weight.copy_(original)
                points.append(Point(name, level, metrics["top1"], metrics["top5"], metrics["val_loss"]))
        finally:
            weight.copy_(original)
    return points


def by_layer(points: Sequence[Point]) -> dict[str, list[Point]]:
    out: dict[str, list[Point]] = {}
    for point in points:
        out.setdefault(point.layer, []).append(point)
    return {name: sorted(curve, key=lambda p: p.level) for name, curve in out.items()}


def sensitivity_csv(points: Sequence[Point]) -> str:
    rows = [[p.layer, p.level, round(p.top1, 4), round(p.top5, 4), round(p.loss, 6)] for p in points]
    return csv_table(list(CSV_COLUMNS), rows) + "\n"


def sensitivity_table(points: Sequence[Point], width: int | None = 100) -> str:
    """Top1 per layer (rows) and level (columns), fitted to ``width``: the levels between the first
    and the last go first when it is too narrow, every other one from the end (the CSV has all)."""
    curves = by_layer(points)
    levels = sorted({p.level for p in points})
    headers = ["top1 at level", *[f"{level:g}" for level in levels]]
    rows = [[name, *[f"{p.top1:.1f}" for p in curve]] for name, curve in curves.items()]
    middle = headers[2:-1][::-1]
    droppable = tuple(middle[::2] + middle[1::2])
    return text_table(headers, rows, width, droppable=droppable)


def suggest_levels(points: Sequence[Point], drop: float) -> dict[str, float]:
    """Per layer, the highest tested level up to which every tested level keeps top1 within ``drop``
    points of the unpruned model (its level 0): a level past one that failed is not trusted."""
    out = {}
    for name, curve in by_layer(points).items():
        floor = curve[0].top1 - drop - 1e-9
        chosen = 0.0
        for point in curve:
            if point.top1 < floor:
                break
            chosen = point.level
        out[name] = chosen
    return out


def _yaml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name) else '"' + name.replace('"', '\\"') + '"'


def schedule_text(levels: dict[str, float], group: str, *, drop: float, baseline: float, checkpoint: str,
                  arch: str, dataset: str, file: str) -> str:  # fmt: skip
    """The suggested schedule: one ``prune: l1`` rule with each layer's level (layers at 0 left
    out), or no rule when no layer tolerated any level within ``drop``."""
    q, points = shlex.quote, f"{drop:g} point{'' if drop == 1 else 's'}"
    lines = [
        f"# Suggested by `compress sense --groups {group} --suggest {drop:g}` from {checkpoint} ({arch} on {dataset}):",
        f"# per layer, the highest tested level of {CRITERION} {group} pruning up to which top1 stayed within",
        f"# {points} of the unpruned {baseline:.2f}. Each layer was pruned alone; together they cost more.",
        "# ADJUST THE EPOCHS: [0, 1] prunes once as epoch 0 begins, and the masks hold while training goes on.",
        f"#   check:     compress check --schedule {q(file)} --arch {q(arch)} --dataset {q(dataset)}",
        f"#   fine-tune: compress train --resume {q(checkpoint)} --reset-optimizer --schedule {q(file)} --epochs N",
        "version: 1",
    ]
    pruned = {name: level for name, level in levels.items() if level > 0}
    if not pruned:
        lines.append(f"rules: []  # no layer kept top1 within {points} at any level above 0: nothing to prune")
        return "\n".join(lines) + "\n"
    lines += [
        "rules:",
        "  - name: sensitivity",
        f"    prune: {CRITERION}",
        f"    groups: {group}",
        f"    sparsity: {max(pruned.values()):g}  # the largest level below; each layer's own value overrides it",
        "    layers:",
        *[f"      {_yaml_key(name)}: {level:g}" for name, level in pruned.items()],
        "    epochs: [0, 1]  # adjust the epochs to your fine-tuning run",
    ]
    return "\n".join(lines) + "\n"
