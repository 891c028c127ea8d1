"""What a finished run scores, read from its ``best.pt`` (the run's own rule chose it, and every
other command that reads a run reads it too): validation top1, and how much of the network is gone.

Every share is counted against the architecture as built (a fresh model of the run's ``arch``), so
a schedule that thins during training is credited with what it removed, and only exact zeros
count:

- ``filters``: conv filters and linear rows that are exactly zero (or thinned away), over all of
  them (the ``N/M filters zero`` of the epoch line);
- ``macs``: MACs per input that thinning removes (``compress.thinning.savings.macs_dense_and_thinned``);
- ``params``: parameters that thinning removes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress import groups as G
from compress.errors import CompressError

OBJECTIVES = {"filters": "filters {:.2f}% zero", "macs": "MACs {:.2f}% removed", "params": "params {:.2f}% removed"}


@dataclass(frozen=True)
class Measures:
    top1: float
    filters: float  # % of conv filters / linear rows exactly zero or thinned away
    macs: float  # % of MACs per input thinning removes
    params: float  # % of parameters thinning removes
    filters_zero: int
    filters_total: int
    macs_dense: int
    macs_thinned: int
    params_dense: int
    params_thinned: int

    def sparsity(self, objective: str) -> float:
        return float(getattr(self, objective))

    def describe(self, objective: str) -> str:
        return f"top1 {self.top1:.2f}  {OBJECTIVES[objective].format(self.sparsity(objective))}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measures:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def _live_filters(model: nn.Module) -> tuple[int, int]:
    """(filters with any non-zero weight, all filters) over the conv and linear weights."""
    from compress.sparsity import reported_parameters

    live = total = 0
    for _name, weight in reported_parameters(model):
        alive = G.get("filters").per_group(weight.detach().abs(), "amax") != 0
        live, total = live + int(alive.sum()), total + alive.numel()
    return live, total


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def _thinned_params(model: nn.Module, example: torch.Tensor) -> int:
    """Parameters of the model ``compress thin`` would make (the model itself when it cannot be
    thinned: then nothing is credited)."""
    from compress.thinning.apply import thin_model

    try:
        return _params(thin_model(model, example).model)
    except Exception:  # noqa: BLE001 - as macs_dense_and_thinned: a measure, not a reason to fail a study
        return _params(model)


def measure_run(run_dir: Path, arch: str | None = None, what: str = "RUN") -> Measures:
    """The measures of a run directory's ``best.pt`` (``arch``: a user's own model, named again;
    ``what``: the flag that named the run, for errors)."""
    from compress.artifacts import load_artifacts, model_from
    from compress.experiment import build_model_for, example_input
    from compress.sparsity import measure_macs

    artifacts = load_artifacts(Path(run_dir), what, arch=arch)
    config = artifacts.config
    top1 = artifacts.state.top1
    if top1 is None:
        raise CompressError(f"{what}: {artifacts.checkpoint} holds no validation top1")
    model, dense = model_from(artifacts), build_model_for(config).eval()
    example = example_input(config)
    dense_macs = sum(v["dense"] for v in measure_macs(dense, example).values())
    thinned_macs = _thinned_macs(Path(run_dir), model, example)
    live, _ = _live_filters(model)
    _, total = _live_filters(dense)
    params_dense, params_thinned = _params(dense), _thinned_params(model, example)
    return Measures(float(top1), _share(total - live, total), _share(dense_macs - thinned_macs, dense_macs),
                    _share(params_dense - params_thinned, params_dense), total - live, total, dense_macs,
                    thinned_macs, params_dense, params_thinned)  # fmt: skip


def _thinned_macs(run_dir: Path, model: nn.Module, example: torch.Tensor) -> int:
    """What the run's summary says of best.pt (the recorder measured it at the end of the run with
    ``macs_dense_and_thinned``), or the same measure taken now."""
    from compress.thinning.savings import macs_dense_and_thinned

    try:
        return int(json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["macs"]["thinned"])
    except (OSError, ValueError, KeyError, TypeError):
        return macs_dense_and_thinned(model, example)["thinned"]


def _share(removed: int, total: int) -> float:
    return 100.0 * removed / total if total else 0.0
