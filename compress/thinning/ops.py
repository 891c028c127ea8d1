"""What thinning knows about each operation: which modules and functions it can shrink, which pass
channels through unchanged, and what they do to a channel that holds the same constant everywhere.

Anything not listed here is unsupported: the channels it touches are kept (``graph.py`` pins
them). Adding an operation is one entry below, never a change in the walk.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
from torch import nn

# Modules whose parameters thinning shrinks (exact types: a subclass may take other arguments).
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
LINEAR_TYPES = (nn.Linear,)

# Channel-wise modules without parameters: the constant goes through the module itself.
ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh,
    nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Softplus,
)  # fmt: skip
# Identity in eval mode (dropout) or always.
IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
# Pooling that maps a constant channel to the same constant (max pooling pads with -inf).
CONSTANT_POOL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
AVG_POOL_MODULES = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)

# Functions and tensor methods, by name (call_function targets must come from torch or operator).
ELEMENTWISE_FUNCTIONS = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "hardswish", "hardsigmoid", "silu", "gelu", "elu",
    "leaky_relu", "selu", "celu", "mish", "sigmoid", "sigmoid_", "tanh", "tanh_", "softplus", "clamp", "clamp_",
    "clip",
}  # fmt: skip
IDENTITY_FUNCTIONS = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "contiguous", "clone"}
CONSTANT_POOL_FUNCTIONS = {
    "max_pool1d", "max_pool2d", "max_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
}  # fmt: skip
AVG_POOL_FUNCTIONS = {"avg_pool1d", "avg_pool2d", "avg_pool3d"}
# Element-wise arithmetic between tensors (and numbers): the channels of all tensor operands are tied.
ARITHMETIC = {
    "add", "add_", "iadd", "sub", "sub_", "isub", "mul", "mul_", "imul", "truediv", "div", "div_", "itruediv",
}  # fmt: skip
INPLACE_OPERATORS = {"iadd", "isub", "imul", "itruediv"}
CONCAT = {"cat", "concat", "concatenate"}
FLATTEN = {"flatten"}
RESHAPE = {"view", "reshape"}
REDUCE_SPATIAL = {"mean", "amax"}  # over dims >= 2 only: a constant stays the same constant


def op_name(node: torch.fx.Node) -> str | None:
    """The name a call_function / call_method node is known by here, or None for foreign code."""
    if node.op == "call_method":
        return str(node.target)
    target = node.target
    module = getattr(target, "__module__", None) or ""
    if not (module.startswith("torch") or module in ("_operator", "operator")):
        return None  # a user function wrapped with torch.fx.wrap: anything may happen inside
    return getattr(target, "__name__", None)


def function_of(node: torch.fx.Node) -> Callable:
    """The callable a node applies (tensor methods through ``torch.Tensor``)."""
    if node.op == "call_method":
        return getattr(torch.Tensor, str(node.target))
    return node.target  # type: ignore[return-value]


def zero_padded(conv: nn.modules.conv._ConvNd) -> bool:
    """True when the conv pads with zeros: a constant input channel then differs at the borders."""
    if conv.padding_mode != "zeros":
        return False  # reflect / replicate / circular padding of a constant is the same constant
    if isinstance(conv.padding, str):
        return conv.padding == "same" and any(k > 1 for k in conv.kernel_size)
    return any(p > 0 for p in conv.padding)


def avg_pool_keeps_constants(padding, ceil_mode: bool, divisor_override) -> bool:
    """Average pooling maps a constant to itself unless padding or a divisor dilutes it (zeros stay zero)."""
    pads = padding if isinstance(padding, (tuple, list)) else (padding,)
    return all(p == 0 for p in pads) and not ceil_mode and divisor_override is None


def batchnorm_constant(bn: nn.modules.batchnorm._BatchNorm, const: torch.Tensor) -> torch.Tensor:
    """What an eval-mode BatchNorm makes of per-channel constants (NaN: not constant, stays NaN)."""
    if bn.running_mean is not None:
        mean, var = bn.running_mean.detach().double(), bn.running_var.detach().double()
        out = (const - mean) / torch.sqrt(var + bn.eps)
    else:  # batch statistics: a constant channel normalises to exactly zero
        out = torch.where(const.isnan(), const, torch.zeros_like(const))
    if bn.weight is not None:
        out = out * bn.weight.detach().double() + bn.bias.detach().double()
    return out


def apply_elementwise(fn: Callable, const: torch.Tensor, ndim: int, args=(), kwargs=None) -> torch.Tensor:
    """Run a channel-wise function on per-channel constants shaped like its real input (1, C, 1, ...)."""
    shape = (1, const.numel()) + (1,) * max(ndim - 2, 0)
    values = const.nan_to_num(0.0).reshape(shape).clone()
    out = fn(values, *args, **(kwargs or {}))
    return torch.where(const.isnan(), const, out.reshape(-1).to(const.dtype))


def arithmetic(name: str) -> Callable:
    """The binary operation behind an arithmetic node name (in-place variants act out of place here)."""
    base = name.rstrip("_")
    base = base[1:] if base in ("iadd", "isub", "imul", "itruediv") else base
    return {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv}.get(
        base, operator.truediv
    )
