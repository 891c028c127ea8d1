"""End to end: the real CLI trains on the embedded data for a few batches and writes a run directory."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

pytestmark = pytest.mark.slow

QUICK = ("--epochs", "2", "--limit-batches", "3")


def _train(cli, tmp_path, schedule, *extra, name="run"):
    return cli("train", "--schedule", schedule, "--out-dir", tmp_path / "runs", "--name", name, *QUICK, *extra)


def test_train_writes_the_run_directory(cli, repo, tmp_path):
    result = _train(cli, tmp_path, repo / "schedules/lenet5-baseline.yaml")
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "run"
    assert result.output.strip().splitlines()[-1] == f"run directory: {run}"
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "schedule-lenet5-baseline.yaml",
        "metrics.csv",
        "sparsity.json",
        "summary.json",
        "checkpoint.pt",
        "best.pt",
        "train.log",
    }
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["arch"] == "lenet5" and config["epochs"] == 2 and config["limit_batches"] == 3
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert set(rows[0]) >= {"lr", "train_loss", "val_loss", "top1", "top5", "sparsity", "seconds"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_top1"] == float(rows[-1]["top1"])
    assert [layer["name"] for layer in summary["layers"]] == [
        "conv1.weight",
        "conv2.weight",
        "fc1.weight",
        "fc2.weight",
    ]
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["arch"] == "lenet5" and "conv1.weight" in state["state_dict"]
    assert state["schedule_text"] == (repo / "schedules/lenet5-baseline.yaml").read_text()
    assert "Total sparsity: 0.00%" in result.output and "epoch 1  lr" in result.output


def test_same_seed_same_weights(cli, repo, tmp_path):
    schedule = repo / "schedules/lenet5-filters.yaml"
    for name in ("a", "b"):
        assert _train(cli, tmp_path, schedule, "--seed", "3", name=name).exit_code == 0
    a = torch.load(tmp_path / "runs/a/checkpoint.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "runs/b/checkpoint.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_proximal_group_lasso_zeroes_filters_and_the_report_shows_them(cli, tmp_path):
    schedule = tmp_path / "strong.yaml"
    schedule.write_text(
        "version: 1\nrules:\n  - name: kill-filters\n    penalty: group_lasso\n    groups: filters\n"
        "    layers: {conv1.weight: 40.0}\n    mode: proximal\n"
    )
    result = _train(cli, tmp_path, schedule)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "run"
    weights = torch.load(run / "checkpoint.pt", weights_only=True)["state_dict"]["conv1.weight"]
    zero_filters = int((weights.flatten(1).abs().amax(1) == 0).sum())
    assert 0 < zero_filters <= 20
    layer = json.loads((run / "summary.json").read_text())["layers"][0]
    assert layer["name"] == "conv1.weight" and layer["structured"]["filters"] == pytest.approx(100 * zero_filters / 20)
    conv1_row = [line for line in result.output.splitlines() if line.startswith("conv1.weight")][-1]
    assert f"{100 * zero_filters / 20:.2f}" in conv1_row.split()
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert float(rows[-1]["loss/kill-filters"]) >= 0 and float(rows[-1]["sparsity/filters"]) > 0


def test_flags_override_config_files_which_override_defaults(cli, repo, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1\nlr: 0.5\nbatch_size: 16\n")
    result = cli("train", "--schedule", repo / "schedules/lenet5-baseline.yaml", "--config", config,
                 "--lr", "0.02", "--limit-batches", "2", "--out-dir", tmp_path / "runs", "--name", "r")  # fmt: skip
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((tmp_path / "runs/r/config.yaml").read_text())
    # schedule's config says 10 epochs, lr 0.01, batch 64; --config says 1, 0.5, 16; the flag says lr 0.02
    assert (resolved["epochs"], resolved["lr"], resolved["batch_size"], resolved["momentum"]) == (1, 0.02, 16, 0.9)


def test_existing_run_directory_is_kept(cli, repo, tmp_path):
    schedule = repo / "schedules/lenet5-baseline.yaml"
    assert _train(cli, tmp_path, schedule).exit_code == 0
    before = (tmp_path / "runs/run/metrics.csv").read_text()
    result = _train(cli, tmp_path, schedule)
    assert result.exit_code == 2
    assert "already exists; pick another --name or pass --overwrite" in result.output
    assert (tmp_path / "runs/run/metrics.csv").read_text() == before
    assert _train(cli, tmp_path, schedule, "--overwrite").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--schedule", "missing.yaml"), "--schedule: file not found: missing.yaml"),
        (("--arch", "lenet"), "--arch: unknown model 'lenet' (did you mean 'lenet5'?)"),
        (("--dataset", "cifar"), "--dataset: unknown dataset 'cifar'"),
        (("--device", "tpu"), "--device: unknown device 'tpu'"),
        (("--epochs", "0"), "Invalid value for '--epochs'"),
        (("--batch-size", "0"), "Invalid value for '--batch-size'"),
    ],
)
def test_bad_flags_exit_2_with_one_line(cli, repo, tmp_path, args, message):
    base = {"--schedule": str(repo / "schedules/lenet5-baseline.yaml")}
    flags = dict(zip(args[::2], args[1::2], strict=True))
    merged = [x for k, v in {**base, **flags}.items() for x in (k, v)]
    result = cli(
        "train", *merged, "--out-dir", tmp_path / "runs", "--limit-batches", "1", "--epochs", flags.get("--epochs", "1")
    )
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_is_a_clear_error(cli, repo, tmp_path):
    result = _train(cli, tmp_path, repo / "schedules/lenet5-baseline.yaml", "--device", "cuda")
    assert result.exit_code == 2 and "--device: cuda asked for, but CUDA is not available" in result.output


def test_schedule_errors_are_one_line_each_and_exit_2(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - name: x\n    penalty: group_lasso\n    groups: filtrs\n"
                   "    strength: -1\n    layers: [conv9.weight]\n")  # fmt: skip
    result = _train(cli, tmp_path, bad)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [
        f"{bad}:5: rules[x].groups: unknown group 'filtrs' (did you mean 'filters'?); "
        "valid: 2d, 3d, 4d, blocks(RxDxHxW), channels, cols, elements, filters, kernels, layer, rows, strided(K)",
        f"{bad}:6: rules[x].strength: must be >= 0, got -1",
    ]


def test_python_dash_m_and_console_script(tmp_path):
    script = Path(sys.executable).parent / "compress"  # installed next to this interpreter
    for command in ([sys.executable, "-m", "compress"], [str(script)]):
        done = subprocess.run([*command, "check", "--arch", "mlp", "--list-params"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "fc1.weight" in done.stdout and "300x784" in done.stdout


def test_more_bad_flag_values_are_one_line_errors(cli, repo, tmp_path):
    schedule = repo / "schedules/lenet5-baseline.yaml"
    cases = [
        (("--schedule", tmp_path), f"--schedule: is a directory, not a file: {tmp_path}"),
        (("--schedule", schedule, "--config", tmp_path), f"--config: is a directory, not a file: {tmp_path}"),
        (("--schedule", schedule, "--config", tmp_path / "no.yaml"), "--config: file not found"),
        (("--schedule", schedule, "--epochs", "-3"), "'--epochs': must be >= 1, got -3"),
        (("--schedule", schedule, "--lr", "-1"), "Invalid value for '--lr'"),
        (("--schedule", schedule, "--limit-batches", "0"), "Invalid value for '--limit-batches'"),
        (("--schedule", schedule, "--optimizer", "rmsprop"), "Invalid value for '--optimizer'"),
        (("--schedule", schedule, "--device", "cuda:x"), "--device: unknown device 'cuda:x'"),
        (("--resume", tmp_path), f"--resume: file not found: {tmp_path / 'checkpoint.pt'}"),
        (("--reset-optimizer", "--schedule", schedule), "--reset-optimizer only makes sense with --resume"),
        ((), "Missing option '--schedule'"),
    ]
    for args, message in cases:
        result = cli("train", *args, "--out-dir", tmp_path / "runs")
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "runs").exists()
