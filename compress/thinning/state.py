"""Thinning a model in the middle of training: the optimizer's state and the compression
scheduler's bindings and masks shrink with it, so training (and ``--resume``) goes on exactly on
the smaller model."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import torch
from torch import nn

from compress.thinning.apply import (
    TOLERANCE,
    ThinningError,
    ThinResult,
    allowed_difference,
    apply_thinning,
    max_difference,
    outputs,
    set_submodule,
    thin_tensor_state,
)
from compress.thinning.plan import plan_thinning
from compress.training import Participant


def merge_specs(old: dict[str, dict[str, int]], new: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Specs hold absolute sizes, so a second thinning's numbers replace the first's."""
    merged = {name: dict(changes) for name, changes in old.items()}
    for name, changes in new.items():
        merged.setdefault(name, {}).update(changes)
    return merged


@torch.no_grad()
def thin_in_place(model: nn.Module, example: torch.Tensor, optimizer: torch.optim.Optimizer | None = None,
                  scheduler: Any = None, structures: str = "both") -> ThinResult:  # fmt: skip
    """Thin ``model`` itself (same object, smaller modules), then move the optimizer's parameters
    and state (momentum, Adam moments) and the scheduler's targets and masks over to the new
    parameters. Raises ``ThinningError`` if the outputs would differ, with the model put back as it
    was: the very module and parameter objects that the optimizer and the scheduler still hold."""
    plan = plan_thinning(model, example, structures)
    if plan.empty:
        return ThinResult(model, plan, 0.0)
    expected = outputs(model, example)
    originals = {name: model.get_submodule(name) for name in plan.spec}
    tensors = model.state_dict(keep_vars=True)
    corrected = {name: tensors[name].detach().clone() for name in plan.corrections}  # changed in place
    old_names = {id(p): n for n, p in model.named_parameters()}
    apply_thinning(model, plan, inplace=True)
    diff = max_difference(expected, outputs(model, example))
    if not diff <= allowed_difference(expected, TOLERANCE):
        _restore(model, originals, tensors, corrected)
        raise ThinningError(f"thinning changed the outputs by {diff:.3g}; the model was left as it was")
    params = dict(model.named_parameters())
    if optimizer is not None:
        _move_optimizer(optimizer, old_names, params, plan.keep)
    if scheduler is not None:
        scheduler.rebind(params, lambda name, t: thin_tensor_state(t, plan.keep.get(name, {})))
    return ThinResult(model, plan, diff)


def _restore(model: nn.Module, originals: dict[str, nn.Module], tensors: dict[str, torch.Tensor],
             corrected: dict[str, torch.Tensor]) -> None:  # fmt: skip
    """Put the replaced modules back, and the values of the tensors corrected in place."""
    for name, module in originals.items():
        set_submodule(model, name, module)
    for name, value in corrected.items():
        tensors[name].detach().copy_(value)


def _move_optimizer(optimizer: torch.optim.Optimizer, old_names: dict[int, str], params: dict, keep: dict) -> None:
    state = optimizer.state
    for group in optimizer.param_groups:
        moved = []
        for old in group["params"]:
            name = old_names[id(old)]
            new = params[name]
            if old in state:
                state[new] = {
                    k: thin_tensor_state(v, keep.get(name, {})) if torch.is_tensor(v) and v.shape == old.shape else v
                    for k, v in state.pop(old).items()
                }
            moved.append(new)
        group["params"] = moved


__all__ = ["ThinningError", "merge_specs", "thin_in_place"]


class ThinningEvent(NamedTuple):
    epoch: int
    timing: str  # "begin": at the first mini-batch of the epoch; "end": after the epoch
    result: ThinResult


class Rebinds(Protocol):
    """What thinning must update besides the model and the optimizer: the compression scheduler's
    targets and kept masks (``CompressionScheduler.rebind``)."""

    def rebind(self, params: dict[str, nn.Parameter], thin: Any) -> None: ...


class Thinner(Participant):
    """A hook participant beside the compression scheduler: thins the model (and the optimizer and
    the scheduler's targets and masks with it) when a thinning step of the schedule fires, after an
    epoch (our ``thin:``) or at the first mini-batch of one (Distiller's ``StructureRemover``).
    ``spec`` accumulates every thinning so far (saved in checkpoints; ``rebuild`` turns a fresh dense
    model into this architecture); ``events`` tell what happened; ``done`` (saved too) keeps a
    resumed epoch from thinning again."""

    def __init__(self, steps: tuple, run_epochs: int, model: nn.Module, example: torch.Tensor,
                 optimizer: torch.optim.Optimizer, scheduler: Rebinds, spec: dict | None = None):  # fmt: skip
        self.steps, self.run_epochs = steps, run_epochs
        self.model, self.example, self.optimizer, self.scheduler = model, example, optimizer, scheduler
        self.spec: dict[str, dict[str, int]] = dict(spec or {})
        self.events: list[ThinningEvent] = []
        self.done: set[tuple[int, str]] = set()

    def on_epoch_begin(self, epoch: int) -> None:
        for step in self.steps:
            if step.fires_at_begin(epoch):
                self._thin(epoch, "begin", step.structures)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float] | None) -> None:
        for step in self.steps:
            if step.fires_at_end(epoch, self.run_epochs):
                self._thin(epoch, "end", step.structures)

    def _thin(self, epoch: int, timing: str, structures: str) -> None:
        if (epoch, timing) in self.done:
            return
        example = self.example.to(next(self.model.parameters()).device)
        result = thin_in_place(self.model, example, self.optimizer, self.scheduler, structures)
        self.spec = merge_specs(self.spec, result.plan.spec)
        self.events.append(ThinningEvent(epoch, timing, result))
        self.done.add((epoch, timing))

    def state_dict(self) -> dict[str, Any]:
        return {"done": sorted([epoch, timing] for epoch, timing in self.done)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = {(int(epoch), str(timing)) for epoch, timing in state.get("done", [])}


__all__ += ["Rebinds", "Thinner", "ThinningEvent"]
