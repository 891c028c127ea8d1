"""What the accuracy benchmarks share: a ``compress train`` run in a subprocess (the real CLI) and
what it wrote, and schedule copies with one thing changed (the rules dropped for a dense run of the
same epochs and rates, or a rule's numbers edited), so that every comparison differs in one thing.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    run: Path
    top1: float  # validation top-1 after the last epoch (not the best epoch's)
    top1_by_epoch: list[float]
    seconds: float

    def state_dict(self) -> dict[str, torch.Tensor]:
        return torch.load(self.run / "checkpoint.pt", map_location="cpu", weights_only=True)["state_dict"]


def train(schedule: Path, name: str, out_dir: Path, seed: int, *, epochs: int | None = None,
          verbose: bool = False) -> Run:  # fmt: skip
    """One ``compress train`` run of ``schedule`` in ``out_dir/name``."""
    cmd = [sys.executable, "-m", "compress", "train", "--schedule", str(schedule), "--seed", str(seed),
           "--out-dir", str(out_dir), "--name", name, "--overwrite", "--no-progress", "--no-plots",
           "--table", "none"] + (["--epochs", str(epochs)] if epochs else [])  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if verbose or proc.returncode != 0:
        print(proc.stdout, proc.stderr, sep="\n", file=sys.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    run = out_dir / name
    with open(run / "metrics.csv", newline="", encoding="utf-8") as f:
        top1 = [float(row["top1"]) for row in csv.DictReader(f)]
    return Run(run, top1[-1], top1, seconds)


def seeds_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every seeded comparison takes: --seeds, --epochs, --out-dir, --verbose."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="[default: the schedule's config]")
    parser.add_argument("--out-dir", type=Path, default=None, help="keep the runs here")
    parser.add_argument("--verbose", action="store_true")
    return parser


def edited_copy(schedule: Path, folder: Path, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    """``schedule`` with ``edit`` applied to its YAML data, written to ``folder/name.yaml`` with
    ``config:`` made absolute (the copy lives elsewhere)."""
    data = yaml.safe_load(schedule.read_text(encoding="utf-8"))
    edit(data)
    if data.get("config"):
        data["config"] = str((schedule.parent / data["config"]).resolve())
    out = folder / f"{name}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def dense_copy(schedule: Path, folder: Path) -> Path:
    """The same config, epochs and learning rates, no rules: the dense run to compare with."""
    return edited_copy(schedule, folder, f"{schedule.stem}-dense", lambda data: data.__setitem__("rules", []))


def filters_left(state_dict: dict[str, torch.Tensor], name: str) -> int:
    """Filters (rows) of a weight that are not exactly zero."""
    return int((state_dict[name].flatten(1).abs().amax(1) != 0).sum())


def zero_share(state_dict: dict[str, torch.Tensor], names: list[str]) -> float:
    """Percent of the weights of ``names`` that are exactly zero."""
    zeros = sum(int((state_dict[n] == 0).sum()) for n in names)
    return 100.0 * zeros / sum(state_dict[n].numel() for n in names)


def mean(values: list[float]) -> float:
    return statistics.fmean(values)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
