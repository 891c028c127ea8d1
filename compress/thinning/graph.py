"""Walk a model's torch.fx graph and record which channel positions must shrink together.

Every activation tensor gets, for each position of its dimension 1 (a conv's output channels, a
linear layer's features), a channel id. Positions that must be kept or removed together end up in
one class of a union-find: a conv's output and the BatchNorm, activation and pooling it passes
through share the conv's ids; tensors added together are joined position by position; a
concatenation's ids are its inputs' ids end to end; a flatten repeats each channel's id once per
spatial position; a depthwise conv's output shares its input's ids. Each parameter and buffer
dimension indexed by channels is bound to the ids of the tensor it meets.

Alongside, each position carries the value it holds when it is the same constant everywhere (a
zero filter gives its bias, then BatchNorm's affine map, then the activation), or NaN; and every
conv and linear layer that mixes channels records a ``Read``: its zero input columns, and how a
constant it reads could be folded into a bias.

Whatever the walk does not understand pins the ids it touches, with the reason: pinned channels are
never removed.
"""

from __future__ import annotations

import math
import operator
from collections import Counter

import torch
from torch import fx, nn

from compress.thinning import ops
from compress.thinning.channels import NAN, Act, ChannelGraph, Read


class Untraceable(Exception):
    """torch.fx could not trace the model (data-dependent control flow, ...)."""


