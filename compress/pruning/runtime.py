"""Pruning masks over a run: computed at each pruning step, applied where the rule's ``Masking`` says,
saved and restored with the scheduler's state. The compression scheduler calls it from its hooks;
the training loop never sees it.

    epoch begin    release masks whose rule says so; pruning steps of the active rules (new masks,
                   applied at once, momentum of what they zero cleared where the rule says so)
    before step    gather gradient scores; mask gradients; put dense copies back for the update
    after step     masks re-applied (Distiller applied every mask after every step); dense copies
                   kept aside first where the rule keeps one; masks dropped where a rule discards them
    epoch end      Distiller's keep_mask: forward-only masks become ordinary ones

Rules with forward-only masks, masks recomputed every N mini-batches, or masks discarded after each
step (Distiller's ``PruningPolicy`` arguments) also need the moment before each training forward
pass: a forward pre-hook on the model, installed only for them.
"""

from __future__ import annotations

import zlib
from typing import Any

import torch
from torch import nn

from compress import groups as G
from compress.optim import moments
from compress.pruning import levels, masks
from compress.pruning.activations import ActivationWatch, ChannelStats
from compress.pruning.binding import BoundPruneRule, BoundPruneTarget
from compress.pruning.criteria import Evidence


def _weighted(aimed: list[tuple[float | None, int]]) -> float | None:
    """The level a rule aimed for over all its groups: each layer's own level, weighted by its groups."""
    if not aimed or any(level is None for level, _ in aimed):
        return None
    total = sum(n for _, n in aimed)
    return sum(level * n for level, n in aimed) / total if total else None


