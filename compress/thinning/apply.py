"""Carrying a plan out: smaller modules of the same types, under the same names, with the kept
weights; rebuilding that architecture from a dense model; checking that outputs did not change."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import nn

from compress.errors import CompressError
from compress.thinning import ops
from compress.thinning.plan import ThinningPlan, plan_thinning

TOLERANCE = 1e-4


class ThinningError(RuntimeError):
    """Thinning would have changed the model's outputs; no thinned model is returned."""


class ThinResult(NamedTuple):
    model: nn.Module
    plan: ThinningPlan
    max_abs_diff: float


def thin_tensor_state(tensor: torch.Tensor, keep: dict[int, torch.Tensor]) -> torch.Tensor:
    """Select the kept indices of a tensor shaped like the parameter ``keep`` belongs to
    (``plan.keep[name]``): the parameter itself, its momentum buffer, Adam's moments. Scalars
    (Adam's ``step``) come back unchanged."""
    if tensor.dim() == 0 or not keep:
        return tensor
    if max(keep) >= tensor.dim():
        raise ValueError(f"cannot thin a tensor of shape {list(tensor.shape)} along dims {sorted(keep)}")
    for dim, idx in sorted(keep.items()):
        tensor = tensor.index_select(dim, idx.to(tensor.device))
    return tensor


def apply_thinning(model: nn.Module, plan: ThinningPlan, *, inplace: bool = False) -> nn.Module:
    """The smaller model: every module in ``plan.spec`` replaced by one of the same type and
    hyper-parameters with fewer channels / features, holding the kept (and corrected) tensors.
    Module and parameter names stay, so state_dict keys match the dense model's. A copy unless
    ``inplace``; hooks registered on replaced modules do not carry over."""
    state = model.state_dict(keep_vars=True)
    wrong = {n: tuple(t.shape) for n, t in state.items() if plan.dense_shapes.get(n) != tuple(t.shape)}
    if wrong or set(state) != set(plan.dense_shapes):
        raise ValueError(f"the plan was made for another model (differs at {sorted(wrong)[:5] or 'names'})")
    thin = model if inplace else copy.deepcopy(model)
    state = thin.state_dict(keep_vars=True)
    with torch.no_grad():
        new = {}
        for name, tensor in state.items():
            if name in plan.corrections or plan.keep.get(name):
                value = tensor.detach()
                if name in plan.corrections:
                    value = value + plan.corrections[name].to(value)
                new[name] = thin_tensor_state(value, plan.keep.get(name, {}))
        for module_name, changes in plan.spec.items():
            old = thin.get_submodule(module_name)
            fresh = _build_like(old, changes, initialize=False)
            prefix = f"{module_name}."
            local = {k: new.pop(prefix + k, v.detach()) for k, v in old.state_dict(keep_vars=True).items()}
            fresh.load_state_dict(local, assign=True)
            assert not any(t.is_meta for t in fresh.state_dict().values()), f"{module_name}: a tensor was not set"
            for (_, p_old), (_, p_new) in zip(old.named_parameters(), fresh.named_parameters(), strict=True):
                p_new.requires_grad_(p_old.requires_grad)
            fresh.train(old.training)
            set_submodule(thin, module_name, fresh)
        for name, value in new.items():  # corrected but not resized (a BatchNorm's running_mean)
            state[name].copy_(value)
    return thin


def rebuild(model: nn.Module, spec: dict[str, dict[str, int]]) -> nn.Module:
    """Turn a freshly built dense model into the thinned architecture ``spec`` describes (modules
    replaced in place, freshly initialised; the model is returned), ready for ``load_state_dict``
    of the thinned weights. This is how a thinned checkpoint loads."""
    for module_name, changes in spec.items():
        try:
            old = model.get_submodule(module_name)
        except AttributeError:
            raise CompressError(f"thinned spec: the model has no module {module_name!r}") from None
        set_submodule(model, module_name, _build_like(old, changes, initialize=True))
    return model


