"""Registry of penalties. Each knows three things about ``strength * R(w)`` on one weight:

- ``value``: the penalty, for logging (no autograd graph);
- ``gradient``: ``strength * dR/dw`` (penalty mode, Distiller's semantics; ``add_gradient`` adds it);
- ``proximal``: ``w <- prox_{t R}(w)`` with ``t = lr * strength`` (proximal mode, exact zeros); with
  ``alive=True`` it returns where ``w`` is still alive as 1.0 / 0.0 (broadcastable to ``w``) so the
  caller can also clear the optimizer's momentum of what the step zeroed, or ``None`` when the
  operator zeroes nothing. Floats, not booleans: on the CPU a float multiply is several times faster
  than a comparison plus a bool-to-float multiply over the same tensor. ``alive=False`` (no momentum
  to clear) skips that pass. ``proximal_step`` is what the scheduler calls: the operator and the
  clearing of the given momentum buffers together (L1: two passes with one buffer, not three).

All three work on whole tensors (group norms are one reduction), never a loop over groups. To add
a penalty: a subclass of ``Penalty`` and one ``register`` call.
"""

from __future__ import annotations

import torch

from compress.groups import expand_groups, group_norms, group_scores
from compress.registry import Registry

# Below this norm a float32 group's squares underflow and its computed norm is 0 or garbage: such a
# group's gradient divides by this floor instead (a valid subgradient, of norm below 1; exactly 0 for
# an all-zero group), which is zero for any practical purpose.
NORM_FLOOR = torch.finfo(torch.float32).tiny ** 0.5  # ~1.1e-19


