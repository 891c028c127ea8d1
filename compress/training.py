"""The loop: ``fit`` -> ``train_one_epoch`` + ``evaluate``. It knows no YAML and no regularizer.

    scheduler.on_epoch_begin(epoch)
    for each batch:
        loss = criterion(model(x), y); loss.backward()
        scheduler.before_step()          # may add penalty gradients into .grad
        optimizer.step()
        scheduler.after_step(lr)         # may change weights (proximal steps, masks)
    scheduler.on_epoch_end(epoch, metrics)

Observers (progress bar, files, reports) see results and change nothing.
"""

from __future__ import annotations

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
    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...
    def penalty_values(self) -> dict[str, float]: ...  # every rule's value now: for the divergence message


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


Progress = Callable[[Iterable, int, str], Any]  # (iterable, total, description) -> iterable with set_postfix


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


class Interrupted(Exception):
    """Raised between two steps when ``should_stop`` said so; carries where to resume."""

    def __init__(self, epoch: int, step: int, totals: EpochTotals):
        super().__init__(f"interrupted in epoch {epoch} before step {step}")
        self.epoch, self.step, self.totals = epoch, step, totals


class Diverged(Exception):
    """A loss that is not finite: training cannot recover, and the weights are already damaged."""

    def __init__(self, epoch: int, step: int, data_loss: float, rules: dict[str, float]):
        parts = ", ".join(f"{name} {value:.4g}" for name, value in rules.items())
        super().__init__(
            f"loss is not finite in epoch {epoch}, step {step}: data loss {data_loss:.4g}"
            + (f", rule losses: {parts}" if parts else "")
        )
        self.epoch, self.step, self.data_loss, self.rules = epoch, step, data_loss, rules


def _limited(loader: Iterable, limit: int | None, skip: int = 0):
    for i, batch in enumerate(loader):
        if limit is not None and i >= limit:
            return
        if i >= skip:
            yield batch


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    hooks: Hooks,
    *,
    epoch: int,
    device: torch.device,
    limit_batches: int | None = None,
    progress: Progress | None = None,
    start_step: int = 0,
    totals: EpochTotals | None = None,
    should_stop: Callable[[], bool] | None = None,
    world: World = SINGLE,
) -> tuple[float, dict[str, float]]:
    """Returns (mean data loss, mean loss per rule) over the epoch's samples.

    ``start_step``/``totals`` continue an interrupted epoch: the loader's order is a pure function
    of (seed, epoch), so skipping the first batches gives back exactly the batches still to do."""
    model.train()
    criterion = nn.CrossEntropyLoss()
    total = len(loader) if limit_batches is None else min(limit_batches, len(loader))
    batches = _limited(loader, limit_batches, skip=start_step)
    bar = progress(batches, total, f"epoch {epoch}") if progress else batches
    if progress and start_step:
        bar.update(start_step)
    totals = totals or EpochTotals(device)
    for step, (x, y) in enumerate(bar, start=start_step):
        if world.any(should_stop is not None and should_stop(), device):  # every process stops at the same step
            raise Interrupted(epoch, step, totals)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        rules = hooks.before_step()
        optimizer.step()
        rules.update(hooks.after_step(optimizer.param_groups[0]["lr"]))
        if world.any(not torch.isfinite(loss + sum(rules.values())), device):
            values = {**hooks.penalty_values(), **{name: float(v) for name, v in rules.items()}}
            raise Diverged(epoch, step, float(loss.detach()), values)
        totals.add(y.shape[0], loss, rules)
        if progress and step % 10 == 0:
            data, rule_means = totals.means()
            postfix = {"loss": f"{data:.4f}", **{name: f"{v:.4g}" for name, v in rule_means.items()}}
            bar.set_postfix(postfix, refresh=False)
    return totals.summed(world).means()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    device: torch.device,
    limit_batches: int | None = None,
    world: World = SINGLE,
) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 accuracy (%) over the loader's samples (over every
    process's share of them, so all processes report the same numbers)."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct1 = torch.zeros((), device=device)
    correct5 = torch.zeros((), device=device)
    seen = 0
    for x, y in _limited(loader, limit_batches):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum")
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top.eq(y.unsqueeze(1))
        correct1 += hits[:, 0].sum()
        correct5 += hits.any(dim=1).sum()
        seen += y.shape[0]
    sums = world.sum(
        torch.stack([loss_sum, correct1.float(), correct5.float(), torch.tensor(float(seen), device=device)])
    )
    loss_sum, correct1, correct5, seen = sums[0], sums[1], sums[2], max(float(sums[3]), 1.0)
    return {
        "val_loss": float(loss_sum) / seen,
        "top1": 100.0 * float(correct1) / seen,
        "top5": 100.0 * float(correct5) / seen,
    }


def fit(
    model: nn.Module,
    train_loader: Any,
    val_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    hooks: Hooks,
    *,
    epochs: int,
    device: torch.device,
    start_epoch: int = 0,
    start_step: int = 0,
    start_totals: EpochTotals | None = None,
    limit_batches: int | None = None,
    progress: Progress | None = None,
    on_epoch_end: Callable[[EpochResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    world: World = SINGLE,
) -> list[EpochResult]:
    """Epochs ``start_epoch`` .. ``epochs - 1``; the first may continue at ``start_step``.
    Raises ``Interrupted`` when ``should_stop`` turns true, ``Diverged`` on a non-finite loss."""
    results = []
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        hooks.on_epoch_begin(epoch)
        lr = optimizer.param_groups[0]["lr"]  # the epoch's rate: a scheduler may set it as the epoch begins
        data_loss, rule_losses = train_one_epoch(
            model,
            train_loader,
            optimizer,
            hooks,
            epoch=epoch,
            device=device,
            limit_batches=limit_batches,
            progress=progress,
            start_step=start_step if epoch == start_epoch else 0,
            totals=start_totals if epoch == start_epoch else None,
            should_stop=should_stop,
            world=world,
        )
        metrics = evaluate(model, val_loader, device=device, limit_batches=limit_batches, world=world)
        hooks.on_epoch_end(epoch, metrics)
        result = EpochResult(
            epoch=epoch,
            lr=lr,
            train_loss=data_loss + sum(rule_losses.values()),
            data_loss=data_loss,
            rule_losses=rule_losses,
            seconds=time.perf_counter() - started,
            **metrics,
        )
        results.append(result)
        if on_epoch_end:
            on_epoch_end(result)
    return results
