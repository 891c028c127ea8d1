"""Exact resume across everything a run carries: a run stopped after epoch 1 and resumed to epoch 4
leaves the very same checkpoint (every tensor, the optimizer's state, the lr schedulers, kept masks,
thinning, RNG states, best.pt's key) as a run never stopped. One variant per penalty and mode and per
kind of state, after Composer's algorithm-resumption tests."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.helpers import yaml_text

pytestmark = pytest.mark.slow


def _rule(penalty: str, mode: str, groups: str = "filters", extra: str = "") -> str:
    group_line = f"    groups: {groups}\n" if penalty in ("group_lasso", "group_variance") else ""
    return (f"version: 1\nrules:\n  - name: r\n    penalty: {penalty}\n{group_line}    strength: 0.01\n"
            f"    layers: [\"*.weight\"]\n    mode: {mode}\n{extra}")  # fmt: skip


# about half of conv1's filters reach exactly zero in epochs 0-1 (two steps at lr 0.1), and are kept
STRONG = yaml_text(
    """
    version: 1
    rules:
      - {name: r, penalty: group_lasso, groups: filters, layers: {conv1.weight: 2.5}, epochs: [0, 2], keep_mask: true}
    """
)

VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    **{f"{p}-{m}": (_rule(p, m), ()) for p in ("l1", "l2", "group_lasso") for m in ("penalty", "proximal")},
    "group_variance": (_rule("group_variance", "penalty", "channels").replace('"*.weight"', "conv2.weight"), ()),
    "keep_mask": (STRONG, ("--lr", "0.1")),
    "threshold": (_rule("group_lasso", "penalty", extra="    threshold: 0.05\n    threshold_criterion: max\n"), ()),
    "thin-after-1": (STRONG + "thin: 1\n", ("--lr", "0.1")),
    "distiller-thin-at-3": (
        yaml_text(
            """
        regularizers:
          f: {class: GroupLassoRegularizer, reg_regims: {conv1.weight: [0.1, 3D]}, threshold_criteria: Mean_Abs}
        extensions:
          t: {class: StructureRemover, thinning_func_str: remove_filters, arch: lenet5, dataset: mnist}
        lr_schedulers:
          steps: {class: StepLR, step_size: 2, gamma: 0.5}
        policies:
          - regularizer: {instance_name: f, args: {keep_mask: true}}
            starting_epoch: 0
            ending_epoch: 2
            frequency: 1
          - extension: {instance_name: t}
            epochs: [3]
          - lr_scheduler: {instance_name: steps}
            starting_epoch: 1
            ending_epoch: 4
            frequency: 1
        """
        ),
        (),
    ),
    "adam": (_rule("l1", "proximal"), ("--optimizer", "adam", "--lr", "0.001")),
    "plateau": (_rule("l1", "penalty") + "lr_scheduler: {class: ReduceLROnPlateau, patience: 0, factor: 0.5}\n", ()),
    "milestone-after-the-stop": (_rule("l2", "penalty") + "lr_scheduler: {class: MultiStepLR, milestones: [3]}\n", ()),
    "dropout-rng": (_rule("l1", "proximal"), ("--arch", "tests.tiny_models:dropout_lenet")),
}


def _same(a: Any, b: Any, where: str = "") -> None:
    """Every tensor equal bit for bit, every other value equal, recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, set(a) ^ set(b))
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), (where, a, b)  # NaN == NaN here


@pytest.mark.parametrize("variant", VARIANTS)
def test_resumed_run_ends_with_the_same_checkpoint(cli, tmp_path, variant):
    text, flags = VARIANTS[variant]
    schedule = tmp_path / "s.yaml"
    schedule.write_text(text)
    common = ("--schedule", schedule, "--limit-batches", "2", "--batch-size", "32", "--seed", "3", "--no-plots",
              "--table", "none", "--out-dir", tmp_path, *flags)  # fmt: skip
    straight = cli("train", *common, "--epochs", "4", "--name", "straight")
    assert straight.exit_code == 0, straight.output
    first = cli("train", *common, "--epochs", "2", "--name", "split")
    assert first.exit_code == 0, first.output
    named = tuple(flags[i : i + 2] for i in range(len(flags)) if flags[i] == "--arch")  # a user model is named again
    rest = cli("train", "--resume", tmp_path / "split", "--epochs", "4", "--table", "none", "--no-plots",
               *(v for pair in named for v in pair))  # fmt: skip
    assert rest.exit_code == 0, rest.output
    for name in ("checkpoint.pt", "best.pt"):
        a = torch.load(tmp_path / "straight" / name, weights_only=True)
        b = torch.load(tmp_path / "split" / name, weights_only=True)
        for state in (a, b):
            for free in ("name", "epochs"):  # the run's name; epochs grew on resume
                state["config"].pop(free)
        _same(a, b, name)
    assert (tmp_path / "straight" / "metrics.csv").read_text() != "", "the runs wrote their files"


def test_every_variant_exercises_what_it_is_named_for(cli, tmp_path):
    """The variants are not vacuous: masks were kept, a thinning happened, the rate dropped."""
    text, flags = VARIANTS["thin-after-1"]
    schedule = tmp_path / "s.yaml"
    schedule.write_text(text)
    done = cli("train", "--schedule", schedule, "--epochs", "2", "--limit-batches", "2", "--batch-size", "32", "--seed",
               "3", "--no-plots", "--table", "none", "--out-dir", tmp_path, "--name", "t", *flags)  # fmt: skip
    assert done.exit_code == 0 and "thinned after epoch 1: conv1: out_channels 20 ->" in done.output, done.output
    state = torch.load(tmp_path / "t" / "checkpoint.pt", weights_only=True)
    assert 0 < state["thinned_spec"]["conv1"]["out_channels"] < 20 and state["scheduler"]["masks"]
