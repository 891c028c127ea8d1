"""A Distiller-format schedule produces the weights Distiller would have produced: ``compress train``
beside the reference in ``distiller_reference.py`` (Distiller's update rules written out for the
tests), same model, data, seed and optimizer, for lenet5 and resnet20_cifar."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compress.datasets import DataOptions, build_dataset
from compress.experiment import seed_everything
from compress.models import build_model
from tests.distiller_reference import DistillerReference
from tests.helpers import yaml_text
from tests.tiny_data import no_cifar_checksums, write_cifar  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

LENET5 = yaml_text(
    """
    version: 1
    regularizers:
      convs:
        class: GroupLassoRegularizer
        reg_regims:
          conv1.weight: [0.1, 3D]                  # about the median mean |w| of a filter: thresholds bite
          module.conv2.weight: [0.022, Channels]
        threshold_criteria: Mean_Abs
      fc_rows:
        class: GroupLassoRegularizer
        reg_regims:
          fc1.weight: [0.0177, Rows]
        threshold_criteria: Mean_Abs               # Distiller divides a row's L1 norm by the number of rows
      fc2_l1:
        class: L1Regularizer
        reg_regims:
          fc2.weight: 0.01
        threshold_criteria: Mean_Abs
    lr_schedulers:
      steps: {class: StepLR, step_size: 2, gamma: 0.5}
    policies:
      - regularizer: {instance_name: convs, args: {keep_mask: true}}
        starting_epoch: 0
        ending_epoch: 3
        frequency: 1
      - regularizer: {instance_name: fc_rows}
        epochs: [1, 3]
      - regularizer: {instance_name: fc2_l1, args: {keep_mask: true}}
        starting_epoch: 1
        ending_epoch: 5
        frequency: 2                               # 1, 3: epoch 4 (ending - 1) is skipped, nothing is kept
      - lr_scheduler: {instance_name: steps}
        starting_epoch: 1
        ending_epoch: 5
        frequency: 1
    """
)

RESNET20 = yaml_text(
    """
    version: 1
    regularizers:
      blocks:
        class: GroupLassoRegularizer
        reg_regims:
          module.layer1.0.conv1.weight: [0.093, '3D']
          module.layer1.0.conv2.weight: [0.09, Channels]
        threshold_criteria: Mean_Abs
      peaks:
        class: GroupLassoRegularizer
        reg_regims:
          module.layer2.0.conv1.weight: [0.22, Filters]     # about the median largest |w| of a filter
        threshold_criteria: Max
      whole:                                       # no threshold: Distiller thresholded neither group
        class: GroupLassoRegularizer
        reg_regims:
          module.layer2.1.conv1.weight: [0.01, 4D]
          module.fc.weight: [0.01, Rows+Cols]
      spread:
        class: GroupVarianceRegularizer
        reg_regims:
          module.layer3.0.conv2.weight: [1.0e-5, Channels]
    lr_schedulers:
      multi: {class: MultiStepMultiGammaLR, milestones: [2, 3], gammas: [0.5, 0.2]}
    policies:
      - regularizer: {instance_name: blocks, args: {keep_mask: true}}
        starting_epoch: 0
        ending_epoch: 2
        frequency: 1
      - regularizer: {instance_name: peaks, args: {keep_mask: true}}
        epochs: [1, 2]
      - regularizer: {instance_name: whole}
        epochs: [0, 2, 3]
      - regularizer: {instance_name: spread}
        starting_epoch: 1
        ending_epoch: 4
        frequency: 1
      - lr_scheduler: {instance_name: multi}
        starting_epoch: 1
        ending_epoch: 4
        frequency: 1
    """
)


def _reference(text: str, arch: str, dataset: str, shape: tuple[int, int, int], *, epochs: int, batches: int,
               batch_size: int, lr: float, weight_decay: float, options: DataOptions) -> dict:  # fmt: skip
    """Distiller's loop on the model, data and optimizer ``compress train`` builds from the same flags."""
    seed_everything(0)
    classes, channels, size = shape
    model = build_model(arch, num_classes=classes, in_channels=channels, input_size=size)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    data = build_dataset(dataset, batch_size=batch_size, seed=0, options=options)
    reference = DistillerReference(text, model, optimizer)
    for epoch in range(epochs):
        data.train.set_epoch(epoch)
        batch_list = [b for _, b in zip(range(batches), data.train, strict=False)]
        reference.train_epoch(epoch, batch_list)
    return model.state_dict()


