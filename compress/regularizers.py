"""Registry of penalties. Each knows three things about ``strength * R(w)`` on one weight:

- ``value``: the penalty, for logging (no autograd graph);
- ``add_gradient``: ``grad += strength * dR/dw`` (penalty mode, Distiller's semantics);
- ``proximal``: ``w <- prox_{t R}(w)`` with ``t = lr * strength`` (proximal mode, exact zeros); it
  returns where ``w`` is still alive as 1.0 / 0.0 (broadcastable to ``w``) so the caller can also
  clear the optimizer's momentum of what the step zeroed, or ``None`` when the operator zeroes
  nothing. Floats, not booleans: on the CPU a float multiply is several times faster than a
  comparison plus a bool-to-float multiply over the same tensor.

All three work on whole tensors (group norms are one reduction), never a loop over groups. To add
a penalty: a subclass of ``Penalty`` and one ``register`` call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from compress.groups import group_norms

# Below this norm a float32 group's squares underflow and its computed norm is 0 or garbage: such a
# group is treated as zero (subgradient 0), which is what it is for any practical purpose.
NORM_FLOOR = torch.finfo(torch.float32).tiny ** 0.5  # ~1.1e-19


class Penalty:
    name: str = ""
    grouped: bool = False  # True: acts on groups from groups.py; False: on single weights

    def value(self, w: torch.Tensor, group: str, strength: float) -> torch.Tensor:
        raise NotImplementedError

    def add_gradient(
        self, w: torch.Tensor, grad: torch.Tensor, group: str, strength: float, value: bool = True
    ) -> torch.Tensor | None:
        """Adds the penalty's gradient into ``grad`` in place; returns the penalty value (``None``
        with ``value=False``: computing it is a full pass over the weights, skipped on most steps)."""
        raise NotImplementedError

    def proximal(self, w: torch.Tensor, group: str, t: float) -> torch.Tensor | None:
        raise NotImplementedError


class L1(Penalty):
    """``strength * sum |w|``; proximal: soft thresholding. YAML::

    - {name: sparse-fc, penalty: l1, strength: 1.0e-4, layers: ["fc*.weight"]}
    """

    name = "l1"

    def value(self, w, group, strength):
        return w.abs().sum() * strength

    def add_gradient(self, w, grad, group, strength, value=True):
        grad.add_(w.sign(), alpha=strength)
        return self.value(w, group, strength) if value else None

    def proximal(self, w, group, t):
        w.copy_(F.softshrink(w, t))
        return w.sign().abs_()


class L2(Penalty):
    """Weight decay on chosen layers: ``grad += strength * w``, i.e. ``strength/2 * ||w||^2``. YAML::

    - {name: decay-convs, penalty: l2, strength: 5.0e-4, layers: ["conv*.weight"], mode: penalty}
    """

    name = "l2"

    def value(self, w, group, strength):
        return w.pow(2).sum() * (strength / 2)

    def add_gradient(self, w, grad, group, strength, value=True):
        grad.add_(w, alpha=strength)
        return self.value(w, group, strength) if value else None

    def proximal(self, w, group, t):
        w.div_(1.0 + t)
        return None  # shrinks, never zeroes


class GroupLasso(Penalty):
    """``strength * sum_g ||w_g||_2``; proximal: group soft thresholding (whole groups become 0). YAML::

    - name: conv-filters
      penalty: group_lasso
      groups: filters           # filters | channels | kernels | rows | cols | layer
      strength: 0.005
      layers: ["conv*.weight"]
    """

    name = "group_lasso"
    grouped = True

    def value(self, w, group, strength):
        return group_norms(w, group).sum() * strength

    def add_gradient(self, w, grad, group, strength, value=True):
        norms = group_norms(w, group)
        grad.addcmul_(w, torch.where(norms > NORM_FLOOR, norms.reciprocal(), 0.0), value=strength)
        return norms.sum() * strength if value else None

    def proximal(self, w, group, t):
        if t <= 0:
            return None
        norms = group_norms(w, group)
        # norm 0 -> t/0 = inf -> factor clamps to 0: no NaN.
        factor = (1.0 - t / norms).clamp_min_(0.0)
        w.mul_(factor)
        return factor.sign()


PENALTIES: dict[str, Penalty] = {}


def register(penalty: Penalty) -> Penalty:
    PENALTIES[penalty.name] = penalty
    return penalty


for _penalty in (L1(), L2(), GroupLasso()):
    register(_penalty)


def get(name: str) -> Penalty:
    return PENALTIES[name]


def penalty_kinds() -> dict[str, bool]:
    """name -> whether the penalty takes groups (the schedule readers' vocabulary)."""
    return {name: p.grouped for name, p in PENALTIES.items()}
