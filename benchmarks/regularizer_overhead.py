"""What does regularization, and a pruning mask, cost per training step? Side by side, on copies of
one model, every variant trained with ``compress.training.train_one_epoch`` (so the loop's per-step
bookkeeping of rule values is counted too), SGD lr 0.01 momentum 0.9:

    plain      a ``CompressionScheduler`` with no rules
    penalty    L1 on every conv / linear weight + group lasso (filters and channels) on the convs,
               mode: penalty
    proximal   the same rules, mode: proximal
    pruning    50% of every conv / linear weight pruned (L1) at the first step; the masks are applied
               after every optimizer step from then on (what a pruned run pays per step)
    autograd   no rules; the same penalties as a differentiable term added to the loss (for scale:
               what a user gets without compress's direct-gradient / proximal hooks)
    one-pass   no rules; 0 x weight added into every weight's gradient with one foreach call (for
               scale: one read of every weight and gradient and one write of every gradient, the
               least that any per-step work outside the optimizer's own pass costs)

Targets: penalty and proximal each at most 1.02x plain, the pruning mask step at most 1.03x, on
LeNet-5 at batch 64 (mnist5k) on one and on two threads. ``--matrix`` also reports ResNet-20 at
batch 128 (generated CIFAR-sized images; larger layers, where the hooks' share is smaller) and
LeNet-5 with ``--amp bf16`` and with ``--compile`` (the plain step gets faster; the hooks must not
become the bottleneck; as in ``compress train --compile``, the hooks' arithmetic is compiled
too). The variants run in short chunks of steps, interleaved round-robin (the order rotates every
round); a ratio is the median over rounds of each round's own ratio, so bursts of load from other
processes cancel out, and ``±`` (or ``90% interval``) is how far a bootstrap of the rounds moves
that median: a ratio within it of a target is one this machine cannot tell from the target.

    python benchmarks/regularizer_overhead.py --matrix          # every setting, PASS / FAIL (~5 min)
    python benchmarks/regularizer_overhead.py                   # LeNet-5, batch 64, torch's threads
    python benchmarks/regularizer_overhead.py --threads 1 --rounds 100
    python benchmarks/regularizer_overhead.py --model resnet20_cifar --batch 128 --rounds 12 --steps 3
    python benchmarks/regularizer_overhead.py --amp bf16        # or --compile
    python benchmarks/regularizer_overhead.py --profile         # also: which ops the hooks spend their time in
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import random
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from machine_load import BusyMeter

from compress.experiment import compile_forward
from compress.training import Participant

TARGETS = {"penalty": 1.02, "proximal": 1.02, "pruning": 1.03}
L1_STRENGTH = 1.0e-5
GL_STRENGTH = 1.0e-3
CONVS, LINEARS = "*conv*.weight", "*fc*.weight"

SCHEDULE = """\
version: 1
rules:
  - name: l1-all
    penalty: l1
    strength: {l1}
    layers: ["{convs}", "{linears}"]
    mode: {mode}
  - name: conv-groups
    penalty: group_lasso
    groups: [filters, channels]
    strength: {gl}
    layers: ["{convs}"]
    mode: {mode}
"""

PRUNING = """\
version: 1
rules:
  - name: half
    prune: l1
    sparsity: 0.5
    layers: ["{convs}", "{linears}"]
    epochs: [0, 1]
