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


class Hooks(Protocol):
    def on_epoch_begin(self, epoch: int) -> None: ...
    def before_step(self) -> dict[str, torch.Tensor]: ...
    def after_step(self, lr: float) -> dict[str, torch.Tensor]: ...
    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...


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


def _limited(loader: Iterable, limit: int | None):
    for i, batch in enumerate(loader):
        if limit is not None and i >= limit:
            return
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
) -> tuple[float, dict[str, float]]:
    """Returns (mean data loss, mean loss per rule) over the epoch's samples."""
    model.train()
    criterion = nn.CrossEntropyLoss()
    total = len(loader) if limit_batches is None else min(limit_batches, len(loader))
    batches = _limited(loader, limit_batches)
    bar = progress(batches, total, f"epoch {epoch}") if progress else batches
    data_sum = torch.zeros((), device=device)
    rule_sums: dict[str, torch.Tensor] = {}
    seen = 0
    for step, (x, y) in enumerate(bar):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        rules = hooks.before_step()
        optimizer.step()
        rules.update(hooks.after_step(optimizer.param_groups[0]["lr"]))
        n = y.shape[0]
        seen += n
        data_sum += loss.detach() * n
        for name, value in rules.items():
            rule_sums[name] = rule_sums.get(name, 0) + value * n
        if progress and step % 10 == 0:
            postfix = {"loss": f"{float(data_sum) / seen:.4f}"}
            postfix.update({name: f"{float(v) / seen:.4g}" for name, v in rule_sums.items()})
            bar.set_postfix(postfix, refresh=False)
    seen = max(seen, 1)
    return float(data_sum) / seen, {name: float(v) / seen for name, v in rule_sums.items()}


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable, *, device: torch.device, limit_batches: int | None = None
) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 accuracy (%) over the loader's samples."""
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
    seen = max(seen, 1)
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
    limit_batches: int | None = None,
    progress: Progress | None = None,
    on_epoch_end: Callable[[EpochResult], None] | None = None,
) -> list[EpochResult]:
    results = []
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        hooks.on_epoch_begin(epoch)
        data_loss, rule_losses = train_one_epoch(
            model,
            train_loader,
            optimizer,
            hooks,
            epoch=epoch,
            device=device,
            limit_batches=limit_batches,
            progress=progress,
        )
        metrics = evaluate(model, val_loader, device=device, limit_batches=limit_batches)
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