def _compress(cli, tmp_path: Path, text: str, *args) -> dict[str, torch.Tensor]:
    schedule = tmp_path / "distiller.yaml"
    schedule.write_text(text)
    result = cli("train", "--schedule", schedule, "--no-plots", "--seed", "0", "--momentum", "0.9",
                 "--out-dir", tmp_path, "--name", "run", *args)  # fmt: skip
    assert result.exit_code == 0, result.output
    return torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["state_dict"]


def _agree(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> None:
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        diff = (ours[name].double() - tensor.double()).abs().max().item() if tensor.numel() else 0.0
        assert diff <= 1e-5, f"{name}: max abs difference {diff:.3g}"


def test_lenet5_weights_equal_distillers(cli, tmp_path):
    flags = dict(epochs=5, batches=4, batch_size=64, lr=0.05, weight_decay=5e-4)
    ours = _compress(cli, tmp_path, LENET5, "--arch", "lenet5", "--epochs", "5", "--limit-batches", "4",
                     "--batch-size", "64", "--lr", "0.05", "--weight-decay", "5e-4")  # fmt: skip
    theirs = _reference(LENET5, "lenet5", "mnist5k", (10, 1, 28), options=DataOptions(), **flags)
    _agree(ours, theirs)
    conv1 = ours["conv1.weight"].flatten(1).abs().amax(1)
    assert 0 < int((conv1 == 0).sum()) < 20, "the thresholds should have zeroed some, not all, conv1 filters"


@pytest.mark.usefixtures("no_cifar_checksums")
def test_resnet20_weights_equal_distillers(cli, tmp_path):
    root = write_cifar(tmp_path / "cifar", per_batch=12)
    flags = dict(epochs=4, batches=3, batch_size=16, lr=0.1, weight_decay=1e-4)
    ours = _compress(cli, tmp_path, RESNET20, "--arch", "resnet20_cifar", "--dataset", "cifar10", "--data-dir", root,
                     "--workers", "0", "--epochs", "4", "--limit-batches", "3", "--batch-size", "16", "--lr", "0.1",
                     "--weight-decay", "1e-4")  # fmt: skip
    options = DataOptions(data_dir=str(root), workers=0)
    theirs = _reference(RESNET20, "resnet20_cifar", "cifar10", (10, 3, 32), options=options, **flags)
    _agree(ours, theirs)
    for name, count in (("layer1.0.conv1.weight", 16), ("layer2.0.conv1.weight", 32)):
        filters = ours[name].flatten(1).abs().amax(1)
        assert 0 < int((filters == 0).sum()) < count, f"{name}: the thresholds should zero some, not all, filters"


LENET5_PRUNING = yaml_text(
    """
    version: 1
    pruners:
      conv1_filters:
        class: L1RankedStructureParameterPruner_AGP
        initial_sparsity: 0.10
        final_sparsity: 0.50
        group_type: Filters
        weights: [module.conv1.weight]
      conv2_band:
        class: SensitivityPruner
        sensitivities: {conv2.weight: 0.6}
      fc1_agp:
        class: AutomatedGradualPruner
        initial_sparsity: 0.05
        final_sparsity: 0.85
        weights: [fc1.weight]
      fc2_surgery:
        class: SplicingPruner
        low_thresh_mult: 0.9
        hi_thresh_mult: 1.1
        sensitivity_multiplier: 0.02
        sensitivities: {fc2.weight: 0.3}
    regularizers:
      fc1_l1:
        class: L1Regularizer
        reg_regims: {fc1.weight: 0.0005}
    lr_schedulers:
      steps: {class: StepLR, step_size: 2, gamma: 0.5}
    policies:
      - pruner: {instance_name: conv1_filters}
        starting_epoch: 0
        ending_epoch: 4
        frequency: 1
      - pruner: {instance_name: conv2_band}
        epochs: [1, 3]
      - pruner: {instance_name: fc1_agp}
        starting_epoch: 0
        ending_epoch: 5
        frequency: 2
      - pruner:
          instance_name: fc2_surgery
          args: {keep_mask: true, mini_batch_pruning_frequency: 1, mask_on_forward_only: true}
        starting_epoch: 1
        ending_epoch: 3
        frequency: 1
      - regularizer: {instance_name: fc1_l1}
        starting_epoch: 0
        ending_epoch: 5
        frequency: 1
      - lr_scheduler: {instance_name: steps}
        starting_epoch: 0
        ending_epoch: 5
        frequency: 1
    """
)

RESNET20_PRUNING = yaml_text(
    """
    version: 1
    pruners:
      shortcut_filters:                            # the residual branches that are added: one choice
        class: L1RankedStructureParameterPruner_AGP
        initial_sparsity: 0.10
        final_sparsity: 0.40
        group_type: Filters
        group_dependency: Leader
        weights: [module.layer1.0.conv2.weight, module.layer1.1.conv2.weight, module.layer1.2.conv2.weight]
      inputs:
        class: L1RankedStructureParameterPruner_AGP
        initial_sparsity: 0.20
        final_sparsity: 0.50
        group_type: Channels
        weights: [module.layer2.1.conv1.weight, module.layer3.0.conv2.weight]
      fc:
        class: AutomatedGradualPruner
        initial_sparsity: 0.10
        final_sparsity: 0.60
        weights: [module.fc.weight]
    policies:
      - pruner: {instance_name: shortcut_filters, args: {keep_mask: true}}
        starting_epoch: 0
        ending_epoch: 3
        frequency: 1
      - pruner: {instance_name: inputs}
        starting_epoch: 1
        ending_epoch: 4
        frequency: 2
      - pruner: {instance_name: fc}
        starting_epoch: 0
        ending_epoch: 3
        frequency: 1
    """
)


def _pruning_reference(text: str, arch: str, dataset: str, shape: tuple[int, int, int], *, epochs: int,
                       batches: int, batch_size: int, lr: float, weight_decay: float,
                       options: DataOptions) -> dict:  # fmt: skip
    from tests.distiller_pruning_reference import DistillerPruningReference

    seed_everything(0)
    classes, channels, size = shape
    model = build_model(arch, num_classes=classes, in_channels=channels, input_size=size)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    data = build_dataset(dataset, batch_size=batch_size, seed=0, options=options)
    reference = DistillerPruningReference(text, model, optimizer)
    for epoch in range(epochs):
        data.train.set_epoch(epoch)
        reference.train_epoch(epoch, [b for _, b in zip(range(batches), data.train, strict=False)])
    return model.state_dict()


def test_lenet5_pruned_weights_equal_distillers(cli, tmp_path):
    """AGP, L1-ranked filters with AGP, the sensitivity pruner, dynamic network surgery with masks on the
    forward pass only (recomputed every mini-batch, kept at the end), an L1 penalty and StepLR."""
    flags = dict(epochs=5, batches=4, batch_size=64, lr=0.05, weight_decay=5e-4)
    ours = _compress(cli, tmp_path, LENET5_PRUNING, "--arch", "lenet5", "--epochs", "5", "--limit-batches", "4",
                     "--batch-size", "64", "--lr", "0.05", "--weight-decay", "5e-4")  # fmt: skip
    theirs = _pruning_reference(LENET5_PRUNING, "lenet5", "mnist5k", (10, 1, 28), options=DataOptions(), **flags)
    _agree(ours, theirs)
    filters = ours["conv1.weight"].flatten(1).abs().amax(1)
    assert int((filters == 0).sum()) == 10, "AGP ends at 50% of conv1's 20 filters"
    assert 0.84 < float((ours["fc1.weight"] == 0).float().mean()) < 0.9


@pytest.mark.usefixtures("no_cifar_checksums")
def test_resnet20_pruned_weights_equal_distillers(cli, tmp_path):
    """Leader-follower filters on the added residual branches, input channels, and fc with AGP."""
    root = write_cifar(tmp_path / "cifar", per_batch=12)
    flags = dict(epochs=4, batches=3, batch_size=16, lr=0.1, weight_decay=1e-4)
    ours = _compress(cli, tmp_path, RESNET20_PRUNING, "--arch", "resnet20_cifar", "--dataset", "cifar10",
                     "--data-dir", root, "--workers", "0", "--epochs", "4", "--limit-batches", "3",
                     "--batch-size", "16", "--lr", "0.1", "--weight-decay", "1e-4")  # fmt: skip
    options = DataOptions(data_dir=str(root), workers=0)
    theirs = _pruning_reference(RESNET20_PRUNING, "resnet20_cifar", "cifar10", (10, 3, 32), options=options, **flags)
    _agree(ours, theirs)
    zero = [set(torch.nonzero(ours[f"layer1.{i}.conv2.weight"].flatten(1).abs().amax(1) == 0).flatten().tolist())
            for i in range(3)]  # fmt: skip
    assert zero[0] == zero[1] == zero[2] and len(zero[0]) == 6, "the leader's 40% of 16 filters, in every branch"