def trace(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """Symbolic trace plus shapes of every node, in eval mode and without touching the model.
    Raises ``Untraceable``; an example the model cannot run on raises what the model raises."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        try:
            gm = fx.symbolic_trace(model)
        except Exception as exc:  # the user's forward may raise anything under tracing
            raise Untraceable(f"{type(exc).__name__}: {_first_line(exc)}") from exc
        with torch.no_grad():
            _ShapeRecorder(gm).run(example)
    finally:
        for m, mode in modes.items():
            m.training = mode
    return gm


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def build_channel_graph(model: nn.Module, gm: fx.GraphModule) -> ChannelGraph:
    walker = _Walker(model, gm)
    for node in gm.graph.nodes:
        walker.visit(node)
    walker.finish()
    return walker.graph


class _ShapeRecorder(fx.Interpreter):
    """Runs the graph once and notes each tensor's shape (fx's ShapeProp would import sympy: seconds)."""

    def run_node(self, n: fx.Node):
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta["thinning_shape"] = tuple(result.shape)
        return result


def _shape(node) -> tuple[int, ...] | None:
    return node.meta.get("thinning_shape") if isinstance(node, fx.Node) else None


def _nodes_in(value) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg(value, found.append)
    return found


def _arg(node: fx.Node, index: int, name: str, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


class _Walker:
    def __init__(self, model: nn.Module, gm: fx.GraphModule):
        self.gm = gm
        self.graph = ChannelGraph()
        self.acts: dict[fx.Node, Act] = {}
        self.module_ids: dict[str, torch.Tensor] = {}  # conv / linear -> ids of its output channels
        self.calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
        self.frozen: dict[str, str] = {}  # module -> why its tensors keep their shapes
        owners: dict[int, list[str]] = {}
        for name, tensor in model.state_dict(keep_vars=True).items():
            owners.setdefault(id(tensor), []).append(name)
        for names in owners.values():
            if len(names) > 1:
                for name in names:
                    others = ", ".join(sorted(set(names) - {name}))
                    self.frozen[name.rpartition(".")[0]] = f"{name} is shared with {others}"

    # ----------------------------------------------------------------- dispatch
    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            self._fresh_pinned(node, "they are channels of the model input")
        elif node.op == "get_attr":
            owner = str(node.target).rpartition(".")[0]
            self.frozen.setdefault(owner, f"{node.target} is used directly by the forward code")
            self._fresh_pinned(node, f"they come from {node.target}, used directly by the forward code")
        elif node.op == "output":
            for arg in _nodes_in(node.args):
                if arg in self.acts:
                    self.graph.pin(self.acts[arg].ids, "they are channels of the model output")
        elif node.op == "call_module":
            self._module(node)
        else:
            self._function(node)

    def finish(self) -> None:
        for name, dims in self.graph.binds.items():
            owner = name.rpartition(".")[0]
            if owner in self.frozen:
                for ids in dims.values():
                    self.graph.pin(ids, f"they index {owner}, whose tensors keep their shapes: {self.frozen[owner]}")

    # ----------------------------------------------------------------- helpers
    def _input(self, node: fx.Node) -> Act | None:
        """The single tensor input of a module call / unary function, when it has a channel view."""
        first = node.args[0] if node.args else None
        return self.acts.get(first) if isinstance(first, fx.Node) else None

    def _fresh_pinned(self, node: fx.Node, why: str) -> None:
        shape = _shape(node)
        if shape is not None and len(shape) >= 2:
            ids = self.graph.fresh(shape[1])
            self.graph.pin(ids, why)
            self.acts[node] = Act(ids, torch.full((shape[1],), NAN, dtype=torch.float64))

    def _unsupported(self, node: fx.Node, what: str) -> None:
        why = f"they reach {node.name} ({what}), which thinning does not support"
        for arg in _nodes_in((node.args, node.kwargs)):
            if arg in self.acts:
                self.graph.pin(self.acts[arg].ids, why)
        self._fresh_pinned(node, f"they come from {node.name} ({what}), which thinning does not support")

    def _passthrough(self, node: fx.Node, x: Act, const: torch.Tensor, what: str) -> None:
        shape = _shape(node)
        if shape is None or len(shape) < 2 or shape[1] != x.ids.numel():
            return self._unsupported(node, what)
        self.acts[node] = Act(x.ids, const)
        self._mutates_first_input(node)

    def _mutates_first_input(self, node: fx.Node) -> None:
        """After ``relu_(x)``, ``x += y``, ``nn.ReLU(inplace=True)(x)``, later readers of ``x`` see the
        result: the graph order is the execution order, so from here on ``x`` carries the new values."""
        name = str(node.target) if node.op != "call_function" else getattr(node.target, "__name__", "")
        module = self.gm.get_submodule(name) if node.op == "call_module" else None
        inplace = (
            node.kwargs.get("inplace") is True
            or getattr(module, "inplace", False) is True
            or (module is None and (name.endswith("_") and not name.endswith("__") or name in ops.INPLACE_OPERATORS))
        )
        if inplace and isinstance(node.args[0], fx.Node):
            self.acts[node.args[0]] = self.acts[node]

    def _module_out_ids(self, name: str, n: int) -> torch.Tensor:
        if name not in self.module_ids:
            self.module_ids[name] = self.graph.fresh(n)
        return self.module_ids[name]

    # ----------------------------------------------------------------- modules
    def _module(self, node: fx.Node) -> None:
        name = str(node.target)
        m = self.gm.get_submodule(name)
        what = f"{type(m).__name__} {name}"
        x = self._input(node)
        if x is None or len(node.args) != 1 or node.kwargs:
            return self._unsupported(node, what)
        kind = type(m)
        if kind in ops.CONV_TYPES:
            if m.groups == 1:
                return self._mixing(node, name, m, x)
            if m.groups == m.in_channels == m.out_channels:
                return self._depthwise(node, name, m, x)
            self.graph.pin(x.ids, f"they pass through grouped convolution {name} (groups={m.groups}), kept whole")
            return self._fresh_pinned(node, f"grouped convolution {name} (groups={m.groups}) is kept whole")
        if kind in ops.LINEAR_TYPES:
            if len(_shape(node.args[0]) or ()) != 2:
                return self._unsupported(node, f"{what} on a tensor of more than 2 dims")
            return self._mixing(node, name, m, x)
        if kind in ops.BN_TYPES:
            return self._batchnorm(node, name, m, x)
        if kind in ops.ELEMENTWISE_MODULES:
            return self._passthrough(node, x, ops.apply_elementwise(m, x.const, len(_shape(node) or ())), what)
        if kind in ops.IDENTITY_MODULES or kind in ops.CONSTANT_POOL_MODULES:
            if getattr(m, "return_indices", False):
                return self._unsupported(node, f"{what} returning indices")
            return self._passthrough(node, x, x.const, what)
        if kind in ops.AVG_POOL_MODULES:
            keeps = ops.avg_pool_keeps_constants(m.padding, m.ceil_mode, getattr(m, "divisor_override", None))
            return self._passthrough(node, x, x.const if keeps else _zeros_only(x.const), what)
        if kind is nn.Flatten:
            return self._flatten(node, x, m.start_dim, m.end_dim, what)
        return self._unsupported(node, what)

    def _mixing(self, node: fx.Node, name: str, m: nn.Module, x: Act) -> None:
        """conv (groups=1) or linear: new output channels; a Read over the input columns."""
        w = m.weight.detach()
        w3 = w.reshape(w.shape[0], w.shape[1], -1)
        nonzero = (w3 != 0).any(2)  # [out, in]
        col_sums = w3.sum(2) if w3.shape[2] > 1 else w3[:, :, 0]  # 1x1 conv / linear: W itself (a view)
        is_conv = type(m) in ops.CONV_TYPES
        padded = is_conv and ops.zero_padded(m)
        out_ids = self._module_out_ids(name, w.shape[0])
        self.graph.kinds[name] = "conv" if is_conv else "linear"
        self.graph.bind(f"{name}.weight", 0, out_ids)
        self.graph.bind(f"{name}.weight", 1, x.ids)
        if m.bias is not None:
            self.graph.bind(f"{name}.bias", 0, out_ids)
        self.graph.zero_rows[f"{name}.weight"] = ~nonzero.any(1)
        fold_into, sign, no_fold = self._fold_target(node, name, m)
        self.graph.reads.append(
            Read(name, x.ids, x.const, ~nonzero.any(0), col_sums, padded, fold_into, sign, no_fold, not is_conv)
        )
        # output: constant where every input read with a non-zero weight is a constant that survives padding
        is_const = ~x.const.isnan()
        kappa = x.const.nan_to_num(0.0)
        usable = is_const & (~torch.tensor(padded) | (kappa == 0))
        const_rows = ~(nonzero & ~usable).any(1)
        bias = m.bias.detach().double() if m.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        value = bias + (col_sums @ kappa.to(col_sums.dtype)).double()
        self.acts[node] = Act(out_ids, torch.where(const_rows, value, torch.full_like(value, NAN)))

    def _fold_target(self, node: fx.Node, name: str, m: nn.Module) -> tuple[str | None, float, str]:
        """Where a removed constant input's contribution goes: this layer's bias, or the running_mean
        of a BatchNorm that takes this layer's output and nothing else (exact in both modes: a
        per-channel shift before BatchNorm only moves its mean)."""
        if self.calls[name] > 1:
            return None, 0.0, f"{name} is called more than once, so a bias cannot absorb it"
        if m.bias is not None:
            return f"{name}.bias", 1.0, ""
        users = list(node.users)
        if len(users) == 1 and users[0].op == "call_module" and self.calls[users[0].target] == 1:
            bn = self.gm.get_submodule(str(users[0].target))
            if type(bn) in ops.BN_TYPES and bn.running_mean is not None and users[0].args == (node,):
                return f"{users[0].target}.running_mean", -1.0, ""
        return None, 0.0, f"{name} has no bias, nor a BatchNorm right after it, to fold it into"

    def _depthwise(self, node: fx.Node, name: str, m: nn.Module, x: Act) -> None:
        """groups == in == out: output channel c is input channel c filtered; one class for both."""
        w = m.weight.detach().reshape(m.out_channels, -1)
        self.graph.kinds[name] = "depthwise"
        self.graph.bind(f"{name}.weight", 0, x.ids)
        if m.bias is not None:
            self.graph.bind(f"{name}.bias", 0, x.ids)
        zero = ~(w != 0).any(1)
        self.graph.zero_rows[f"{name}.weight"] = zero
        kappa = x.const.nan_to_num(0.0)
        usable = ~x.const.isnan() & (~torch.tensor(ops.zero_padded(m)) | (kappa == 0))
        bias = m.bias.detach().double() if m.bias is not None else torch.zeros_like(kappa)
        value = kappa * w.sum(1).double() + bias
        self.acts[node] = Act(x.ids, torch.where(zero | usable, value, torch.full_like(value, NAN)))

    def _batchnorm(self, node: fx.Node, name: str, m: nn.Module, x: Act) -> None:
        for tensor in ("weight", "bias", "running_mean", "running_var"):
            if getattr(m, tensor) is not None:
                self.graph.kinds[name] = "batchnorm"  # without any tensor, it works at every width
                self.graph.bind(f"{name}.{tensor}", 0, x.ids)
        self._passthrough(node, x, ops.batchnorm_constant(m, x.const), f"BatchNorm {name}")

    def _flatten(self, node: fx.Node, x: Act, start: int, end: int, what: str) -> None:
        shape = _shape(node.args[0])
        ndim = len(shape)
        if start % ndim != 1 or end % ndim != ndim - 1:
            return self._unsupported(node, f"{what} from dim {start} to {end}")
        block = math.prod(shape[2:])
        self.acts[node] = Act(x.ids.repeat_interleave(block), x.const.repeat_interleave(block))

    # ----------------------------------------------------------------- functions and methods
    def _function(self, node: fx.Node) -> None:
        name = ops.op_name(node)
        what = f"{node.op} {name or getattr(node.target, '__name__', node.target)}"
        inputs = [a for a in _nodes_in((node.args, node.kwargs)) if a in self.acts]
        if not inputs:  # arithmetic on sizes, a tensor created inside forward, ...
            return self._fresh_pinned(node, f"they come from {node.name} ({what})")
        x = self._input(node)
        others = [a for a in (*node.args[1:], *node.kwargs.values()) if isinstance(a, fx.Node)]
        if node.target is getattr and node.args[1:] == ("shape",) and _batch_size_only(node):
            return None  # x.shape[0]: the batch size, which thinning does not change
        if name is None:
            return self._unsupported(node, what)
        if name in ops.ARITHMETIC:
            return self._arithmetic(node, name, what)
        if name in ops.CONCAT:
            return self._concat(node, what)
        if x is None:
            return self._unsupported(node, what)
        if name == "size":
            dim = _arg(node, 1, "dim")
            if not (isinstance(dim, int) and dim % len(_shape(node.args[0])) == 0):
                self.graph.pin(x.ids, f"{node.name} reads the tensor's channel count ({what})")
            return None
        if name in ops.RESHAPE:  # before the check below: x.view(x.size(0), -1) takes a node
            return self._reshape(node, x, what)
        if others:  # tensor-valued parameters (clamp(min=tensor), ...): not channel-wise as far as we know
            return self._unsupported(node, what)
        ndim = len(_shape(node.args[0]) or ())
        if name in ops.ELEMENTWISE_FUNCTIONS:
            const = ops.apply_elementwise(ops.function_of(node), x.const, ndim, node.args[1:], node.kwargs)
            return self._passthrough(node, x, const, what)
        if name in ops.IDENTITY_FUNCTIONS:
            return self._passthrough(node, x, x.const, what)
        if name in ops.CONSTANT_POOL_FUNCTIONS:
            if _arg(node, 2 if name.startswith("adaptive") else 6, "return_indices", False):
                return self._unsupported(node, f"{what} returning indices")
            return self._passthrough(node, x, x.const, what)
        if name in ops.AVG_POOL_FUNCTIONS:
            keeps = ops.avg_pool_keeps_constants(
                _arg(node, 3, "padding", 0), _arg(node, 4, "ceil_mode", False), _arg(node, 6, "divisor_override")
            )
            return self._passthrough(node, x, x.const if keeps else _zeros_only(x.const), what)
        if name in ops.FLATTEN:
            return self._flatten(node, x, _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1), what)
        if name in ops.REDUCE_SPATIAL:
            dims = _arg(node, 1, "dim")
            dims = (dims,) if isinstance(dims, int) else dims
            if dims and all(isinstance(d, int) and d % ndim >= 2 for d in dims):
                return self._passthrough(node, x, x.const, what)
        return self._unsupported(node, what)

    def _arithmetic(self, node: fx.Node, name: str, what: str) -> None:
        """Element-wise between tensors of the same channel count: their channels are tied."""
        shape = _shape(node)
        operands = node.args
        if node.kwargs or len(operands) != 2 or shape is None or len(shape) < 2:
            return self._unsupported(node, what)
        values, tied = [], []
        for a in operands:
            if isinstance(a, fx.Node) and a in self.acts:
                act, a_shape = self.acts[a], _shape(a)
                if len(a_shape) != len(shape) or a_shape[1] != shape[1]:
                    return self._unsupported(node, f"{what} broadcasting over channels")
                tied.append(act)
                values.append(act.const)
            elif isinstance(a, (int, float)) and not isinstance(a, bool):
                values.append(torch.tensor(float(a), dtype=torch.float64))
            elif isinstance(a, fx.Node) and not _shape(a):  # a number or 0-dim tensor computed in the graph
                values.append(torch.tensor(NAN, dtype=torch.float64))
            else:
                return self._unsupported(node, what)
        for other in tied[1:]:
            self.graph.union(tied[0].ids, other.ids)
        const = ops.arithmetic(name)(values[0], values[1])
        if ops.arithmetic(name) is operator.mul:  # zero times anything finite is zero
            const = torch.where((values[0] == 0) | (values[1] == 0), torch.zeros_like(const), const)
        self.acts[node] = Act(tied[0].ids, const.expand(shape[1]).clone())
        self._mutates_first_input(node)

    def _concat(self, node: fx.Node, what: str) -> None:
        tensors = _arg(node, 0, "tensors")
        dim = _arg(node, 1, "dim", 0)
        shape = _shape(node)
        parts = [self.acts.get(t) for t in tensors] if isinstance(tensors, (list, tuple)) else [None]
        if shape is None or not isinstance(dim, int) or dim % len(shape) != 1 or any(p is None for p in parts):
            return self._unsupported(node, f"{what} not along the channels")
        self.acts[node] = Act(torch.cat([p.ids for p in parts]), torch.cat([p.const for p in parts]))

    def _reshape(self, node: fx.Node, x: Act, what: str) -> None:
        """``x.view(x.size(0), -1)`` is a flatten; any literal size would break once channels go."""
        sizes = node.args[1:]
        if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
            sizes = tuple(sizes[0])
        shape, in_shape = _shape(node), _shape(node.args[0])
        if len(sizes) == 2 and sizes[1] == -1 and shape is not None and len(shape) == 2 and shape[0] == in_shape[0]:
            return self._flatten(node, x, 1, -1, what)
        return self._unsupported(node, f"{what} to a fixed shape")


def _batch_size_only(shape_node: fx.Node) -> bool:
    """Every use of ``x.shape`` is ``x.shape[0]``."""
    return all(u.op == "call_function" and u.target is operator.getitem and u.args[1] == 0 for u in shape_node.users)


def _zeros_only(const: torch.Tensor) -> torch.Tensor:
    return torch.where(const == 0, const, torch.full_like(const, NAN))
