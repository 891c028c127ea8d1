"""The model registry (a leaf: builder modules import it, ``compress.models`` imports them). A model
is a builder ``(num_classes, in_channels, input_size) -> nn.Module`` under a name ``--arch`` takes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compress.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[..., Any]  # (num_classes=, in_channels=, input_size=) -> nn.Module
    zoo: bool = False  # torchvision's, registered on first need


MODELS: Registry[ModelEntry] = Registry("model", "--arch")


def register(name: str, description: str, *, zoo: bool = False) -> Callable:
    """``@register("lenet5", "what it is")`` over a builder."""

    def wrap(build: Callable[..., Any]) -> Callable[..., Any]:
        MODELS.register(name, ModelEntry(build, zoo), description)
        return build

    return wrap
