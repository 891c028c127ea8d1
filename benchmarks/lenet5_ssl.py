"""Structured sparsity on LeNet-5 (after Wen et al. 2016, SSL): how many conv filters does the
filter-wise group-lasso schedule remove, at what accuracy, compared with the dense baseline?

Runs ``compress train`` (the real CLI, one subprocess per run, the same ``--epochs`` everywhere),
for each seed (default 0, 1, 2) with that ``--seed``:

    1. schedules/lenet5-baseline.yaml                  dense baseline
    2. schedules/lenet5-filters.yaml                   group lasso over filters, mode: proximal
    3. the same schedule with every rule in mode: penalty (a temporary copy; first seed only)

and reads what each run wrote (``summary.json`` and the final ``checkpoint.pt``). Filters are
counted from the final weights: a filter is gone when it is exactly zero. MACs: conv1's scale with
its live filters; conv2's with its live filters times its live input channels, which are conv1's
live filters (removing a filter of conv1 removes that input channel of conv2).

Target, on every seed: at most 5 of 20 filters left in conv1, at most 19 of 50 in conv2, and a
top-1 (final epoch) no more than 0.5 point under that seed's baseline.

    python benchmarks/lenet5_ssl.py                   # epochs from the SSL schedule's config
    python benchmarks/lenet5_ssl.py --seeds 0 --epochs 3 --no-penalty   # quick smoke run (target not expected)
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGET_CONV1, TARGET_CONV2, TARGET_DROP = 5, 19, 0.5
NEAR_ZERO = 1e-4


def schedule_epochs(schedule: Path) -> int:
    """The epochs the schedule's own config asks for (what ``compress train --schedule`` would run)."""
    from compress.config import load_config_file, resolve_config
    from compress.schedule import load_schedule

    loaded = load_schedule(schedule)
    layers = [load_config_file(loaded.config)] if loaded.config else []
    return resolve_config(layers).epochs


def penalty_copy(schedule: Path, folder: Path) -> Path:
    """The schedule with every rule in penalty mode; ``config:`` made absolute so the copy can live elsewhere."""
    data = yaml.safe_load(schedule.read_text(encoding="utf-8"))
    for rule in data.get("rules") or []:
        rule["mode"] = "penalty"
    if data.get("config"):
        data["config"] = str((schedule.parent / data["config"]).resolve())
    out = folder / f"{schedule.stem}-penalty.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def train(schedule: Path, name: str, out_dir: Path, epochs: int, seed: int, verbose: bool) -> dict:
    """One ``compress train`` run; returns its summary and final state dict."""
    import training_runs

    run = training_runs.train(schedule, name, out_dir, seed, epochs=epochs, verbose=verbose)
    summary = json.loads((run.run / "summary.json").read_text(encoding="utf-8"))
    with open(run.run / "metrics.csv", newline="", encoding="utf-8") as f:
        summary["final_sparsity"] = float(list(csv.DictReader(f))[-1]["sparsity"])  # the last epoch's
    return {"summary": summary, "state_dict": run.state_dict(), "seconds": run.seconds, "run": run.run}


def history(run: Path) -> str:
    """Per epoch: top1 from metrics.csv and, from sparsity.json, conv1/conv2 filters left (best effort)."""
    import csv

    try:
        with open(run / "metrics.csv", newline="", encoding="utf-8") as f:
            top1 = [float(row["top1"]) for row in csv.DictReader(f)]
        left = []
        for epoch in json.loads((run / "sparsity.json").read_text(encoding="utf-8")):
            counts = []
            for layer in epoch["layers"]:
                if layer["name"] in ("conv1.weight", "conv2.weight"):
                    f = layer["shape"][0]
                    counts.append(str(round(f * (1 - layer["structured"]["filters"] / 100))))
            left.append("/".join(counts))
    except (OSError, KeyError, ValueError, TypeError):
        return "  (no per-epoch history)"
    if all(c == left[0] for c in left):  # nothing ever zeroed: top1 alone
        return "  top1 by epoch: " + ", ".join(f"{t:.1f}" for t in top1)
    cells = [f"{t:.1f} [{c}]" for t, c in zip(top1, left, strict=False)]
    return "  top1 by epoch [conv1/conv2 filters left]: " + ", ".join(cells)


