"""``compress thin CKPT -o small.pt``: the checkpoint's model without its zero structures, checked
against the dense model on real inputs, with what it gained."""

from __future__ import annotations

import io
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.artifacts import load_artifacts, model_from
from compress.checkpoint import save_checkpoint
from compress.errors import CompressError
from compress.experiment import example_input
from compress.files import check_output
from compress.sparsity import measure_macs
from compress.thinning import ThinningError, thin_model, thin_tensor_state
from compress.thinning.state import merge_specs


def real_batch(artifacts, size: int = 64) -> tuple[torch.Tensor, str]:
    """A validation batch of the run's dataset, or random inputs (said so) when it cannot be read."""
    from compress.datasets import build_dataset
    from compress.experiment import data_options

    config = artifacts.config
    try:
        data = build_dataset(config.dataset, batch_size=size, seed=0, options=data_options(config))
        x, _ = next(iter(data.val))
        return x[:size].cpu(), f"{len(x[:size])} validation images of {config.dataset}"
    except (CompressError, OSError, StopIteration) as exc:
        shape = example_input(config).shape[1:]
        return torch.randn(size, *shape), f"{size} random inputs ({config.dataset} unavailable: {exc})"


def latency_ms(models: dict[str, nn.Module], x: torch.Tensor, repeats: int = 15) -> dict[str, float]:
    """Median per-call latency, the models interleaved so that machine noise hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model.eval()(x)  # warm-up
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(t) for name, t in times.items()}


def _size(obj: Any) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


def _thin_optimizer_state(state: dict, names: list[str], keep: dict) -> dict:
    """Optimizer state_dicts index parameters by position; thinning keeps positions and names."""
    out = {"param_groups": state["param_groups"], "state": {}}
    for index, entry in state["state"].items():
        name = names[index]
        out["state"][index] = {k: thin_tensor_state(v, keep.get(name, {})) if torch.is_tensor(v) and v.dim() else v
                               for k, v in entry.items()}  # fmt: skip
    return out


def default_output(path: Path) -> Path:
    """``RUN/thin.pt`` for a run directory, ``NAME-thin.pt`` beside a checkpoint file."""
    path = Path(path)
    return path / "thin.pt" if path.is_dir() else path.with_name(f"{path.stem}-thin.pt")


def thin_checkpoint(path: Path, output: Path | None = None, *, batch: int = 64, overwrite: bool = False,
                    arch: str | None = None) -> list[str]:  # fmt: skip
    artifacts = load_artifacts(path, "CKPT", arch=arch)
    output = Path(output) if output is not None else default_output(path)
    check_output(output, artifacts.checkpoint, overwrite,
                 example="small.pt", same="being thinned; write the thinned one elsewhere")
    dense = model_from(artifacts)
    x, described = real_batch(artifacts, batch)
    try:
        small, plan, diff = thin_model(dense, x)
    except ThinningError as exc:
        raise CompressError(f"{path}: {exc}") from None
    old = artifacts.state
    names = [n for n, _ in dense.named_parameters()]
    optimizer = _thin_optimizer_state(old.optimizer, names, plan.keep) if old.optimizer else old.optimizer
    scheduler = dict(old.scheduler or {})
    scheduler["masks"] = {name: thin_tensor_state(mask, plan.keep.get(name, {}))
                          for name, mask in scheduler.get("masks", {}).items()}  # fmt: skip
    state = replace(old, state_dict=small.state_dict(), thinned_spec=merge_specs(old.thinned_spec or {}, plan.spec),
                    thinned_from=str(artifacts.checkpoint), optimizer=optimizer, scheduler=scheduler)  # fmt: skip
    try:
        save_checkpoint(state, output)
    except OSError as exc:
        raise CompressError(f"-o: cannot write {output}: {exc.strerror or exc}") from None
    return _summary(dense, small, plan, diff, described, artifacts, output, x)


def _summary(dense, small, plan, diff, described, artifacts, output, x) -> list[str]:
    one = x[:1]
    macs = [sum(v["dense"] for v in measure_macs(m, one).values()) for m in (dense, small)]
    params = [sum(p.numel() for p in m.parameters()) for m in (dense, small)]
    sizes = [artifacts.checkpoint.stat().st_size, output.stat().st_size]
    lat1 = latency_ms({"dense": dense, "thin": small}, one)
    latb = latency_ms({"dense": dense, "thin": small}, x, repeats=7)
    rows = [
        ("parameters", f"{params[0]:,}", f"{params[1]:,}", params[0] / params[1]),
        ("MACs per input", f"{macs[0]:,}", f"{macs[1]:,}", macs[0] / macs[1]),
        ("checkpoint bytes", f"{sizes[0]:,}", f"{sizes[1]:,}", sizes[0] / sizes[1]),
        ("latency, batch 1 (ms)", f"{lat1['dense']:.3f}", f"{lat1['thin']:.3f}", lat1["dense"] / lat1["thin"]),
        (f"latency, batch {len(x)} (ms)", f"{latb['dense']:.3f}", f"{latb['thin']:.3f}", latb["dense"] / latb["thin"]),
    ]
    lines = [f"thinned {artifacts.checkpoint} -> {output}"]
    lines += [f"  {line}" for line in plan.describe()] or ["  nothing to remove: no filter or channel is exactly zero"]
    lines.append(f"{'':24}{'before':>14}{'after':>14}{'ratio':>8}")
    lines += [f"{name:24}{a:>14}{b:>14}{r:>7.2f}x" for name, a, b, r in rows]
    lines.append(f"largest output difference on {described}: {diff:.3g}")
    lines += [f"kept: {reason}" for reason in plan.kept_reasons]
    return lines
