"""Scores and a level -> which groups stay -> a weight-shaped mask. Pure functions, no state.

Two numerics, chosen by the rule (``PruneRule.ties`` and ``structures_keep_one``):

- ours: exactly ``floor(level x groups)`` groups go, the lowest scores, ties broken by position
  (a stable sort), so the level asked for is the level reached;
- Distiller's: the same count, but every group scored at or below the last one counted goes
  (``score > threshold`` stays), and a layer never loses all its structures short of a level of 1.
"""

from __future__ import annotations

import math

import torch

from compress import groups as G


def count_to_prune(groups: int, level: float, *, distiller: bool = False, keep_one: bool = False) -> int:
    """``floor(level x groups)``. Ours forgives the float error of the product (29% of 100 groups is
    29, although ``0.29 * 100`` is 28.999...); Distiller's ``int(level * n)`` did not. With
    ``keep_one`` (Distiller's structure pruners) one group stays unless the level is exactly 1."""
    product = level * groups
    count = int(product) if distiller else math.floor(product + 1e-9 * max(groups, 1))
    count = max(0, min(groups, count))
    if keep_one and count == groups and level != 1.0:
        count = groups - 1
    return count


def keep_lowest_out(scores: torch.Tensor, count: int, ties: str = "exact") -> torch.Tensor:
    """Boolean per group: True where the group stays when the ``count`` lowest-scored go."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    if count <= 0:
        return keep
    if ties == "distiller":
        threshold = torch.topk(scores, count, largest=False, sorted=True).values[-1]
        return scores > threshold
    order = torch.sort(scores, stable=True).indices
    keep[order[:count]] = False
    return keep


def keep_above(statistic: torch.Tensor, threshold: float) -> torch.Tensor:
    """Boolean per group: the statistic is above the threshold (at or below it, the group goes)."""
    return statistic > threshold


def expand(keep: torch.Tensor, group: str, weight: torch.Tensor, scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """The weight-shaped mask (the weight's dtype) of one value per group."""
    values = keep.to(weight.dtype)
    if not isinstance(scale, float) or scale != 1.0:
        values = values * scale
    return G.expand_groups(values, group, tuple(weight.shape)).expand(weight.shape).contiguous()


def pruned_fraction(mask: torch.Tensor, group: str) -> float:
    """The share of groups the mask zeroes entirely."""
    return G.zero_fraction(mask, group)
