"""Dense-Sparse-Dense on LeNet-5 (Han et al. 2017): does pruning as a regularizer end more accurate
than dense training of the same length? ``schedules/lenet5-dsd.yaml``: dense, then 50% of every
layer's weights pruned and retrained under the masks, then the masks released and the whole
network retrained.

For each seed (default 0, 1, 2), two ``compress train`` runs with that ``--seed``: the schedule and
a copy of it without rules (the same config, epochs and learning rates: the dense run). Top-1 is
the validation top-1 after the last epoch. The run also checks that DSD's sparse phase was sparse
and that its released weights are dense again.

Target: DSD's mean top-1 over the seeds at least the dense mean.

    python benchmarks/dsd_lenet5.py                       # seeds 0-2, the schedule's 20 epochs (~3 min)
    python benchmarks/dsd_lenet5.py --seeds 0 --verbose   # one seed, every run's output
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from training_runs import ROOT, dense_copy, mean, seeds_parser, train, verdict, zero_share

SCHEDULE = ROOT / "schedules/lenet5-dsd.yaml"
PRUNED = ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]


def sparse_phase_zero(run: Path) -> float:
    """The share of zero weights pruned layers held in the sparse phase, from metrics.csv's ``pruned/dsd``."""
    import csv

    with open(run / "metrics.csv", newline="", encoding="utf-8") as f:
        return max(float(row.get("pruned/dsd") or 0.0) for row in csv.DictReader(f))


def one_seed(seed: int, dense: Path, out: Path, args: argparse.Namespace) -> tuple[float, float]:
    base = train(dense, f"dense-s{seed}", out, seed, epochs=args.epochs, verbose=args.verbose)
    dsd = train(SCHEDULE, f"dsd-s{seed}", out, seed, epochs=args.epochs, verbose=args.verbose)
    sparse, final = sparse_phase_zero(dsd.run), zero_share(dsd.state_dict(), PRUNED)
    beat = "beat" if dsd.top1 > base.top1 else "tied" if dsd.top1 == base.top1 else "lost to"
    print(f"seed {seed}: dense {base.top1:.2f}, DSD {dsd.top1:.2f} ({dsd.top1 - base.top1:+.2f}; DSD {beat} dense); "
          f"sparse phase {sparse:.1f}% pruned, final weights {final:.2f}% zero")  # fmt: skip
    print("  dense top1 by epoch: " + ", ".join(f"{t:.1f}" for t in base.top1_by_epoch))
    print("  DSD   top1 by epoch: " + ", ".join(f"{t:.1f}" for t in dsd.top1_by_epoch))
    return base.top1, dsd.top1


def main(argv: list[str] | None = None) -> int:
    args = seeds_parser(__doc__).parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    with tempfile.TemporaryDirectory(prefix="compress-dsd-") as tmp:
        out = args.out_dir or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        dense = dense_copy(SCHEDULE, Path(tmp))
        print(f"DSD on lenet5 against dense training of the same epochs, seeds {args.seeds}")
        results = [one_seed(seed, dense, out, args) for seed in args.seeds]
    dense_mean, dsd_mean = mean([r[0] for r in results]), mean([r[1] for r in results])
    wins = sum(d > b for b, d in results)
    ok = dsd_mean >= dense_mean
    print(f"mean top1: dense {dense_mean:.2f}, DSD {dsd_mean:.2f} ({dsd_mean - dense_mean:+.2f}); DSD beat dense on "
          f"{wins} of {len(results)} seeds")  # fmt: skip
    print(f"target (DSD mean >= dense mean): {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
