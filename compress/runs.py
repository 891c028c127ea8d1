"""The run directory and its files: config.yaml, the schedule copy, metrics.csv, sparsity.json,
summary.json, train.log, checkpoint.pt, best.pt."""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from compress.errors import CompressError
from compress.sparsity import LayerSparsity, total_sparsity
from compress.training import EpochResult

STRUCTURED_TOTALS = ("filters", "channels")


def default_run_name(schedule_source: str) -> str:
    return f"{Path(schedule_source).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def create_run_dir(out_dir: str, name: str, *, overwrite: bool = False) -> Path:
    """Never reuses a directory that holds files unless told to: a finished run is somebody's result."""
    from compress.files import path_kind

    path = Path(out_dir) / name
    kind = path_kind(path, "--out-dir/--name")
    if kind not in ("dir", "missing"):
        raise CompressError(f"--out-dir/--name: {path} exists and is not a directory")
    if kind == "dir" and any(path.iterdir()) and not overwrite:
        raise CompressError(f"--name: run directory {path} already exists; pick another --name or pass --overwrite")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        raise CompressError(f"--out-dir: cannot create {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return path


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def structured_totals(layers: list[LayerSparsity]) -> dict[str, float]:
    """% of zero filters / channels over all reported weights, weighted by their group counts."""
    from compress import groups as G

    out = {}
    for group in STRUCTURED_TOTALS:
        zero = total = 0.0
        for layer in layers:
            pct = layer.structured.get(group)
            if pct is not None:
                count = G.get(group).count(tuple(layer.shape))
                zero += pct / 100 * count
                total += count
        out[group] = 100.0 * zero / total if total else 0.0
    return out


@dataclass
class RunFiles:
    """Appends one epoch at a time; every file is complete after each epoch."""

    path: Path
    rule_names: list[str]
    prune_names: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    def write_start(self, config: dict[str, Any], schedule_text: str, schedule_name: str) -> None:
        (self.path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        (self.path / f"schedule-{schedule_name}.yaml").write_text(schedule_text, encoding="utf-8")
        header = [
            "epoch",
            "lr",
            "train_loss",
            "data_loss",
            *[f"loss/{r}" for r in self.rule_names],
            *[f"{kind}/{r}" for r in self.prune_names for kind in ("pruned", "target")],
            "val_loss",
            "top1",
            "top5",
            "sparsity",
            *[f"sparsity/{g}" for g in STRUCTURED_TOTALS],
            "seconds",
        ]
        with open(self.path / "metrics.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(header)

    def reopen(self, next_epoch: int) -> None:
        """Continue a run: drop what epochs at or after ``next_epoch`` wrote (a kill can land between
        writing an epoch's row and its checkpoint), keep everything before."""
        metrics = self.path / "metrics.csv"
        with open(metrics, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        kept = [rows[0], *[r for r in rows[1:] if r and int(r[0]) < next_epoch]]
        tmp = metrics.with_name(".metrics.csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(kept)
        os.replace(tmp, metrics)
        sparsity = self.path / "sparsity.json"
        history = json.loads(sparsity.read_text(encoding="utf-8")) if sparsity.exists() else []
        self.history = [h for h in history if h["epoch"] < next_epoch]
        write_atomic(sparsity, json.dumps(self.history, indent=1))

    def write_epoch(self, result: EpochResult, layers: list[LayerSparsity]) -> dict[str, float]:
        sparsity = total_sparsity(layers)
        structured = structured_totals(layers)
        row = [
            result.epoch,
            f"{result.lr:.6g}",
            f"{result.train_loss:.6f}",
            f"{result.data_loss:.6f}",
            *[f"{result.rule_losses.get(r, 0.0):.6g}" for r in self.rule_names],
            *_pruning_cells(result.extra.get("pruning", {}), self.prune_names),
            f"{result.val_loss:.6f}",
            f"{result.top1:.2f}",
            f"{result.top5:.2f}",
            f"{sparsity:.4f}",
            *[f"{structured[g]:.4f}" for g in STRUCTURED_TOTALS],
            f"{result.seconds:.3f}",
        ]
        with open(self.path / "metrics.csv", "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(row)
        self.history.append({"epoch": result.epoch, "total": sparsity, "layers": [layer.to_dict() for layer in layers]})
        write_atomic(self.path / "sparsity.json", json.dumps(self.history, indent=1))
        return {"sparsity": sparsity, **{f"sparsity/{g}": v for g, v in structured.items()}}

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_atomic(self.path / "summary.json", json.dumps(summary, indent=2))

    def log(self, line: str) -> None:
        with open(self.path / "train.log", "a", encoding="utf-8") as f:
            f.write(line + "\n")


def _pruning_cells(report: dict[str, tuple[float | None, float]], names: list[str]) -> list[str]:
    """Per pruning rule: the % of its groups masked, and the % it aimed for (empty for thresholds)."""
    cells = []
    for name in names:
        target, achieved = report.get(name, (None, 0.0))
        cells += [f"{100 * achieved:.4f}", "" if target is None else f"{100 * target:.4f}"]
    return cells


class BestRule:
    """Which epoch's weights become ``best.pt``.

    ``top1`` (default): the highest validation top1. ``sparsity-at-top1:B``: the sparsest epoch whose
    top1 is at least B, ties to the higher top1; until an epoch reaches B, the highest top1 is kept,
    so ``best.pt`` always exists (the message says which rule chose it).
    """

    def __init__(self, spec: str = "top1"):
        self.spec = spec
        self.bound: float | None = None
        if spec != "top1":
            kind, _, bound = spec.partition(":")
            try:
                if kind != "sparsity-at-top1":
                    raise ValueError
                self.bound = float(bound)
                if not 0 <= self.bound <= 100:  # also refuses nan and inf
                    raise ValueError
            except ValueError:
                raise CompressError(
                    f"--best: unknown rule {spec!r}; valid: top1, sparsity-at-top1 B (B a top1 in %, 0 to 100)"
                ) from None

    def key(self, top1: float, sparsity: float) -> tuple:
        if self.bound is None:
            return (top1,)
        reached = top1 >= self.bound
        return (reached, sparsity if reached else top1, top1)

    def describe(self) -> str:
        if self.bound is None:
            return "highest validation top1"
        return f"sparsest with top1 >= {self.bound:g} (highest top1 until one reaches it)"
