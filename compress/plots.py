"""PNG plots of a run (optional extra ``plots``: matplotlib, Agg backend, no screen needed).

1. ``accuracy_sparsity.png``: top1, total sparsity and the share of zero filters per epoch, each
   rule's active epochs shaded;
2. ``layer_sparsity.png``: per-layer structured sparsity per epoch (layers x epochs heatmap);
3. ``group_norms.png``: per-layer histogram of group norms at the end, log scale: whether group
   lasso separated zero from live groups.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from compress import groups as G
from compress.artifacts import RunArtifacts, load_artifacts, model_from, read_sparsity_history
from compress.errors import CompressError
from compress.matching import match_parameters
from compress.schedule import parse_schedule
from compress.sparsity import reported_parameters

INSTALL_HINT = 'plots need matplotlib: pip install -e ".[plots]" (or pip install matplotlib)'


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise CompressError(INSTALL_HINT) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_sparsity(history: list[dict[str, Any]], rule_epochs: dict[str, list[int]], path: Path) -> Path:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, active) in enumerate(rule_epochs.items()):
        for j, (first, last) in enumerate(_runs(active)):
            ax.axvspan(first - 0.5, last + 0.5, color=colors[(i + 2) % len(colors)], alpha=0.12,
                       label=f"{name} active" if j == 0 else None)  # fmt: skip
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.plot(epochs, [h["top1"] for h in history], "o-", color=colors[0], label="val top1 (%)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("top1 (%)")
    right = ax.twinx()
    right.plot(epochs, [h["sparsity"] for h in history], "s--", color=colors[1], label="total sparsity (%)")
    if "sparsity/filters" in history[0]:
        right.plot(epochs, [h["sparsity/filters"] for h in history], "^:", color=colors[3], label="zero filters (%)")
    right.set_ylabel("sparsity (%)")
    right.set_ylim(0, 100)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="center right", fontsize=8)
    ax.set_title("accuracy and sparsity per epoch")
    return _save(fig, path)


def _runs(epochs: list[int]) -> list[tuple[int, int]]:
    """[0, 1, 2, 5, 6] -> [(0, 2), (5, 6)]: one shaded span per stretch of consecutive epochs."""
    spans: list[tuple[int, int]] = []
    for epoch in epochs:
        if spans and epoch == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], epoch)
        else:
            spans.append((epoch, epoch))
    return spans


def plot_layer_heatmap(sparsity_history: list[dict[str, Any]], group: str, path: Path) -> Path:
    plt = _pyplot()
    names = [layer["name"] for layer in sparsity_history[0]["layers"]]
    values = [[(layer["structured"].get(group) or 0.0) for layer in h["layers"]] for h in sparsity_history]
    grid = torch.tensor(values).T.numpy()
    fig, ax = plt.subplots(figsize=(max(6, 0.4 * len(sparsity_history) + 3), max(3, 0.3 * len(names) + 1.5)), dpi=100)
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=100, interpolation="nearest")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    epochs = [h["epoch"] for h in sparsity_history]
    ax.set_xticks(range(len(epochs)), epochs, fontsize=7)
    ax.set_xlabel("epoch")
    fig.colorbar(image, ax=ax, label=f"zero {group} (%)")
    ax.set_title(f"structured sparsity per layer: {group}")
    return _save(fig, path)


def plot_group_norms(weights: dict[str, torch.Tensor], group_of: dict[str, str], path: Path) -> Path:
    """One histogram per layer of log10 group norms; exact zeros are counted in a bar of their own."""
    plt = _pyplot()
    names = list(weights)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), dpi=100, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        group = group_of[name]
        norms = G.group_scores(weights[name].float(), group)
        zeros = int((norms == 0).sum())
        live = norms[norms > 0].log10()
        if len(live):
            ax.hist(live.numpy(), bins=30, color="tab:blue")
        ax.set_title(f"{name} ({group}): {zeros} of {len(norms)} zero", fontsize=8)
        ax.set_xlabel("log10 group norm", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle("group norms at the end (exact zeros counted in the titles)", fontsize=9)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


# --- a run directory's plots -------------------------------------------------------------------


def _schedule(artifacts: RunArtifacts):
    return parse_schedule(artifacts.state.schedule_text, artifacts.state.schedule_source)


def _rules(artifacts: RunArtifacts):
    return _schedule(artifacts).rules


def layer_groups(artifacts: RunArtifacts) -> dict[str, str]:
    """For each reported weight, the group its rules act on (the first grouped rule wins), else
    filters; 1-D weights that a rule touches are shown element-wise."""
    state_dict = artifacts.state.state_dict
    names = list(state_dict)
    chosen: dict[str, str] = {}
    for rule in _rules(artifacts):
        for target in rule.targets:
            for name in match_parameters(target.pattern, names):
                group = next((g for g in target.groups if g != "elements"), "elements")
                if chosen.get(name, "elements") == "elements":
                    chosen[name] = group
    out = {}
    for name, _ in reported_parameters(model_from(artifacts), extra=chosen):
        group = chosen.get(name) or ("filters" if state_dict[name].dim() >= 2 else "elements")
        if G.get(group).misfit(tuple(state_dict[name].shape)) is None:
            out[name] = group
    return out


def plot_run(path: Path, group: str = "filters", arch: str | None = None) -> list[Path]:
    artifacts = load_artifacts(path, "RUN", arch=arch)
    if artifacts.run_dir is None or not artifacts.history:
        raise CompressError(f"RUN: {path} is not a run directory with metrics.csv")
    run_dir = artifacts.run_dir
    epochs = [h["epoch"] for h in artifacts.history]
    schedule = _schedule(artifacts)
    rule_epochs = {r.name: [e for e in epochs if r.epochs.active(e)] for r in (*schedule.rules, *schedule.pruning)}
    written = [plot_accuracy_sparsity(artifacts.history, rule_epochs, run_dir / "accuracy_sparsity.png")]
    sparsity_history = read_sparsity_history(run_dir)
    if sparsity_history:
        written.append(plot_layer_heatmap(sparsity_history, group, run_dir / "layer_sparsity.png"))
    groups = layer_groups(artifacts)
    weights = {name: artifacts.state.state_dict[name] for name in groups}
    written.append(plot_group_norms(weights, groups, run_dir / "group_norms.png"))
    return written


# --- compress sense ------------------------------------------------------------------------------


def plot_sensitivity(curves: dict[str, list[tuple[float, float]]], path: Path, *, baseline: float | None = None,
                     title: str = "pruning sensitivity") -> Path:  # fmt: skip
    """Distiller's sensitivity plot: per layer, one curve of top1 (%) against the level at which that
    layer alone was pruned; the unpruned model's top1 dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    markers = "osD^v<>ph*"
    for i, (name, points) in enumerate(curves.items()):
        levels, top1 = zip(*sorted(points), strict=True)
        ax.plot(levels, top1, marker=markers[i % len(markers)], markersize=4, linewidth=1.2, label=name)
    if baseline is not None:
        ax.axhline(baseline, color="gray", linestyle="--", linewidth=0.8, label="unpruned")
    ax.set_xlabel("level: fraction of the layer's groups pruned")
    ax.set_ylabel("top1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=1 + len(curves) // 16)
    ax.set_title(title)
    return _save(fig, path)
