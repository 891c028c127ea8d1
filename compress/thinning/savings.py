"""What thinning would save, for reports: MACs of the model as it is and as ``compress thin`` would
make it."""

from __future__ import annotations

import torch
from torch import nn

from compress.sparsity import measure_macs


def macs_dense_and_thinned(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Dense MACs, and MACs of the model that ``compress thin`` would make (graph-aware when the
    thinning module can trace the model; else each layer's own live filters x live channels)."""
    from compress.thinning.apply import thin_model

    dense_macs = measure_macs(model, example)
    dense = sum(v["dense"] for v in dense_macs.values())
    try:
        small = thin_model(model, example).model
        return {"dense": dense, "thinned": sum(v["dense"] for v in measure_macs(small, example).values())}
    except Exception:  # noqa: BLE001 - an estimate is better than no number in a report
        return {"dense": dense, "thinned": sum(v["live"] for v in dense_macs.values())}
