"""Distiller's training loop, written for the tests from its published update rules, to run beside
``compress train`` on the same Distiller-format schedule. Nothing here uses compress's schedule
readers, scheduler, penalties or learning-rate code: the YAML is read with plain ``yaml.safe_load``
and every formula is Distiller's, spelled out again.

Per epoch ``e`` (Distiller's ``CompressionScheduler`` and ``image_classifier.train``):

- each mini-batch: ``loss = CE + sum of the active regularizers' terms`` (through autograd), backward,
  ``SGD.step`` (momentum, weight decay); then ``on_minibatch_end``: every kept mask is applied, then
  each active regularizer with ``threshold_criteria`` zeroes the groups whose statistic is not above
  its strength, and in the last mini-batch of epoch ``ending_epoch - 1`` a ``keep_mask`` policy keeps
  that mask for good;
- at the end of the epoch each active lr policy sets the rate to its closed form at ``e + 1``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import torch
import yaml
from torch import nn

EPSILON = 1e-8  # distiller/regularization/regularizer.py


def _norms(w: torch.Tensor, group: str) -> torch.Tensor:
    """Distiller's GroupLassoRegularizer norms (group_regularizer.py), one per group."""
    if group in ("3D", "Filters"):
        return w.view(w.size(0), -1).norm(2, dim=1)
    if group == "Channels":  # sum of squares per kernel, rows = channels, + EPSILON, sqrt
        k_sq = w.view(-1, w.size(2) * w.size(3)).pow(2).sum(dim=1)
        return k_sq.view(w.size(0), w.size(1)).t().sum(dim=1).add(EPSILON).pow(1 / 2.0)
    if group == "2D":
        return w.view(-1, w.size(2) * w.size(3)).norm(2, dim=1)
    if group == "Rows":
        return w.norm(2, dim=1)
    if group == "Cols":
        return w.norm(2, dim=0)
    if group == "4D":
        return w.norm(2).reshape(1)
    raise KeyError(group)


def _term(cls: str, w: torch.Tensor, regim) -> torch.Tensor:
    if cls == "L1Regularizer":
        return w.abs().sum() * regim
    strength, group = regim
    if cls == "GroupVarianceRegularizer":
        return strength * (1 / _norms(w, "Channels").var())
    return sum(_norms(w, g).sum().mul(strength) for g in group.split("+"))


def _statistic(w: torch.Tensor, group: str, criteria: str) -> torch.Tensor:
    """thresholding.py / norms.py: each group's L1 norm over its "length" (Mean_Abs) or its largest |w|
    (Max), shaped to broadcast against the weight. Distiller's length of a row is the number of rows
    and of a column the number of columns (sub_matrix_norm's ``param.size(abs(dim - 1))``)."""
    if group in ("3D", "Filters"):
        view, length, shape = w.view(w.size(0), -1), w[0].numel(), (-1,) + (1,) * (w.dim() - 1)
    elif group == "Channels":
        view, length, shape = w.transpose(0, 1).contiguous().view(w.size(1), -1), w[:, 0].numel(), (1, -1, 1, 1)
    elif group == "2D":
        view, length, shape = w.view(-1, w.size(2) * w.size(3)), w.size(2) * w.size(3), (w.size(0), w.size(1), 1, 1)
    elif group == "Rows":
        view, length, shape = w, w.size(0), (-1, 1)
    else:  # Cols
        view, length, shape = w.t(), w.size(1), (1, -1)
    stat = view.norm(p=1, dim=1) / length if criteria == "Mean_Abs" else view.abs().max(dim=1).values
    return stat.reshape(shape)


def _threshold_mask(cls: str, w: torch.Tensor, regim, criteria: str) -> torch.Tensor:
    if cls == "L1Regularizer":  # pruning.create_mask_threshold_criterion: |w| > threshold stays
        return torch.gt(w.abs(), regim).type(w.type())
    strength, group = regim
    return _statistic(w, group, criteria).gt(strength).type(w.type()).expand_as(w)