@torch.no_grad()
def verify(dense: nn.Module, thin: nn.Module, example: torch.Tensor) -> float:
    """Max absolute difference between the two models' outputs on ``example`` in eval mode
    (``inf`` when the outputs do not even have the same shapes)."""
    return max_difference(outputs(dense, example), outputs(thin, example))


@torch.no_grad()
def outputs(model: nn.Module, example: torch.Tensor) -> list[torch.Tensor]:
    """The model's output tensors on ``example`` in eval mode (its modes are put back after)."""
    with _eval(model):
        return _tensors(model(example))


def max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b, strict=False)):
        return math.inf
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x.numel():
            diff = float((x.double() - y.double()).abs().max())
            worst = max(worst, math.inf if math.isnan(diff) else diff)
    return worst


def allowed_difference(reference: list[torch.Tensor], tolerance: float = TOLERANCE) -> float:
    """``tolerance`` for outputs up to 1, relative to the largest |output| beyond: float32 rounding
    grows with the values (a ResNet-56 whose outputs reach 500 differs from itself by 1.2e-4
    between two summation orders, while both agree exactly in float64)."""
    scale = max((float(x.abs().max()) for x in reference if x.numel()), default=1.0)
    return tolerance * (max(1.0, scale) if math.isfinite(scale) else 1.0)


def thin_model(model: nn.Module, example: torch.Tensor, *, tolerance: float = TOLERANCE) -> ThinResult:
    """Plan, apply, verify: the thinned model (``model`` itself is not modified), its plan and
    the measured max abs difference. Raises ``ThinningError`` rather than return a model whose
    outputs differ by more than ``tolerance`` (relative to outputs beyond 1: ``allowed_difference``)."""
    plan = plan_thinning(model, example)
    thin = apply_thinning(model, plan)
    expected = outputs(model, example)
    diff, bound = max_difference(expected, outputs(thin, example)), allowed_difference(expected, tolerance)
    if not diff <= bound:
        raise ThinningError(
            f"thinning changed the outputs by {diff:.3g} (> {bound:.3g}); the model was not thinned. "
            "This is a bug in compress.thinning; please report it with the model"
        )
    return ThinResult(thin, plan, diff)


def _build_like(old: nn.Module, changes: dict[str, int], *, initialize: bool) -> nn.Module:
    kind = type(old)
    if kind in ops.CONV_TYPES:
        args = dict(
            in_channels=old.in_channels, out_channels=old.out_channels, kernel_size=old.kernel_size,
            stride=old.stride, padding=old.padding, dilation=old.dilation, groups=old.groups,
            bias=old.bias is not None, padding_mode=old.padding_mode,
        )  # fmt: skip
    elif kind in ops.LINEAR_TYPES:
        args = dict(in_features=old.in_features, out_features=old.out_features, bias=old.bias is not None)
    elif kind in ops.BN_TYPES:
        args = dict(
            num_features=old.num_features, eps=old.eps, momentum=old.momentum, affine=old.affine,
            track_running_stats=old.track_running_stats,
        )  # fmt: skip
    else:
        raise CompressError(f"thinned spec: cannot resize a {kind.__name__}; valid: Conv1d/2d/3d, Linear, BatchNorm")
    unknown = set(changes) - set(args)
    if unknown:
        raise CompressError(f"thinned spec: {kind.__name__} has no argument {sorted(unknown)}; valid: {sorted(args)}")
    args.update(changes)
    like = next(iter([*old.parameters(), *old.buffers()]))
    if not initialize:  # tensors come from load_state_dict(assign=True): allocate nothing now
        return kind(**args, device="meta", dtype=like.dtype)
    return kind(**args, device=like.device, dtype=like.dtype)


def set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def _tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for v in output.values() for t in _tensors(v)]
    if isinstance(output, (list, tuple)):
        return [t for v in output for t in _tensors(v)]
    return []
