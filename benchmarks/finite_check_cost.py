"""What does the loop's finiteness check cost per step? After every step the loop asks whether the
loss (and each rule's value) is finite, so that a diverging run stops at the step that diverged.
On a GPU that question is a host-device synchronisation: the CPU waits for the step's kernels
instead of queueing the next ones. This measures ``train_one_epoch`` with the check against the
same loop with it switched off (``compress.training.not_finite`` replaced by ``False``), on copies
of one model, in interleaved chunks of steps, as the paired median of per-round ratios.

Target: at most 1.02x. Above it, the check should run every N steps on a loss accumulated on the
device (the step that diverged can still be found). On the CPU there is nothing to wait for and
the ratio is 1.00x within noise.

    python benchmarks/finite_check_cost.py --device cuda                 # LeNet-5 batch 64 and ResNet-20 batch 128
    python benchmarks/finite_check_cost.py --device cpu --rounds 10      # the same on the CPU
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from contextlib import contextmanager

import torch
from machine_load import BusyMeter
from regularizer_overhead import GeneratedImages, make_scheduler

TARGET = 1.02
CASES = (("lenet5", 64), ("resnet20_cifar", 128))


@contextmanager
def check_switched_off():
    import compress.training as training

    saved = training.not_finite
    training.not_finite = lambda loss, rules: False
    try:
        yield
    finally:
        training.not_finite = saved


def chunk(model, optimizer, hooks, loader, steps: int, epoch: int, device: torch.device) -> float:
    from compress.training import Loop, train_one_epoch

    loader.set_epoch(epoch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    train_one_epoch(model, loader, optimizer, hooks, epoch=epoch, loop=Loop(epoch + 1, device, limit_batches=steps))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t) / steps


def measure(arch: str, batch: int, device: torch.device, rounds: int, steps: int) -> tuple[float, float, float]:
    """(ms per step with the check, without, paired ratio)."""
    from compress.models import build_model

    torch.manual_seed(0)
    if arch == "lenet5":
        from compress.datasets import build_dataset

        loader = build_dataset("mnist5k", batch_size=batch, seed=0).train
        base = build_model(arch, num_classes=10, in_channels=1, input_size=28)
    else:
        loader, base = GeneratedImages(batch), build_model(arch, num_classes=10, in_channels=3, input_size=32)
    runs = {}
    for name in ("checked", "unchecked"):
        model = copy.deepcopy(base).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        runs[name] = (model, optimizer, make_scheduler(model, optimizer, None), [])
    for r in range(rounds + 2):  # two untimed rounds first
        for name in (("checked", "unchecked") if r % 2 == 0 else ("unchecked", "checked")):
            model, optimizer, hooks, times = runs[name]
            if name == "unchecked":
                with check_switched_off():
                    per_step = chunk(model, optimizer, hooks, loader, steps, r, device)
            else:
                per_step = chunk(model, optimizer, hooks, loader, steps, r, device)
            if r >= 2:
                times.append(per_step)
    on, off = runs["checked"][3], runs["unchecked"][3]
    ratio = statistics.median(a / b for a, b in zip(on, off, strict=True))
    return 1e3 * statistics.median(on), 1e3 * statistics.median(off), ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    device, meter, ok = torch.device(args.device), BusyMeter(), True
    print(f"finiteness check per step on {device}: torch {torch.__version__}, {args.rounds} rounds x "
          f"{args.steps} steps")  # fmt: skip
    for arch, batch in CASES:
        on, off, ratio = measure(arch, batch, device, args.rounds, args.steps)
        ok &= ratio <= TARGET
        print(f"{arch} batch {batch}: {on:.3f} ms/step checked, {off:.3f} unchecked: {ratio:.3f}x "
              f"(target <= {TARGET}x: {'PASS' if ratio <= TARGET else 'FAIL'})")  # fmt: skip
    print(meter.report())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