class Pruning:
    """The runtime of every pruning rule of a run."""

    def __init__(self, rules: list[BoundPruneRule], optimizer: torch.optim.Optimizer | None = None,
                 model: nn.Module | None = None, *, seed: int = 0,
                 steps_per_epoch: int | None = None):  # fmt: skip
        self.rules, self.optimizer, self.model = rules, optimizer, model
        self.steps_per_epoch = steps_per_epoch or 0
        self.masks: dict[str, dict[str, torch.Tensor]] = {}  # rule -> parameter -> weight-shaped mask
        self.dense: dict[str, dict[str, torch.Tensor]] = {}  # rule -> parameter -> dense weights (ours)
        self.frozen: dict[str, dict[str, list[float]]] = {}  # rule -> parameter -> std (and mean), taken once
        self.level: dict[str, float | None] = {}  # rule -> the sparsity its last pruning step aimed for
        self.kept: set[str] = set()  # rules whose forward-only masks became ordinary (keep_mask)
        self.grad_scores: dict[str, dict[str, torch.Tensor]] = {}
        self.grad_steps: dict[str, int] = {}
        self.generator = torch.Generator().manual_seed(zlib.crc32(b"prune") + seed)
        self.watches = {b.rule.name: ActivationWatch(dict(b.sources), b.rule.stats)
                        for b in rules if b.criterion.needs == "activations"}  # fmt: skip
        # groups each parameter had before any thinning: thinned-away groups count as pruned in reports
        self.initial = {f"{b.rule.name}/{t.param_name}": G.get(b.rule.groups).count(tuple(t.param.shape))
                        for b in rules for t in b.targets}  # fmt: skip
        self.epoch, self.step = -1, 0
        self._unmasked: dict[int, torch.Tensor] = {}  # Distiller's double copies, within one step
        self._handle = None
        self.attach(model)

    # -- the scheduler's hooks ---------------------------------------------------------------------

    def on_epoch_begin(self, epoch: int, fresh: bool) -> None:
        """``fresh``: the epoch starts here (not a resumed one, whose masks come from the checkpoint)."""
        self.epoch = epoch
        if fresh:
            self.step = 0
            for bound in self.rules:
                if bound.rule.masking.release_at == epoch:
                    self.release(bound)
            for bound in self.rules:
                if bound.rule.epochs.active(epoch) and not bound.rule.masking.forward_only:
                    self.prune(bound, epoch)
                elif bound.rule.epochs.active(epoch):
                    self.prune(bound, epoch, apply=False)  # Distiller masks these before each forward pass

    @torch.no_grad()
    def gather_gradients(self) -> None:
        """Before the penalties add theirs: the loss gradient's Taylor scores, for gradient rules."""
        for bound in self.rules:
            if bound.criterion.needs != "gradients" or bound.rule.signed_gradient or self._finished(bound):
                continue
            scores = self.grad_scores.setdefault(bound.rule.name, {})
            for t in bound.targets:
                if t.param.grad is not None:
                    score = G.get(bound.rule.groups).per_group(t.param * t.param.grad, "sum").abs_()
                    scores[t.param_name] = score if t.param_name not in scores else scores[t.param_name] + score
            self.grad_steps[bound.rule.name] = self.grad_steps.get(bound.rule.name, 0) + 1

    @torch.no_grad()
    def before_update(self) -> None:
        """After every gradient is in .grad, before the optimizer step: masked gradients, then the
        dense weights back in place for the update."""
        for bound in self.rules:
            if bound.rule.masking.gradients and self._gradient_window(bound):
                for name, mask in self.masks.get(bound.rule.name, {}).items():
                    param = self._param(bound, name)
                    if param.grad is not None:
                        param.grad.mul_(mask)
        for bound in self.rules:
            for name, dense in self.dense.get(bound.rule.name, {}).items():
                self._param(bound, name).copy_(dense)
        for param, copy in self._params_with_copies():
            param.copy_(copy)
        self._unmasked.clear()

    @torch.no_grad()
    def after_step(self) -> None:
        for bound in self.rules:
            rule_masks = self.masks.get(bound.rule.name)
            if not rule_masks or (bound.rule.masking.forward_only and bound.rule.name not in self.kept):
                continue
            keep_dense = bound.rule.masking.dense_copy and not bound.rule.masking.forward_only
            for name, mask in rule_masks.items():
                param = self._param(bound, name)
                if keep_dense:
                    self.dense.setdefault(bound.rule.name, {})[name] = param.detach().clone()
                param.mul_(mask)
        self._gather_signed_gradients()
        for bound in self.rules:
            if bound.rule.masking.discard_each_step:
                self.masks.pop(bound.rule.name, None)
        self.step += 1

    @torch.no_grad()
    def on_epoch_end(self, epoch: int) -> None:
        for bound in self.rules:
            if bound.rule.masking.keep_at_end and self._last_epoch(bound) == epoch and bound.rule.epochs.active(epoch):
                self.kept.add(bound.rule.name)
                for name, mask in self.masks.get(bound.rule.name, {}).items():
                    self._param(bound, name).mul_(mask)

    # -- pruning steps -----------------------------------------------------------------------------

    @torch.no_grad()
    def prune(self, bound: BoundPruneRule, epoch: int, apply: bool = True) -> None:
        """One pruning step: new masks for the rule's parameters (applied at once unless the rule
        masks before forward passes), then its gathered evidence starts afresh."""
        rule = bound.rule
        leader = self._leader_keep(bound, epoch) if rule.dependency == "leader" else None
        old = self.masks.get(rule.name, {})
        new, aimed = {}, []
        for t in bound.targets:
            mask = self._mask(bound, t, epoch, leader, old.get(t.param_name))
            aimed.append((self.level.get(rule.name), G.get(rule.groups).count(tuple(t.param.shape))))
            if mask is not None:
                new[t.param_name] = mask
            elif t.param_name in old:
                new[t.param_name] = old[t.param_name]  # Distiller: too few groups to prune, the old mask stays
        self.masks[rule.name] = new
        self.level[rule.name] = _weighted(aimed)
        keep_dense = rule.masking.dense_copy and not rule.masking.forward_only
        if apply:
            for name, mask in new.items():
                param = self._param(bound, name)
                if keep_dense:  # the dense weights are the truth; what the new mask splices back returns
                    dense = self.dense.setdefault(rule.name, {}).setdefault(name, param.detach().clone())
                    param.copy_(dense)
                param.mul_(mask)
                if rule.clear_momentum:
                    alive = (mask != 0).to(param.dtype)
                    for buffer in moments(self.optimizer, param):
                        buffer.mul_(alive)
        self.grad_scores.pop(rule.name, None)
        self.grad_steps.pop(rule.name, None)
        if rule.name in self.watches and rule.stats == "train":
            self.watches[rule.name].reset()

    def _mask(self, bound: BoundPruneRule, t: BoundPruneTarget, epoch: int, leader: torch.Tensor | None,
              old: torch.Tensor | None) -> torch.Tensor | None:  # fmt: skip
        rule, group = bound.rule, bound.rule.groups
        weight = self.dense.get(rule.name, {}).get(t.param_name, t.param)
        kind = rule.level.kind
        if kind in levels.COUNTED:
            level = self._draw(rule.level) if kind == "uniform" else levels.target_sparsity(
                rule.level, t.value, epoch, rule.epochs)  # fmt: skip
            self.level[rule.name] = level
            keep = leader if leader is not None else self._counted_keep(bound, t, weight, level)
            if keep is None:
                return None
            scale = self._rescale(keep) if rule.rescale else 1.0
            return masks.expand(keep, group, weight, scale)
        self.level[rule.name] = None
        if kind == "threshold" and rule.threshold_statistic is not None:
            keep = G.kept_by_threshold(weight, group, rule.threshold_statistic, t.value)
            return keep.expand(weight.shape).contiguous()
        if kind == "threshold":
            return masks.expand(masks.keep_above(bound.criterion.statistic(weight, group), t.value), group, weight)
        if kind == "sensitivity":
            std = self._frozen(rule.name, t.param_name, lambda: [float(torch.std(weight))])[0]
            return masks.expand(masks.keep_above(weight.abs().flatten(), std * t.value), group, weight)
        return self._splice(bound, t, weight, epoch, old)

    def _counted_keep(self, bound: BoundPruneRule, t: BoundPruneTarget, weight: torch.Tensor,
                      level: float) -> torch.Tensor | None:  # fmt: skip
        """Which groups stay at ``level``; None when Distiller would have pruned nothing new."""
        rule, group = bound.rule, bound.rule.groups
        evidence = Evidence(self.generator, self._activations(bound, t), self._gradient(bound, t), {"level": level})
        scores = bound.criterion.scores(self._folded(bound, t, weight), group, evidence)
        if rule.highest_go:
            scores = -scores
        if getattr(bound.criterion, "independent", False):
            return scores > 0
        n = G.get(group).count(tuple(weight.shape))
        distiller = rule.ties == "distiller"
        count = masks.count_to_prune(n, level, distiller=distiller, keep_one=rule.structures_keep_one)
        if count == 0 and distiller:
            return None
        return masks.keep_lowest_out(scores, count, rule.ties)

    def _draw(self, level) -> float:
        """Distiller's RandomLevelStructureParameterPruner: a level uniform in [initial, value]."""
        u = float(torch.rand(1, generator=self.generator, dtype=torch.float64))
        return level.initial + (level.value - level.initial) * u

    def _folded(self, bound: BoundPruneRule, t: BoundPruneTarget, weight: torch.Tensor) -> torch.Tensor:
        """``fold_batchnorm``: a conv's weights as inference sees them after its BatchNorm is folded in,
        ``w x gamma / sqrt(running_var + eps)`` per filter (running statistics, as Distiller did)."""
        norm_name = bound.norms.get(t.param_name)
        if not bound.rule.fold_batchnorm or norm_name is None or self.model is None:
            return weight
        norm = dict(self.model.named_modules())[norm_name]
        gamma = norm.weight if norm.affine else torch.ones_like(norm.running_var)
        scale = gamma / torch.sqrt(norm.running_var + norm.eps)
        return weight * scale.view(-1, *([1] * (weight.dim() - 1)))

    def _leader_keep(self, bound: BoundPruneRule, epoch: int) -> torch.Tensor | None:
        lead = bound.targets[0]
        weight = self.dense.get(bound.rule.name, {}).get(lead.param_name, lead.param)
        kind = bound.rule.level.kind
        level = self._draw(bound.rule.level) if kind == "uniform" else levels.target_sparsity(
            bound.rule.level, lead.value, epoch, bound.rule.epochs)  # fmt: skip
        return self._counted_keep(bound, lead, weight, level) if level is not None else None

    def _splice(self, bound: BoundPruneRule, t: BoundPruneTarget, weight: torch.Tensor, epoch: int,
                old: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        """Guo et al.: below the low threshold a weight goes, at or above the high one it comes back,
        between them it keeps its mask. Mean and std of |W| are taken once, at the first step."""
        epochs = bound.rule.epochs
        level, start = bound.rule.level, epochs.listed[0] if epochs.listed else epochs.start
        magnitude = weight.abs()
        mean, std = self._frozen(bound.rule.name, t.param_name,
                                 lambda: [float(magnitude.mean()), float(torch.std(magnitude))])  # fmt: skip
        base = mean + std * levels.splicing_sensitivity(level, t.value, epoch, start)
        current = old if old is not None else torch.ones_like(weight)
        low, high = base * level.low, base * level.high
        mask = torch.where(magnitude < low, torch.zeros_like(current), current)
        return torch.where(magnitude >= high, torch.ones_like(current), mask)

    def _frozen(self, rule: str, name: str, compute) -> list[float]:
        per_rule = self.frozen.setdefault(rule, {})
        if name not in per_rule:
            per_rule[name] = compute()
        return per_rule[name]

    @staticmethod
    def _rescale(keep: torch.Tensor) -> torch.Tensor:
        """Distiller's Bernoulli pruner divided its mask by the kept fraction (DropFilter's scaling)."""
        kept = keep.to(torch.float64).sum() / max(keep.numel(), 1)
        return torch.tensor(1.0 / float(kept) if kept > 0 else 1.0)

    # -- evidence ----------------------------------------------------------------------------------

    def _activations(self, bound: BoundPruneRule, t: BoundPruneTarget) -> torch.Tensor | None:
        """The statistic of every process's forwards together (under torchrun each saw its own data)."""
        watch = self.watches.get(bound.rule.name)
        stats = watch.stats.get(t.param_name) if watch is not None else None
        if stats is None or stats.zeros is None:
            return None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            summed = ChannelStats(stats.zeros.clone(), stats.total.clone(), stats.seen)
            for tensor in (summed.zeros, summed.total):
                torch.distributed.all_reduce(tensor)
            summed.seen *= torch.distributed.get_world_size()
            stats = summed
        return stats.score(bound.rule.criterion)

    def _gradient(self, bound: BoundPruneRule, t: BoundPruneTarget) -> torch.Tensor | None:
        score = self.grad_scores.get(bound.rule.name, {}).get(t.param_name)
        if score is None or bound.rule.signed_gradient:
            return score
        return score / max(self.grad_steps.get(bound.rule.name, 1), 1)

    @torch.no_grad()
    def _gather_signed_gradients(self) -> None:
        """Distiller ranked by the last step's signed ``sum(w * grad)`` of the weights after it."""
        for bound in self.rules:
            if bound.criterion.needs == "gradients" and bound.rule.signed_gradient and not self._finished(bound):
                scores = self.grad_scores.setdefault(bound.rule.name, {})
                for t in bound.targets:
                    if t.param.grad is not None:
                        scores[t.param_name] = G.get(bound.rule.groups).per_group(t.param * t.param.grad, "sum")

    # -- forward pass (Distiller's per-step masking) -------------------------------------------------

    def attach(self, model: nn.Module | None) -> None:
        """Forward hooks: activation statistics, and the pre-forward masking of rules that need it."""
        self.model = model
        if model is None:
            return
        for watch in self.watches.values():
            watch.attach(model)
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if any(b.rule.masking.per_step for b in self.rules):
            self._handle = model.register_forward_pre_hook(self._before_forward)

    def _before_forward(self, module: nn.Module, inputs: Any) -> None:
        """Training forward passes only (evaluation sees the weights as they are, as in Distiller)."""
        if module.training and torch.is_grad_enabled():
            with torch.no_grad():
                self._mask_for_training_forward()

    def _mask_for_training_forward(self) -> None:
        for bound in self.rules:
            masking = bound.rule.masking
            if not masking.per_step or not bound.rule.epochs.active(self.epoch):
                continue
            every = masking.recompute_every
            global_step = self.epoch * self.steps_per_epoch + self.step
            if every and self.step > 0 and global_step % every == 0:
                self.prune(bound, self.epoch, apply=not masking.forward_only)
            self._mask_before_forward(bound)

    def _mask_before_forward(self, bound: BoundPruneRule) -> None:
        for name, mask in self.masks.get(bound.rule.name, {}).items():
            param = self._param(bound, name)
            masking = bound.rule.masking
            if masking.dense_copy and masking.forward_only and bound.rule.name not in self.kept:
                self._unmasked[id(param)] = param.detach().clone()
            param.mul_(mask)

    def _params_with_copies(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        by_id = {id(t.param): t.param for b in self.rules for t in b.targets}
        return [(by_id[key], copy) for key, copy in self._unmasked.items() if key in by_id]

    # -- helpers -----------------------------------------------------------------------------------

    def release(self, bound: BoundPruneRule) -> None:
        """DSD's dense phase: the masks go; what they held at zero starts from zero, with no momentum."""
        for name, mask in self.masks.pop(bound.rule.name, {}).items():
            param = self._param(bound, name)
            alive = (mask != 0).to(param.dtype)
            for buffer in moments(self.optimizer, param):
                buffer.mul_(alive)
        self.dense.pop(bound.rule.name, None)
        self.level[bound.rule.name] = None

    @staticmethod
    def _param(bound: BoundPruneRule, name: str) -> nn.Parameter:
        return next(t.param for t in bound.targets if t.param_name == name)

    @staticmethod
    def _last_epoch(bound: BoundPruneRule) -> int | None:
        """Distiller's ``ending_epoch - 1`` (the listed epochs' last)."""
        epochs = bound.rule.epochs
        if epochs.listed is not None:
            return max(epochs.listed)
        return None if epochs.end is None else epochs.end - 1

    def _finished(self, bound: BoundPruneRule) -> bool:
        """No pruning step needs gradient scores any more: past the last pruning epoch, or at its
        start when masks are not recomputed within epochs."""
        last = bound.rule.epochs.last_active()
        if last is None:
            return False
        return self.epoch > last if bound.rule.masking.recompute_every else self.epoch >= last

    def _gradient_window(self, bound: BoundPruneRule) -> bool:
        """Distiller's gradient hook lived from the rule's first epoch to the end of its last."""
        first = bound.rule.epochs.listed[0] if bound.rule.epochs.listed else bound.rule.epochs.start
        last = self._last_epoch(bound)
        return first <= self.epoch and (last is None or self.epoch <= last)

    # -- reports and state -------------------------------------------------------------------------

    def report(self) -> dict[str, tuple[float | None, float]]:
        """rule -> (the sparsity its last pruning step aimed for, or None for thresholds; the share of
        its groups its masks hold at zero now, or that thinning removed), both as fractions."""
        out = {}
        for bound in self.rules:
            rule_masks = self.masks.get(bound.rule.name, {})
            zero = total = 0
            for t in bound.targets:
                n = G.get(bound.rule.groups).count(tuple(t.param.shape))
                before = self.initial.get(f"{bound.rule.name}/{t.param_name}", n)
                mask = rule_masks.get(t.param_name)
                zero += round(masks.pruned_fraction(mask, bound.rule.groups) * n) if mask is not None else 0
                zero, total = zero + before - n, total + before
            out[bound.rule.name] = (self.level.get(bound.rule.name), zero / total if total else 0.0)
        return out

    def state_dict(self) -> dict[str, Any]:
        cpu = {rule: {k: v.cpu() for k, v in per.items()} for rule, per in self.masks.items()}
        dense = {rule: {k: v.cpu() for k, v in per.items()} for rule, per in self.dense.items()}
        grads = {rule: {k: v.cpu() for k, v in per.items()} for rule, per in self.grad_scores.items()}
        return {
            "masks": cpu, "dense": dense, "frozen": self.frozen, "level": self.level, "kept": sorted(self.kept),
            "grad_scores": grads, "grad_steps": dict(self.grad_steps), "generator": self.generator.get_state(),
            "watches": {k: w.state_dict() for k, w in self.watches.items()}, "position": [self.epoch, self.step],
            "initial": dict(self.initial),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        targets = {(b.rule.name, t.param_name): t.param for b in self.rules for t in b.targets}

        def placed(saved: dict) -> dict[str, dict[str, torch.Tensor]]:
            return {rule: {k: v.to(targets[rule, k].device) for k, v in per.items() if (rule, k) in targets}
                    for rule, per in saved.items()}  # fmt: skip

        self.masks, self.dense = placed(state.get("masks", {})), placed(state.get("dense", {}))
        self.grad_scores = placed(state.get("grad_scores", {}))
        self.frozen = {rule: dict(per) for rule, per in state.get("frozen", {}).items()}
        self.level, self.kept = dict(state.get("level", {})), set(state.get("kept", []))
        self.grad_steps = dict(state.get("grad_steps", {}))
        self.initial.update(state.get("initial", {}))
        if "generator" in state:
            self.generator.set_state(state["generator"])
        for name, saved in state.get("watches", {}).items():
            if name in self.watches:
                self.watches[name].load_state_dict(saved)
        self.epoch, self.step = state.get("position", [-1, 0])

    def rebind(self, params: dict[str, nn.Parameter], thin: Any) -> None:
        """After thinning: the new parameters, the masks and dense copies shrunk with ``thin(name,
        tensor)``; gathered evidence starts afresh (its groups changed), and hooks move to the new
        modules."""
        for bound in self.rules:
            for t in bound.targets:
                t.param = params[t.param_name]
        self.masks = {rule: {k: thin(k, v) for k, v in per.items()} for rule, per in self.masks.items()}
        self.dense = {rule: {k: thin(k, v) for k, v in per.items()} for rule, per in self.dense.items()}
        self.grad_scores, self.grad_steps = {}, {}
        for watch in self.watches.values():
            watch.reset()
        self.attach(self.model)
