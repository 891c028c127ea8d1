"""The end of a run: summary.json, the closing lines a user reads, and the plots."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from compress import groups as G
from compress.experiment import Experiment, example_input
from compress.runs import RunFiles
from compress.sparsity import LayerSparsity, total_sparsity
from compress.training import EpochResult, evaluate


def evaluate_test(exp: Experiment) -> dict[str, float] | None:
    """``--test``: the final weights on the test split (``None`` without ``--test``); every process
    takes part (the sums are reduced over them)."""
    if exp.data.test is None:
        return None
    model = exp.train_model or exp.model
    return evaluate(model, exp.data.test, device=exp.device, limit_batches=exp.config.limit_batches, world=exp.world)


def removable(layer: LayerSparsity) -> str:
    """``5/20 filters, 3/20 channels`` zero in one layer (what thinning can remove there)."""
    parts = []
    for group in ("filters", "channels"):
        pct = layer.structured.get(group)
        if pct is not None:
            count = G.get(group).count(tuple(layer.shape))
            parts.append(f"{round(pct * count / 100)}/{count} {group}")
    return ", ".join(parts)


def finish(exp: Experiment, files: RunFiles, results: list[EpochResult], best: dict[str, Any],
           layers: list[LayerSparsity], echo: Callable[..., None], *, plots: bool,
           test: dict[str, float] | None) -> None:  # fmt: skip
    from compress.commands.report import macs_dense_and_thinned

    final_top1 = results[-1].top1 if results else None
    macs = macs_dense_and_thinned(exp.model, example_input(exp.config).to(exp.device))
    sparsity = total_sparsity(layers)
    files.write_summary({"run": str(files.path), "final_top1": final_top1, "best_top1": best["top1"],
                         "best_epoch": best["epoch"], "best_rule": best["rule"], "final_sparsity": sparsity,
                         "macs": macs, "layers": [layer.to_dict() for layer in layers], "test": test})  # fmt: skip
    lines = ["summary:"]
    if final_top1 is not None:
        lines.append(f"  top1: final {final_top1:.2f}, best {best['top1']:.2f} (epoch {best['epoch']}, {best['rule']})")
    if test is not None:
        scores = f"loss {test['val_loss']:.4f}  top1 {test['top1']:.2f}  top5 {test['top5']:.2f}"
        lines.append(f"  test (final weights): {scores}")
    lines.append(f"  total sparsity {sparsity:.2f}%; MACs per input {macs['dense']:,} dense, "
                 f"{macs['thinned']:,} after thinning ({macs['thinned'] / max(macs['dense'], 1):.1%})")  # fmt: skip
    structured = [layer for layer in layers if layer.structured.get("filters") is not None]
    lines += [f"  {layer.name}: {removable(layer)} zero" for layer in structured]
    run = files.path
    lines += ["next:", f"  compress thin {run} -o {run / 'thin.pt'}", f"  compress report {run}"]
    lines.append(f"  compress plot {run}")
    for line in lines:
        echo(line)
        files.log(line)
    if plots:
        write_plots(run, echo)


def write_plots(run: Path, echo: Callable[..., None]) -> None:
    """Plots when matplotlib is there; else one line on how to get them, and the run goes on."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        from compress.plots import INSTALL_HINT

        echo(f"no plots: {INSTALL_HINT}")
        return
    from compress.commands.plot import plot_run

    written = plot_run(run)
    echo("plots: " + ", ".join(p.name for p in written))
