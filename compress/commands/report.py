"""``compress report`` and ``compress eval``: read a run directory or a checkpoint back."""

from __future__ import annotations

from pathlib import Path

from compress.artifacts import RunArtifacts, load_artifacts, model_from, touched_parameters
from compress.config import RunConfig
from compress.experiment import example_input
from compress.report import mask_rows, render
from compress.sparsity import measure_sparsity
from compress.thinning.savings import macs_dense_and_thinned


def report_text(path: Path, *, fmt: str, group: str | None, width: int | None = 100, what: str = "layers",
                arch: str | None = None) -> str:  # fmt: skip
    artifacts = load_artifacts(path, arch=arch)
    model = model_from(artifacts)
    layers = measure_sparsity(model, touched_parameters(artifacts))
    macs = macs_dense_and_thinned(model, example_input(artifacts.config))
    return render(layers, macs, artifacts.history, artifacts.rule_names(), fmt=fmt, group=group,
                  header=_header(artifacts), width=width, what=what,
                  masks=mask_rows(artifacts.state.scheduler))  # fmt: skip


def _header(artifacts: RunArtifacts) -> str:
    state = artifacts.state
    top1 = f", top1 {state.top1:.2f}" if state.top1 is not None else ""
    if state.interrupted:
        stopped = f"stopped in epoch {state.next_epoch} before step {state.next_step}"
        return f"{artifacts.checkpoint}: {state.arch}, {stopped}"
    when = f"after epoch {state.epoch}" if state.epoch >= 0 else "before any epoch"
    return f"{artifacts.checkpoint}: {state.arch} {when}{top1}"


def evaluate_checkpoint(path: Path, overrides: dict) -> dict[str, float]:
    """top1 / top5 / loss of a checkpoint on the validation split, or the test split with ``test``."""
    from compress.datasets import build_dataset
    from compress.experiment import data_options, resolve_device
    from compress.training import evaluate

    overrides = dict(overrides)
    artifacts = load_artifacts(path, "CKPT", arch=overrides.pop("arch", None))
    config = RunConfig(**{**artifacts.config.to_dict(), **{k: v for k, v in overrides.items() if v is not None}})
    device = resolve_device(config.device)
    model = model_from(artifacts).to(device)
    data = build_dataset(config.dataset, batch_size=config.batch_size, seed=config.seed, device=str(device),
                         options=data_options(config, device))  # fmt: skip
    loader = getattr(data, "test", None) if config.test else data.val
    metrics = evaluate(model, loader, device=device, limit_batches=config.limit_batches)
    return {"checkpoint": str(artifacts.checkpoint), "split": "test" if config.test else "val", **metrics}
