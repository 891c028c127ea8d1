"""How much does `compress`'s training loop cost over a minimal hand-written PyTorch loop?

Target: one training epoch of ``compress.training.train_one_epoch`` with the ``CompressionScheduler``
of an empty schedule (what ``compress train --schedule schedules/lenet5-baseline.yaml`` runs:
LeNet-5, mnist5k, batch 64, SGD lr 0.01 momentum 0.9) takes at most 1.2x a minimal loop
(zero_grad, forward, cross_entropy, backward, step) over the same in-memory tensors.

Both variants start from the same initial weights, and their epochs are interleaved (the order
alternates every repetition) so that machine noise hits both alike; the verdict uses the median of
the per-repetition ratios, and the same ratio from per-step medians is printed beside it. The
compress variant also times what ``compress train`` does around each training epoch (evaluate, the
sparsity table, metrics files and checkpoints), phase by phase. Exit status 1 when a ratio misses.

    python benchmarks/epoch_overhead.py                 # default: 1 warm-up + 7 timed epochs each
    python benchmarks/epoch_overhead.py --reps 3        # quicker
    python benchmarks/epoch_overhead.py --threads 1     # far less sensitive to other processes
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine_load import BusyMeter

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.2


def build(schedule_path: Path, seed: int):
    """The experiment exactly as ``compress train --schedule <schedule_path>`` assembles it."""
    from compress.config import load_config_file, resolve_config
    from compress.experiment import build_experiment
    from compress.schedule import load_schedule

    schedule = load_schedule(schedule_path)
    layers = [load_config_file(schedule.config)] if schedule.config else []
    config = resolve_config([*layers, {"seed": seed, "device": "cpu"}])
    return schedule, config, build_experiment(schedule, config)


def hand_epoch(model, optimizer, x, y, batch_size: int, generator: torch.Generator, stamps: list[float]) -> None:
    """The minimal loop: shuffle, then zero_grad, forward, cross_entropy, backward, step.
    ``stamps`` gets a timestamp before each batch and one at the end (per-step times)."""
    model.train()
    order = torch.randperm(len(y), generator=generator)
    for start in range(0, len(y), batch_size):
        stamps.append(time.perf_counter())
        idx = order[start : start + batch_size]
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
    stamps.append(time.perf_counter())


class StampedLoader:
    """Wraps compress's loader: a timestamp before each batch it hands out and one when it runs dry,
    so the gaps are whole loop steps (one generator frame of overhead, charged to compress)."""

    def __init__(self, loader, stamps: list[float]):
        self.loader, self.stamps = loader, stamps

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __iter__(self):
        for batch in self.loader:
            self.stamps.append(time.perf_counter())
            yield batch
        self.stamps.append(time.perf_counter())


class CompressEpoch:
    """One epoch of ``compress train``: ``fit``'s body plus ``run_training``'s after-epoch work, timed per phase."""

    def __init__(self, exp, schedule, run_dir: Path):
        from compress.runs import RunFiles

        self.exp, self.schedule = exp, schedule
        self.files = RunFiles(run_dir, exp.scheduler.rule_names)
        self.files.write_start(exp.config.to_dict(), schedule.text, schedule.name)
        self.run_dir = run_dir
        self.touched = [t.param_name for r in exp.scheduler.rules for t in r.targets]
        self.best = float("-inf")
        self.stamps: list[float] = []

    def __call__(self, epoch: int) -> dict[str, float]:
        from compress.checkpoint import save_checkpoint
        from compress.recorder import format_epoch, zero_filters
        from compress.report import sparsity_table
        from compress.sparsity import measure_sparsity
        from compress.training import EpochResult, Loop, evaluate, train_one_epoch

        exp = self.exp
        times = {}
        t0 = time.perf_counter()
        exp.data.train.set_epoch(epoch)
        lr = exp.optimizer.param_groups[0]["lr"]
        exp.scheduler.on_epoch_begin(epoch)
        loader = StampedLoader(exp.data.train, self.stamps)
        data_loss, rule_losses = train_one_epoch(
            exp.model, loader, exp.optimizer, exp.scheduler, epoch=epoch, loop=Loop(epoch + 1, exp.device)
        )
        t1 = time.perf_counter()
        metrics = evaluate(exp.model, exp.data.val, device=exp.device)
        exp.scheduler.on_epoch_end(epoch, metrics)
        t2 = time.perf_counter()
        result = EpochResult(
            epoch=epoch,
            lr=lr,
            train_loss=data_loss + sum(rule_losses.values()),
            data_loss=data_loss,
            rule_losses=rule_losses,
            seconds=t2 - t0,
            **metrics,
        )
        layers = measure_sparsity(exp.model, self.touched)
        report = sparsity_table(layers)
        t3 = time.perf_counter()
        totals = self.files.write_epoch(result, layers)
        line = format_epoch(result, totals["sparsity"], zero_filters(layers))
        self.files.log(line)
        assert report and line
        # What run_training's checkpoint holds that costs anything: weights, optimizer, scheduler, RNG.
        state = {
            "state_dict": exp.model.state_dict(),
            "optimizer": exp.optimizer.state_dict(),
            "scheduler": exp.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "epoch": epoch,
            "top1": result.top1,
        }
        save_checkpoint(state, self.run_dir / "checkpoint.pt")
        if result.top1 > self.best:
            self.best = result.top1
            save_checkpoint(state, self.run_dir / "best.pt")
        t4 = time.perf_counter()
        times.update(train=t1 - t0, evaluate=t2 - t1, sparsity=t3 - t2, files=t4 - t3, full=t4 - t0)
        return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="timed epochs per variant (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs per variant first (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--schedule", type=Path, default=ROOT / "schedules/lenet5-baseline.yaml")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    busy = BusyMeter()
    schedule, config, exp = build(args.schedule, args.seed)
    # The hand loop: same initial weights, same tensors, its own optimizer with the same settings.
    model = copy.deepcopy(exp.model)
    opt_cfg = exp.optimizer.defaults
    optimizer = torch.optim.SGD(model.parameters(), lr=opt_cfg["lr"], momentum=opt_cfg["momentum"])
    x, y = exp.data.train.x, exp.data.train.y
    generator = torch.Generator().manual_seed(args.seed)

    print(
        f"epoch overhead: {config.arch} on {config.dataset} ({len(y)} train samples, batch {config.batch_size}, "
        f"{len(exp.data.train)} steps/epoch), {config.optimizer} lr {config.lr} momentum {config.momentum}, "
        f"schedule {args.schedule.name} ({len(exp.scheduler.rules)} rules); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{args.warmup} warm-up + {args.reps} timed epochs per variant, interleaved (order alternates)")
    hand: list[float] = []
    hand_steps: list[float] = []
    comp_steps: list[float] = []
    phases: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="compress-bench-") as tmp:
        run_epoch = CompressEpoch(exp, schedule, Path(tmp))
        for rep in range(args.warmup + args.reps):
            hand_stamps: list[float] = []
            run_epoch.stamps = []
            for which in ("hand", "compress") if rep % 2 == 0 else ("compress", "hand"):
                if which == "hand":
                    t = time.perf_counter()
                    hand_epoch(model, optimizer, x, y, config.batch_size, generator, hand_stamps)
                    t_hand = time.perf_counter() - t
                else:
                    t_comp = run_epoch(rep)
            if rep < args.warmup:
                continue
            hand.append(t_hand)
            hand_steps += [b - a for a, b in zip(hand_stamps, hand_stamps[1:], strict=False)]
            comp_steps += [b - a for a, b in zip(run_epoch.stamps, run_epoch.stamps[1:], strict=False)]
            for k, v in t_comp.items():
                phases.setdefault(k, []).append(v)
            print(
                f"  rep {rep - args.warmup + 1}/{args.reps}: hand {t_hand:.3f}s  compress train {t_comp['train']:.3f}s "
                f"(x{t_comp['train'] / t_hand:.3f})  full {t_comp['full']:.3f}s",
                flush=True,
            )

    paired = statistics.median(c / a for c, a in zip(phases["train"], hand, strict=True))
    full_paired = statistics.median(c / a for c, a in zip(phases["full"], hand, strict=True))
    step_hand, step_comp = statistics.median(hand_steps), statistics.median(comp_steps)
    step_ratio = step_comp / step_hand
    print()
    print(f"{'':46s}{'median':>10s}{'min':>10s}")
    rows = [
        ("hand-written loop: one training epoch", hand),
        ("compress train_one_epoch: one epoch", phases["train"]),
        ("  + evaluate (1000 val samples)", phases["evaluate"]),
        ("  + sparsity measure + table", phases["sparsity"]),
        ("  + metrics files + checkpoint(s)", phases["files"]),
        ("compress full epoch (all of the above)", phases["full"]),
    ]
    for label, values in rows:
        print(f"{label:46s}{statistics.median(values):9.3f}s{min(values):9.3f}s")
    print(f"{'hand-written loop: one step (ms)':46s}{1e3 * step_hand:8.2f}ms{1e3 * min(hand_steps):8.2f}ms")
    print(f"{'compress train_one_epoch: one step (ms)':46s}{1e3 * step_comp:8.2f}ms{1e3 * min(comp_steps):8.2f}ms")
    print()

    def verdict(r: float) -> str:
        return f"(target <= {TARGET}x: {'PASS' if r <= TARGET else 'FAIL'})"

    print(f"ratio train epoch, compress / hand, median of paired epochs: {paired:.3f}x  {verdict(paired)}")
    print(f"ratio train step,  compress / hand, median step times:       {step_ratio:.3f}x  {verdict(step_ratio)}")
    print(f"ratio train epoch, compress / hand, ratio of minimums:       {min(phases['train']) / min(hand):.3f}x")
    print(f"ratio full epoch (train+eval+report+files) / hand train epoch, median of paired: {full_paired:.3f}x")
    print(busy.report())
    return 0 if max(paired, step_ratio) <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
