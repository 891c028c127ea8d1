"""Measuring sparsity (element-wise and per group type) and MACs, and the report table.

Columns follow Distiller's table, with Rows/Cols meaning the same as our group names (a row / a
column of a 2-D weight; Distiller's table swapped them). A column that a weight's shape does not
have (Rows of a conv) shows '-'.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from compress import groups as G

# column title -> group type measured (share of groups that are entirely zero)
STRUCTURED = {"Cols (%)": "cols", "Rows (%)": "rows", "Ch (%)": "channels", "2D (%)": "kernels", "3D (%)": "filters"}


@dataclass
class LayerSparsity:
    name: str
    shape: list[int]
    nnz_dense: int
    nnz_sparse: int
    structured: dict[str, float | None]  # group name -> % of zero groups, None where it does not apply
    fine: float  # % of zero elements
    std: float
    mean: float
    abs_mean: float

    def to_dict(self) -> dict:
        return asdict(self)


def reported_parameters(model: nn.Module, extra: Iterable[str] = ()) -> list[tuple[str, torch.Tensor]]:
    """Weights of conv and linear layers, plus any other parameter named in ``extra`` (e.g. a
    BatchNorm scale a rule touches), in model order."""
    wanted = set(extra)
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and module.weight is not None:
            wanted.add(f"{module_name}.weight" if module_name else "weight")
    return [(n, p) for n, p in model.named_parameters() if n in wanted]


@torch.no_grad()
def measure_layer(name: str, weight: torch.Tensor) -> LayerSparsity:
    w = weight.detach()
    structured = {}
    for group in STRUCTURED.values():
        fits = G.get(group).misfit(tuple(w.shape)) is None
        structured[group] = 100.0 * G.zero_fraction(w, group) if fits else None
    nnz = int(torch.count_nonzero(w))
    wf = w.float()
    return LayerSparsity(
        name=name,
        shape=list(w.shape),
        nnz_dense=w.numel(),
        nnz_sparse=nnz,
        structured=structured,
        fine=100.0 * (1 - nnz / w.numel()),
        std=float(wf.std()) if w.numel() > 1 else 0.0,
        mean=float(wf.mean()),
        abs_mean=float(wf.abs().mean()),
    )


def measure_sparsity(model: nn.Module, extra: Iterable[str] = ()) -> list[LayerSparsity]:
    return [measure_layer(n, p) for n, p in reported_parameters(model, extra)]


def total_sparsity(layers: list[LayerSparsity]) -> float:
    dense = sum(layer.nnz_dense for layer in layers)
    return 100.0 * (1 - sum(layer.nnz_sparse for layer in layers) / dense) if dense else 0.0


@torch.no_grad()
def measure_macs(model: nn.Module, example: torch.Tensor) -> dict[str, dict[str, int]]:
    """Per conv/linear layer: MACs for one input, dense and counting only live (non-zero) filters
    and channels of that layer itself. Removing a filter also removes the matching input channels
    of the next layer, which needs the graph (``compress thin``); this measure is a lower bound on
    what thinning saves."""
    out: dict[str, dict[str, int]] = {}
    hooks = []

    def record(name: str, module: nn.Module):
        def hook(_mod, _inputs, output):
            positions = output[0, 0].numel() if output.dim() > 2 else 1
            w = module.weight
            per_out = w[0].numel()  # MACs per output position of one filter / neuron
            dense = positions * w.shape[0] * per_out
            live_f = int((~G.zero_groups(w, "filters")).sum())
            live_c = int((~G.zero_groups(w, "channels")).sum())
            live = positions * live_f * (per_out * live_c // max(w.shape[1], 1))
            out[name] = {"dense": int(dense), "live": int(live)}

        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            hooks.append(module.register_forward_hook(record(name, module)))
    was_training = model.training
    try:
        model.eval()
        model(example[:1])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return out