def filter_norms(weight: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(weight.flatten(1), dim=1)


def conv_structure(state_dict: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Per conv of LeNet-5 (in model order): filters, live (not exactly zero) filters, near-zero filters,
    and the MACs dense and after removing zero filters and the input channels they feed."""
    from compress.models import build_model

    model = build_model("lenet5", num_classes=10, in_channels=1, input_size=28)
    model.load_state_dict(state_dict)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    positions: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, out, n=n: positions.__setitem__(n, out[0, 0].numel())) for n, m in convs
    ]
    with torch.no_grad():
        model.eval()
        model(torch.zeros(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    out = {}
    live_inputs = None  # the previous conv's live filters = this conv's live input channels
    for name, conv in convs:
        w = conv.weight.detach()
        norms = filter_norms(w)
        live = norms != 0
        f, c = w.shape[0], w.shape[1]
        kernel = w[0, 0].numel()
        c_live = c if live_inputs is None else int(live_inputs.sum())
        out[name] = {
            "filters": f,
            "live": int(live.sum()),
            "exact_zero": int((~live).sum()),
            "near_zero": int((norms < NEAR_ZERO).sum()),
            "dense_macs": positions[name] * f * c * kernel,
            "live_macs": positions[name] * int(live.sum()) * c_live * kernel,
        }
        live_inputs = live
    return out


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(label: str, run: dict, base: dict) -> bool | None:
    """Prints one regularized run against its baseline; for the proximal run, whether the target is met."""
    conv = conv_structure(run["state_dict"])
    c1, c2 = conv["conv1"], conv["conv2"]
    dense = sum(c["dense_macs"] for c in conv.values())
    live = sum(c["live_macs"] for c in conv.values())
    top1 = run["summary"]["final_top1"]
    drop = base["final_top1"] - top1
    print(f"{label}: top1 {top1:.2f} vs baseline {base['final_top1']:.2f} ({0.0 - drop:+.2f} points)")
    print(f"  filters left: conv1 {c1['live']}/{c1['filters']}, conv2 {c2['live']}/{c2['filters']}")
    print(
        f"  conv MACs left: {live:,} of {dense:,} = {100 * live / dense:.1f}% "
        f"(conv1 {c1['live_macs']:,}/{c1['dense_macs']:,}, conv2 {c2['live_macs']:,}/{c2['dense_macs']:,})"
    )
    print(
        f"  filter groups exactly zero / norm < {NEAR_ZERO:g}: conv1 {c1['exact_zero']} / {c1['near_zero']}, "
        f"conv2 {c2['exact_zero']} / {c2['near_zero']}"
    )
    if label != "proximal":
        return None
    checks = {
        f"conv1 <= {TARGET_CONV1} left": c1["live"] <= TARGET_CONV1,
        f"conv2 <= {TARGET_CONV2} left": c2["live"] <= TARGET_CONV2,
        f"top1 drop <= {TARGET_DROP}": drop <= TARGET_DROP,
    }
    print(f"  target (proximal): {', '.join(f'{k}: {verdict(v)}' for k, v in checks.items())}")
    return all(checks.values())


def one_seed(args: argparse.Namespace, seed: int, epochs: int, out_dir: Path, tmp: Path, penalty: bool) -> bool:
    print(f"\n=== seed {seed}")
    runs = {"baseline": train(args.baseline, f"baseline-s{seed}", out_dir, epochs, seed, args.verbose)}
    runs["proximal"] = train(args.schedule, f"ssl-proximal-s{seed}", out_dir, epochs, seed, args.verbose)
    if penalty:
        copy = penalty_copy(args.schedule, tmp)
        runs["penalty"] = train(copy, f"ssl-penalty-s{seed}", out_dir, epochs, seed, args.verbose)
    base = runs["baseline"]["summary"]
    for label, run in runs.items():
        s = run["summary"]
        print(
            f"{label:9s} top1 final {s['final_top1']:.2f}  best {s['best_top1']:.2f} (epoch {s['best_epoch']})  "
            f"sparsity {s['final_sparsity']:.2f}%  [{run['seconds']:.0f}s]"
        )
        print(history(run["run"]))
    met = True
    for label in [k for k in runs if k != "baseline"]:
        result = report(label, runs[label], base)
        met = met if result is None else result
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs for every run (default: the SSL config's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one baseline + SSL pair per seed")
    parser.add_argument("--baseline", type=Path, default=ROOT / "schedules/lenet5-baseline.yaml")
    parser.add_argument("--schedule", type=Path, default=ROOT / "schedules/lenet5-filters.yaml")
    parser.add_argument("--no-penalty", action="store_true", help="skip the penalty-mode run (first seed)")
    parser.add_argument("--out-dir", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--verbose", action="store_true", help="show each run's output")
    args = parser.parse_args(argv)
    epochs = args.epochs or schedule_epochs(args.schedule)
    sys.stdout.reconfigure(line_buffering=True)  # minutes per seed: show each result as it comes

    tmp = tempfile.TemporaryDirectory(prefix="compress-ssl-")
    out_dir = args.out_dir or Path(tmp.name)
    print(f"lenet5 SSL benchmark: mnist5k, {epochs} epochs for every run, seeds {' '.join(map(str, args.seeds))}")
    print(f"schedule {args.schedule.relative_to(ROOT) if args.schedule.is_relative_to(ROOT) else args.schedule}:")
    print("  " + args.schedule.read_text(encoding="utf-8").strip().replace("\n", "\n  "))
    met = [
        one_seed(args, seed, epochs, out_dir, Path(tmp.name), penalty=not args.no_penalty and i == 0)
        for i, seed in enumerate(args.seeds)
    ]
    per_seed = ", ".join(f"{s}: {verdict(m)}" for s, m in zip(args.seeds, met, strict=True))
    print(f"\ntarget met on {sum(met)} of {len(met)} seeds ({per_seed})")
    if args.out_dir:
        print(f"runs kept in {out_dir}")
    tmp.cleanup()
    return 0 if all(met) else 1


if __name__ == "__main__":
    sys.exit(main())
