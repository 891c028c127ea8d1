"""Registry of group structures: how a weight splits into the groups that group lasso zeroes.

Most group types are described by the dimensions that one group spans: a conv weight F x C x kh x kw
has filters spanning dims (1, 2, 3), channels spanning (0, 2, 3), and so on (``DimsGroup``). Two
parametrized families do not fit that shape and are made on demand from their spelling:

- ``blocks(RxDxHxW)`` (``blocks(RxD)`` for a 2-D weight): R consecutive filters x D consecutive
  input channels x H x W consecutive kernel positions (``BlockGroup``);
- ``strided(K)``: within each kernel W[f, c], flattened row-major to L positions, group j holds
  the positions p with p % K == j (intra-kernel strided sparsity, Anwar et al. 2015; ``StridedGroup``).

Every group type answers the same interface (``GroupType``), and every measure (norms, Distiller's
statistics, zero counts) is one batched reduction, so no code ever loops over groups:

- ``reduce(values, op)``: one value per group, shaped to broadcast against the weight (dims types
  keep the reduced dims as 1s; the others return a weight-shaped tensor);
- ``per_group(values, op)``: the same values as a flat 1-D tensor, one per group, in the order of
  ``GroupType.per_group`` (row-major over the group's coordinates);
- ``broadcast(per_group, shape)``: the inverse, back to what ``reduce`` returns.

To add a group type: one ``register(DimsGroup(...))`` call below (the registry is ``GROUPS``), or a
``GroupType`` subclass and an entry in ``_FAMILIES`` for a parametrized family.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from math import prod

import torch
import torch.nn.functional as F

from compress.errors import CompressError
from compress.registry import Registry

Shape = tuple[int, ...]
OPS = ("sum", "amax", "norm", "mean")  # what ``GroupType.reduce`` computes over each group


class GroupType:
    """One way of splitting a weight into disjoint groups that cover it. ``op`` is one of ``OPS``:
    ``sum``, ``amax``, ``norm`` (L2) or ``mean`` of ``values`` over each group."""

    name: str
    aliases: tuple[str, ...]
    description: str

    def misfit(self, shape: Shape) -> str | None:
        """Why this group type does not apply to a weight of ``shape``, or None when it does."""
        raise NotImplementedError

    def count(self, shape: Shape) -> int:
        """How many groups a weight of ``shape`` has."""
        raise NotImplementedError

    def per_group(self, values: torch.Tensor, op: str) -> torch.Tensor:
        """``op`` over every group of ``values`` (weight-shaped), flat: one value per group, ordered
        row-major over the group's coordinates (dims types: the dims a group does not span;
        blocks: the block's index along each dim; strided: (filter, channel, j)). Where groups are
        single weights (``elements``) a sum or max is ``values`` itself, reshaped: copy before writing."""
        grouped, dims = self._grouped(values, op)
        if op == "mean":
            return _reduce(grouped, dims, "sum").div_(self._sizes(values)).reshape(-1)
        return _reduce(grouped, dims, op).reshape(-1)

    def broadcast(self, per_group: torch.Tensor, shape: Shape) -> torch.Tensor:
        """``per_group`` (one value per group, ``per_group``'s order) shaped to broadcast against a
        weight of ``shape``; for blocks and strided a weight-shaped tensor that may be an expanded
        view (never write into it)."""
        raise NotImplementedError

    def reduce(self, values: torch.Tensor, op: str) -> torch.Tensor:
        """``op`` over every group, broadcastable against ``values``: what every measure is built on."""
        return self.broadcast(self.per_group(values, op), tuple(values.shape))

    def _grouped(self, values: torch.Tensor, op: str) -> tuple[torch.Tensor, tuple[int, ...]]:
        """A view of ``values`` in which each group is what ``dims`` span (padded where needed with
        a value that does not change ``op``)."""
        raise NotImplementedError

    def _sizes(self, values: torch.Tensor) -> int | torch.Tensor:
        """Elements per group, broadcastable against the keepdim reduction of ``_grouped``."""
        raise NotImplementedError


@dataclass(frozen=True)
class DimsGroup(GroupType):
    """A group type whose groups span the same dims of every index of the others: the reductions
    are one keepdim reduction over those dims, whose result already broadcasts against the weight."""

    name: str
    aliases: tuple[str, ...]
    description: str
    min_ndim: int
    dims: Callable[[int], tuple[int, ...]]  # ndim -> dims one group spans
    max_ndim: int | None = None

    def misfit(self, shape: Shape) -> str | None:
        ndim = len(shape)
        if ndim < self.min_ndim or (self.max_ndim is not None and ndim > self.max_ndim):
            need = f"exactly {self.min_ndim}" if self.max_ndim == self.min_ndim else f"at least {self.min_ndim}"
            return f"group {self.name!r} ({self.description}) needs a weight with {need} dims, got shape {list(shape)}"
        return None

    def count(self, shape: Shape) -> int:
        dims = self.dims(len(shape))
        return prod(s for i, s in enumerate(shape) if i not in dims)

    def reduce(self, values: torch.Tensor, op: str) -> torch.Tensor:
        # The fast path every dims type had before the interface: keepdim, no copy back.
        dims = self.dims(values.dim())
        if op == "mean":
            return _reduce(values, dims, "sum").div(prod(values.shape[d] for d in dims))
        return _reduce(values, dims, op)

    def per_group(self, values: torch.Tensor, op: str) -> torch.Tensor:
        return self.reduce(values, op).reshape(-1)

    def broadcast(self, per_group: torch.Tensor, shape: Shape) -> torch.Tensor:
        dims = self.dims(len(shape))
        return per_group.reshape([1 if i in dims else s for i, s in enumerate(shape)])


@dataclass(frozen=True)
class BlockGroup(GroupType):
    """``blocks(RxDxHxW)``: tiles of ``block`` consecutive indices along every dim. The weight is
    viewed as (F/R, R, C/D, D, ...) and each group is what the odd dims of that view span."""

    block: Shape
    aliases = ()

    @property
    def name(self) -> str:
        return f"blocks({'x'.join(map(str, self.block))})"

    @property
    def description(self) -> str:
        return f"a tile of {'x'.join(map(str, self.block))} consecutive weights"

    def misfit(self, shape: Shape) -> str | None:
        if len(self.block) != len(shape):
            return (
                f"{self.name}: {len(self.block)} block sizes for a weight of shape {list(shape)}, which has "
                f"{len(shape)} dims; give one size per dim (blocks({_TEMPLATES.get(len(shape), 'RxD...')}))"
            )
        nouns = _dim_nouns(len(shape))
        for b, s, noun in zip(self.block, shape, nouns, strict=True):
            if b < 1 or s % b:
                return f"{self.name}: {b} does not divide {s} {noun} of a weight of shape {list(shape)}"
        return None

    def count(self, shape: Shape) -> int:
        return prod(s // b for s, b in zip(shape, self.block, strict=True))

    def broadcast(self, per_group: torch.Tensor, shape: Shape) -> torch.Tensor:
        kept = [n for s, b in zip(shape, self.block, strict=True) for n in (s // b, 1)]
        return per_group.reshape(kept).expand(self._split(shape)).reshape(shape)

    def _split(self, shape: Shape) -> list[int]:
        return [n for s, b in zip(shape, self.block, strict=True) for n in (s // b, b)]

    def _grouped(self, values: torch.Tensor, op: str) -> tuple[torch.Tensor, tuple[int, ...]]:
        return values.reshape(self._split(tuple(values.shape))), tuple(range(1, 2 * values.dim(), 2))

    def _sizes(self, values: torch.Tensor) -> int:
        return prod(self.block)


@dataclass(frozen=True)
class StridedGroup(GroupType):
    """``strided(K)``: each kernel, flattened to L positions, splits into K groups by position mod
    K. The kernels are viewed as (F, C, M, K) with M = ceil(L / K) (padded when K does not divide
    L), so group j of kernel (f, c) is column j of that view."""

    stride: int
    aliases = ()

    @property
    def name(self) -> str:
        return f"strided({self.stride})"

    @property
    def description(self) -> str:
        return f"the positions p of one kernel with the same p % {self.stride}"

    def misfit(self, shape: Shape) -> str | None:
        if self.stride < 2:
            return f"{self.name}: K must be at least 2 (strided(1) would be a whole kernel: use kernels)"
        if len(shape) < 3:
            need = "needs a weight with at least 3 dims (kernels to split)"
            return f"group {self.name!r} ({self.description}) {need}, got shape {list(shape)}"
        positions = prod(shape[2:])
        if self.stride > positions:
            kernel = "x".join(map(str, shape[2:]))
            where = f"a {kernel} kernel of a weight of shape {list(shape)}"
            return f"{self.name}: K = {self.stride} is more than the {positions} positions of {where}"
        return None

    def count(self, shape: Shape) -> int:
        return shape[0] * shape[1] * self.stride

    def broadcast(self, per_group: torch.Tensor, shape: Shape) -> torch.Tensor:
        f, c, positions, rows = self._layout(shape)
        full = per_group.reshape(f, c, 1, self.stride).expand(f, c, rows, self.stride).reshape(f, c, -1)
        return full[..., :positions].reshape(shape)

    def _layout(self, shape: Shape) -> tuple[int, int, int, int]:
        """(F, C, L, M): filters, channels, positions per kernel, rows of the (M, K) view."""
        positions = prod(shape[2:])
        return shape[0], shape[1], positions, -(-positions // self.stride)

    def _grouped(self, values: torch.Tensor, op: str) -> tuple[torch.Tensor, tuple[int, ...]]:
        f, c, positions, rows = self._layout(tuple(values.shape))
        flat = values.reshape(f, c, positions)
        if rows * self.stride != positions:
            # padding that changes no group's result: 0 for sums and norms, -inf for maxima
            flat = F.pad(flat, (0, rows * self.stride - positions), value=-torch.inf if op == "amax" else 0.0)
        return flat.reshape(f, c, rows, self.stride), (2,)

    def _sizes(self, values: torch.Tensor) -> int | torch.Tensor:
        _, _, positions, rows = self._layout(tuple(values.shape))
        if positions % self.stride == 0:
            return rows
        sizes = torch.full((self.stride,), rows, dtype=values.dtype, device=values.device)
        sizes[positions - (rows - 1) * self.stride :] = rows - 1  # the last groups are one short
        return sizes


_TEMPLATES = {1: "R", 2: "RxD", 3: "RxDxL", 4: "RxDxHxW"}


def _dim_nouns(ndim: int) -> list[str]:
    """What each dim of a weight holds, for messages."""
    if ndim == 1:
        return ["elements"]
    if ndim == 2:
        return ["output features", "input features"]
    kernel = ["kernel rows", "kernel columns"] if ndim == 4 else [f"positions along dim {d}" for d in range(2, ndim)]
    return ["filters", "input channels", *kernel]


class GroupRegistry(Registry[GroupType]):
    """The registered group types, plus the parametrized families, made on demand from a spelling
    (``blocks(1x4x1x1)``, ``Strided( 2 )``) and cached: there is one type per parameter, too many
    to register. ``names()`` and iteration list the registered types only."""

    def __init__(self, what: str):
        super().__init__(what)
        self._made: dict[str, GroupType] = {}

    def get(self, name: str, where: str | None = None) -> GroupType:
        if name in self._entries:
            return self._entries[name]
        try:
            canonical = parametrized_name(name)
        except ValueError as error:
            prefix = f"{where}: " if where else ""
            raise CompressError(f"{prefix}malformed group {name!r}: {error}") from None
        if canonical is None:
            return super().get(name, where)
        if canonical not in self._made:
            family, params = _parse(canonical)
            self._made[canonical] = _FAMILIES[family][1](params)
        return self._made[canonical]

    def __contains__(self, name: object) -> bool:
        if name in self._entries:
            return True
        try:
            return isinstance(name, str) and parametrized_name(name) is not None
        except ValueError:
            return False


GROUPS = GroupRegistry("group")


def register(group: GroupType) -> GroupType:
    return GROUPS.register(group.name, group, group.description)


register(DimsGroup("elements", (), "one weight", 1, lambda n: ()))
register(DimsGroup("filters", ("3d",), "W[f, ...]: an output filter or neuron", 2, lambda n: tuple(range(1, n))))
register(DimsGroup("channels", (), "W[:, c, ...]: an input channel or feature", 2, lambda n: (0, *range(2, n))))
register(DimsGroup("kernels", ("2d",), "W[f, c, ...]: one kernel", 3, lambda n: tuple(range(2, n))))
register(DimsGroup("rows", (), "a row W[i, :] of a 2-D weight", 2, lambda n: (1,), max_ndim=2))
register(DimsGroup("cols", (), "a column W[:, j] of a 2-D weight", 2, lambda n: (0,), max_ndim=2))
register(DimsGroup("layer", ("4d",), "the whole tensor", 1, lambda n: tuple(range(n))))

_BLOCKS_EXPECTED = (
    "expected blocks(RxDxHxW) for a 4-D weight or blocks(RxD) for a 2-D one: one block size per dim of "
    "the weight, positive integers joined by 'x' (e.g. blocks(1x4x1x1))"
)
_STRIDED_EXPECTED = (
    "expected strided(K) with an integer K >= 2: the positions p of a kernel with the same p % K (e.g. strided(2))"
)

# family -> (what a malformed spelling is told, the type made from the parameters)
_FAMILIES: dict[str, tuple[str, Callable[[Shape], GroupType]]] = {
    "blocks": (_BLOCKS_EXPECTED, lambda params: BlockGroup(params)),
    "strided": (_STRIDED_EXPECTED, lambda params: StridedGroup(params[0])),
}
PATTERNS = ("blocks(RxDxHxW)", "strided(K)")  # how messages listing valid groups spell the families


def _parse(name: str) -> tuple[str, Shape] | None:
    """(family, parameters) of a parametrized spelling (case and spaces ignored); None when ``name``
    names no family; ValueError saying what is expected when the parameters are malformed."""
    text = "".join(name.split()).lower()
    family, _, rest = text.partition("(")
    if family not in _FAMILIES:
        return None
    expected = _FAMILIES[family][0]
    match = re.fullmatch(r"([0-9]+(?:x[0-9]+)*)\)", rest)
    if match is None:
        raise ValueError(expected)
    params = tuple(int(p) for p in match.group(1).split("x"))
    if min(params) < 1 or (family == "strided" and (len(params) != 1 or params[0] < 2)):
        raise ValueError(expected)
    return family, params


def parametrized_name(name: str) -> str | None:
    """The canonical spelling (``blocks(1x4x1x1)``, ``strided(2)``) of a parametrized group name,
    None when ``name`` names no parametrized family, ValueError saying what is expected when it
    does but its parameters are malformed (``blocks(1x0)``, ``strided(1)``, bare ``blocks``)."""
    parsed = _parse(name)
    if parsed is None:
        return None
    family, params = parsed
    return f"{family}({'x'.join(map(str, params))})"


def get(name: str) -> GroupType:
    return GROUPS.get(name)


def spellings() -> dict[str, str]:
    """Every registered name a schedule may use (lower-case, aliases included) -> canonical name.
    The parametrized families are not in it (one spelling per parameter): ``parametrized_name``
    reads those, and ``PATTERNS`` is how a message lists them."""
    out = {}
    for _, group in GROUPS.items():
        for spelling in (group.name, *group.aliases):
            out[spelling] = group.name
    return out


def _reduce(values: torch.Tensor, dims: tuple[int, ...], op: str) -> torch.Tensor:
    """``op`` (sum, amax, norm) over ``dims``, keepdim; ``values`` itself (``abs`` for norm) when
    ``dims`` is empty, so a caller that writes into the result must own ``values``."""
    if op == "norm":
        return torch.linalg.vector_norm(values, dim=dims, keepdim=True) if dims else values.abs()
    if not dims:
        return values
    if op == "sum":
        return values.sum(dim=dims, keepdim=True)
    if op == "amax":
        return values.amax(dim=dims, keepdim=True)
    raise ValueError(f"unknown reduction {op!r}; valid: {', '.join(OPS)}")


def group_scores(weight: torch.Tensor, group: str, norm: str = "l2", eps: float = 0.0) -> torch.Tensor:
    """One score per group as a flat 1-D tensor, in ``GroupType.per_group``'s order (what pruning
    ranks): ``l1`` (sum of magnitudes) or ``l2`` (the norm, with ``eps`` under the square root as in
    ``group_norms``). ``expand_groups`` of the ``l2`` scores is ``group_norms``, to the last bit."""
    kind = GROUPS.get(group)
    if norm == "l1":
        return kind.per_group(weight.abs(), "sum")
    if norm != "l2":
        raise ValueError(f"unknown norm {norm!r}; valid: l1, l2")
    if eps:
        return kind.per_group(weight.pow(2), "sum").add_(eps).sqrt_()
    return kind.per_group(weight, "norm")


def expand_groups(values: torch.Tensor, group: str, shape: Shape | torch.Size) -> torch.Tensor:
    """``values`` (one per group, ``group_scores``' order) back onto a weight of ``shape``, shaped as
    ``group_norms`` returns (broadcastable; ``.expand(shape)`` for a full tensor): what turns a
    ranking of groups into a mask."""
    return GROUPS.get(group).broadcast(values, tuple(shape))


def group_norms(weight: torch.Tensor, group: str, eps: float = 0.0) -> torch.Tensor:
    """L2 norm of every group, shaped to broadcast against ``weight``; ``eps`` is added under the
    square root (``sqrt(sum w^2 + eps)``, Distiller's channel norm) where it is not 0."""
    return expand_groups(group_scores(weight, group, "l2", eps), group, weight.shape)


def group_statistic(weight: torch.Tensor, group: str, criterion: str) -> torch.Tensor:
    """The number a threshold is compared with: ``norm`` (L2), ``max`` (largest magnitude),
    ``mean_abs`` (the L1 norm over the group's size), or ``distiller_mean_abs``: the same, except
    that for ``rows`` and ``cols`` of a 2-D weight it divides by the other dimension's length, as
    Distiller's ``sub_matrix_norm`` did (a row's sum over the number of rows)."""
    if criterion == "norm":
        return group_norms(weight, group)
    kind = GROUPS.get(group)
    if criterion == "max":
        return kind.reduce(weight.abs(), "amax")
    if criterion == "distiller_mean_abs" and group in ("rows", "cols"):
        # the other dimension's length is the number of groups
        return kind.reduce(weight.abs(), "sum").div_(kind.count(tuple(weight.shape)))
    return kind.reduce(weight.abs(), "mean")


def kept_by_threshold(weight: torch.Tensor, group: str, criterion: str, threshold: float) -> torch.Tensor:
    """1.0 where a group's statistic is above ``threshold`` (it stays), 0.0 where it is at or below
    (it is zeroed): Distiller's boundary, ``statistic > threshold`` keeps."""
    return group_statistic(weight, group, criterion).gt(threshold).to(weight.dtype)


def zero_groups(weight: torch.Tensor, group: str) -> torch.Tensor:
    """Boolean, broadcastable: True where the whole group is exactly zero."""
    return GROUPS.get(group).reduce(weight.abs(), "amax") == 0


def zero_fraction(weight: torch.Tensor, group: str) -> float:
    """Zero groups over all groups (counted per group: strided groups need not be the same size)."""
    zero = GROUPS.get(group).per_group(weight.abs(), "amax") == 0
    return int(zero.sum()) / zero.numel()
