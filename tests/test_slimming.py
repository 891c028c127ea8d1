"""Network slimming: L1 on BatchNorm scales, and what a 1-D parameter accepts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compress.errors import CompressError
from compress.schedule import parse_schedule
from compress.scheduler import CompressionScheduler, bind
from compress.sparsity import measure_sparsity


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def test_l1_on_batchnorm_scales_zeroes_channels_and_is_reported():
    model = _model()
    schedule = parse_schedule("rules:\n  - {name: slim, penalty: l1, strength: 1.0, layers: ['1.weight']}\n", "s.yaml")
    rules, warnings = bind(schedule, model, epochs=1)
    assert warnings == []
    scheduler = CompressionScheduler(rules)
    scheduler.on_epoch_begin(0)
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.05, -0.5, 0.2, -0.01]))
    losses = scheduler.after_step(lr=0.1)  # soft threshold at 0.1
    assert torch.equal(model[1].weight.detach(), torch.tensor([0.0, -0.4, 0.1, 0.0]))
    assert losses["slim"].item() == pytest.approx(0.5)
    touched = [t.param_name for r in rules for t in r.targets]
    layers = {layer.name: layer for layer in measure_sparsity(model, touched)}
    assert layers["1.weight"].fine == 50.0 and layers["1.weight"].structured["filters"] is None


def test_channel_group_on_a_1d_scale_is_an_error_naming_the_parameter():
    schedule = parse_schedule(
        "rules:\n  - name: bad\n    penalty: group_lasso\n    groups: channels\n    strength: 0.1\n"
        "    layers: ['1.weight']\n",
        "s.yaml",
    )
    with pytest.raises(CompressError, match=r"s.yaml:6: rules\[bad\].layers: 1.weight: group 'channels'.*shape \[4\]"):
        bind(schedule, _model(), epochs=1)
