"""compress report / eval / plot: contents checked against the checkpoint's own weights."""

from __future__ import annotations

import csv
import io
import json
import struct
import zlib
from pathlib import Path

import pytest
import torch

from compress.report import shorten, text_table

pytestmark = pytest.mark.slow

SCHEDULE = Path(__file__).resolve().parent.parent / "schedules" / "lenet5-filters.yaml"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A short run whose conv1 has exactly zero filters, made by hand after training."""
    from tests.helpers import invoke

    out = tmp_path_factory.mktemp("runs")
    result = invoke("train", "--schedule", SCHEDULE, "--epochs", "2", "--limit-batches", "3", "--out-dir", out,
                    "--name", "r")  # fmt: skip
    assert result.exit_code == 0, result.output
    path = out / "r" / "best.pt"  # what a run directory means to report, eval, thin and plot
    state = torch.load(path, weights_only=True)
    state["state_dict"]["conv1.weight"][:5] = 0  # 5 of 20 filters
    state["state_dict"]["fc1.weight"][:, :100] = 0  # 100 of 800 columns
    torch.save(state, path)
    return out / "r"


def _weights(run: Path) -> dict[str, torch.Tensor]:
    """A run directory means its best.pt to every command that reads one."""
    return torch.load(run / "best.pt", weights_only=True)["state_dict"]


def test_json_report_matches_the_weights(cli, run):
    result = cli("report", run, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    weights = _weights(run)
    layers = {layer["name"]: layer for layer in data["layers"]}
    for name, layer in layers.items():
        w = weights[name]
        assert layer["nnz_sparse"] == int((w != 0).sum()) and layer["nnz_dense"] == w.numel()
    conv1 = weights["conv1.weight"]
    zero_filters = int((conv1.flatten(1).abs().sum(1) == 0).sum())
    assert zero_filters >= 5 and layers["conv1.weight"]["structured"]["filters"] == pytest.approx(
        100 * zero_filters / 20
    )
    zero_cols = int((weights["fc1.weight"].abs().sum(0) == 0).sum())
    assert layers["fc1.weight"]["structured"]["cols"] == pytest.approx(100 * zero_cols / 800)
    total_zero = sum(int((weights[n] == 0).sum()) for n in layers)
    assert data["total_sparsity"] == pytest.approx(100 * total_zero / sum(weights[n].numel() for n in layers))
    assert data["macs"]["thinned"] < data["macs"]["dense"]
    assert [h["epoch"] for h in data["history"]] == [0, 1]


def test_csv_report_is_one_table_per_output(cli, run):
    layers = cli("report", run, "--format", "csv")
    assert layers.exit_code == 0 and "\n\n" not in layers.output.strip()
    rows = list(csv.DictReader(io.StringIO(layers.output)))
    assert [r["name"] for r in rows] == ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
    assert int(rows[0]["nnz_sparse"]) == int((_weights(run)["conv1.weight"] != 0).sum())
    history = cli("report", run, "--format", "csv", "--what", "history")
    assert history.exit_code == 0 and "\n\n" not in history.output.strip()
    rows = list(csv.DictReader(io.StringIO(history.output)))
    assert [h["epoch"] for h in rows] == ["0", "1"] and "loss/conv-filters" in rows[0]


def test_table_fits_100_columns_and_group_shows_one_column(cli, run):
    table = cli("report", run).output
    assert all(len(line) <= 100 for line in table.splitlines())
    assert "MACs per input:" in table and "History:" in table
    one = cli("report", run, "--group", "filters").output
    header = one.splitlines()[1].split()
    assert "3D%" in header and "Ch%" not in header and "Abs-Mean" in header
    markdown = cli("report", run, "--format", "markdown").output
    assert markdown.splitlines()[1].startswith("| Name | Shape |")


def test_long_names_are_shortened_in_the_middle():
    assert shorten("layer3.2.conv2.weight", 13) == "layer3…weight"
    assert shorten("fc.weight", 20) == "fc.weight"
    table = text_table(["Name", "Value"], [["features.denseblock4.denselayer16.conv2.weight", "1"]], width=30)
    assert all(len(line) <= 30 for line in table.splitlines()) and "…" in table


def test_eval_reports_the_checkpoint(cli, run):
    result = cli("eval", run / "checkpoint.pt", "--limit-batches", "1")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{run / 'checkpoint.pt'}: val  top1 ")


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]  # the IHDR chunk is intact
    return width, height


def test_plot_writes_three_pngs_of_the_right_size(cli, run):
    pytest.importorskip("matplotlib")
    result = cli("plot", run)
    assert result.exit_code == 0, result.output
    sizes = {name: _png_size(run / name) for name in ("accuracy_sparsity.png", "layer_sparsity.png", "group_norms.png")}
    assert sizes["accuracy_sparsity.png"] == (800, 450)
    assert all(w >= 300 and h >= 200 for w, h in sizes.values())


def test_report_of_something_else_is_a_clear_error(cli, tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    for args, message in [
        ((tmp_path / "x.pt",), "is not a readable checkpoint"),
        ((tmp_path,), "holds no best.pt"),
    ]:
        result = cli("report", *args)
        assert result.exit_code == 2 and message in result.output


def test_best_rule_picks_the_sparsest_epoch_above_the_bound():
    from compress.errors import CompressError
    from compress.runs import BestRule

    epochs = [(90.0, 10.0), (97.6, 20.0), (98.0, 5.0), (97.5, 30.0), (96.0, 80.0)]

    def pick(rule: BestRule) -> int:
        return max(range(len(epochs)), key=lambda i: rule.key(*epochs[i]))

    assert pick(BestRule("top1")) == 2
    assert pick(BestRule("sparsity-at-top1:97.5")) == 3
    assert pick(BestRule("sparsity-at-top1:99")) == 2  # none reaches it: the highest top1 so far
    with pytest.raises(CompressError, match="--best: unknown rule 'sparsest'"):
        BestRule("sparsest")


def test_train_with_best_rule_and_tensorboard(cli, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = cli("train", "--schedule", SCHEDULE, "--epochs", "2", "--limit-batches", "2", "--out-dir", tmp_path,
                 "--name", "tb", "--best", "sparsity-at-top1", "1", "--tensorboard", "--no-plots")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "rule: sparsest with top1 >= 1" in result.output
    assert "summary of best.pt (epoch" in result.output and f"compress thin {tmp_path / 'tb'}" in result.output
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"), size_guidance={"histograms": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"loss/data", "loss/conv-filters", "val/top1", "val/top5", "lr", "sparsity/total",
            "sparsity/conv1.weight"} <= scalars  # fmt: skip
    assert len(events.Scalars("val/top1")) == 2
    assert {"group_norms/conv1.weight", "group_norms/conv2.weight"} <= set(events.Tags()["histograms"])
    summary = json.loads((tmp_path / "tb" / "summary.json").read_text())
    assert summary["best_rule"].startswith("sparsest with top1 >= 1") and summary["macs"]["dense"] == 2_293_000
