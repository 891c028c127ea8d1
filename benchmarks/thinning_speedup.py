"""Does thinning make a group-lasso LeNet-5 really faster on the CPU, as much as its MACs say?

Target: after the LeNet-5 filter schedule (``schedules/lenet5-filters.yaml``), the measured latency
ratio dense / thinned at batch 256 is within 1.3x of the MACs ratio (latency ratio >= MACs ratio / 1.3).
The verdict (exit code) is for PyTorch's default memory format, NCHW; channels_last is shown beside
it. A torch.profiler breakdown at the end shows which kinds of ops keep the latency ratio from the
MACs ratio (MACs per family: convolutions and linear layers; pooling has none).

The dense model is the run's ``best.pt``; the thinned one comes from ``compress.thinning.thin_model``
(verified: same outputs). Latency is the median over repetitions whose order alternates (dense
first, then thinned first), so that machine noise hits both alike; each timed sample runs several
forwards in eval mode under ``torch.inference_mode``. Both memory formats are timed, each for both
models: PyTorch's default (NCHW) and channels_last, where CPU convolutions and pooling are faster.
One thread by default: on a shared machine, more threads than idle cores measure the contention,
not the model.

    python benchmarks/thinning_speedup.py                          # trains the schedule first (~minutes)
    python benchmarks/thinning_speedup.py --checkpoint runs/<run>/best.pt
    python benchmarks/thinning_speedup.py --checkpoint ... --threads 2 --reps 41
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # torch.profiler's C++ log lines would interleave the tables

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE = ROOT / "schedules" / "lenet5-filters.yaml"
TARGET = 1.3


def train(out_dir: Path) -> Path:
    """``compress train --schedule schedules/lenet5-filters.yaml``; returns the run's best.pt."""
    cmd = [sys.executable, "-m", "compress", "train", "--schedule", str(SCHEDULE), "--out-dir", str(out_dir)]
    print("training:", " ".join(cmd[2:]), flush=True)
    subprocess.run([*cmd, "--no-progress"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return next(out_dir.glob("*/best.pt"))


def load_dense(checkpoint: Path) -> tuple[torch.nn.Module, tuple[int, int]]:
    from compress.checkpoint import load_checkpoint
    from compress.config import resolve_config
    from compress.datasets import dataset_shape
    from compress.experiment import build_model_for, data_options

    state = load_checkpoint(checkpoint)
    config = resolve_config([state.config])
    model = build_model_for(config)
    model.load_state_dict(state.state_dict)
    shape = dataset_shape(config.dataset, data_options(config))
    return model.eval(), (shape.in_channels, shape.input_size)


def total_macs(model: torch.nn.Module, example: torch.Tensor) -> int:
    from compress.sparsity import measure_macs

    return sum(layer["dense"] for layer in measure_macs(model, example).values())


@torch.inference_mode()
def latency(models: dict[str, torch.nn.Module], x: torch.Tensor, reps: int, min_sample_s: float) -> dict[str, float]:
    """Median seconds per forward of each model, repetitions interleaved in alternating order."""
    names = list(models)
    for model in models.values():  # warm up; find how many forwards make a sample of min_sample_s
        model(x)
    start = time.perf_counter()
    models[names[0]](x)
    inner = max(1, int(min_sample_s / max(time.perf_counter() - start, 1e-6)))
    samples: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(reps):
        for name in names if rep % 2 == 0 else reversed(names):
            model = models[name]
            start = time.perf_counter()
            for _ in range(inner):
                model(x)
            samples[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(s) for name, s in samples.items()}


def op_family(name: str) -> str:
    """Coarse kind of an aten op, for the breakdown: where the time of a forward goes."""
    for family, keys in (
        ("convolution", ("conv",)),
        ("pooling", ("pool",)),
        ("linear (matmul)", ("addmm", "::mm", "matmul", "linear")),
    ):
        if any(k in name for k in keys):
            return family
    return "other (activations, copies, views)"


@torch.inference_mode()
def breakdown(models: dict[str, torch.nn.Module], x: torch.Tensor, forwards: int = 10) -> dict[str, dict[str, float]]:
    """Self CPU ms per forward of each op family, from torch.profiler (profiled forwards are slower
    than timed ones: the shares matter, not the totals)."""
    from torch.profiler import ProfilerActivity, profile

    out: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(forwards):
                model(x)
        families: dict[str, float] = {}
        for event in prof.key_averages():
            family = op_family(event.key)
            families[family] = families.get(family, 0.0) + event.self_cpu_time_total / 1e3 / forwards
        out[name] = families
    return out


def print_breakdown(models: dict[str, torch.nn.Module], x: torch.Tensor, macs: dict[str, dict[str, int]]) -> None:
    times = breakdown(models, x)
    print(f"\nwhere the time goes, NCHW batch {x.shape[0]} (torch.profiler self CPU ms per forward):")
    print(f"{'op family':<36} {'dense ms':>9} {'thinned ms':>10} {'ratio':>7} {'MACs ratio':>10}")
    for family in sorted(set(times["dense"]) | set(times["thin"]), key=lambda f: -times["dense"].get(f, 0.0)):
        d, t = times["dense"].get(family, 0.0), times["thin"].get(family, 0.0)
        m = macs.get(family)
        macs_ratio = f"{m['dense'] / m['thin']:.2f}x" if m and m["thin"] else ""
        print(f"{family:<36} {d:>9.3f} {t:>10.3f} {d / t if t else float('inf'):>6.2f}x {macs_ratio:>10}")


def macs_by_family(dense: torch.nn.Module, thin: torch.nn.Module, example: torch.Tensor) -> dict[str, dict[str, int]]:
    from compress.sparsity import measure_macs

    out: dict[str, dict[str, int]] = {}
    for label, model in (("dense", dense), ("thin", thin)):
        modules = dict(model.named_modules())
        for name, layer in measure_macs(model, example).items():
            family = "convolution" if isinstance(modules[name], torch.nn.modules.conv._ConvNd) else "linear (matmul)"
            out.setdefault(family, {"dense": 0, "thin": 0})[label] += layer["dense"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="best.pt of a lenet5-filters run (default: train one)")
    parser.add_argument("--reps", type=int, default=21, help="timed repetitions per model and batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--min-sample-ms", type=float, default=20.0, help="forwards per sample add up to this")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from compress.thinning import thin_model

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or train(Path(tmp))
        dense, (channels, size) = load_dense(checkpoint)
    example = torch.randn(8, channels, size, size, generator=torch.Generator().manual_seed(0))
    thin, plan, diff = thin_model(dense, example)
    print(f"checkpoint: {checkpoint if args.checkpoint else 'freshly trained ' + SCHEDULE.name}")
    print("thinned:", "; ".join(plan.describe()) or "nothing")
    for reason in plan.kept_reasons:
        print("kept:", reason)
    dense_macs, thin_macs = total_macs(dense, example), total_macs(thin, example)
    params = [sum(p.numel() for p in m.parameters()) for m in (dense, thin)]
    macs_ratio = dense_macs / thin_macs
    print(f"max abs diff {diff:.2e}; parameters {params[0]:,} -> {params[1]:,}")
    print(f"MACs per image: dense {dense_macs:,}  thinned {thin_macs:,}  ratio {macs_ratio:.2f}x")
    print(f"threads {torch.get_num_threads()}, {args.reps} interleaved repetitions, median")
    print(f"{'format':<14} {'batch':>5}  {'dense ms':>9}  {'thinned ms':>10}  {'latency ratio':>13}  target")
    met = {}
    for fmt in (torch.contiguous_format, torch.channels_last):
        models = {"dense": dense.to(memory_format=fmt), "thin": thin.to(memory_format=fmt)}
        for batch in (1, 256):
            x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(batch))
            t = latency(models, x.contiguous(memory_format=fmt), args.reps, args.min_sample_ms / 1000)
            ratio = t["dense"] / t["thin"]
            verdict = ""
            if batch == 256:
                met[fmt] = ratio * TARGET >= macs_ratio
                verdict = f"{'met' if met[fmt] else 'MISSED'} (>= {macs_ratio / TARGET:.2f}x)"
            name = "channels_last" if fmt == torch.channels_last else "NCHW (default)"
            print(
                f"{name:<14} {batch:>5}  {t['dense'] * 1e3:>9.3f}  {t['thin'] * 1e3:>10.3f}  {ratio:>12.2f}x  {verdict}"
            )
    x = torch.randn(256, channels, size, size, generator=torch.Generator().manual_seed(256))
    models = {
        "dense": dense.to(memory_format=torch.contiguous_format),
        "thin": thin.to(memory_format=torch.contiguous_format),
    }
    print_breakdown(models, x, macs_by_family(dense, thin, example))
    print(f"\ntarget (NCHW, batch 256): {'PASS' if met[torch.contiguous_format] else 'FAIL'}")
    return 0 if met[torch.contiguous_format] else 1


if __name__ == "__main__":
    sys.exit(main())
