"""Run settings: defaults < schedule's config < --config < flags, each file checked key by key."""

from __future__ import annotations

import pytest

from compress.config import RunConfig, load_config_file, resolve_config
from compress.errors import CompressError


def test_defaults_train_lenet5_on_mnist5k():
    config = resolve_config([])
    assert (config.arch, config.dataset, config.device, config.optimizer) == ("lenet5", "mnist5k", "cpu", "sgd")


def test_later_layers_win_and_none_means_not_given():
    config = resolve_config([{"lr": 0.1, "epochs": 3}, {"lr": 0.2, "arch": "mlp"}, {"lr": None, "epochs": 5}])
    assert config == RunConfig(lr=0.2, epochs=5, arch="mlp")


def test_config_file_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("arch: mlp\nepochs: 3\nlr: 1e-3\nnesterov: true\n")
    assert load_config_file(path) == {"arch": "mlp", "epochs": 3, "lr": 0.001, "nesterov": True}


def test_config_file_reports_every_problem_with_its_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("arch: mlp\nepoch: 3\nbatch_size: 0\nlr: fast\noptimizer: sgdd\nnesterov: 1\n")
    with pytest.raises(CompressError) as info:
        load_config_file(path)
    lines = [str(d) for d in info.value.diagnostics]
    assert lines == [
        f"{path}:2: epoch: unknown key (did you mean 'epochs'?)",
        f"{path}:3: batch_size: must be >= 1, got 0",
        f"{path}:4: lr: expected a number, got a string ('fast')",
        f"{path}:5: optimizer: unknown value 'sgdd' (did you mean 'sgd'?); valid: adam, adamw, sgd",
        f"{path}:6: nesterov: expected true or false, got int (1)",
    ]


def test_missing_config_file_names_the_flag(tmp_path):
    with pytest.raises(CompressError, match="--config: file not found"):
        load_config_file(tmp_path / "nope.yaml")
    with pytest.raises(CompressError, match="--config: is a directory"):
        load_config_file(tmp_path)


def test_duplicate_config_key_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nepochs: 4\n")
    with pytest.raises(CompressError, match=r":2: epochs: duplicate key \(first at line 1\)"):
        load_config_file(path)
