"""Deciding what goes: ``plan_thinning`` turns the channel graph into a ``ThinningPlan``.

A channel class (positions that must shrink together, ``graph.py``) goes when nothing pins it and
every conv or linear layer that reads it either has zero weights on it or reads a constant it can
fold exactly: into its bias (a linear layer, a conv without zero padding), or into the
running_mean of the BatchNorm right after it. A zero constant needs no folding and can go even
behind zero padding. Everything else stays, and ``kept_reasons`` says which zero structures stayed
and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from compress.thinning.channels import ChannelGraph
from compress.thinning.graph import Untraceable, build_channel_graph, trace

log = logging.getLogger(__name__)

# module kind -> constructor argument per thinned weight dimension
_SPEC_ARGS = {
    "conv": {0: ("out_channels",), 1: ("in_channels",)},
    "depthwise": {0: ("in_channels", "out_channels", "groups")},
    "linear": {0: ("out_features",), 1: ("in_features",)},
    "batchnorm": {0: ("num_features",)},
}


@dataclass
class ThinningPlan:
    """What ``apply_thinning`` will do to a model; computing it changes nothing.

    ``keep``: every parameter and buffer name of the model -> {dim: kept indices (int64)}, listing
    only the dims that shrink (``{}`` for tensors that keep their shape). ``corrections``: tensor
    name -> an additive change of the dense tensor, made before the indices are selected (the
    folded constants: a bias, or ``-delta`` on a BatchNorm's running_mean). ``spec`` (also
    ``thinned_spec``): module name -> constructor arguments that change, e.g.
    ``{"conv2": {"in_channels": 7, "out_channels": 12}}``; with ``rebuild`` it turns a freshly built
    dense model into the thinned architecture. ``kept_reasons``: one line per group of zero
    filters / channels that stayed, saying why.
    """

    keep: dict[str, dict[int, torch.Tensor]]
    corrections: dict[str, torch.Tensor] = field(default_factory=dict)
    spec: dict[str, dict[str, int]] = field(default_factory=dict)
    dense_spec: dict[str, dict[str, int]] = field(default_factory=dict)
    dense_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    kept_reasons: list[str] = field(default_factory=list)
    traced: bool = True

    @property
    def thinned_spec(self) -> dict[str, dict[str, int]]:
        return self.spec

    @property
    def empty(self) -> bool:
        """True when nothing would be removed."""
        return not self.spec

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter and buffer name -> its shape after thinning."""
        out = {}
        for name, shape in self.dense_shapes.items():
            thin = list(shape)
            for dim, idx in self.keep.get(name, {}).items():
                thin[dim] = idx.numel()
            out[name] = tuple(thin)
        return out

    def describe(self) -> list[str]:
        """One line per resized module: ``conv2: in_channels 20 -> 7, out_channels 50 -> 12``."""
        lines = []
        for module, changes in self.spec.items():
            parts = [f"{arg} {self.dense_spec[module][arg]} -> {n}" for arg, n in changes.items()]
            lines.append(f"{module}: {', '.join(parts)}")
        return lines


def plan_thinning(model: nn.Module, example: torch.Tensor, structures: str = "both") -> ThinningPlan:
    """Find every filter, channel, row and column that can go without changing the model's outputs
    (in eval mode) for inputs shaped like ``example``. The model is not modified.

    ``structures`` (Distiller's ``remove_filters`` / ``remove_channels``): ``filters`` removes only
    channels that zero filters make constant (and the next layers' matching input channels);
    ``channels`` only channels that every reader has zero weights on (and the filters feeding them);
    ``both`` either."""
    state = model.state_dict(keep_vars=True)
    dense_shapes = {name: tuple(t.shape) for name, t in state.items()}
    untouched = ThinningPlan(keep={name: {} for name in state}, dense_shapes=dense_shapes)
    try:
        gm = trace(model, example)
    except Untraceable as exc:
        untouched.traced = False
        untouched.kept_reasons = [f"the model could not be traced with torch.fx ({exc}), so nothing is removed"]
        return untouched
    graph = build_channel_graph(model, gm)
    roots = graph.roots()
    removable, why = _decide(graph, roots)
    if structures != "both":
        _restrict(graph, roots, removable, why, structures)
    keep = {name: _kept(graph, roots, removable, name) for name in state}
    plan = ThinningPlan(
        keep=keep,
        corrections=_corrections(graph, roots, removable, state),
        dense_shapes=dense_shapes,
        kept_reasons=_report(graph, roots, removable, why),
    )
    plan.spec, plan.dense_spec = _specs(graph, keep, dense_shapes)
    log.debug("thinning plan: %s", plan.describe())
    return plan


