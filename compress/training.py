"""The loop: ``fit`` -> ``train_one_epoch`` + ``evaluate``. It knows no YAML and no regularizer.

    hooks.on_epoch_begin(epoch)
    for each batch:
        loss = criterion(model(x), y); loss.backward()
        hooks.before_step()          # may add penalty gradients into .grad
        optimizer.step()
        hooks.after_step(lr)         # may change weights (proximal steps, thresholds, masks)
    hooks.on_epoch_end(epoch, metrics)

``hooks`` is the compression scheduler, or a ``HookChain`` of it and others (the thinner).
Observers (progress bar, files, reports) see results and change nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from compress.distributed import SINGLE, World


class Hooks(Protocol):
    def on_epoch_begin(self, epoch: int) -> None: ...
    def before_step(self) -> dict[str, torch.Tensor]: ...
    def after_step(self, lr: float) -> dict[str, torch.Tensor]: ...
    def on_epoch_end(self, epoch: int, metrics: dict[str, float] | None) -> None: ...
    def penalty_values(self) -> dict[str, float]: ...  # every rule's value now: for the divergence message


class Participant:
    """One part of a ``HookChain``; each hook, named for where the loop calls it, does nothing here."""

    def on_epoch_begin(self, epoch: int) -> None:
        """Before the epoch's first batch."""

    def before_step(self) -> dict[str, torch.Tensor]:
        """After backward, before ``optimizer.step()``; returns rule values to log."""
        return {}

    def after_step(self, lr: float) -> dict[str, torch.Tensor]:
        """After ``optimizer.step()``; returns rule values to log."""
        return {}

    def on_epoch_end(self, epoch: int, metrics: dict[str, float] | None) -> None:
        """After the epoch's validation."""

    def penalty_values(self) -> dict[str, float]:
        """Every rule's current value, for the message of a diverged run."""
        return {}


class HookChain(Participant):
    """Calls each participant at each hook, in order (the compression scheduler first)."""

    def __init__(self, participants: list[Any]):
        self.participants = participants

    def on_epoch_begin(self, epoch: int) -> None:
        for p in self.participants:
            p.on_epoch_begin(epoch)

    def before_step(self) -> dict[str, torch.Tensor]:
        return {k: v for p in self.participants for k, v in p.before_step().items()}

    def after_step(self, lr: float) -> dict[str, torch.Tensor]:
        return {k: v for p in self.participants for k, v in p.after_step(lr).items()}

    def on_epoch_end(self, epoch: int, metrics: dict[str, float] | None) -> None:
        for p in self.participants:
            p.on_epoch_end(epoch, metrics)

    def penalty_values(self) -> dict[str, float]:
        return {k: v for p in self.participants for k, v in p.penalty_values().items()}


@dataclass
class EpochResult:
    epoch: int
    lr: float
    train_loss: float  # data loss plus every rule's loss
    data_loss: float
    rule_losses: dict[str, float]
    val_loss: float
    top1: float
    top5: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


ProgressBar = Callable[[Iterable, int, str], Any]  # (iterable, total, description) -> iterable with set_postfix


class EpochTotals:
    """Sums over the samples seen so far in an epoch; saved in an interrupted checkpoint so that a
    resumed epoch reports the same means as one that ran straight through. Rule values may come
    on some steps only (the scheduler samples them), so each rule counts its own samples."""

    def __init__(self, device: torch.device | str = "cpu", state: dict[str, Any] | None = None):
        state = state or {}
        self.seen: int = state.get("seen", 0)
        self.data = torch.tensor(state.get("data", 0.0), device=device)
        rules = state.get("rules", {})
        self.rules: dict[str, torch.Tensor] = {k: torch.tensor(v, device=device) for k, v in rules.items()}
        self.rule_seen: dict[str, int] = dict(state.get("rule_seen", {}))

    def add(self, n: int, loss: torch.Tensor, rules: dict[str, torch.Tensor]) -> None:
        self.seen += n
        self.data += loss.detach() * n
        for name, value in rules.items():
            self.rules[name] = self.rules.get(name, 0) + value * n
            self.rule_seen[name] = self.rule_seen.get(name, 0) + n

    def means(self) -> tuple[float, dict[str, float]]:
        seen = max(self.seen, 1)
        rules = {name: float(v) / max(self.rule_seen.get(name, 0), 1) for name, v in self.rules.items()}
        return float(self.data) / seen, rules

    def summed(self, world: World) -> EpochTotals:
        """The sums over every process (each process saw its own share of the batches)."""
        if not world.distributed:
            return self
        names, device = sorted(self.rules), self.data.device
        rules = [torch.as_tensor(self.rules[n], device=device).float() for n in names]
        counts = [torch.tensor(float(self.rule_seen.get(n, 0)), device=device) for n in names]
        flat = torch.stack([torch.tensor(float(self.seen), device=device), self.data.float(), *rules, *counts])
        world.sum(flat)
        out = EpochTotals(self.data.device)
        out.seen, out.data = int(flat[0].item()), flat[1]
        out.rules = {n: flat[2 + i] for i, n in enumerate(names)}
        out.rule_seen = {n: int(flat[2 + len(names) + i].item()) for i, n in enumerate(names)}
        return out

    def state_dict(self) -> dict[str, Any]:
        rules = {k: float(v) for k, v in self.rules.items()}
        return {"seen": self.seen, "data": float(self.data), "rules": rules, "rule_seen": dict(self.rule_seen)}


