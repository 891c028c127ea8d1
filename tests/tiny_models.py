"""Small models of the tests' own, named as users name theirs (``--arch tests.tiny_models:NAME``)."""

from __future__ import annotations

from torch import nn


def dropout_lenet(num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> nn.Module:
    """A small conv net with dropout: its training draws from the RNG, so an exact resume that does
    not restore the RNG state gives other weights."""
    side = (input_size - 4) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.3), nn.Flatten(),
        nn.Linear(8 * side * side, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, num_classes),
    )  # fmt: skip
