"""Every torchvision classification model, by its torchvision name (``resnet18``, ``mobilenet_v2``,
``efficientnet_b0``, ``vit_b_16``, ...), registered from ``torchvision.models.list_models``: a new
torchvision brings its new models without a change here.

Built with random weights and the dataset's class count; ``--pretrained PATH`` then loads a local
state_dict (``compress.models.pretrained``). For 1-channel images the stem convolution takes 1
channel; ViT and MaxViT are built for ``--input-size``. Imported on first use of a name that is not
one of our own models: importing torchvision takes seconds.
"""

from __future__ import annotations

from torch import nn

from compress.errors import CompressError
from compress.models.registry import register

AUXILIARY = ("googlenet", "inception_v3")  # their auxiliary classifiers would change what forward returns


def replace_stem(model: nn.Module, in_channels: int) -> str:
    """Replace the first 3-channel convolution with one taking ``in_channels``; returns its name."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3 and m.groups == 1:
            new = nn.Conv2d(
                in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, 1,
                m.bias is not None, m.padding_mode,
            )  # fmt: skip
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, new)
            return name
    raise CompressError(f"--arch: found no 3-channel input convolution to adapt to {in_channels}-channel images")


def build_torchvision(name: str, *, num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    import torchvision.models

    kwargs: dict = {"num_classes": num_classes}
    if name.startswith("vit_"):
        kwargs["image_size"] = input_size
    elif name.startswith("maxvit_"):
        kwargs["input_size"] = (input_size, input_size)
    if name in AUXILIARY:
        kwargs.update(aux_logits=False, init_weights=True)
    smallest = _min_size(name)
    if input_size < smallest:
        raise CompressError(
            f"--arch: torchvision's {name} takes images of at least {smallest}x{smallest}, not {input_size}"
        )
    try:
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    except (AssertionError, ValueError, RuntimeError) as exc:
        raise CompressError(
            f"--arch: torchvision's {name} cannot be built for {in_channels}x{input_size}x{input_size} images "
            f"and {num_classes} classes ({str(exc).splitlines()[0]})"
        ) from None
    if in_channels != 3:
        replace_stem(model, in_channels)
    return model


def _meta(name: str) -> dict:
    """What torchvision's weights enum says about a model (nothing is downloaded)."""
    import torchvision.models

    try:
        return next(iter(torchvision.models.get_model_weights(name))).meta
    except (KeyError, ValueError, StopIteration):
        return {}


def _min_size(name: str) -> int:
    return _meta(name).get("min_size", (1, 1))[0]


def _describe(name: str) -> str:
    meta = _meta(name)
    if "num_params" not in meta:
        return f"torchvision {name}"
    smallest = _min_size(name)
    min_size = f", inputs at least {smallest}x{smallest}" if smallest > 1 else ""
    return f"torchvision {name}: {meta['num_params'] / 1e6:.1f}M parameters at 1000 classes{min_size}"


def _register(name: str) -> None:
    @register(name, _describe(name), zoo=True)
    def build(num_classes: int, in_channels: int, input_size: int) -> nn.Module:
        return build_torchvision(name, num_classes=num_classes, in_channels=in_channels, input_size=input_size)


def register_all() -> None:
    import torchvision.models

    for name in torchvision.models.list_models(module=torchvision.models):  # classification only
        _register(name)


register_all()