"""


@dataclass(frozen=True)
class Setting:
    model: str = "lenet5"
    batch: int = 64
    threads: int | None = None
    amp: str | None = None
    compile: bool = False
    rounds: int = 50
    steps: int = 10
    device: str = "cpu"

    def label(self) -> str:
        extra = (f", --amp {self.amp}" if self.amp else "") + (", --compile" if self.compile else "")
        where = f"{self.threads or torch.get_num_threads()} threads" if self.device == "cpu" else self.device
        return f"{self.model} batch {self.batch}, {where}{extra}"

    def gated(self) -> bool:
        """The targets hold for LeNet-5 at batch 64 in fp32, eager, on the CPU; the rest is reported."""
        plain = not self.amp and not self.compile and self.device == "cpu"
        return self.model == "lenet5" and self.batch == 64 and plain


def matrix(device: str) -> tuple[Setting, ...]:
    """The settings of ``--matrix``: on the CPU, one and two threads; on a GPU, one each."""
    if device != "cpu":
        return (Setting(device=device, rounds=40), Setting(device=device, amp="bf16", rounds=40),
                Setting(device=device, compile=True, rounds=40),
                Setting(model="resnet20_cifar", batch=128, device=device, rounds=20, steps=5),
                Setting(model="resnet20_cifar", batch=128, device=device, amp="bf16", rounds=20, steps=5))  # fmt: skip
    return MATRIX


MATRIX = (
    Setting(threads=1, rounds=60),
    Setting(threads=2, rounds=60),
    Setting(threads=2, amp="bf16", rounds=40),
    Setting(threads=2, compile=True, rounds=40),
    Setting(model="resnet20_cifar", batch=128, threads=2, rounds=12, steps=3),
)


def make_scheduler(model, optimizer, text: str | None, epochs: int = 1, compiled: bool = False):
    """As ``compress train`` builds it: rule values are sampled every VALUE_EVERY steps; pruning
    rules hook the model."""
    from compress.experiment import VALUE_EVERY
    from compress.schedule import parse_schedule
    from compress.scheduler import CompressionScheduler, bind

    schedule = parse_schedule(text or "version: 1\nrules: []\n", "<benchmark>")
    rules, _warnings = bind(schedule, model, epochs=epochs)
    scheduler = CompressionScheduler(rules, optimizer, schedule, value_every=VALUE_EVERY, model=model,
                                     compile_hooks=compiled)  # fmt: skip
    scheduler.on_epoch_begin(0)
    return scheduler


def autograd_penalty(model) -> torch.Tensor:
    """The same terms as the schedule, built as an autograd graph."""
    terms = []
    for name, p in model.named_parameters():
        if fnmatch.fnmatchcase(name, CONVS) or fnmatch.fnmatchcase(name, LINEARS):
            terms.append(p.abs().sum() * L1_STRENGTH)
        if fnmatch.fnmatchcase(name, CONVS):
            terms.append(torch.linalg.vector_norm(p, dim=(1, 2, 3)).sum() * GL_STRENGTH)  # filters
            terms.append(torch.linalg.vector_norm(p, dim=(0, 2, 3)).sum() * GL_STRENGTH)  # channels
    return torch.stack(terms).sum()


class AutogradHooks(Participant):
    """The penalties as a differentiable term: built with autograd and back-propagated into .grad
    in ``before_step`` (gradients add up, so this equals adding the term to the data loss; it costs
    one more, tiny, autograd pass). Returns the value like the real hooks do."""

    def __init__(self, model):
        self.model = model

    def before_step(self):
        with torch.enable_grad():
            term = autograd_penalty(self.model)
            term.backward()
        return {"autograd": term.detach()}

    def penalty_values(self):
        return {"autograd": float(autograd_penalty(self.model))}


class OnePass(Participant):
    """No rules: ``grad += 0 * weight`` for every weight in one foreach call (the weights and gradients
    are unchanged, so the run trains exactly as ``plain``)."""

    def __init__(self, model):
        self.model = model

    def before_step(self):
        weights = [p for name, p in self.model.named_parameters() if name.endswith("weight") and p.grad is not None]
        torch._foreach_add_([p.grad for p in weights], weights, alpha=0.0)
        return {}


class Variant:
    def __init__(self, name: str, model, lr: float, momentum: float, schedule: str | None, hooks: type | None = None,
                 compiled: bool = False):  # fmt: skip
        self.name, self.model = name, model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        self.scheduler = hooks(model) if hooks else make_scheduler(model, self.optimizer, schedule, compiled=compiled)
        self.hooks = TimedHooks(self.scheduler)
        self.schedule = schedule
        self.per_step: list[float] = []


def run_chunk(variant: Variant, loader, steps: int, epoch: int, setting: Setting) -> float:
    """``steps`` steps of the real loop; seconds per step."""
    from compress.training import Loop, train_one_epoch

    loader.set_epoch(epoch)
    device = torch.device(setting.device)
    loop = Loop(epoch + 1, device, limit_batches=steps, amp=setting.amp)
    t = time.perf_counter()
    train_one_epoch(variant.model, loader, variant.optimizer, variant.hooks, epoch=epoch, loop=loop)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the chunk's kernels, not just their launches
    return (time.perf_counter() - t) / steps


class GeneratedImages:
    """CIFAR-sized random images and labels, a fixed set of batches (what a data loader hands the
    loop; generating them is not timed)."""

    def __init__(self, batch: int, batches: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.batches = [(torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g))
                        for _ in range(batches)]  # fmt: skip

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


class TimedHooks:
    """Passes the loop's hook calls through, timing ``before_step`` and ``after_step`` where they
    really run: after backward, with caches full of activations (every variant is wrapped alike)."""

    def __init__(self, hooks):
        self.hooks = hooks
        self.before: list[float] = []
        self.after: list[float] = []

    def on_epoch_begin(self, epoch):
        self.hooks.on_epoch_begin(epoch)

    def before_step(self):
        t = time.perf_counter()
        out = self.hooks.before_step()
        self.before.append(time.perf_counter() - t)
        return out

    def after_step(self, lr):
        t = time.perf_counter()
        out = self.hooks.after_step(lr)
        self.after.append(time.perf_counter() - t)
        return out

    def on_epoch_end(self, epoch, metrics):
        self.hooks.on_epoch_end(epoch, metrics)

    def penalty_values(self):
        return self.hooks.penalty_values()


def hook_costs(variants: dict[str, Variant], plain_step: float) -> None:
    """Median time of each hook per step, inside the timed loop, as a share of a plain step."""
    print(f"\nhooks inside the loop, median per step (share of the plain step's median {1e3 * plain_step:.2f} ms):")
    for name, v in variants.items():
        before, after = statistics.median(v.hooks.before), statistics.median(v.hooks.after)
        print(
            f"  {name:9s} before_step {1e3 * before:6.3f} ms ({100 * before / plain_step:4.1f}%)   "
            f"after_step {1e3 * after:6.3f} ms ({100 * after / plain_step:4.1f}%)"
        )


def profile(variants: dict[str, Variant], loader, steps: int) -> None:
    """Where the hooks spend their time, inside the loop: torch.profiler with Python stacks; every op
    that runs under a hook is charged to the innermost line of compress's code that called it."""
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as torch_profile

    for name in ("penalty", "proximal"):
        v = variants[name]
        model, opt, hooks = v.model, v.optimizer, v.scheduler
        batches = iter(loader)
        with torch_profile(activities=[ProfilerActivity.CPU], with_stack=True) as prof:
            for _ in range(steps):
                x, y = next(batches)
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                with record_function("hook"):
                    hooks.before_step()
                opt.step()
                with record_function("hook"):
                    hooks.after_step(opt.param_groups[0]["lr"])
        by_site: dict[tuple[str, str], list[float]] = {}
        hook_total = 0.0
        for evt in prof.events():
            if evt.name == "hook":
                hook_total += evt.cpu_time_total
                continue
            # the innermost line of compress's code above this event, and whether a hook is above it
            site, parent, under_hook = None, evt.cpu_parent, False
            while parent is not None:
                if site is None and "/compress/" in parent.name:
                    site = parent.name.split("/compress/", 1)[1]
                under_hook |= parent.name == "hook"
                parent = parent.cpu_parent
            if not under_hook:
                continue
            if evt.name.startswith("aten::"):
                key = (evt.name, site or "?")
            elif "/compress/" in evt.name:  # a Python frame of compress: its own (interpreter) time
                key = ("(python)", evt.name.split("/compress/", 1)[1])
            else:
                continue  # other Python frames and builtins: their aten ops are counted themselves
            entry = by_site.setdefault(key, [0.0, 0])
            entry[0] += evt.self_cpu_time_total
            entry[1] += 1
        rows = sorted(by_site.items(), key=lambda kv: -kv[1][0])
        print(f"\n--- torch.profiler, mode {name}: ops under the hooks, {steps} steps inside the loop ---")
        print(f"hooks total {hook_total / steps:.0f} us/step (profiler overhead included); self CPU time per op:")
        print(f"{'us/step':>9s} {'calls/step':>10s}  {'op':28s} called from")
        for (op, site), (us, calls) in rows[:16]:
            print(f"{us / steps:9.1f} {calls / steps:10.1f}  {op:28s} {site}")
        rest = sum(us for _, (us, _) in rows)
        print(f"{rest / steps:9.1f} {'':10s}  all of the above (every row, not just the top 16)")