def closed_form(cls: str, args: dict, base: float, epoch: int) -> float:
    if cls == "StepLR":
        return base * args.get("gamma", 0.1) ** (epoch // args["step_size"])
    if cls == "MultiStepLR":
        return base * args.get("gamma", 0.1) ** bisect.bisect_right(sorted(args["milestones"]), epoch)
    if cls == "ExponentialLR":
        return base * args["gamma"] ** epoch
    if cls == "MultiStepMultiGammaLR":
        return base * math.prod(args["gammas"][: bisect.bisect_right(args["milestones"], epoch)])
    raise KeyError(cls)


@dataclass
class Policy:
    kind: str
    name: str
    epochs: list[int]
    ending: int
    keep_mask: bool = False
    args: dict = field(default_factory=dict)


def _policies(sched: dict) -> list[Policy]:
    out, lr = [], []
    for p in sched["policies"]:
        kind = next((k for k in ("regularizer", "lr_scheduler") if k in p), None)
        if kind is None:  # pruners: distiller_pruning_reference.py
            continue
        if "epochs" in p:
            epochs, ending = list(p["epochs"]), p["epochs"][-1] + 1
        else:
            epochs, ending = list(range(p["starting_epoch"], p["ending_epoch"], p["frequency"])), p["ending_epoch"]
        keep = bool((p[kind].get("args") or {}).get("keep_mask", False))
        (lr if kind == "lr_scheduler" else out).append(Policy(kind, p[kind]["instance_name"], epochs, ending, keep))
    return out + lr  # Distiller adds the lr policies after all others


def _plain(name: str) -> str:
    return name.replace("module.", "")


class DistillerReference:
    def __init__(self, schedule_text: str, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.sched = yaml.safe_load(schedule_text)
        self.model, self.optimizer = model, optimizer
        self.policies = _policies(self.sched)
        self.kept: dict[str, torch.Tensor] = {}
        self.base = optimizer.param_groups[0]["lr"]

    def _regularizer(self, name: str) -> tuple[str, dict, str | None]:
        r = self.sched["regularizers"][name]
        return r["class"], {_plain(k): v for k, v in r["reg_regims"].items()}, r.get("threshold_criteria")

    def train_epoch(self, epoch: int, batches) -> None:
        active = [p for p in self.policies if epoch in p.epochs]
        regs = [p for p in active if p.kind == "regularizer"]
        params = dict(self.model.named_parameters())
        self.model.train()
        batches = list(batches)
        for step, (x, y) in enumerate(batches):
            loss = self._regularized(nn.functional.cross_entropy(self.model(x), y), regs, params)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self._minibatch_end(epoch, step, len(batches), regs, params)
        self._lr_end(epoch)

    def _regularized(self, loss: torch.Tensor, regs: list[Policy], params: dict) -> torch.Tensor:
        """before_backward_pass: each regularization policy adds its own sum, one after the other."""
        for policy in regs:
            cls, regims, _ = self._regularizer(policy.name)
            reg_loss = torch.tensor(0.0)
            for name, param in params.items():
                if name in regims:
                    reg_loss = reg_loss + _term(cls, param, regims[name])
            loss = loss + reg_loss
        return loss

    def _lr_end(self, epoch: int) -> None:
        """on_epoch_end: each active lr policy sets its closed form at epoch + 1."""
        for policy in self.policies:
            if policy.kind == "lr_scheduler" and epoch in policy.epochs:
                spec = dict(self.sched["lr_schedulers"][policy.name])
                cls = spec.pop("class")
                for group in self.optimizer.param_groups:
                    group["lr"] = closed_form(cls, spec, self.base, epoch + 1)

    @torch.no_grad()
    def _minibatch_end(self, epoch: int, step: int, steps: int, regs: list[Policy], params: dict) -> None:
        for pname, mask in self.kept.items():
            params[pname].mul_(mask)
        for policy in regs:
            cls, regims, criteria = self._regularizer(policy.name)
            if criteria is None:
                continue
            keep = policy.keep_mask and step == steps - 1 and epoch == policy.ending - 1
            for pname, param in params.items():
                if pname in regims:
                    mask = _threshold_mask(cls, param, regims[pname], criteria)
                    param.mul_(mask)
                    if keep:
                        self.kept[pname] = mask.clone()
