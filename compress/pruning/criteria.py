"""Registry of pruning criteria: how the groups of one weight are scored (higher scores stay).

A criterion sees one weight and what the pruning runtime gathered for it (activation statistics,
gradient scores, a random generator) and returns one score per group, in the order of
``groups.group_scores``. ``levels.py`` decides how many groups go; ``masks.py`` turns scores and a
count into a mask. To add a criterion: a ``Criterion`` subclass and one ``CRITERIA.register`` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from compress import groups as G
from compress.registry import Registry


@dataclass
class Evidence:
    """What a criterion may read besides the weight: gathered by the runtime for one parameter."""

    generator: torch.Generator | None = None
    activations: torch.Tensor | None = None  # per output channel: the criterion's statistic (apoz, mean)
    gradient: torch.Tensor | None = None  # per group: the gradient score gathered since the last pruning
    extra: dict = field(default_factory=dict)


class Criterion:
    """``only_groups``: the group types it can score (None: any); ``levels``: the level kinds it can
    serve (a threshold needs a magnitude); ``needs``: ``activations`` or ``gradients`` when the
    runtime must gather them over an epoch before the first pruning step."""

    name: str = ""
    only_groups: tuple[str, ...] | None = None
    levels: tuple[str, ...] = ("sparsity", "agp")
    needs: str | None = None

    def scores(self, weight: torch.Tensor, group: str, evidence: Evidence) -> torch.Tensor:
        raise NotImplementedError

    def statistic(self, weight: torch.Tensor, group: str) -> torch.Tensor:
        """The per-group number a ``threshold`` level compares with (magnitude criteria only)."""
        raise NotImplementedError


class L1(Criterion):
    """Mean absolute value of the group (``|w|`` for single weights): Distiller's L1 ranking."""

    name = "l1"
    levels = ("sparsity", "agp", "threshold", "sensitivity", "splicing")

    def scores(self, weight: torch.Tensor, group: str, evidence: Evidence) -> torch.Tensor:
        return self.statistic(weight, group)

    def statistic(self, weight: torch.Tensor, group: str) -> torch.Tensor:
        return G.get(group).per_group(weight.abs(), "mean")


class L2(Criterion):
    """L2 norm of the group; a threshold compares the norm itself (as group-lasso thresholds do)."""

    name = "l2"
    levels = ("sparsity", "agp", "threshold")

    def scores(self, weight: torch.Tensor, group: str, evidence: Evidence) -> torch.Tensor:
        return self.statistic(weight, group)

    def statistic(self, weight: torch.Tensor, group: str) -> torch.Tensor:
        return G.group_scores(weight, group, "l2")


class Random(Criterion):
    """Uniform random scores: a baseline that any criterion worth its cost must beat."""

    name = "random"

    def scores(self, weight: torch.Tensor, group: str, evidence: Evidence) -> torch.Tensor:
        n = G.get(group).count(tuple(weight.shape))
        return torch.rand(n, generator=evidence.generator, dtype=torch.float64).to(weight.device)


class Bernoulli(Criterion):
    """Each group is dropped independently with the level's probability (DropFilter's draw): the
    count varies around the level. Scores are 0 (dropped) or 1, and ``masks.select`` keeps every
    group scored above 0 when the criterion says ``independent``."""

    name = "bernoulli"
    independent = True

    def scores(self, weight: torch.Tensor, group: str, evidence: Evidence) -> torch.Tensor:
        n = G.get(group).count(tuple(weight.shape))
        keep = 1.0 - evidence.extra["level"]
        return torch.bernoulli(torch.full((n,), keep, dtype=torch.float64), generator=evidence.generator)


class Activation(Criterion):
    """Filters ranked by a statistic of the activation their output channel feeds (ReLU after the
    layer and its BatchNorm), gathered by forward hooks over the epoch(s) since the last pruning."""

    only_groups = ("filters",)
    needs = "activations"

    def scores(self, weight: torch.Tensor, group: str, evidence: Evidence) -> torch.Tensor:
        if evidence.activations is None:
            raise RuntimeError("no activation statistics were gathered")  # bind() makes this impossible
        return evidence.activations.to(weight.device, torch.float64)


class APoZ(Activation):
    """Hu et al. 2016: the Average Percentage of Zeros of the channel's ReLU output; channels that
    are mostly zero go first (the score is the fraction of non-zeros)."""

    name = "apoz"


class MeanActivation(Activation):
    """Molchanov et al. 2017: the mean of the channel's ReLU output; the smallest go first."""

    name = "mean_activation"


class Gradient(Criterion):
    """First-order Taylor importance ``|sum over the group of w * dL/dw|``, averaged over the steps
    since the last pruning (Molchanov et al. 2017). Distiller's variant (the signed sum of the last
    step) comes through ``evidence.gradient`` the same way."""

    name = "gradient"
    needs = "gradients"

    def scores(self, weight: torch.Tensor, group: str, evidence: Evidence) -> torch.Tensor:
        if evidence.gradient is None:
            raise RuntimeError("no gradient scores were gathered")  # bind() makes this impossible
        return evidence.gradient.to(weight.device, torch.float64)


CRITERIA: Registry[Criterion] = Registry("pruning criterion")
for _criterion in (L1(), L2(), Random(), Bernoulli(), APoZ(), MeanActivation(), Gradient()):
    CRITERIA.register(_criterion.name, _criterion, (_criterion.__doc__ or "").split("\n")[0])


def get(name: str) -> Criterion:
    return CRITERIA.get(name)


def criterion_traits() -> dict[str, tuple[tuple[str, ...] | None, tuple[str, ...]]]:
    """name -> (the only groups it scores or None, the level kinds it serves): for schedule readers."""
    return {name: (c.only_groups, c.levels) for name, c in CRITERIA.items()}