def build(setting: Setting, seed: int):
    """The data and one model per variant, each a copy of the same initial weights."""
    from compress.models import build_model

    torch.manual_seed(seed)
    if setting.model == "lenet5":
        from compress.datasets import build_dataset

        loader = build_dataset("mnist5k", batch_size=setting.batch, seed=seed).train
        base = build_model("lenet5", num_classes=10, in_channels=1, input_size=28)
    else:
        loader, base = GeneratedImages(setting.batch, seed=seed), build_model(setting.model, num_classes=10,
                                                                              in_channels=3, input_size=32)  # fmt: skip
    base = base.to(setting.device)
    lr, momentum = 0.01, 0.9
    rules = {"convs": CONVS, "linears": LINEARS, "l1": L1_STRENGTH, "gl": GL_STRENGTH}
    schedules = {"plain": None, "penalty": SCHEDULE.format(mode="penalty", **rules),
                 "proximal": SCHEDULE.format(mode="proximal", **rules), "pruning": PRUNING.format(**rules)}  # fmt: skip
    variants = {name: Variant(name, copy.deepcopy(base), lr, momentum, text, compiled=setting.compile)
                for name, text in schedules.items()}  # fmt: skip
    variants["autograd"] = Variant("autograd", copy.deepcopy(base), lr, momentum, None, hooks=AutogradHooks)
    variants["one-pass"] = Variant("one-pass", copy.deepcopy(base), lr, momentum, None, hooks=OnePass)
    if setting.compile:
        for v in variants.values():
            compile_forward(v.model, torch.device(setting.device))  # what compress train --compile does
    return loader, variants


