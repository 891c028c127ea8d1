"""Is a thinned model as fast as its architecture allows, and as much faster as its MACs say, in the
runtimes a deployment uses (PyTorch eager in both memory formats, torch.compile, ONNX Runtime)?

Cases, built by zeroing weights of freshly initialised models directly (no training; the BatchNorm
statistics and affine parameters are randomised first so that the outputs are not trivial):

- ``resnet20_cifar`` and ``resnet56_cifar`` with 50% and 75% of the filters of each residual block's
  first convolution zero, and the matching entries of the BatchNorm after it (shift and running
  mean), so that the channel is exactly zero and thinning removes it with the second conv's inputs;
- ``vgg16_cifar`` with 50% of every convolution's filters (and biases) zero;
- ``lenet5`` as the README's filter schedule leaves it (conv1 2 of 20, conv2 16 of 50 filters): the
  small-kernel case, where fixed per-image costs dominate (``thinning_speedup.py`` has its target).

Each is thinned with ``compress.thinning.thin_model`` (outputs verified), and the same thinned
architecture is also built directly (``compress.thinning.rebuild`` on a fresh model, the thinned
weights loaded): the reference with no thinning in its history. For every runtime and batch 1 and
64 the three models are timed interleaved (the order rotates every repetition) and the ratios are
medians of per-repetition ratios, so that load from other processes hits all three alike.

Targets:
1. no overhead of thinning's own: thinned / directly built <= 1.05x, every case, runtime and batch;
2. ResNets at 50%: in the best runtime (the one where the thinned model is fastest at batch 64),
   the latency ratio dense / thinned at batch 64 >= 0.8x the MACs ratio.

    python benchmarks/deploy_speed.py                 # every case; one thread; ~10-15 min on 2 cores
    python benchmarks/deploy_speed.py --quick         # resnet20 at 50% and lenet5, 7 repetitions (~1-2 min)
    python benchmarks/deploy_speed.py --no-compile    # skip torch.compile (compiling takes seconds per model)
    python benchmarks/deploy_speed.py --cases resnet56_cifar@0.5 --reps 31 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # torch.profiler's C++ log lines would interleave the tables

import torch  # noqa: E402
from machine_load import BusyMeter  # noqa: E402
from torch import nn  # noqa: E402

OVERHEAD_TARGET = 1.05
MACS_SHARE_TARGET = 0.8
BATCHES = (1, 64)
MODELS = ("dense", "thin", "direct")
ALL_CASES = ("resnet20_cifar@0.5", "resnet20_cifar@0.75", "resnet56_cifar@0.5", "resnet56_cifar@0.75",
             "vgg16_cifar@0.5", "lenet5@ssl")  # fmt: skip
QUICK_CASES = ("resnet20_cifar@0.5", "lenet5@ssl")


@dataclass
class Case:
    """One model in its three forms, with what the verdicts need."""

    name: str
    shape: tuple[int, int, int]
    dense: nn.Module
    thin: nn.Module
    direct: nn.Module
    macs: dict[str, int]
    described: str
    results: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)  # (runtime, batch) -> numbers

    @property
    def macs_ratio(self) -> float:
        return self.macs["dense"] / self.macs["thin"]

    @property
    def has_macs_target(self) -> bool:
        return self.name.startswith("resnet") and self.name.endswith("@0.5")


# --- building the cases ---------------------------------------------------------------------------


def _randomize_batchnorm(model: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))


@torch.no_grad()
def zero_resnet_blocks(model: nn.Module, share: float, gen: torch.Generator) -> None:
    """``share`` of each block's conv1 filters zero, and its bn1 shift and running mean there:
    bn1's output, then relu1's, is exactly zero on those channels."""
    from compress.models.cifar import BasicBlock

    for block in (m for m in model.modules() if isinstance(m, BasicBlock)):
        planes = block.conv1.out_channels
        gone = torch.randperm(planes, generator=gen)[: int(share * planes)]
        block.conv1.weight[gone] = 0
        block.bn1.bias[gone] = 0
        block.bn1.running_mean[gone] = 0


@torch.no_grad()
def zero_conv_filters(model: nn.Module, share: float | dict[str, int], gen: torch.Generator) -> None:
    """``share`` of every conv's filters (weights and bias) zero; or, per conv name, the filters kept."""
    for name, conv in ((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)):
        f = conv.out_channels
        count = f - share[name] if isinstance(share, dict) else int(share * f)
        gone = torch.randperm(f, generator=gen)[:count]
        conv.weight[gone] = 0
        if conv.bias is not None:
            conv.bias[gone] = 0


