"""Activation statistics for the ``apoz`` and ``mean_activation`` criteria, gathered by forward hooks.

A filter's activation is the ReLU of its output channel (after the layer's BatchNorm, if one
follows; pooling or dropout between them is looked through). The hook sits on the layer (or its
BatchNorm), so the statistics come from the pre-activation ``x``: the ReLU output is zero exactly
where ``x <= 0``, and its mean is ``mean(max(x, 0))``. Which module that is, XX
the rule is bound; a layer without a ReLU after it cannot be ranked this way, and binding says so.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

_RELUS = {F.relu, torch.relu, torch.relu_}
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _is_relu(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), nn.ReLU)
    if node.op == "call_function":
        return node.target in _RELUS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _trace(model: nn.Module, layer: str) -> tuple[torch.fx.Node, dict[str, nn.Module]]:
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many types for untraceable models
        raise ValueError(f"the model cannot be traced with torch.fx ({type(exc).__name__}), so what follows "
                         f"{layer} cannot be found") from None  # fmt: skip
    node = next((n for n in graph.nodes if n.op == "call_module" and n.target == layer), None)
    if node is None:
        raise ValueError(f"{layer} is not called as a module in the model's forward")
    return node, dict(model.named_modules())


def following_batchnorm(model: nn.Module, layer: str) -> str | None:
    """The BatchNorm module that alone reads ``layer``'s output, or None."""
    try:
        node, modules = _trace(model, layer)
    except ValueError:
        return None
    users = list(node.users)
    if len(users) == 1 and users[0].op == "call_module" and isinstance(modules.get(str(users[0].target)), _NORMS):
        return str(users[0].target)
    return None


_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.Dropout)
_POOL_FUNCTIONS = {torch.max_pool2d, F.max_pool2d, F.avg_pool2d, F.dropout, torch.max_pool1d}


def _passes_through(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Per-channel operations between a layer and its ReLU that the statistics look through."""
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), _POOLS)
    return node.op == "call_function" and node.target in _POOL_FUNCTIONS


def activation_source(model: nn.Module, layer: str) -> str:
    """The name of the module whose output the statistics read: ``layer``, or the BatchNorm that
    alone reads it, when a ReLU follows (pooling and dropout in between are looked through);
    raises ``ValueError`` with the reason when no ReLU does."""
    node, modules = _trace(model, layer)
    source, users = node, list(node.users)
    if len(users) == 1 and users[0].op == "call_module" and isinstance(modules.get(str(users[0].target)), _NORMS):
        source = node = users[0]
        users = list(node.users)
    while len(users) == 1 and _passes_through(users[0], modules):
        users = list(users[0].users)
    if len(users) != 1 or not _is_relu(users[0], modules):
        found = ", ".join(_describe(u) for u in users) or "nothing"
        raise ValueError(f"no ReLU reads {layer}'s output (it goes to {found})")
    return str(source.target)


def _describe(node: torch.fx.Node) -> str:
    if node.op == "call_function":
        return "+" if node.target in (operator.add, torch.add) else getattr(node.target, "__name__", str(node.target))
    return str(node.target)


@dataclass
class ChannelStats:
    """Per output channel sums since the last reset: zeros of the ReLU output, its sum, and the
    count of positions (batch x spatial) seen."""

    zeros: torch.Tensor | None = None
    total: torch.Tensor | None = None
    seen: int = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach()
        dims = [d for d in range(x.dim()) if d != 1]
        zeros = (x <= 0).sum(dim=dims, dtype=torch.float64)
        total = x.clamp_min(0).sum(dim=dims, dtype=torch.float64)
        self.zeros = zeros if self.zeros is None else self.zeros + zeros
        self.total = total if self.total is None else self.total + total
        self.seen += x.numel() // x.shape[1]

    def score(self, criterion: str) -> torch.Tensor | None:
        """Higher stays: the fraction of non-zeros (``apoz``) or the mean activation."""
        if self.zeros is None or not self.seen:
            return None
        return 1.0 - self.zeros / self.seen if criterion == "apoz" else self.total / self.seen

    def state_dict(self) -> dict:
        return {"zeros": self.zeros, "total": self.total, "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.zeros, self.total, self.seen = state.get("zeros"), state.get("total"), state.get("seen", 0)


@dataclass
class ActivationWatch:
    """Forward hooks on the modules feeding the ReLUs of the watched layers. ``phase`` ``train``
    gathers during training forwards; ``eval`` during evaluation, starting afresh at each
    evaluation pass (Distiller's ``--act-stats valid``)."""

    sources: dict[str, str]  # parameter name -> module name to hook
    phase: str = "train"
    stats: dict[str, ChannelStats] = field(default_factory=dict)
    _handles: list = field(default_factory=list)
    _last_training: bool = True

    def attach(self, model: nn.Module) -> None:
        self.detach()
        modules = dict(model.named_modules())
        for param_name, module_name in self.sources.items():
            self.stats.setdefault(param_name, ChannelStats())
            self._handles.append(modules[module_name].register_forward_hook(self._hook(param_name)))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, param_name: str):
        def gather(module: nn.Module, inputs, output: torch.Tensor) -> None:
            training = module.training
            if self.phase == "eval" and not training and self._last_training:
                self.reset()  # a new evaluation pass
            self._last_training = training
            if training == (self.phase == "train"):
                self.stats[param_name].add(output)

        return gather

    def reset(self) -> None:
        for name in self.stats:
            self.stats[name] = ChannelStats()

    def state_dict(self) -> dict:
        return {"stats": {k: v.state_dict() for k, v in self.stats.items()}, "last_training": self._last_training}

    def load_state_dict(self, state: dict) -> None:
        for name, saved in state.get("stats", {}).items():
            self.stats.setdefault(name, ChannelStats()).load_state_dict(saved)
        self._last_training = state.get("last_training", True)
