"""What does regularization cost per training step? LeNet-5, batch 64, mnist5k, SGD lr 0.01 momentum 0.9.

Variants, each on its own copy of the same initial model, all trained with ``compress.training.
train_one_epoch`` (so the loop's per-step bookkeeping of rule values is counted too):

    plain      a ``CompressionScheduler`` with no rules
    penalty    L1 on every weight + group lasso (filters and channels) on both convs, mode: penalty
    proximal   the same rules, mode: proximal
    autograd   no rules; the same penalties as a differentiable term added to the loss (for scale:
               what a user gets without compress's direct-gradient / proximal hooks)

Target: penalty and proximal each at most 1.05x plain. The variants run in short chunks of steps,
interleaved round-robin (the order rotates every round); the verdict uses the median over rounds of
each round's own ratio, so bursts of load from other processes cancel out.

    python benchmarks/regularizer_overhead.py               # default: 50 rounds x 10 steps per variant
    python benchmarks/regularizer_overhead.py --rounds 10   # quicker
    python benchmarks/regularizer_overhead.py --profile     # also: which ops the hooks spend their time in
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

TARGET = 1.05
L1_STRENGTH = 1.0e-5
GL_STRENGTH = 1.0e-3

SCHEDULE = """\
version: 1
rules:
  - name: l1-all
    penalty: l1
    strength: {l1}
    layers: ["*.weight"]
    mode: {mode}
  - name: conv-groups
    penalty: group_lasso
    groups: [filters, channels]
    strength: {gl}
    layers: ["conv*.weight"]
    mode: {mode}