def build_case(spec: str, seed: int = 0) -> Case:
    from compress.models import build_model
    from compress.thinning import rebuild, thin_model, verify

    arch, level = spec.split("@")
    shape = (1, 28, 28) if arch == "lenet5" else (3, 32, 32)

    def fresh() -> nn.Module:
        torch.manual_seed(seed)
        return build_model(arch, num_classes=10, in_channels=shape[0], input_size=shape[1]).eval()

    gen = torch.Generator().manual_seed(seed)
    dense = fresh()
    _randomize_batchnorm(dense, gen)
    if arch == "lenet5":  # what schedules/lenet5-filters.yaml leaves (README): 2 and 16 filters
        zero_conv_filters(dense, {"conv1": 2, "conv2": 16}, gen)
        described = "conv1 2 of 20, conv2 16 of 50 filters left (small-kernel case)"
    elif arch.startswith("resnet"):
        zero_resnet_blocks(dense, float(level), gen)
        described = f"{float(level):.0%} of each block's conv1 filters zero"
    else:
        zero_conv_filters(dense, float(level), gen)
        described = f"{float(level):.0%} of every conv's filters zero"
    example = torch.randn(8, *shape, generator=gen)
    thin, plan, _ = thin_model(dense, example)
    direct = rebuild(fresh(), plan.spec)
    direct.load_state_dict(thin.state_dict())
    assert verify(thin, direct.eval(), example) == 0.0, "the directly built model differs from the thinned one"
    macs = {"dense": total_macs(dense, example[:1]), "thin": total_macs(thin, example[:1])}
    return Case(spec, shape, dense, thin.eval(), direct, macs, described)


def total_macs(model: nn.Module, example: torch.Tensor) -> int:
    from compress.sparsity import measure_macs

    return sum(layer["dense"] for layer in measure_macs(model, example).values())


# --- runtimes: each turns a model into a zero-argument call on a fixed input --------------------------


DEVICE = torch.device("cpu")  # --device: where the PyTorch runtimes run


def synced(call: Callable[[], object]) -> Callable[[], object]:
    """On a GPU a call returns when its kernels are queued: wait for them, so that time is latency."""
    if DEVICE.type != "cuda":
        return call
    return lambda: (call(), torch.cuda.synchronize(DEVICE))


def eager(model: nn.Module, x: torch.Tensor, channels_last: bool = False) -> Callable[[], object]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    m = copy.deepcopy(model).to(DEVICE, memory_format=fmt)
    x = x.to(DEVICE).contiguous(memory_format=fmt)
    return synced(lambda: m(x))


def compile_model(model: nn.Module) -> nn.Module:
    """Inductor with freezing (weights folded and prepacked: PyTorch's CPU inference recipe), static
    shapes: one graph per model and batch, compiled on the first call."""
    import torch._inductor.config as inductor

    inductor.freezing = True
    torch._dynamo.config.recompile_limit = 64  # models of one class (the conv table's convs) each get a graph
    return torch.compile(copy.deepcopy(model).to(DEVICE), dynamic=False)