def measure(setting: Setting, warmup: int, seed: int) -> tuple[dict[str, float], dict[str, Variant], object]:
    """Each variant's ratio to ``plain``: the median of per-round ratios."""
    if setting.threads:
        torch.set_num_threads(setting.threads)
    loader, variants = build(setting, seed)
    names = list(variants)
    for r in range(warmup + setting.rounds):
        if r == warmup:
            for v in variants.values():
                v.hooks.before.clear()
                v.hooks.after.clear()
        for name in names[r % len(names) :] + names[: r % len(names)]:
            per_step = run_chunk(variants[name], loader, setting.steps, r, setting)
            if r >= warmup:
                variants[name].per_step.append(per_step)
    plain = variants["plain"].per_step
    ratios = {name: statistics.median(a / b for a, b in zip(v.per_step, plain, strict=True))
              for name, v in variants.items()}  # fmt: skip
    return ratios, variants, loader


def interval(variant: Variant, plain: Variant, seed: int = 0) -> tuple[float, float]:
    """A 90% bootstrap interval of the paired median ratio: how far the machine's noise moves it (a
    verdict whose interval straddles the target says the machine could not tell)."""
    pairs = [a / b for a, b in zip(variant.per_step, plain.per_step, strict=True)]
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(pairs, k=len(pairs))) for _ in range(1000))
    return medians[50], medians[949]


def verdicts(ratios: dict[str, float], setting: Setting) -> dict[str, bool]:
    return {name: ratios[name] <= target for name, target in TARGETS.items()} if setting.gated() else {}