def _decide(graph: ChannelGraph, roots: torch.Tensor) -> tuple[torch.Tensor, dict[int, str]]:
    """Per class root: may it go, and if not, why (first reason found)."""
    removable = torch.ones(len(roots), dtype=torch.bool)
    why: dict[int, str] = {}
    for i, reason in graph.pins.items():
        root = int(roots[i])
        removable[root] = False
        why.setdefault(root, reason)
    for read in graph.reads:
        classes = roots[read.ids]
        status = read.column_status()
        removable[classes[status > 0]] = False
        for code in (1, 2, 3):
            for root in classes[status == code].unique().tolist():
                why.setdefault(root, read.why(code))
    changed = True
    while changed:  # never leave a layer with no channel at all
        changed = False
        for name, dims in graph.binds.items():
            for dim, ids in dims.items():
                if ids.numel() and removable[roots[ids]].all():
                    root = int(roots[ids[0]])
                    removable[root] = False
                    why[root] = f"one channel stays so that {name} (dim {dim}) is not empty"
                    changed = True
    return removable, why


def _restrict(graph: ChannelGraph, roots: torch.Tensor, removable: torch.Tensor, why: dict[int, str],
              structures: str) -> None:  # fmt: skip
    """Keep the classes that only the other kind of structure would remove."""
    for read in graph.reads:
        classes = roots[read.ids]
        other = read.const.isnan() if structures == "filters" else ~read.zero_cols
        for root in classes[other & removable[classes]].unique().tolist():
            removable[root] = False
            why[root] = f"only zero {structures} are removed here (Distiller's remove_{structures})"


def _kept(graph: ChannelGraph, roots: torch.Tensor, removable: torch.Tensor, name: str) -> dict[int, torch.Tensor]:
    out = {}
    for dim, ids in graph.binds.get(name, {}).items():
        gone = removable[roots[ids]]
        if gone.any():
            out[dim] = (~gone).nonzero().flatten()
    return out


def _corrections(graph: ChannelGraph, roots: torch.Tensor, removable: torch.Tensor, state) -> dict[str, torch.Tensor]:
    """What removed constant inputs contributed, folded into a bias or a BatchNorm's running_mean."""
    out: dict[str, torch.Tensor] = {}
    for read in graph.reads:
        gone = removable[roots[read.ids]]
        kappa = torch.where(gone & ~read.zero_cols, read.const.nan_to_num(0.0), torch.zeros_like(read.const))
        if not kappa.any():
            continue
        assert read.fold_into is not None and not read.padded, f"{read.module}: a constant removed with nowhere to go"
        delta = read.fold_sign * (read.col_sums @ kappa.to(read.col_sums.dtype))
        target = state[read.fold_into]
        out[read.fold_into] = out.get(read.fold_into, torch.zeros_like(target.detach())) + delta.to(target.dtype)
    return out


def _specs(graph: ChannelGraph, keep, dense_shapes) -> tuple[dict, dict]:
    spec, dense = {}, {}
    for module, kind in graph.kinds.items():
        tensor = next(f"{module}.{t}" for t in ("weight", "running_mean") if f"{module}.{t}" in dense_shapes)
        dense_args, changes = {}, {}
        for dim, args in _SPEC_ARGS[kind].items():
            for arg in args:
                dense_args[arg] = dense_shapes[tensor][dim]
                if dim in keep[tensor]:
                    changes[arg] = keep[tensor][dim].numel()
        dense[module] = dense_args
        if changes:
            spec[module] = changes
    return spec, dense


def _report(graph: ChannelGraph, roots: torch.Tensor, removable: torch.Tensor, why: dict[int, str]) -> list[str]:
    """Zero filters / rows that stay, then zero input channels / columns that stay, grouped by reason."""
    lines, seen = [], set()
    for weight, zero in graph.zero_rows.items():
        classes = roots[graph.binds[weight][0]]
        seen.update(classes[zero].tolist())
        noun = "rows" if graph.kinds[weight.rpartition(".")[0]] == "linear" else "filters"
        lines += _lines(weight, f"zero {noun}", zero & ~removable[classes], classes, why)
    for read in graph.reads:  # each class once, at the first layer that has zero weights on it
        classes = roots[read.ids]
        kept = read.zero_cols & ~removable[classes] & ~torch.isin(classes, torch.tensor(sorted(seen), dtype=torch.long))
        noun = "input features" if read.features else "input channels"
        lines += _lines(f"{read.module}.weight", f"zero {noun}", kept, classes, why)
        seen.update(classes[kept].tolist())
    return lines


def _lines(where: str, what: str, kept: torch.Tensor, classes: torch.Tensor, why: dict[int, str]) -> list[str]:
    groups: dict[str, list[int]] = {}
    for j in kept.nonzero().flatten().tolist():
        groups.setdefault(why.get(int(classes[j]), "kept"), []).append(j)
    return [f"{where}: {len(idx)} {what} kept ({_indices(idx)}): {reason}" for reason, idx in groups.items()]


def _indices(idx: list[int], most: int = 12) -> str:
    shown = ", ".join(map(str, idx[:most]))
    return shown + (f", ... {len(idx) - most} more" if len(idx) > most else "")
