"""Registry of group structures: how a weight splits into the groups that group lasso zeroes.

A group type is described by the dimensions that one group spans: a conv weight F x C x kh x kw has
filters spanning dims (1, 2, 3), channels spanning (0, 2, 3), and so on. Every measure (norms,
Distiller's statistics, zero counts) is then one batched reduction over those dims, kept
broadcastable against the weight, so no code ever loops over groups.

To add a group type: one ``register(GroupType(...))`` call below (the registry is ``GROUPS``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod

import torch

from compress.registry import Registry

Shape = tuple[int, ...]


@dataclass(frozen=True)
class GroupType:
    name: str
    aliases: tuple[str, ...]
    description: str
    min_ndim: int
    dims: Callable[[int], tuple[int, ...]]  # ndim -> dims one group spans
    max_ndim: int | None = None

    def misfit(self, shape: Shape) -> str | None:
        """Why this group type does not apply to a weight of ``shape``, or None when it does."""
        ndim = len(shape)
        if ndim < self.min_ndim or (self.max_ndim is not None and ndim > self.max_ndim):
            need = f"exactly {self.min_ndim}" if self.max_ndim == self.min_ndim else f"at least {self.min_ndim}"
            return f"group {self.name!r} ({self.description}) needs a weight with {need} dims, got shape {list(shape)}"
        return None

    def count(self, shape: Shape) -> int:
        dims = self.dims(len(shape))
        return prod(s for i, s in enumerate(shape) if i not in dims)


GROUPS: Registry[GroupType] = Registry("group")


def register(group: GroupType) -> GroupType:
    return GROUPS.register(group.name, group, group.description)


register(GroupType("elements", (), "one weight", 1, lambda n: ()))
register(GroupType("filters", ("3d",), "W[f, ...]: an output filter or neuron", 2, lambda n: tuple(range(1, n))))
register(GroupType("channels", (), "W[:, c, ...]: an input channel or feature", 2, lambda n: (0, *range(2, n))))
register(GroupType("kernels", ("2d",), "W[f, c, ...]: one kernel", 3, lambda n: tuple(range(2, n))))
register(GroupType("rows", (), "a row W[i, :] of a 2-D weight", 2, lambda n: (1,), max_ndim=2))
register(GroupType("cols", (), "a column W[:, j] of a 2-D weight", 2, lambda n: (0,), max_ndim=2))
register(GroupType("layer", ("4d",), "the whole tensor", 1, lambda n: tuple(range(n))))


def get(name: str) -> GroupType:
    return GROUPS.get(name)


def spellings() -> dict[str, str]:
    """Every name a schedule may use (lower-case, aliases included) -> canonical name."""
    out = {}
    for _, group in GROUPS.items():
        for spelling in (group.name, *group.aliases):
            out[spelling] = group.name
    return out


def _reduce(values: torch.Tensor, dims: tuple[int, ...], op: str) -> torch.Tensor:
    if not dims:
        return values
    if op == "sum":
        return values.sum(dim=dims, keepdim=True)
    if op == "amax":
        return values.amax(dim=dims, keepdim=True)
    return values.mean(dim=dims, keepdim=True)


def group_norms(weight: torch.Tensor, group: str, eps: float = 0.0) -> torch.Tensor:
    """L2 norm of every group, shaped to broadcast against ``weight``; ``eps`` is added under the
    square root (``sqrt(sum w^2 + eps)``, Distiller's channel norm) where it is not 0."""
    dims = GROUPS.get(group).dims(weight.dim())
    if eps:
        squares = weight.pow(2)
        return (squares.sum(dim=dims, keepdim=True) if dims else squares).add_(eps).sqrt_()
    if not dims:
        return weight.abs()
    return torch.linalg.vector_norm(weight, dim=dims, keepdim=True)


def group_statistic(weight: torch.Tensor, group: str, criterion: str) -> torch.Tensor:
    """The number a threshold is compared with: ``norm`` (L2), ``max`` (largest magnitude),
    ``mean_abs`` (the L1 norm over the group's size), or ``distiller_mean_abs``: the same, except
    that for ``rows`` and ``cols`` of a 2-D weight it divides by the other dimension's length, as
    Distiller's ``sub_matrix_norm`` did (a row's sum over the number of rows)."""
    if criterion == "norm":
        return group_norms(weight, group)
    dims = GROUPS.get(group).dims(weight.dim())
    if criterion == "max":
        return _reduce(weight.abs(), dims, "amax")
    kept = [d for d in range(weight.dim()) if d not in dims]
    swapped = criterion == "distiller_mean_abs" and group in ("rows", "cols")
    size = prod(weight.shape[d] for d in (kept if swapped else dims))
    return _reduce(weight.abs(), dims, "sum").div_(size)


def kept_by_threshold(weight: torch.Tensor, group: str, criterion: str, threshold: float) -> torch.Tensor:
    """1.0 where a group's statistic is above ``threshold`` (it stays), 0.0 where it is at or below
    (it is zeroed): Distiller's boundary, ``statistic > threshold`` keeps."""
    return group_statistic(weight, group, criterion).gt(threshold).to(weight.dtype)


def zero_groups(weight: torch.Tensor, group: str) -> torch.Tensor:
    """Boolean, broadcastable: True where the whole group is exactly zero."""
    dims = GROUPS.get(group).dims(weight.dim())
    return _reduce(weight.abs(), dims, "amax") == 0


def zero_fraction(weight: torch.Tensor, group: str) -> float:
    zero = zero_groups(weight, group)
    return int(zero.sum()) / zero.numel()
