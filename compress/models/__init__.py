"""Registry of models: name -> builder(num_classes, in_channels). One ``@register`` per model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from compress.errors import CompressError, one_of, suggest


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


def build_model(name: str, *, num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    if name not in MODELS:
        raise CompressError(f"--arch: unknown model {name!r}{suggest(name, MODELS)}; {one_of(MODELS)}")
    return MODELS[name].build(num_classes=num_classes, in_channels=in_channels, input_size=input_size)


from compress.models import mnist  # noqa: E402,F401  (registers lenet5, mlp)
