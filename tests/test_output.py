"""What a user reads during a run: one line per epoch that fits the terminal, the table once at
the end, a summary of what best.pt holds. Run through the real CLI."""

from __future__ import annotations

import pytest

from tests.helpers import invoke
from tests.tiny_data import write_image_folder


@pytest.mark.slow
@pytest.mark.parametrize("columns", [None, "100"])
def test_default_output_of_the_baseline_fits_100_columns(tmp_path, monkeypatch, repo, columns):
    """The whole default run of schedules/lenet5-baseline.yaml (every epoch, a few batches each):
    no line over 100 characters, whether or not the terminal says how wide it is."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    result = invoke("train", "--schedule", repo / "schedules/lenet5-baseline.yaml", "--limit-batches", "2",
                    "--out-dir", tmp_path, "--name", "base")  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line for line in lines if len(line) > 100] == []
    assert sum(line.startswith("epoch ") for line in lines) == 10
    assert "summary of best.pt" in result.output


@pytest.mark.slow
def test_a_180_epoch_resnet20_run_prints_one_line_per_epoch_and_one_table(tmp_path, monkeypatch, repo):
    """The Distiller ResNet-20 recipe (180 epochs) on a small image folder, one batch per epoch:
    180 epoch lines, the per-layer table once at the end, nothing that wraps at 100 columns."""
    monkeypatch.setenv("COLUMNS", "100")
    images = write_image_folder(tmp_path / "images", classes=10, per_class=2, size=32)
    result = invoke("train", "--schedule", repo / "schedules/resnet20-cifar10-distiller.yaml", "--dataset",
                    "imagefolder", "--data-dir", images, "--input-size", "32", "--limit-batches", "1", "--workers", "0",
                    "--batch-size", "4", "--out-dir", tmp_path, "--name", "r20")  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == [str(e) for e in range(180)]
    assert sum(line.startswith("Total sparsity:") for line in lines) == 1
    assert sum(line.startswith("Name ") for line in lines) == 1
    assert max(len(line) for line in lines) <= 100
    other = [line for line in lines if not line.startswith(("epoch ", "best.pt <- "))]
    assert len(other) < 80, "besides the epoch lines, only the final table and summary"
