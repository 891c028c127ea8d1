"""Sparsity measures on hand-made weights, against counts done by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compress.report import sparsity_table
from compress.sparsity import measure_layer, measure_macs, measure_sparsity, total_sparsity


def test_conv_weight_with_zero_filter_channel_and_kernel():
    w = torch.ones(4, 3, 2, 2)
    w[1] = 0  # filter 1: 12 zeros
    w[:, 2] = 0  # channel 2: 16 elements, 4 of them already in filter 1 -> 12 new zeros
    w[0, 0] = 0  # kernel (0, 0): 4 new zeros
    w[3, 1, 0, 0] = 0  # one single zero
    layer = measure_layer("conv.weight", w)
    assert layer.nnz_dense == 48
    assert layer.nnz_sparse == 48 - 12 - 12 - 4 - 1
    assert layer.fine == pytest.approx(100 * 29 / 48)
    assert layer.structured["filters"] == 25.0  # 1 of 4
    assert layer.structured["channels"] == pytest.approx(100 / 3)  # 1 of 3
    # kernels: filter 1 (3 kernels) + channel 2 in the other 3 filters + (0, 0) = 7 of 12
    assert layer.structured["kernels"] == pytest.approx(100 * 7 / 12)
    assert layer.structured["rows"] is None and layer.structured["cols"] is None


def test_linear_rows_are_neurons_and_cols_are_inputs():
    w = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    layer = measure_layer("fc.weight", w)
    assert layer.structured["rows"] == 50.0 and layer.structured["filters"] == 50.0
    assert layer.structured["cols"] == pytest.approx(100 / 3) and layer.structured["channels"] == pytest.approx(100 / 3)
    assert layer.structured["kernels"] is None
    assert layer.mean == 0.5 and layer.abs_mean == 0.5


def test_report_covers_conv_and_linear_weights_and_named_extras():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 2))
    names = [layer.name for layer in measure_sparsity(model)]
    assert names == ["0.weight", "3.weight"]
    names = [layer.name for layer in measure_sparsity(model, extra=["1.weight"])]
    assert names == ["0.weight", "1.weight", "3.weight"]


def test_total_sparsity_counts_elements_over_all_reported_weights():
    a = measure_layer("a", torch.tensor([0.0, 0.0, 1.0, 1.0]))
    b = measure_layer("b", torch.zeros(6))
    assert total_sparsity([a, b]) == 80.0


def test_table_has_distillers_columns_a_total_row_and_line():
    layers = [measure_layer("conv.weight", torch.ones(2, 2, 1, 1)), measure_layer("fc.weight", torch.zeros(2, 2))]
    table = sparsity_table(layers, width=None)
    header = table.splitlines()[0].split()
    assert header[:2] == ["Name", "Shape"] and "Cols" in header and "Abs-Mean" in header
    assert table.splitlines()[-2].startswith("Total")
    assert table.splitlines()[-1] == "Total sparsity: 50.00%"


def test_macs_dense_and_live():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 3 * 3, 5))
    with torch.no_grad():
        model[0].weight[1] = 0  # one zero filter
        model[0].weight[:, 0] = 0  # one zero input channel
    macs = measure_macs(model, torch.zeros(1, 2, 5, 5))
    assert macs["0"]["dense"] == 3 * 3 * 4 * 2 * 9
    assert macs["0"]["live"] == 3 * 3 * 3 * 1 * 9
    assert macs["2"] == {"dense": 36 * 5, "live": 36 * 5}


def test_only_exact_zeros_count_never_small_values():
    w = torch.ones(3, 2, 2, 2)
    w[0] = 1e-12  # far below any tolerance a counter might use, yet not zero
    w[1] = 0
    w[2, 0, 0, 0] = 1e-30
    layer = measure_layer("conv.weight", w)
    assert layer.nnz_sparse == 24 - 8 and layer.structured["filters"] == pytest.approx(100 / 3)
    from compress import groups as G

    assert G.zero_groups(w, "filters").flatten().tolist() == [False, True, False]
    assert G.zero_fraction(torch.full((4, 4), 1e-9), "elements") == 0.0


def test_structured_totals_tell_filters_from_channels():
    """3 filters of 5 and 1 channel of 2 are zero: a swap of the two measures shows up."""
    from compress.runs import structured_totals

    w = torch.ones(5, 2, 3, 3)
    w[:3] = 0
    w[:, 1] = 0
    layer = measure_layer("conv.weight", w)
    assert layer.structured["filters"] == 60.0 and layer.structured["channels"] == 50.0
    totals = structured_totals([layer, measure_layer("fc.weight", torch.ones(4, 5))])
    assert totals == {"filters": pytest.approx(100 * 3 / 9), "channels": pytest.approx(100 * 1 / 7)}
