"""Filter pruning against group lasso on LeNet-5, at the same filters left: which keeps more
accuracy? The comparison users ask for first.

For each seed (default 0, 1, 2), with that ``--seed`` and the same 20 epochs and learning rates:

    1. schedules/lenet5-filters.yaml       group lasso over filters (proximal, regularizes epochs 0-5)
    2. schedules/lenet5-filters-agp.yaml   L1-ranked filter pruning with AGP (steps at epochs 1-6),
                                            its final levels set to leave exactly the filters run 1 left
    3. the same config without rules       the dense reference

Top-1 is the validation top-1 after the last epoch; filters left are those not exactly zero in the
final weights.

    python benchmarks/prune_vs_regularize.py                  # seeds 0-2 (~3 min)
    python benchmarks/prune_vs_regularize.py --seeds 0 --verbose
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from training_runs import ROOT, dense_copy, edited_copy, filters_left, mean, seeds_parser, train

LASSO = ROOT / "schedules/lenet5-filters.yaml"
AGP = ROOT / "schedules/lenet5-filters-agp.yaml"
CONVS = {"conv1.weight": 20, "conv2.weight": 50}


def matched_agp(folder: Path, seed: int, lasso_left: dict[str, int]) -> Path:
    """The AGP schedule with final levels that remove exactly the filters group lasso removed
    (a level's count is floor(level x filters), so half a filter is added against rounding)."""
    levels = {n: (CONVS[n] - lasso_left[n] + 0.5) / CONVS[n] for n in CONVS}

    def edit(data: dict) -> None:
        rule = data["rules"][0]
        rule["layers"] = levels
        rule["sparsity"]["from"] = min(rule["sparsity"]["from"], *levels.values())
        rule["sparsity"]["to"] = max(levels.values())

    return edited_copy(AGP, folder, f"agp-matched-s{seed}", edit)


def one_seed(seed: int, folder: Path, out: Path, dense: Path, args: argparse.Namespace) -> dict[str, float]:
    lasso = train(LASSO, f"lasso-s{seed}", out, seed, epochs=args.epochs, verbose=args.verbose)
    lasso_left = {n: filters_left(lasso.state_dict(), n) for n in CONVS}
    matched = matched_agp(folder, seed, lasso_left)
    agp = train(matched, f"agp-s{seed}", out, seed, epochs=args.epochs, verbose=args.verbose)
    agp_left = {n: filters_left(agp.state_dict(), n) for n in CONVS}
    base = train(dense, f"dense-s{seed}", out, seed, epochs=args.epochs, verbose=args.verbose)
    same = "" if agp_left == lasso_left else f" (AGP left {agp_left}: NOT the same filters left)"
    counts = "/".join(str(lasso_left[n]) for n in CONVS)
    print(f"seed {seed}: conv1/conv2 filters left {counts}{same}: group lasso {lasso.top1:.2f}, AGP pruning "
          f"{agp.top1:.2f}, dense {base.top1:.2f}")  # fmt: skip
    return {"lasso": lasso.top1, "agp": agp.top1, "dense": base.top1}


def main(argv: list[str] | None = None) -> int:
    args = seeds_parser(__doc__).parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    with tempfile.TemporaryDirectory(prefix="compress-pvr-") as tmp:
        out = args.out_dir or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        dense = dense_copy(LASSO, Path(tmp))
        print(f"filter pruning (L1, AGP) against group lasso on lenet5 at the same filters left, seeds {args.seeds}")
        rows = [one_seed(seed, Path(tmp), out, dense, args) for seed in args.seeds]
    means = {k: mean([r[k] for r in rows]) for k in rows[0]}
    print(f"mean top1: group lasso {means['lasso']:.2f}, AGP pruning {means['agp']:.2f}, dense {means['dense']:.2f}")
    gap = means["lasso"] - means["agp"]
    winner = "group lasso" if gap > 0 else "AGP pruning" if gap < 0 else "neither"
    print(f"higher top1 at the same filters left: {winner} ({gap:+.2f} points lasso - AGP)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
