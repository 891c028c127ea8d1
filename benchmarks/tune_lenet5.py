"""``compress tune`` against a hand-tuned schedule: does a study over the filter group-lasso
strengths of LeNet-5's two convolutions find a schedule that leaves fewer filters than
``schedules/lenet5-filters.yaml`` (conv1 0.5, conv2 0.6, hand-tuned) at equal or better top-1?

Runs the real CLI (subprocesses, the same ``--epochs`` and ``--seed`` everywhere):

    1. compress train --schedule schedules/lenet5-filters.yaml --epochs N      the hand-tuned run
    2. compress tune  --schedule schedules/lenet5-filters.yaml --epochs N --trials T \\
           --search conv-filters.layers.conv1.weight=LOW:HIGH:log \\
           --search conv-filters.layers.conv2.weight=LOW:HIGH:log \\
           --objective top1,filters --min-top1 (hand top1 - 1) --baseline <run 1>

and reads ``pareto.csv`` and each run's ``best.pt`` (what the study measures: validation top-1 of
best.pt, and filters that are exactly zero). The study's first trial is the schedule as written, so
it must reproduce run 1 exactly: a check that a trial is a ``compress train`` run.

Target: a point of the front with fewer filters left (conv1 + conv2; the fully connected layers
are not searched) than the hand-tuned run, at a top-1 at least as high.

    python benchmarks/tune_lenet5.py                           # 30 trials x 10 epochs (~20-40 min, 2 cores)
    python benchmarks/tune_lenet5.py --trials 6 --epochs 3     # smoke run; the target is not expected
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE = ROOT / "schedules/lenet5-filters.yaml"
CONV1, CONV2 = "conv-filters.layers.conv1.weight", "conv-filters.layers.conv2.weight"


def run(cmd: list[str], verbose: bool, stream: bool = False) -> str:
    """One ``python -m compress ...``; its output (streamed line by line with ``stream``)."""
    full = [sys.executable, "-m", "compress", *cmd]
    if not stream:
        proc = subprocess.run(full, cwd=ROOT, capture_output=True, text=True)
        if verbose or proc.returncode != 0:
            print(proc.stdout, proc.stderr, sep="\n", file=sys.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(full)} failed with exit code {proc.returncode}")
        return proc.stdout
    lines = []
    with subprocess.Popen(full, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            print("  | " + line.rstrip())
            lines.append(line)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(full)} failed with exit code {proc.returncode}")
    return "".join(lines)


def conv_filters_left(run_dir: Path) -> tuple[int, int]:
    """Filters of conv1 and conv2 in the run's best.pt that are not exactly zero."""
    from compress.artifacts import load_artifacts, model_from

    model = model_from(load_artifacts(run_dir))
    return tuple(int((m.weight.detach().flatten(1).abs().amax(1) != 0).sum()) for m in (model.conv1, model.conv2))


def describe(label: str, run_dir: Path) -> dict:
    from compress.tuning.measure import measure_run

    m = measure_run(run_dir)
    c1, c2 = conv_filters_left(run_dir)
    print(f"{label}: top1 {m.top1:.2f}  filters left conv1 {c1}/20, conv2 {c2}/50  ({m.filters_zero}/"
          f"{m.filters_total} filters zero, MACs {m.macs:.1f}% removed)  {run_dir}")  # fmt: skip
    return {"top1": m.top1, "left": c1 + c2, "conv1": c1, "conv2": c2, "run": run_dir}


def front(study: Path) -> list[dict]:
    with open(study / "pareto.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every trial and of the hand-tuned run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--range", default="0.1:2", help="LOW:HIGH of both strengths (log scale)")
    parser.add_argument("--out-dir", type=Path, default=None, help="keep the runs and the study here")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    tmp = tempfile.TemporaryDirectory(prefix="compress-tune-")
    out = args.out_dir or Path(tmp.name)
    print(f"tune benchmark: lenet5 on mnist5k, {args.trials} trials x {args.epochs} epochs, seed {args.seed}, "
          f"jobs {args.jobs}; strengths of conv1 and conv2 in [{args.range.replace(':', ', ')}] (log)")  # fmt: skip
    started = time.perf_counter()
    common = ["--epochs", str(args.epochs), "--seed", str(args.seed), "--no-progress"]
    run(["train", "--schedule", str(SCHEDULE), *common, "--out-dir", str(out), "--name", "hand", "--overwrite",
         "--no-plots", "--table", "none"], args.verbose)  # fmt: skip
    hand = describe("hand-tuned (conv1 0.5, conv2 0.6)", out / "hand")
    study = out / "study"
    run(["tune", "--schedule", str(SCHEDULE), *common, "--search", f"{CONV1}={args.range}:log", "--search",
         f"{CONV2}={args.range}:log", "--trials", str(args.trials), "--jobs", str(args.jobs), "--objective",
         "top1,filters", "--min-top1", f"{hand['top1'] - 1:.2f}", "--baseline", str(out / "hand"), "--study-dir",
         str(study)] + (["--resume"] if study.exists() else []), args.verbose, stream=True)  # fmt: skip
    minutes = (time.perf_counter() - started) / 60
    return verdict(study, hand, minutes, args.out_dir is not None)


def verdict(study: Path, hand: dict, minutes: float, kept: bool) -> int:
    print(f"\nthe front ({minutes:.1f} min in all), against the hand-tuned run:")
    better = []
    for row in front(study):
        point = describe(f"trial {row['trial']} (conv1 {float(row[CONV1]):.3g}, conv2 {float(row[CONV2]):.3g})",
                         Path(row["run_dir"]))  # fmt: skip
        if point["left"] < hand["left"] and point["top1"] >= hand["top1"]:
            better.append((point["left"], -point["top1"], row["trial"], point))
    start = study / "trials/000"
    if start.exists():
        first = describe("trial 0 (the schedule as written)", start)
        same = first["top1"] == hand["top1"] and first["left"] == hand["left"]
        print(f"trial 0 reproduces the hand-tuned run: {'yes' if same else 'NO'}")
    ok = bool(better)
    if ok:
        left, _, trial, point = min(better)
        print(f"best: trial {trial} leaves {left} conv filters (conv1 {point['conv1']}, conv2 {point['conv2']}) "
              f"at top1 {point['top1']:.2f}; hand-tuned: {hand['left']} ({hand['conv1']}, {hand['conv2']}) at "
              f"{hand['top1']:.2f}")  # fmt: skip
    print(f"target (a front point with fewer filters left at equal or better top1): {'PASS' if ok else 'FAIL'}")
    if kept:
        print(f"study kept in {study}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