@dataclass
class Position:
    """Where training stands: the next epoch and step, and the sums of a started epoch (None at its
    start). A run goes on from one; an interruption hands one back."""

    epoch: int = 0
    step: int = 0
    totals: EpochTotals | None = None


@dataclass(frozen=True)
class Loop:
    """How the loop runs: epochs, device, batches per epoch, the torchrun processes, and how each step
    is computed: ``amp`` (``bf16`` / ``fp16`` autocast; fp16 with ``scaler``, a ``GradScaler`` whose
    state the checkpoint keeps), ``grad_clip`` (the data loss's gradient norm, clipped before any
    penalty is added), ``channels_last`` (inputs in that memory format, as the model)."""

    epochs: int
    device: torch.device = torch.device("cpu")
    limit_batches: int | None = None
    world: World = SINGLE
    amp: str | None = None
    grad_clip: float | None = None
    channels_last: bool = False
    scaler: Any = None

    def autocast(self) -> Any:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp or "", torch.float32)
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.amp is not None)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


@dataclass
class Observers:
    """What watches the loop without changing it."""

    progress: ProgressBar | None = None
    on_epoch_end: Callable[[EpochResult], None] | None = None
    should_stop: Callable[[], bool] | None = None


class Interrupted(Exception):
    """Raised between two steps when ``should_stop`` said so; carries where to resume."""

    def __init__(self, position: Position):
        super().__init__(f"interrupted in epoch {position.epoch} before step {position.step}")
        self.position = position


class Diverged(Exception):
    """A loss that is not finite: training cannot recover, and the weights are already damaged.
    ``step`` None: the validation loss after the epoch (the weights of that epoch are never saved)."""

    def __init__(self, epoch: int, step: int | None, data_loss: float, rules: dict[str, float]):
        parts = ", ".join(f"{name} {value:.4g}" for name, value in rules.items())
        where = f"in epoch {epoch}, step {step}: data loss" if step is not None else \
            f"on the validation split after epoch {epoch}: validation loss"  # fmt: skip
        super().__init__(f"loss is not finite {where} {data_loss:.4g}" + (f", rule losses: {parts}" if parts else ""))
        self.epoch, self.step, self.data_loss, self.rules = epoch, step, data_loss, rules


def _limited(loader: Iterable, limit: int | None, skip: int = 0):
    for i, batch in enumerate(loader):
        if limit is not None and i >= limit:
            return
        if i >= skip:
            yield batch


def train_one_epoch(model: nn.Module, loader: Any, optimizer: torch.optim.Optimizer, hooks: Hooks, *, epoch: int,
                    loop: Loop, start: Position | None = None,
                    observers: Observers | None = None) -> tuple[float, dict[str, float]]:  # fmt: skip
    """Returns (mean data loss, mean loss per rule) over the epoch's samples.

    ``start`` continues an interrupted epoch: the loader's order is a pure function of (seed, epoch),
    so skipping the first batches gives back exactly the batches still to do."""
    observers, start = observers or Observers(), start or Position(epoch)
    model.train()
    criterion = nn.CrossEntropyLoss()
    total = len(loader) if loop.limit_batches is None else min(loop.limit_batches, len(loader))
    batches = _limited(loader, loop.limit_batches, skip=start.step)
    bar = observers.progress(batches, total, f"epoch {epoch}") if observers.progress else batches
    if observers.progress and start.step:
        bar.update(start.step)
    totals = start.totals or EpochTotals(loop.device)
    for step, (x, y) in enumerate(bar, start=start.step):
        stop = observers.should_stop is not None and observers.should_stop()
        if loop.world.any(stop, loop.device):  # every process stops at the same step
            raise Interrupted(Position(epoch, step, totals))
        loss, rules = _step(model, criterion, optimizer, hooks, loop.inputs(x), y.to(loop.device, non_blocking=True),
                            loop)  # fmt: skip
        if loop.world.any(not_finite(loss, rules), loop.device):
            values = {**hooks.penalty_values(), **{name: float(v) for name, v in rules.items()}}
            raise Diverged(epoch, step, float(loss.detach()), values)
        totals.add(y.shape[0], loss, rules)
        if observers.progress and step % 10 == 0:
            data, rule_means = totals.means()
            bar.set_postfix({"loss": f"{data:.4f}", **{n: f"{v:.4g}" for n, v in rule_means.items()}}, refresh=False)
    return totals.summed(loop.world).means()


