"""Registry of models: name -> builder(num_classes, in_channels, input_size). One ``@register`` per model.

Our own models (``mnist``, ``cifar``) register on import; torchvision's whole classification zoo
registers on first need (``all_models``, or a name that is not ours), because importing torchvision
takes seconds. ``package.module:function`` names a model of the user's own (``compress.models.user``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from compress.errors import CompressError, suggest


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., nn.Module]
    description: str


MODELS: dict[str, ModelEntry] = {}


def register(name: str, description: str) -> Callable:
    def wrap(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = ModelEntry(name, build, description)
        return build

    return wrap


def all_models() -> dict[str, ModelEntry]:
    """Every registered model, torchvision's included."""
    from compress.models import torchvision_zoo  # noqa: F401  (registers on import)

    return MODELS


def build_model(name: str, *, num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    from compress.models.user import build_user_model, is_user_model

    if is_user_model(name):
        return build_user_model(name, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    if name not in MODELS:
        all_models()
    if name not in MODELS:
        ours = sorted(n for n, e in MODELS.items() if not e.description.startswith("torchvision"))
        raise CompressError(
            f"--arch: unknown model {name!r}{suggest(name, MODELS)}; valid: {', '.join(ours)}, "
            f"torchvision's {len(MODELS) - len(ours)} classification models (compress models lists them all), "
            "or package.module:function for a model of your own"
        )
    return MODELS[name].build(num_classes=num_classes, in_channels=in_channels, input_size=input_size)


from compress.models import cifar, mnist  # noqa: E402,F401  (registers lenet5, mlp, simplenet_mnist, resnet*_cifar, vgg16_cifar)
