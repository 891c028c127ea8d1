"""What a study found: the Pareto front of its trials (top1 against the objective's sparsity),
written as ``pareto.csv``, as ready-to-run schedules in ``best/``, and as the table the command
prints; and which point to train further.

The front is computed here from the measures each trial recorded rather than taken from Optuna's
``best_trials``, so that it is the same on every Optuna version: a point is on it when no other
trial that finished every epoch (and meets ``--min-top1``) has at least its top1 and its sparsity
and more of one. Trials stopped early never are (they are not finished runs).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.tuning.document import ScheduleDocument
from compress.tuning.measure import OBJECTIVES, Measures
from compress.tuning.space import Dimension, format_value, short_names

CLOSE = 1.0  # without --min-top1, the chosen point is the sparsest within this many points of the best top1
COLUMNS = {"filters": "filters_zero_pct", "macs": "macs_removed_pct", "params": "params_removed_pct"}


@dataclass(frozen=True)
class Point:
    """A trial that trained: its values, its measures, its run."""

    number: int
    params: dict[str, Any]
    measures: Measures
    run_dir: str
    stopped: str | None = None
    start: bool = False

    def values(self, objective: str) -> tuple[float, float]:
        return self.measures.top1, self.measures.sparsity(objective)


def points_of(trials: list[Any]) -> list[Point]:
    """The trials (Optuna's frozen trials) that trained and were measured, complete or stopped."""
    out = []
    for t in trials:
        attrs = t.user_attrs
        if "measures" in attrs and t.state.name in ("COMPLETE", "PRUNED"):
            out.append(Point(t.number, dict(t.params), Measures.from_dict(attrs["measures"]), attrs.get("run_dir", ""),
                             attrs.get("stopped"), bool(attrs.get("start"))))  # fmt: skip
    return out


def feasible(point: Point, min_top1: float | None) -> bool:
    return point.stopped is None and (min_top1 is None or point.measures.top1 >= min_top1)


def pareto_front(points: list[Point], objective: str, min_top1: float | None) -> list[Point]:
    """The non-dominated feasible points, most accurate first (of equal points, the first trial)."""
    candidates = [p for p in points if feasible(p, min_top1)]
    front = []
    for p in candidates:
        a = p.values(objective)
        dominated = any(_dominates(q.values(objective), a) for q in candidates)
        repeated = any(q.values(objective) == a and q.number < p.number for q in candidates)
        if not dominated and not repeated:
            front.append(p)
    return sorted(front, key=lambda p: (-p.measures.top1, -p.measures.sparsity(objective), p.number))


def _dominates(b: tuple[float, float], a: tuple[float, float]) -> bool:
    return b[0] >= a[0] and b[1] >= a[1] and b != a


def choose(front: list[Point], objective: str, min_top1: float | None) -> Point | None:
    """The point to train further: the sparsest that meets ``--min-top1`` (every point of the front
    does), or without it the sparsest within ``CLOSE`` points of the front's best top1."""
    if not front:
        return None
    best = max(p.measures.top1 for p in front)
    near = front if min_top1 is not None else [p for p in front if p.measures.top1 >= best - CLOSE]
    return max(near, key=lambda p: (p.measures.sparsity(objective), p.measures.top1))


def best_schedules(best_dir: Path, front: list[Point], document: ScheduleDocument, header: dict[int, list[str]]) -> \
        dict[int, Path]:  # fmt: skip
    """``best/trial-NNN.yaml`` for each point: the schedule with the trial's values (``config:``
    absolute) under comment lines ``header[number]``; earlier files of the study are replaced."""
    best_dir.mkdir(parents=True, exist_ok=True)
    for old in best_dir.glob("trial-*.yaml"):
        old.unlink()
    out = {}
    for p in front:
        values = {k: v for k, v in p.params.items() if k in document.leaves}
        path = best_dir / f"trial-{p.number:03d}.yaml"
        comments = "".join(f"# {line}\n" for line in header[p.number])
        path.write_text(comments + document.with_values(values), encoding="utf-8")
        out[p.number] = path
    return out


def header_lines(point: Point, dims: tuple[Dimension, ...], objective: str, study: str, epochs: int) -> list[str]:
    m = point.measures
    values = ", ".join(f"{d.path} = {format_value(point.params[d.path])}" for d in dims if d.path in point.params)
    return [f"compress tune: trial {point.number} of study {study}, on its Pareto front (top1, {objective})",
            f"  top1 {m.top1:.2f}; filters {m.filters:.2f}% zero ({m.filters_zero}/{m.filters_total}); MACs "
            f"{m.macs:.2f}% and parameters {m.params:.2f}% removed by thinning; {epochs} epochs ({point.run_dir})",
            f"  {values}"]  # fmt: skip


def write_csv(path: Path, front: list[Point], dims: tuple[Dimension, ...], objective: str,
              schedules: dict[int, Path]) -> None:  # fmt: skip
    """One row per point of the front: its values, top1, every measure, its run and schedule."""
    fields = ["trial", *[d.path for d in dims], "top1", COLUMNS[objective], "filters_zero", "filters_total",
              "filters_zero_pct", "macs_dense", "macs_thinned", "macs_removed_pct", "params_dense", "params_thinned",
              "params_removed_pct", "run_dir", "schedule"]  # fmt: skip
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(fields)))
        writer.writeheader()
        for p in front:
            m = p.measures
            writer.writerow({"trial": p.number, **{d.path: p.params.get(d.path, "") for d in dims},
                             "top1": f"{m.top1:.2f}", "filters_zero": m.filters_zero, "filters_total": m.filters_total,
                             "filters_zero_pct": f"{m.filters:.4f}", "macs_dense": m.macs_dense,
                             "macs_thinned": m.macs_thinned, "macs_removed_pct": f"{m.macs:.4f}",
                             "params_dense": m.params_dense, "params_thinned": m.params_thinned,
                             "params_removed_pct": f"{m.params:.4f}", "run_dir": p.run_dir,
                             "schedule": str(schedules.get(p.number, ""))})  # fmt: skip


def front_table(front: list[Point], dims: tuple[Dimension, ...], objective: str, chosen: Point | None,
                baseline: Measures | None = None) -> list[str]:  # fmt: skip
    """The front as aligned text: trial, values, top1, sparsity, MACs removed, run directory."""
    names = short_names([d.path for d in dims])
    head = ["trial", *[names[d.path] for d in dims], "top1", OBJECTIVES[objective].split(" ")[0] + " %", "MACs -%",
            "run"]  # fmt: skip
    rows = []
    for p in front:
        mark = "*" if chosen is not None and p.number == chosen.number else ""
        rows.append([f"{p.number}{mark}", *[format_value(p.params.get(d.path, "")) for d in dims],
                     f"{p.measures.top1:.2f}", f"{p.measures.sparsity(objective):.2f}", f"{p.measures.macs:.2f}",
                     p.run_dir])  # fmt: skip
    if baseline is not None:
        rows.append(["baseline", *["" for _ in dims], f"{baseline.top1:.2f}", f"{baseline.sparsity(objective):.2f}",
                     f"{baseline.macs:.2f}", "--baseline"])  # fmt: skip
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = []
    for row in [head, *rows]:
        cells = [str(c).rjust(w) if 0 < i < len(row) - 1 else str(c).ljust(w) for i, (c, w) in
                 enumerate(zip(row, widths, strict=True))]  # fmt: skip
        lines.append("  ".join(cells).rstrip())
    return lines