def compiled(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    m, x = compile_model(model), x.to(DEVICE)
    return synced(lambda: m(x))


def onnx_runtime(model: nn.Module, x: torch.Tensor, folder: Path, threads: int) -> Callable[[], object]:
    """Exported (and verified) by ``compress.export``, run by ONNX Runtime's CPU provider with all
    graph optimisations (BatchNorm folded into convs, activations fused)."""
    import onnxruntime

    from compress.export import export_onnx

    path = folder / f"{id(model)}.onnx"
    if not path.exists():
        export_onnx(model, torch.randn(4, *x.shape[1:]), path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    # on a GPU machine with onnxruntime-gpu, its CUDA provider (inputs copied from the host each call)
    providers = ["CUDAExecutionProvider"] if DEVICE.type == "cuda" else []
    providers = [p for p in providers if p in onnxruntime.get_available_providers()] + ["CPUExecutionProvider"]
    session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)


def runtimes(names: list[str], folder: Path, threads: int) -> dict[str, Callable[[nn.Module, torch.Tensor], Callable]]:
    every = {
        "eager NCHW": lambda m, x: eager(m, x),
        "eager channels_last": lambda m, x: eager(m, x, channels_last=True),
        "torch.compile": compiled,
        "onnxruntime": lambda m, x: onnx_runtime(m, x, folder, threads),
    }
    return {name: every[name] for name in names}


# --- timing -----------------------------------------------------------------------------------------


@torch.inference_mode()
def interleaved(calls: dict[str, Callable[[], object]], reps: int, min_sample_s: float) -> dict[str, list[float]]:
    """Seconds per call of each, ``reps`` samples each, the order rotating every repetition. A sample
    repeats its call until it lasts about ``min_sample_s`` (counted per model): on a shared 2-core
    machine a sample of a few ms is either untouched or preempted for a whole time slice."""
    names = list(calls)
    inner = {}
    for name, call in calls.items():  # warm-up (torch.compile compiles here), then calibrate
        call()
        start = time.perf_counter()
        call()
        inner[name] = max(1, round(min_sample_s / max(time.perf_counter() - start, 1e-6)))
    samples: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            call, n = calls[name], inner[name]
            start = time.perf_counter()
            for _ in range(n):
                call()
            samples[name].append((time.perf_counter() - start) / n)
    return samples


def paired(a: list[float], b: list[float]) -> float:
    """Median over repetitions of each repetition's own ratio a / b."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def measure(case: Case, runtime: str, make: Callable, batch: int, reps: int, min_sample_s: float) -> dict[str, float]:
    x = torch.randn(batch, *case.shape, generator=torch.Generator().manual_seed(batch))
    calls = {name: make(getattr(case, name), x) for name in MODELS}
    s = interleaved(calls, reps, min_sample_s)
    out = {f"{n} ms": 1e3 * statistics.median(s[n]) for n in MODELS}
    out.update(speedup=paired(s["dense"], s["thin"]), overhead=paired(s["thin"], s["direct"]))
    if runtime == "torch.compile":
        torch._dynamo.reset()  # free the compiled graphs of this case
    return out


# --- where the time goes ----------------------------------------------------------------------------


def op_family(name: str) -> str:
    for family, keys in (("convolution", ("conv",)), ("batch norm", ("batch_norm", "BatchNorm")),
                         ("relu", ("relu", "Relu")), ("add", ("add", "Add", "Sum")), ("pooling", ("pool", "Pool")),
                         ("linear (matmul)", ("addmm", "::mm", "linear", "Gemm", "MatMul"))):  # fmt: skip
        if any(k in name for k in keys):
            return family
    return "other (inductor kernels, copies)"


@contextlib.contextmanager
def _no_stderr() -> Iterator[None]:
    """The profiler's C++ side logs a line per start and stop to file descriptor 2; keep them out."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@torch.inference_mode()
def torch_breakdown(models: dict[str, nn.Module], x: torch.Tensor, rounds: int = 3) -> dict[str, dict[str, float]]:
    """Self CPU ms per forward of each op family (torch.profiler; every event's self time, so the
    families add up to the whole forward), the models profiled in turn, the median of ``rounds``."""
    from torch.profiler import ProfilerActivity, profile

    per: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    for model in models.values():
        model(x)
    for _ in range(rounds):
        for name, model in models.items():
            with _no_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    model(x)
            families: dict[str, float] = {}
            for event in prof.key_averages():
                family = op_family(event.key)
                families[family] = families.get(family, 0.0) + event.self_cpu_time_total / 1e3 / 3
            per[name].append(families)
    return {name: {f: statistics.median(r.get(f, 0.0) for r in runs) for f in set().union(*runs)}
            for name, runs in per.items()}  # fmt: skip


def ort_breakdown(model: nn.Module, x: torch.Tensor, folder: Path, threads: int, runs: int = 5) -> dict[str, float]:
    """ms per run of each ONNX op type, from ONNX Runtime's own profiler (its fused op names kept)."""
    import onnxruntime

    path = folder / f"{id(model)}.onnx"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling, options.profile_file_prefix = True, str(folder / "ort-profile")
    options.log_severity_level = 3
    # on a GPU machine with onnxruntime-gpu, its CUDA provider (inputs copied from the host each call)
    providers = ["CUDAExecutionProvider"] if DEVICE.type == "cuda" else []
    providers = [p for p in providers if p in onnxruntime.get_available_providers()] + ["CPUExecutionProvider"]
    session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    feed = {session.get_inputs()[0].name: x.numpy()}
    session.run(None, feed)
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    out: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e["args"].get("op_name", "?")
            out[op] = out.get(op, 0.0) + e["dur"] / 1e3 / (runs + 1)
    return out


def conv_shapes(model: nn.Module, shape: tuple[int, ...]) -> dict[str, tuple[nn.Conv2d, torch.Size, torch.Size, int]]:
    """The model's distinct convolutions (by channels, kernel, stride, input size): one of each
    with its input and output shapes and how many convs of the model have that shape."""
    seen: dict[str, list] = {}

    def record(conv: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        ins = inputs[0].shape
        key = f"{conv.in_channels}->{conv.out_channels} k{conv.kernel_size[0]} s{conv.stride[0]} @{ins[2]}x{ins[3]}"
        seen.setdefault(key, [conv, ins, output.shape, 0])[3] += 1

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        model(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return {key: tuple(v) for key, v in seen.items()}


def conv_table(case: Case, runtime: str, make: Callable, reps: int, min_sample_s: float, batch: int = 64) -> None:
    """Each distinct conv shape alone in the runtime (all of them timed interleaved): ms per call,
    times its count in the model, and its rate in GMAC/s: whether the narrower convs of the thinned
    model run as fast per MAC as the dense model's."""
    rows, calls = [], {}
    for label in ("dense", "thin"):
        for key, (conv, ins, outs, count) in conv_shapes(getattr(case, label), case.shape).items():
            calls[(label, key)] = make(conv, torch.randn(batch, *ins[1:]))
            rows.append((label, key, count, conv.weight.numel() * outs[2] * outs[3] * batch))
    times = {k: statistics.median(v) for k, v in interleaved(calls, reps, min_sample_s).items()}
    print(f"  each conv shape alone ({runtime}, batch {batch}):")
    print(f"    {'model':<6} {'conv':<26} {'count':>5} {'ms each':>8} {'ms all':>8} {'GMAC/s':>7}")
    for label in ("dense", "thin"):
        total = 0.0
        for _, key, count, macs in (r for r in rows if r[0] == label):
            t = times[(label, key)]
            total += count * t
            print(f"    {label:<6} {key:<26} {count:>5} {1e3 * t:>8.3f} {1e3 * count * t:>8.2f} {macs / t / 1e9:>7.1f}")
        print(f"    {label:<6} {'all convs':<26} {'':>5} {'':>8} {1e3 * total:>8.2f}")


def explain(case: Case, runtime: str, make: Callable, folder: Path, threads: int, reps: int,
            min_sample_s: float) -> None:  # fmt: skip
    """Why a case misses its MACs target: op families, then each conv shape, in the best runtime."""
    x = torch.randn(64, *case.shape, generator=torch.Generator().manual_seed(64))
    print(f"\nwhere the time goes: {case.name}, batch 64, {runtime} (MACs ratio {case.macs_ratio:.2f}x)")
    if runtime == "onnxruntime":
        times = {n: ort_breakdown(getattr(case, n), x, folder, threads) for n in ("dense", "thin")}
        print("  ONNX Runtime's profiler, ms per run by op type:")
    else:
        fmt = torch.channels_last if "channels_last" in runtime else torch.contiguous_format
        wrap = compile_model if runtime == "torch.compile" else (lambda m: m)
        models = {n: wrap(copy.deepcopy(getattr(case, n)).to(memory_format=fmt)) for n in ("dense", "thin")}
        times = torch_breakdown(models, x.contiguous(memory_format=fmt))
        print("  torch.profiler, self CPU ms per forward by op family:")
    print(f"    {'':<28} {'dense':>9} {'thin':>9} {'ratio':>8}")
    for k in sorted(set(times["dense"]) | set(times["thin"]), key=lambda k: -times["dense"].get(k, 0.0)):
        d, t = times["dense"].get(k, 0.0), times["thin"].get(k, 0.0)
        print(f"    {k:<28} {d:>9.3f} {t:>9.3f} {d / t if t else float('inf'):>7.2f}x")
    print(f"    {'total':<28} {sum(times['dense'].values()):>9.3f} {sum(times['thin'].values()):>9.3f}")
    conv_table(case, runtime, make, reps, min_sample_s)


def recheck(case: Case, runtime: str, make: Callable, batch: int, reps: int, min_sample_s: float) -> None:
    """An overhead above the target: the same measurement again with three times the repetitions,
    and whether the two models differ in anything but their history (tensor layouts)."""
    r = measure(case, runtime, make, batch, 3 * reps, min_sample_s)
    print(f"\nrecheck {case.name}, {runtime}, batch {batch}, {3 * reps} repetitions: thin {r['thin ms']:.3f} ms, "
          f"direct {r['direct ms']:.3f} ms, thin/direct {r['overhead']:.3f}x")  # fmt: skip
    a, b = case.thin.state_dict(), case.direct.state_dict()
    differ = [k for k in a if a[k].stride() != b[k].stride() or a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    print(f"  tensors that differ in stride, dtype or value: {differ or 'none'}")


# --- the report -------------------------------------------------------------------------------------


def print_case(case: Case) -> None:
    print(f"\n{case.name}: {case.described}")
    print(
        f"  MACs per image: dense {case.macs['dense']:,}  thinned {case.macs['thin']:,}  ratio {case.macs_ratio:.2f}x"
    )
    head = f"  {'runtime':<20} {'batch':>5} {'dense ms':>9} {'thin ms':>9} {'direct ms':>9} {'speedup':>8}"
    print(head + f" {'thin/direct':>11} {'speedup/MACs':>12}")
    for (runtime, batch), r in case.results.items():
        print(f"  {runtime:<20} {batch:>5} {r['dense ms']:>9.3f} {r['thin ms']:>9.3f} {r['direct ms']:>9.3f}"
              f" {r['speedup']:>7.2f}x {r['overhead']:>10.3f}x {r['speedup'] / case.macs_ratio:>11.2f}")  # fmt: skip


def verdicts(cases: list[Case]) -> tuple[list[str], list[tuple[Case, str]], list[tuple[Case, str, int]]]:
    """The target lines; the (case, best runtime) pairs that missed the MACs target; the (case,
    runtime, batch) measurements above the overhead target."""
    lines, missed, overheads = [], [], []
    for case in cases:
        over = [(rt, b) for (rt, b), r in case.results.items() if r["overhead"] > OVERHEAD_TARGET]
        overheads += [(case, rt, b) for rt, b in over]
        worst = max(case.results.items(), key=lambda kv: kv[1]["overhead"])
        lines.append(f"{'FAIL' if over else 'PASS'}  {case.name}: thinned / directly built <= {OVERHEAD_TARGET}x "
                     f"everywhere (worst {worst[1]['overhead']:.3f}x: {worst[0][0]}, batch {worst[0][1]})")  # fmt: skip
        if case.has_macs_target:
            at64 = {rt: r for (rt, b), r in case.results.items() if b == 64}
            best = min(at64, key=lambda rt: at64[rt]["thin ms"])
            share = at64[best]["speedup"] / case.macs_ratio
            ok = share >= MACS_SHARE_TARGET
            lines.append(f"{'PASS' if ok else 'FAIL'}  {case.name}: batch 64, best runtime {best}: speedup "
                         f"{at64[best]['speedup']:.2f}x = {share:.2f} x MACs ratio {case.macs_ratio:.2f}x "
                         f"(target >= {MACS_SHARE_TARGET})")  # fmt: skip
            if not ok:
                missed.append((case, best))
    return lines, missed, overheads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_CASES)}; 7 repetitions")
    parser.add_argument("--cases", nargs="+", default=None, help=f"ARCH@LEVEL among {', '.join(ALL_CASES)}")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per model (default 15; quick 7)")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (default 1)")
    parser.add_argument("--min-sample-ms", type=float, default=100.0, help="calls per sample add up to this")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--device", default="cpu", help="where the PyTorch runtimes run: cpu or cuda[:N]")
    parser.add_argument("--no-explain", action="store_true", help="skip the rechecks and breakdowns of missed targets")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    specs = args.cases or (QUICK_CASES if args.quick else ALL_CASES)
    reps = args.reps or (7 if args.quick else 15)
    names = ["eager NCHW", "eager channels_last", "onnxruntime"] + ([] if args.no_compile else ["torch.compile"])
    try:
        import onnxruntime
    except ImportError:
        print('ONNX Runtime is missing: pip install -e ".[export]"; measuring without it')
        names.remove("onnxruntime")
    meter = BusyMeter()
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__ if 'onnxruntime' in names else '-'}, "
          f"threads {torch.get_num_threads()}, {reps} interleaved repetitions, paired medians; "
          f"load average at start {os.getloadavg()[0]:.2f}")  # fmt: skip
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            case = build_case(spec)
            for runtime, make in runtimes(names, Path(tmp), args.threads).items():
                for batch in BATCHES:
                    case.results[(runtime, batch)] = measure(case, runtime, make, batch, reps, args.min_sample_ms / 1e3)
            print_case(case)
            cases.append(case)
        lines, missed, overheads = verdicts(cases)
        makers = runtimes(names, Path(tmp), args.threads)
        if not args.no_explain:
            for case, runtime, batch in overheads:
                recheck(case, runtime, makers[runtime], batch, reps, args.min_sample_ms / 1e3)
            for case, runtime in missed:
                explain(case, runtime, makers[runtime], Path(tmp), args.threads, reps, args.min_sample_ms / 1e3)
    print("\n" + meter.report())
    print("targets:")
    for line in lines:
        print("  " + line)
    return 0 if all(line.startswith("PASS") for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
