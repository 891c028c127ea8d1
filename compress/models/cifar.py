"""CIFAR models with Distiller's parameter names, so that Distiller's schedules load unchanged.

ResNet-20/32/44/56 (He et al. 2016, section 4.2): a 3x3 conv with 16 filters, three stages of n
basic blocks with 16, 32 and 64 filters (6n + 2 layers), global average pooling, a linear layer.
Where a stage halves the resolution and doubles the width, the shortcut is a 1x1 conv + BN
(``downsample``; Distiller's option B). Names: ``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.bn1``, ``layer1.0.conv2``, ``layer1.0.bn2``, ``layer2.0.downsample.0``,
``layer2.0.downsample.1``, ``fc``.

VGG-16 for 32x32 inputs: the 13 convolutions of configuration D in ``features`` (indices as in
torchvision and Distiller: ``features.0``, ``features.2``, ``features.5``, ...) and one linear
layer ``classifier`` on the 512 features left after five poolings.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from compress.models.registry import register


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + shortcut)


class ResNetCifar(nn.Module):
    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        widths, in_planes = (16, 32, 64), 16
        for stage, planes in enumerate(widths, start=1):
            stride = 1 if stage == 1 else 2
            blocks = [
                BasicBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1)
                for i in range(blocks_per_stage)
            ]
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
            in_planes = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He et al.'s initialisation, as Distiller's resnet_cifar
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGGCifar(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for v in VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(channels, int(v), 3, padding=1))
            layers += [nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)] if batch_norm else [nn.ReLU(inplace=True)]
            channels = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # 1x1 already for 32x32 inputs; other sizes work too
        self.classifier = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _register_resnet(depth: int) -> None:
    n = (depth - 2) // 6
    params = {20: "0.27M", 32: "0.46M", 44: "0.66M", 56: "0.85M"}[depth]

    what = f"ResNet-{depth} for 32x32 images: 3 stages x {n} blocks, 16-32-64 filters, {params} parameters"

    @register(f"resnet{depth}_cifar", f"{what}; Distiller's names")
    def build(num_classes: int, in_channels: int, input_size: int) -> nn.Module:
        return ResNetCifar(n, num_classes, in_channels)


for _depth in (20, 32, 44, 56):
    _register_resnet(_depth)


@register("vgg16_cifar", "VGG-16 for 32x32 images: 13 convs in features, one linear classifier (15M parameters)")
def vgg16_cifar(num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    return VGGCifar(num_classes, in_channels)


@register("vgg16_bn_cifar", "vgg16_cifar with BatchNorm after each conv (features indices shift accordingly)")
def vgg16_bn_cifar(num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    return VGGCifar(num_classes, in_channels, batch_norm=True)
