"""Physical thinning: remove the filters, channels, rows and columns that group lasso left exactly
zero, so the model becomes really smaller and faster, with the same outputs.

    from compress.thinning import thin_model, plan_thinning, apply_thinning, rebuild, verify

    small, plan, diff = thin_model(model, example)   # plan + apply + verify (raises ThinningError if > 1e-4)
    plan.kept_reasons                                 # zero structures that stayed, and why
    plan.spec                                         # {"conv2": {"in_channels": 7, "out_channels": 12}, ...}

    dense = build_model(...)                          # loading a thinned checkpoint:
    rebuild(dense, spec).load_state_dict(thinned_state_dict)

    momentum = thin_tensor_state(momentum, plan.keep["conv2.weight"])   # optimizer state, same index maps

How: the model is traced with torch.fx (``graph.py``) and every tensor's channel positions get ids;
positions that must shrink together are joined (conv -> BatchNorm -> activation -> pooling ->
flatten blocks -> the next layer's input columns; tensors added together; concatenation offsets;
depthwise convs' inputs and outputs). A class of positions goes when every layer reading it has
zero weights on it or reads a constant it can fold exactly (``plan.py``): a zero filter with a bias
or a BatchNorm shift is a constant channel, folded into the consumer's bias (a linear layer, a
conv without zero padding) or into the running_mean of the BatchNorm right after a bias-less
consumer. Behind zero padding only a zero constant can go. Channels of the model's input and
output, grouped (non-depthwise) convs, modules whose tensors the forward code uses directly, and
any operation not listed in ``ops.py`` keep their channels, with the reason in
``plan.kept_reasons``; a model torch.fx cannot trace is left whole. Exactness holds in eval mode
(folded constants use BatchNorm's running statistics); ``verify`` measures it.
"""

from compress.thinning.apply import (
    TOLERANCE,
    ThinningError,
    ThinResult,
    apply_thinning,
    rebuild,
    thin_model,
    thin_tensor_state,
    verify,
)
from compress.thinning.plan import ThinningPlan, plan_thinning

__all__ = [
    "TOLERANCE",
    "ThinResult",
    "ThinningError",
    "ThinningPlan",
    "apply_thinning",
    "plan_thinning",
    "rebuild",
    "thin_model",
    "thin_tensor_state",
    "verify",
]