class Penalty:
    """``grouped``: acts on groups from groups.py (else on single weights); ``has_proximal``: has a
    proximal operator (``mode: proximal``); ``only_groups``: the groups it is defined for (None: any)."""

    name: str = ""
    grouped: bool = False
    has_proximal: bool = True
    only_groups: tuple[str, ...] | None = None

    def value(self, w: torch.Tensor, group: str, strength: float, eps: float = 0.0) -> torch.Tensor:
        raise NotImplementedError

    def gradient(
        self, w: torch.Tensor, group: str, strength: float, value: bool = True, eps: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The penalty's gradient (a new tensor) and its value (``None`` with ``value=False``:
        computing it is a full pass over the weights, skipped on most steps). ``eps``: added under
        each group norm's square root (Distiller's channel norms)."""
        raise NotImplementedError

    def add_gradient(
        self, w: torch.Tensor, grad: torch.Tensor, group: str, strength: float, value: bool = True, eps: float = 0.0
    ) -> torch.Tensor | None:
        """``grad += gradient``; returns the value (see ``gradient``)."""
        gradient, result = self.gradient(w, group, strength, value, eps)
        grad.add_(gradient)
        return result

    def proximal(self, w: torch.Tensor, group: str, t: float, alive: bool = True) -> torch.Tensor | None:
        raise NotImplementedError

    def proximal_step(self, w: torch.Tensor, group: str, t: float, moments: list[torch.Tensor]) -> None:
        """``proximal``, and each of ``moments`` (the optimizer's momentum-like buffers of ``w``)
        zeroed where the operator zeroed ``w``: a zero is not pushed straight back out."""
        clear(moments, self.proximal(w, group, t, bool(moments)))


def clear(buffers: list[torch.Tensor], keep: torch.Tensor | None) -> None:
    """Each buffer zeroed where ``keep`` is 0 (``keep`` broadcastable to it; ``None``: nothing)."""
    if keep is not None:
        for buffer in buffers:
            buffer.mul_(keep)


class L1(Penalty):
    """``strength * sum |w|``; proximal: soft thresholding. YAML::

        - {name: sparse-fc, penalty: l1, strength: 1.0e-4, layers: ["fc*.weight"]}
    """

    name = "l1"

    def value(self, w, group, strength, eps=0.0):
        return w.abs().sum() * strength

    def gradient(self, w, group, strength, value=True, eps=0.0):
        return w.sign().mul_(strength), (self.value(w, group, strength) if value else None)

    def add_gradient(self, w, grad, group, strength, value=True, eps=0.0):
        # one pass fewer than sign, multiply, add; strength x sign is exact, so the bits are the same
        grad.add_(w.sign(), alpha=strength)
        return self.value(w, group, strength) if value else None

    def proximal(self, w, group, t, alive=True):
        # in place: one pass over w instead of three (a new tensor, then copied back)
        torch.ops.aten.softshrink.out(w, _representable(t, w), out=w)
        # a comparison written straight into floats: one pass (a bool mask converted after is 4x slower)
        return torch.ne(w, 0, out=torch.empty_like(w)) if alive else None

    def proximal_step(self, w, group, t, moments):
        if torch.compiler.is_compiling():
            # inductor fuses the generic form into one kernel anyway, and miscompiles this one: with
            # the learning rate a symbolic float (after its first change), torch 2.14 clears the
            # buffers where the *shrunk* w is small (measured: 205 cleared of 1000 where 101 is right)
            return super().proximal_step(w, group, t, moments)
        # softshrink's backward passes a value where |w| > t and 0 where softshrink zeroes: exactly
        # "keep the momentum where w survives", read from w before it shrinks and written over the
        # buffer in one pass; no mask tensor (one pass per buffer instead of a mask pass plus one)
        for buffer in moments:
            torch.ops.aten.softshrink_backward.grad_input(buffer, w, _representable(t, w), grad_input=buffer)
        self.proximal(w, group, t, alive=False)


def _representable(t: float, w: torch.Tensor) -> float:
    """softshrink (and its backward) refuse a threshold beyond the dtype's range; any threshold above
    every |w| zeroes the tensor alike, so the largest finite one gives the exact answer."""
    return min(t, torch.finfo(w.dtype).max)


class L2(Penalty):
    """Weight decay on chosen layers: ``grad += strength * w``, i.e. ``strength/2 * ||w||^2``. YAML::

        - {name: decay-convs, penalty: l2, strength: 5.0e-4, layers: ["conv*.weight"], mode: penalty}
    """

    name = "l2"

    def value(self, w, group, strength, eps=0.0):
        return w.pow(2).sum() * (strength / 2)

    def gradient(self, w, group, strength, value=True, eps=0.0):
        return w * strength, (self.value(w, group, strength) if value else None)

    def proximal(self, w, group, t, alive=True):
        w.div_(1.0 + t)
        return None  # shrinks, never zeroes


class GroupLasso(Penalty):
    """``strength * sum_g ||w_g||_2``; proximal: group soft thresholding (whole groups become 0). YAML::

        - name: conv-filters
          penalty: group_lasso
          groups: filters           # filters | channels | kernels | rows | cols | layer | blocks(RxDxHxW) | strided(K)
          strength: 0.005
          layers: ["conv*.weight"]
    """

    name = "group_lasso"
    grouped = True

    def value(self, w, group, strength, eps=0.0):
        if _distiller_channels(w, group, eps):
            return distiller_channel_norms(w, eps).sum() * strength
        # one norm per group (a broadcast one is weight-shaped for blocks and strided groups)
        return group_scores(w, group, "l2", eps).sum() * strength

    def gradient(self, w, group, strength, value=True, eps=0.0):
        if _distiller_channels(w, group, eps):
            return _autograd(lambda leaf: distiller_channel_norms(leaf, eps).sum().mul(strength), w, value)
        scores = group_scores(w, group, "l2", eps)
        norms = expand_groups(scores, group, w.shape)
        # (w / ||w_g||) * strength: the operations, in the order, of autograd's gradient of strength *
        # sum ||w_g|| (what Distiller computed), so the two agree to the last bit. A group whose norm
        # is below the floor (its squares underflow) divides by the floor instead: a subgradient of
        # norm below 1, 0 for a zero group, where autograd's would be inf or NaN
        gradient = w.div(norms.clamp_min(NORM_FLOOR)).mul_(strength)
        return gradient, (scores.sum() * strength if value else None)

    def proximal(self, w, group, t, alive=True):
        if t <= 0:
            return None
        norms = group_norms(w, group)
        # norm 0 -> t/0 = inf -> factor clamps to 0: no NaN.
        factor = (1.0 - t / norms).clamp_min_(0.0)
        w.mul_(factor)
        return factor.sign() if alive else None


def distiller_channel_norms(w: torch.Tensor, eps: float) -> torch.Tensor:
    """Distiller's channel norms of a conv weight, computed its way: each kernel's sum of squares,
    summed over the filters per channel, plus ``eps``, square root."""
    kernels = w.reshape(-1, w.size(2) * w.size(3)).pow(2).sum(dim=1)
    return kernels.view(w.size(0), w.size(1)).t().sum(dim=1).add(eps).pow(1 / 2.0)


def _distiller_channels(w: torch.Tensor, group: str, eps: float) -> bool:
    """Distiller's GroupLassoRegularizer (which adds ``eps``) on a conv weight's channels."""
    return bool(eps) and group == "channels" and w.dim() == 4


def _autograd(term, w: torch.Tensor, value: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``d term(w) / dw`` through autograd, and the term: for terms whose gradient we do not write by
    hand, or must compute exactly as autograd does (Distiller's channel norms)."""
    with torch.enable_grad():
        leaf = w.detach().requires_grad_(True)
        result = term(leaf)
        (gradient,) = torch.autograd.grad(result, leaf)
    return gradient, (result.detach() if value else None)


class GroupVariance(Penalty):
    """``strength / var_c(||w_c||)``: the inverse of the variance of the channel norms (Torfi et al.
    2018, Distiller's ``GroupVarianceRegularizer``), which pushes the channels apart, some up and
    some towards zero. The variance is the unbiased one and each channel norm is ``sqrt(sum w^2 +
    eps)``, as Distiller computes them. Channels only, penalty mode only (it has no proximal
    operator). YAML::

        - {name: spread, penalty: group_variance, groups: channels, strength: 1.0e-4, layers: ["conv2.weight"],
           mode: penalty}
    """

    name = "group_variance"
    grouped = True
    has_proximal = False
    only_groups = ("channels",)

    @staticmethod
    def _term(w: torch.Tensor, group: str, strength: float, eps: float) -> torch.Tensor:
        norms = distiller_channel_norms(w, eps) if _distiller_channels(w, group, eps) else group_norms(w, group, eps)
        return strength * (1 / norms.flatten().var())

    def value(self, w, group, strength, eps=0.0):
        return self._term(w, group, strength, eps)

    def gradient(self, w, group, strength, value=True, eps=0.0):
        # 1 / var has no closed-form gradient worth writing by hand
        return _autograd(lambda leaf: self._term(leaf, group, strength, eps), w, value)

    def proximal(self, w, group, t, alive=True):
        raise NotImplementedError("group_variance has no proximal operator")


PENALTIES: Registry[Penalty] = Registry("penalty")


def register(penalty: Penalty) -> Penalty:
    return PENALTIES.register(penalty.name, penalty, (penalty.__doc__ or "").split(";")[0].strip())


for _penalty in (L1(), L2(), GroupLasso(), GroupVariance()):
    register(_penalty)


def get(name: str) -> Penalty:
    return PENALTIES.get(name)


def penalty_kinds() -> dict[str, bool]:
    """name -> whether the penalty takes groups (the schedule readers' vocabulary)."""
    return {name: p.grouped for name, p in PENALTIES.items()}


def penalty_traits() -> dict[str, tuple[bool, tuple[str, ...] | None]]:
    """name -> (has a proximal operator, the only groups it takes or None)."""
    return {name: (p.has_proximal, p.only_groups) for name, p in PENALTIES.items()}