"""


def make_scheduler(model, optimizer, text: str | None, epochs: int = 1):
    from compress.experiment import VALUE_EVERY
    from compress.schedule import parse_schedule
    from compress.scheduler import CompressionScheduler, bind

    schedule = parse_schedule(text or "version: 1\nrules: []\n", "<benchmark>")
    rules, _warnings = bind(schedule, model, epochs=epochs)
    # as compress train builds it: rule values are sampled every VALUE_EVERY steps
    scheduler = CompressionScheduler(rules, optimizer, schedule, value_every=VALUE_EVERY)
    scheduler.on_epoch_begin(0)
    return scheduler


def autograd_penalty(model) -> torch.Tensor:
    """The same terms as the schedule, built as an autograd graph."""
    terms = []
    for name, p in model.named_parameters():
        if name.endswith(".weight"):
            terms.append(p.abs().sum() * L1_STRENGTH)
        if name.startswith("conv") and name.endswith(".weight"):
            terms.append(torch.linalg.vector_norm(p, dim=(1, 2, 3)).sum() * GL_STRENGTH)  # filters
            terms.append(torch.linalg.vector_norm(p, dim=(0, 2, 3)).sum() * GL_STRENGTH)  # channels
    return torch.stack(terms).sum()


class AutogradHooks:
    """The penalties as a differentiable term: built with autograd and back-propagated into .grad
    in ``before_step`` (gradients add up, so this equals adding the term to the data loss; it costs
    one more, tiny, autograd pass). Returns the value like the real hooks do."""

    def on_epoch_begin(self, epoch):
        pass

    def __init__(self, model):
        self.model = model

    def before_step(self):
        with torch.enable_grad():
            term = autograd_penalty(self.model)
            term.backward()
        return {"autograd": term.detach()}

    def after_step(self, lr):
        return {}

    def on_epoch_end(self, epoch, metrics):
        pass

    def penalty_values(self):
        return {"autograd": float(autograd_penalty(self.model))}


class Variant:
    def __init__(self, name: str, model, lr: float, momentum: float, schedule: str | None, autograd: bool = False):
        self.name, self.model, self.autograd = name, model, autograd
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        self.scheduler = AutogradHooks(model) if autograd else make_scheduler(model, self.optimizer, schedule)
        self.hooks = TimedHooks(self.scheduler)
        self.schedule = schedule
        self.per_step: list[float] = []


def run_chunk(variant: Variant, loader, steps: int, epoch: int) -> float:
    """``steps`` steps of the real loop; seconds per step."""
    from compress.training import Loop, train_one_epoch

    loader.set_epoch(epoch)
    t = time.perf_counter()
    train_one_epoch(
        variant.model,
        loader,
        variant.optimizer,
        variant.hooks,
        epoch=epoch,
        loop=Loop(epoch + 1, torch.device("cpu"), limit_batches=steps),
    )
    return (time.perf_counter() - t) / steps


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50, help="interleaved rounds (default 50)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per variant per round (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--profile", action="store_true", help="also profile the hooks with torch.profiler")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from compress.datasets import build_dataset
    from compress.models import build_model

    torch.manual_seed(args.seed)
    data = build_dataset("mnist5k", batch_size=64, seed=args.seed)
    base = build_model("lenet5", num_classes=10, in_channels=1, input_size=28)
    lr, momentum = 0.01, 0.9
    variants = {
        "plain": Variant("plain", copy.deepcopy(base), lr, momentum, None),
        "penalty": Variant(
            "penalty",
            copy.deepcopy(base),
            lr,
            momentum,
            SCHEDULE.format(l1=L1_STRENGTH, gl=GL_STRENGTH, mode="penalty"),
        ),
        "proximal": Variant(
            "proximal",
            copy.deepcopy(base),
            lr,
            momentum,
            SCHEDULE.format(l1=L1_STRENGTH, gl=GL_STRENGTH, mode="proximal"),
        ),
        "autograd": Variant("autograd", copy.deepcopy(base), lr, momentum, None, autograd=True),
    }
    shapes = ", ".join(f"{n} {list(p.shape)}" for n, p in base.named_parameters() if n.endswith(".weight"))
    print(
        f"regularizer overhead: lenet5, batch 64, sgd lr {lr} momentum {momentum}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"weights: {shapes}")
    print(f"rules: l1 {L1_STRENGTH} on *.weight; group_lasso {GL_STRENGTH} on conv*.weight, groups filters + channels")
    print(f"{args.warmup} warm-up + {args.rounds} timed rounds x {args.steps} steps per variant, order rotating")

    names = list(variants)
    epoch = 0
    busy_start = _busy()
    for r in range(args.warmup + args.rounds):
        if r == args.warmup:
            for v in variants.values():
                v.hooks.before.clear()
                v.hooks.after.clear()
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            per_step = run_chunk(variants[name], data.train, args.steps, epoch)
            if r >= args.warmup:
                variants[name].per_step.append(per_step)
        epoch += 1
    busy = _busy_share(busy_start)

    plain = variants["plain"].per_step
    print()
    header = f"{'variant':12s}{'median ms/step':>16s}{'min ms/step':>14s}"
    print(f"{header}{'ratio (paired median)':>24s}{'ratio (medians)':>18s}")
    ratios = {}
    for name, v in variants.items():
        paired = statistics.median(a / b for a, b in zip(v.per_step, plain, strict=True))
        ratios[name] = paired
        med_ratio = statistics.median(v.per_step) / statistics.median(plain)
        print(
            f"{name:12s}{1e3 * statistics.median(v.per_step):16.3f}{1e3 * min(v.per_step):14.3f}"
            f"{paired:23.3f}x{med_ratio:17.3f}x"
        )
    print()
    ok = True
    for name in ("penalty", "proximal"):
        passed = ratios[name] <= TARGET
        ok &= passed
        print(f"ratio {name:8s} / plain: {ratios[name]:.3f}x  (target <= {TARGET}x: {'PASS' if passed else 'FAIL'})")
    print(f"ratio autograd / plain: {ratios['autograd']:.3f}x  (for scale: penalty as a differentiable loss term)")
    print(busy)
    hook_costs(variants, statistics.median(plain))
    if args.profile:
        profile(variants, data.train, 30)
    return 0 if ok else 1


def _busy() -> tuple[float, float, float] | None:
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    return busy, sum(os.times()[:4]), time.monotonic()


def _busy_share(start) -> str:
    """Share of the cores other processes used while we ran: they slow torch's threads down a lot."""
    end = _busy()
    if start is None or end is None:
        return "other processes' CPU use: unknown (no /proc/stat)"
    others = max(0.0, (end[0] - start[0]) - (end[1] - start[1]))
    share = others / max(end[2] - start[2], 1e-9) / (os.cpu_count() or 1)
    note = "  -- busy machine: absolute times are inflated; rerun when idle" if share > 0.05 else ""
    return f"other processes used {100 * share:.0f}% of the {os.cpu_count()} cores during the run{note}"


if __name__ == "__main__":
    sys.exit(main())