def print_one(setting: Setting, ratios: dict[str, float], variants: dict[str, Variant]) -> bool:
    plain = variants["plain"].per_step
    print(f"\n{'variant':12s}{'median ms/step':>16s}{'min ms/step':>14s}{'ratio (paired median)':>24s}"
          f"{'ratio (medians)':>18s}")  # fmt: skip
    for name, v in variants.items():
        med_ratio = statistics.median(v.per_step) / statistics.median(plain)
        print(f"{name:12s}{1e3 * statistics.median(v.per_step):16.3f}{1e3 * min(v.per_step):14.3f}"
              f"{ratios[name]:23.3f}x{med_ratio:17.3f}x")  # fmt: skip
    print()
    passed = verdicts(ratios, setting)
    for name, target in TARGETS.items():
        verdict = ("PASS" if passed[name] else "FAIL") if passed else "reported"
        low, high = interval(variants[name], variants["plain"])
        print(f"ratio {name:8s} / plain: {ratios[name]:.3f}x  (90% interval {low:.3f}-{high:.3f}; target <= {target}x: "
              f"{verdict})")  # fmt: skip
    print(f"ratio autograd / plain: {ratios['autograd']:.3f}x  (for scale: penalty as a differentiable loss term)")
    print(f"ratio one-pass / plain: {ratios['one-pass']:.3f}x  (for scale: one pass over every weight and gradient)")
    hook_costs(variants, statistics.median(plain))
    return all(passed.values())


def _half_width(variant: Variant, plain: Variant) -> str:
    low, high = interval(variant, plain)
    return f"{(high - low) / 2:.3f}".lstrip("0")


def run_matrix(warmup: int, seed: int, device: str) -> bool:
    rows, ok = [], True
    for setting in matrix(device):
        print(f"measuring {setting.label()}: {setting.rounds} rounds x {setting.steps} steps ...", flush=True)
        ratios, variants, _ = measure(setting, warmup, seed)
        passed = verdicts(ratios, setting)
        ok &= all(passed.values())
        cells = [f"{ratios[n]:.3f}x±{_half_width(variants[n], variants['plain'])} "
                 f"{('PASS' if passed[n] else 'FAIL') if passed else '    '}" for n in TARGETS]  # fmt: skip
        rows.append(f"{setting.label():42s}{1e3 * statistics.median(variants['plain'].per_step):9.2f}  "
                    + "  ".join(f"{c:>18s}" for c in cells) + f"  {ratios['autograd']:8.3f}x"
                    + f"  {ratios['one-pass']:8.3f}x")  # fmt: skip
    print(f"\n{'setting':42s}{'plain ms':>9s}  " + "  ".join(f"{n:>18s}" for n in TARGETS) + f"  {'autograd':>9s}"
          f"  {'one-pass':>9s}")  # fmt: skip
    print("\n".join(rows))
    print("targets: " + ", ".join(f"{n} <= {t}x" for n, t in TARGETS.items()) + " on the LeNet-5 batch 64 fp32 rows; "
          f"the others are reported: {'PASS' if ok else 'FAIL'}")  # fmt: skip
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matrix", action="store_true", help="every setting of the targets and the reports")
    parser.add_argument("--model", default="lenet5", choices=["lenet5", "resnet20_cifar", "resnet56_cifar"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--amp", choices=["bf16"], default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (on a GPU the hooks are timed as launched)")
    parser.add_argument("--rounds", type=int, default=50, help="interleaved rounds (default 50)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per variant per round (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--profile", action="store_true", help="also profile the hooks with torch.profiler")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    print(f"regularizer overhead: torch {torch.__version__}, sgd lr 0.01 momentum 0.9; rules: l1 {L1_STRENGTH} on "
          f"{CONVS} and {LINEARS}; group_lasso {GL_STRENGTH} on {CONVS}, filters + channels; pruning: 50% of "
          "each")  # fmt: skip
    meter = BusyMeter()
    if args.matrix:
        ok = run_matrix(args.warmup, args.seed, args.device)
    else:
        setting = Setting(args.model, args.batch, args.threads, args.amp, args.compile, args.rounds, args.steps,
                          args.device)  # fmt: skip
        print(f"{setting.label()}: {args.warmup} warm-up + {args.rounds} timed rounds x {args.steps} steps per "
              "variant, order rotating")  # fmt: skip
        ratios, variants, loader = measure(setting, args.warmup, args.seed)
        ok = print_one(setting, ratios, variants)
        if args.profile:
            profile(variants, loader, 30)
    print(meter.report())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
