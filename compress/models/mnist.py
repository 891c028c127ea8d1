"""Small models for 28x28 digits, as in the structured-sparsity papers."""

from __future__ import annotations

import torch
from torch import nn

from compress.models.registry import register


class LeNet5(nn.Module):
    """Caffe's LeNet (Wen et al. 2016): conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc 10."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        side = ((input_size - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(self.conv1(x), 2)
        x = torch.max_pool2d(self.conv2(x), 2)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class MLP(nn.Module):
    """784-300-100-10, the LeNet-300-100 of the pruning papers."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28):
        super().__init__()
        self.fc1 = nn.Linear(in_channels * input_size * input_size, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


@register("lenet5", "Caffe LeNet-5: conv 20, conv 50, fc 500, fc 10 (431k parameters)")
def lenet5(num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    return LeNet5(num_classes, in_channels, input_size)


@register("mlp", "LeNet-300-100 multilayer perceptron (266k parameters)")
def mlp(num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    return MLP(num_classes, in_channels, input_size)


class SimpleNet(nn.Module):
    """Distiller's ``simplenet_mnist``: LeNet-5's layers with a ReLU after each conv, as modules."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)
        side = ((input_size - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc2(self.relu3(self.fc1(torch.flatten(x, 1))))


@register(
    "simplenet_mnist", "Distiller's simplenet_mnist: conv 20, conv 50 (with ReLUs), fc 500, fc 10 (431k parameters)"
)
def simplenet_mnist(num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    return SimpleNet(num_classes, in_channels, input_size)
