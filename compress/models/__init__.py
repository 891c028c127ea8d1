"""Models: name -> builder(num_classes, in_channels, input_size), in the ``MODELS`` registry.

Our own models (``mnist``, ``cifar``) register on import; torchvision's whole classification zoo
registers on first need (``all_models``, or a name that is not ours), because importing torchvision
takes seconds. ``package.module:function`` names a model of the user's own (``compress.models.user``).
To add a model: a builder in a module here with ``@register("name", "description")``, and that
module imported below.
"""

from __future__ import annotations

from torch import nn

from compress.errors import CompressError
from compress.models import cifar, mnist  # noqa: F401  (register lenet5, mlp, simplenet_mnist, resnet*_cifar, vgg16*)
from compress.models.registry import MODELS, ModelEntry, register

__all__ = ["MODELS", "ModelEntry", "all_models", "build_model", "register"]


def all_models() -> dict[str, ModelEntry]:
    """Every registered model, torchvision's included."""
    from compress.models import torchvision_zoo  # noqa: F401  (registers on import)

    return dict(MODELS.items())


def build_model(name: str, *, num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    from compress.models.user import build_user_model, is_user_model

    if is_user_model(name):
        return build_user_model(name, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    if name not in MODELS:
        all_models()
    if name not in MODELS:
        ours = [n for n, e in MODELS.items() if not e.zoo]
        raise CompressError(
            f"--arch: unknown model {name!r}{_suggest(name)}; valid: {', '.join(ours)}, "
            f"torchvision's {len(MODELS) - len(ours)} classification models (compress models lists them all), "
            "or package.module:function for a model of your own"
        )
    return MODELS.get(name).build(num_classes=num_classes, in_channels=in_channels, input_size=input_size)


def _suggest(name: str) -> str:
    from compress.errors import suggest

    return suggest(name, MODELS.names())
