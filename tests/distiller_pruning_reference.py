"""Distiller's pruning, written for the tests from its published update rules, to run beside
``compress train`` on the same Distiller-format schedule (the regularizer and lr parts come from
``distiller_reference.py``). Nothing here uses compress's readers, scheduler or pruning code.

One mask per parameter (Distiller's ``ParameterMasker``), per epoch ``e``:

- epoch begin: each active pruning policy sets the masks of its pruner's parameters from the weights
  as they are (``PruningPolicy.on_epoch_begin``);
- each mini-batch: each active pruning policy (re)computes masks every ``mini_batch_pruning_frequency``
  mini-batches and applies every mask (keeping an unmasked copy for ``use_double_copies``); forward,
  loss, backward; the copies go back; ``SGD.step``; then every mask not ``mask_on_forward_only`` is
  applied (``mask_all_weights``), and the regularizers' thresholds run;
- epoch end: a policy with ``keep_mask`` in its last epoch (``ending_epoch - 1``) makes its masks
  ordinary ones.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tests.distiller_reference import DistillerReference, Policy, _plain


def _level_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """create_mask_level_criterion: the k = int(s x n) smallest |w| and every weight equal to the largest of them go."""
    bottom, _ = torch.topk(w.abs().view(-1), int(sparsity * w.numel()), largest=False, sorted=True)
    return torch.gt(w.abs(), bottom[-1]).type(w.type())


def _ranked_map(w: torch.Tensor, group: str, fraction: float) -> torch.Tensor | None:
    """L1-ranked filters or channels (norms.rank_filters / rank_channels): mean |w| per structure."""
    count = w.size(0) if group == "Filters" else w.size(1)
    k = math.floor(fraction * count)
    if k == count and fraction != 1.0:
        k = count - 1
    if k == 0:
        return None
    view = w.view(count, -1) if group == "Filters" else w.transpose(0, 1).contiguous().view(count, -1)
    mags = view.norm(p=1, dim=1) / view.size(1)
    threshold = torch.topk(mags, k, largest=False, sorted=True).values[-1]
    return mags.gt(threshold).type(w.type())


def _expand(w: torch.Tensor, group: str, binary: torch.Tensor) -> torch.Tensor:
    if group == "Filters":
        return binary.view(-1, *([1] * (w.dim() - 1))).expand_as(w).contiguous()
    return binary.view(1, -1, *([1] * (w.dim() - 2))).expand_as(w).contiguous()


class DistillerPruningReference(DistillerReference):
    def __init__(self, schedule_text: str, model: nn.Module, optimizer: torch.optim.Optimizer):
        super().__init__(schedule_text, model, optimizer)
        self.pruning = [p for p in self._pruning_policies()]
        self.masks: dict[str, torch.Tensor | None] = {}
        self.forward_only: set[str] = set()
        self.double: set[str] = set()
        self.cached: dict[str, tuple[float, ...]] = {}

    def _pruning_policies(self) -> list[Policy]:
        out = []
        for p in self.sched["policies"]:
            if "pruner" not in p:
                continue
            epochs = list(p["epochs"]) if "epochs" in p else list(range(p["starting_epoch"], p["ending_epoch"],
                                                                        p["frequency"]))  # fmt: skip
            ending = p["epochs"][-1] + 1 if "epochs" in p else p["ending_epoch"]
            policy = Policy("pruner", p["pruner"]["instance_name"], epochs, ending, args=p["pruner"].get("args") or {})
            policy.start, policy.frequency = p.get("starting_epoch", epochs[0]), p.get("frequency")
            out.append(policy)
        return out

    def _target(self, spec: dict, policy: Policy, epoch: int) -> float:
        """AgpPruningRate.step."""
        span = ((policy.ending - policy.start - 1) // policy.frequency) * policy.frequency
        ratio = (epoch - policy.start) / span
        return spec["final_sparsity"] + (spec["initial_sparsity"] - spec["final_sparsity"]) * (1.0 - ratio) ** 3

    @torch.no_grad()
    def _set_masks(self, policy: Policy, epoch: int) -> None:
        spec = self.sched["pruners"][policy.name]
        cls, params = spec["class"], dict(self.model.named_parameters())
        if cls == "AutomatedGradualPruner":
            for name in (_plain(w) for w in spec["weights"]):
                self.masks[name] = _level_mask(params[name], self._target(spec, policy, epoch))
        elif cls == "L1RankedStructureParameterPruner_AGP":
            self._ranked(spec, params, self._target(spec, policy, epoch))
        elif cls == "SensitivityPruner":
            for name, s in ((_plain(k), v) for k, v in spec["sensitivities"].items()):
                std = self.cached.setdefault(name, (torch.std(params[name]).item(),))[0]
                self.masks[name] = torch.gt(params[name].abs(), std * s).type(params[name].type())
        elif cls == "SplicingPruner":
            self._splice(spec, policy, epoch, params)

    def _ranked(self, spec: dict, params: dict, fraction: float) -> None:
        names, group = [_plain(w) for w in spec["weights"]], spec["group_type"]
        leader = _ranked_map(params[names[0]], group, fraction) if spec.get("group_dependency") == "Leader" else None
        for name in names:
            binary = leader if leader is not None else _ranked_map(params[name], group, fraction)
            if binary is not None:
                self.masks[name] = _expand(params[name], group, binary)

    def _splice(self, spec: dict, policy: Policy, epoch: int, params: dict) -> None:
        for name, s in ((_plain(k), v) for k, v in spec["sensitivities"].items()):
            w = params[name]
            mean, std = self.cached.setdefault(name, (torch.mean(w.abs()).item(), torch.std(w.abs()).item()))
            if spec.get("sensitivity_multiplier", 0) > 0:
                s *= (epoch - policy.start) * spec["sensitivity_multiplier"] + 1
            base = mean + std * s
            current = self.masks.get(name)
            current = torch.ones_like(w) if current is None else current
            mask = torch.where(base * spec["low_thresh_mult"] > w.abs(), torch.zeros_like(current), current)
            self.masks[name] = torch.where(base * spec["hi_thresh_mult"] <= w.abs(), torch.ones_like(current), mask)

    def _begin(self, policy: Policy, epoch: int) -> None:
        spec = self.sched["pruners"][policy.name]
        names = [_plain(w) for w in spec.get("weights", spec.get("sensitivities", {}))]
        for name in names:
            if policy.args.get("mask_on_forward_only"):
                self.forward_only.add(name)
            if policy.args.get("use_double_copies"):
                self.double.add(name)
        self._set_masks(policy, epoch)

    def train_epoch(self, epoch: int, batches) -> None:
        active = [p for p in self.pruning if epoch in p.epochs]
        for policy in active:
            self._begin(policy, epoch)
        self._pruned_epoch(epoch, list(batches), active)
        for policy in active:
            if policy.args.get("keep_mask") and epoch == policy.ending - 1:
                self._keep(policy)
        self._lr_end(epoch)

    @torch.no_grad()
    def _keep(self, policy: Policy) -> None:
        spec, params = self.sched["pruners"][policy.name], dict(self.model.named_parameters())
        for name in (_plain(w) for w in spec.get("weights", spec.get("sensitivities", {}))):
            self.forward_only.discard(name)
            self.double.discard(name)
            if self.masks.get(name) is not None:
                params[name].mul_(self.masks[name])

    def _pruned_epoch(self, epoch: int, batches: list, active: list[Policy]) -> None:
        regs = [p for p in self.policies if epoch in p.epochs and p.kind == "regularizer"]
        params = dict(self.model.named_parameters())
        self.model.train()
        for step, (x, y) in enumerate(batches):
            copies = self._minibatch_begin(epoch, step, len(batches), active, params)
            loss = self._regularized(nn.functional.cross_entropy(self.model(x), y), regs, params)
            self.optimizer.zero_grad()
            loss.backward()
            with torch.no_grad():
                for name, copy in copies.items():
                    params[name].copy_(copy)
            self.optimizer.step()
            with torch.no_grad():
                for name, mask in self.masks.items():
                    if mask is not None and name not in self.forward_only:
                        params[name].mul_(mask)
            self._minibatch_end(epoch, step, len(batches), regs, params)

    @torch.no_grad()
    def _minibatch_begin(self, epoch: int, step: int, steps: int, active: list[Policy], params: dict) -> dict:
        copies = {}
        for policy in active:
            every = policy.args.get("mini_batch_pruning_frequency", 0)
            if step > 0 and every and (epoch * steps + step) % every == 0:
                self._set_masks(policy, epoch)
            for name, mask in self.masks.items():
                if mask is not None:
                    if name in self.double:
                        copies[name] = params[name].clone()
                    params[name].mul_(mask)
        return copies