def not_finite(loss: torch.Tensor, rules: dict[str, torch.Tensor]) -> bool:
    """Whether this step's data loss or a rule value is NaN or infinite. On a GPU this is one
    host-device synchronisation per step (``benchmarks/finite_check_cost.py`` measures its cost)."""
    return not torch.isfinite(loss + sum(rules.values()))


def _step(model, criterion, optimizer, hooks: Hooks, x, y, loop: Loop) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimizer step with the hooks around it; the data loss and the rule values it reported.

    Under fp16 the gradients are unscaled before anything reads them, so clipping and the penalty
    gradients see true gradients and the scaler never scales a penalty; a step the scaler skips
    (inf or NaN gradients) skips the hooks' after-step work too (proximal steps, masks)."""
    optimizer.zero_grad(set_to_none=True)
    with loop.autocast():
        loss = criterion(model(x), y)
    if loop.scaler is not None:
        loop.scaler.scale(loss).backward()
        loop.scaler.unscale_(optimizer)
    else:
        loss.backward()
    if loop.grad_clip is not None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, loop.grad_clip)
    rules = hooks.before_step()
    if loop.scaler is not None:
        scale = loop.scaler.get_scale()
        loop.scaler.step(optimizer)
        loop.scaler.update()
        if loop.scaler.get_scale() < scale:
            return loss, rules
    else:
        optimizer.step()
    rules.update(hooks.after_step(optimizer.param_groups[0]["lr"]))
    return loss, rules


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, *, device: torch.device, limit_batches: int | None = None,
             world: World = SINGLE, loop: Loop | None = None) -> dict[str, float]:  # fmt: skip
    """Mean cross-entropy, top-1 and top-5 accuracy (%) over the loader's samples (over every
    process's share of them, so all processes report the same numbers). ``loop``: a run's autocast
    and memory format, which its validation uses too."""
    model.eval()
    loop = loop or Loop(1, device)
    sums = torch.zeros(4, device=device)  # loss, top1 hits, top5 hits, samples
    for x, y in _limited(loader, limit_batches):
        x, y = loop.inputs(x), y.to(device, non_blocking=True)
        with loop.autocast():
            logits = model(x).float()
        hits = logits.topk(min(5, logits.shape[1]), dim=1).indices.eq(y.unsqueeze(1))
        sums += torch.stack([nn.functional.cross_entropy(logits, y, reduction="sum"), hits[:, 0].sum(),
                             hits.any(dim=1).sum(), torch.tensor(y.shape[0], device=device)]).float()  # fmt: skip
    loss, top1, top5, seen = world.sum(sums).tolist()
    seen = max(seen, 1.0)
    return {"val_loss": loss / seen, "top1": 100.0 * top1 / seen, "top5": 100.0 * top5 / seen}


def fit(
    model: nn.Module,
    train_loader: Any,
    val_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    hooks: Hooks,
    *,
    loop: Loop,
    start: Position | None = None,
    observers: Observers | None = None,
) -> list[EpochResult]:
    """Epochs ``start.epoch`` .. ``loop.epochs - 1``; the first may continue at ``start.step``.
    Raises ``Interrupted`` when ``should_stop`` turns true, ``Diverged`` on a non-finite loss."""
    start, observers = start or Position(), observers or Observers()
    results = []
    for epoch in range(start.epoch, loop.epochs):
        started = time.perf_counter()
        train_loader.set_epoch(epoch)
        hooks.on_epoch_begin(epoch)
        lr = optimizer.param_groups[0]["lr"]  # the epoch's rate: a scheduler may set it as the epoch begins
        resumed = start if epoch == start.epoch else Position(epoch)
        data_loss, rule_losses = train_one_epoch(model, train_loader, optimizer, hooks, epoch=epoch, loop=loop,
                                                 start=resumed, observers=observers)  # fmt: skip
        metrics = evaluate(model, val_loader, device=loop.device, limit_batches=loop.limit_batches, world=loop.world,
                           loop=loop)  # fmt: skip
        if not math.isfinite(metrics["val_loss"]):  # the same on every process: the sums were reduced
            raise Diverged(epoch, None, metrics["val_loss"], hooks.penalty_values())
        hooks.on_epoch_end(epoch, metrics)
        result = EpochResult(epoch=epoch, lr=lr, train_loss=data_loss + sum(rule_losses.values()),
                             data_loss=data_loss, rule_losses=rule_losses, seconds=time.perf_counter() - started,
                             **metrics)  # fmt: skip
        results.append(result)
        if observers.on_epoch_end:
            observers.on_epoch_end(result)
    return results
