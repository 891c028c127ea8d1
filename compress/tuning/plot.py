"""``STUDY_DIR/pareto.png`` (the plots extra: matplotlib): every measured trial, top1 against the
objective's sparsity, the Pareto front highlighted and joined, trials stopped early crossed out,
``--min-top1`` as a line, and the ``--baseline`` run and the first trial (the schedule as written)
marked, so the front reads against where the user started."""

from __future__ import annotations

from pathlib import Path

from compress.tuning.front import Point
from compress.tuning.measure import Measures

AXIS = {
    "filters": "conv filters and linear rows exactly zero (%)",
    "macs": "MACs removed by thinning (%)",
    "params": "parameters removed by thinning (%)",
}


def plot_front(path: Path, points: list[Point], front: list[Point], objective: str, min_top1: float | None,
               baseline: Measures | None = None) -> Path:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    done = [p for p in points if p.stopped is None]
    stopped = [p for p in points if p.stopped is not None]
    ax.scatter([p.measures.sparsity(objective) for p in done], [p.measures.top1 for p in done], s=18, c="0.6",
               label=f"trials ({len(done)})")  # fmt: skip
    if stopped:
        ax.scatter([p.measures.sparsity(objective) for p in stopped], [p.measures.top1 for p in stopped], s=18,
                   marker="x", c="0.75", label=f"stopped early ({len(stopped)})")  # fmt: skip
    line = sorted(front, key=lambda p: p.measures.sparsity(objective))
    ax.plot([p.measures.sparsity(objective) for p in line], [p.measures.top1 for p in line], "o-", c="tab:red",
            label=f"Pareto front ({len(front)})")  # fmt: skip
    for p in line:
        ax.annotate(str(p.number), (p.measures.sparsity(objective), p.measures.top1), textcoords="offset points",
                    xytext=(4, 4), fontsize=7)  # fmt: skip
    for p in points:
        if p.start:
            ax.scatter([p.measures.sparsity(objective)], [p.measures.top1], s=90, facecolors="none",
                       edgecolors="tab:blue", label=f"trial {p.number}: the schedule as written")  # fmt: skip
    if baseline is not None:
        ax.scatter([baseline.sparsity(objective)], [baseline.top1], s=120, marker="*", c="black", label="baseline")
    if min_top1 is not None:
        ax.axhline(min_top1, ls="--", c="tab:green", lw=1, label=f"--min-top1 {min_top1:g}")
    ax.set_xlabel(AXIS[objective])
    ax.set_ylabel("validation top1 (best.pt)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
