"""Automated gradual pruning of LeNet-300-100 (``mlp``) on mnist5k: does ``schedules/mlp-agp.yaml``
(AGP to 90% of the weights of fc1 and fc2, smallest |w| first) keep the dense model's accuracy?
Han et al. 2015 reached 92% on the full MNIST at no loss.

For each seed (default 0, 1, 2), two ``compress train`` runs with that ``--seed``: the schedule,
and a copy of it without rules (the same config, epochs and learning rates: the dense baseline).
Top-1 is the validation top-1 after the last epoch; sparsity is counted from the final weights
(exact zeros only).

Target, seeds 0-2: top-1 at most 0.5 point under the dense run's, with fc1 and fc2 at least 90%
zero. It is judged on every seed and on the mean over the seeds; both verdicts are printed (the
validation split has 1,000 images, so one seed's top-1 moves in steps of 0.1 and a single run's
difference of a few tenths is a few images).

    python benchmarks/agp_mlp.py                          # seeds 0-2, the schedule's 10 epochs (~2 min)
    python benchmarks/agp_mlp.py --seeds 0 --epochs 3     # smoke run (the target is not expected)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from training_runs import ROOT, dense_copy, mean, seeds_parser, train, verdict, zero_share

SCHEDULE = ROOT / "schedules/mlp-agp.yaml"
PRUNED = ["fc1.weight", "fc2.weight"]
MAX_DROP, MIN_SPARSITY = 0.5, 90.0


def one_seed(seed: int, dense: Path, out: Path, args: argparse.Namespace) -> tuple[float, float, bool]:
    base = train(dense, f"dense-s{seed}", out, seed, epochs=args.epochs, verbose=args.verbose)
    pruned = train(SCHEDULE, f"agp-s{seed}", out, seed, epochs=args.epochs, verbose=args.verbose)
    state = pruned.state_dict()
    shares = {n: zero_share(state, [n]) for n in PRUNED}
    drop = base.top1 - pruned.top1
    ok = drop <= MAX_DROP and all(s >= MIN_SPARSITY for s in shares.values())
    zeros = ", ".join(f"{n} {s:.1f}%" for n, s in shares.items())
    print(f"seed {seed}: dense {base.top1:.2f}, AGP {pruned.top1:.2f} ({-drop:+.2f} points); zero: {zeros}  "
          f"{verdict(ok)}")  # fmt: skip
    print("  AGP top1 by epoch: " + ", ".join(f"{t:.1f}" for t in pruned.top1_by_epoch))
    return base.top1, pruned.top1, ok


def main(argv: list[str] | None = None) -> int:
    args = seeds_parser(__doc__).parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    with tempfile.TemporaryDirectory(prefix="compress-agp-") as tmp:
        out = args.out_dir or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        dense = dense_copy(SCHEDULE, Path(tmp))
        print(f"AGP on mlp (fc1, fc2 to {MIN_SPARSITY:g}%) against dense, seeds {args.seeds}")
        results = [one_seed(seed, dense, out, args) for seed in args.seeds]
    dense_mean, pruned_mean = mean([r[0] for r in results]), mean([r[1] for r in results])
    every = all(r[2] for r in results)
    on_mean = dense_mean - pruned_mean <= MAX_DROP
    print(f"mean top1: dense {dense_mean:.2f}, AGP {pruned_mean:.2f} ({pruned_mean - dense_mean:+.2f} points)")
    print(f"target (top1 at most {MAX_DROP} under dense, fc1 and fc2 >= {MIN_SPARSITY:g}% zero): on every seed "
          f"{verdict(every)}, on the mean {verdict(on_mean)}")  # fmt: skip
    return 0 if every and on_mean else 1


if __name__ == "__main__":
    sys.exit(main())
