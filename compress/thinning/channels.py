"""The channel graph: ids for the channel positions of every activation, a union-find joining those
that must shrink together, the parameter dimensions they index, and the layers that read them.
``graph.py`` fills it in; ``plan.py`` decides from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

NAN = float("nan")


@dataclass
class Act:
    """Channel view of one activation tensor: an id and a constant (or NaN) per position of dim 1."""

    ids: torch.Tensor  # int64 [C]
    const: torch.Tensor  # float64 [C]

    def __post_init__(self) -> None:  # inf (a division by a zero constant) is no usable constant
        self.const = torch.where(self.const.isfinite(), self.const, torch.full_like(self.const, NAN))


@dataclass
class Read:
    """A conv or linear layer mixing all channels of its input (groups=1)."""

    module: str
    ids: torch.Tensor  # [C_in] channel id of each input column
    const: torch.Tensor  # [C_in] the constant each input column holds, NaN where it varies
    zero_cols: torch.Tensor  # bool [C_in]: W[:, j] is entirely zero
    col_sums: torch.Tensor  # [out, C_in]: W summed over the kernel (a linear's W itself)
    padded: bool  # zero padding: a non-zero constant differs at the borders, cannot be folded
    fold_into: str | None  # the tensor a constant's contribution is added to
    fold_sign: float  # +1 into a bias, -1 into the running_mean of the BatchNorm that follows
    no_fold: str  # why a non-zero constant cannot be folded (when fold_into is None)
    features: bool  # a linear layer (columns are features) rather than a conv

    def column_status(self) -> torch.Tensor:
        """Per column: 0 removable as far as this layer is concerned, 1 read and not constant,
        2 non-zero constant behind zero padding, 3 non-zero constant with nowhere to fold it."""
        is_const = ~self.const.isnan()
        nonzero = is_const & (self.const != 0)
        status = torch.zeros(self.ids.numel(), dtype=torch.int8)
        status[~self.zero_cols & nonzero & (self.fold_into is None)] = 3
        status[~self.zero_cols & nonzero & self.padded] = 2
        status[~self.zero_cols & ~is_const] = 1
        return status

    def why(self, status: int) -> str:
        return {
            1: f"{self.module} reads them with non-zero weights and they are not constant",
            2: f"they hold a non-zero constant that {self.module} reads with zero padding, so it would differ "
            "at the borders (only a zero constant can be removed there)",
            3: f"they hold a non-zero constant and {self.no_fold}",
        }[status]


@dataclass
class ChannelGraph:
    """What the walk found; ``plan.py`` decides from it."""

    parent: list[int] = field(default_factory=list)
    pins: dict[int, str] = field(default_factory=dict)  # id -> why it must stay
    binds: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)  # tensor name -> dim -> ids
    reads: list[Read] = field(default_factory=list)
    zero_rows: dict[str, torch.Tensor] = field(default_factory=dict)  # weight name -> bool per filter / row
    kinds: dict[str, str] = field(default_factory=dict)  # module -> conv | depthwise | linear | batchnorm

    def fresh(self, n: int) -> torch.Tensor:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return torch.arange(start, start + n)

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: torch.Tensor, b: torch.Tensor) -> None:
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def pin(self, ids: torch.Tensor, why: str) -> None:
        for i in ids.unique().tolist():
            self.pins.setdefault(i, why)

    def bind(self, name: str, dim: int, ids: torch.Tensor) -> None:
        dims = self.binds.setdefault(name, {})
        if dim in dims:  # a module called more than once: every call indexes the same tensor
            self.union(dims[dim], ids)
        else:
            dims[dim] = ids

    def roots(self) -> torch.Tensor:
        return torch.tensor([self.find(i) for i in range(len(self.parent))], dtype=torch.long)
