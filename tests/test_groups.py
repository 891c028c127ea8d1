"""Unit tests for compress/groups.py against per-group loops written independently here.

Every group type of the registry is covered by the generic property tests; the ones described in
DESIGN.md ("Group structures") also have an explicit reference below (a list of indices, one per
group) that the exact-value tests compare with.
"""

from __future__ import annotations

import pytest
import torch

from compress import groups as G
from tests.helpers import SHAPES, assert_close, reference_groups


def reference_or_fail(name: str, shape: tuple[int, ...]) -> list[tuple]:
    """A registered group type without a reference here fails every test of it: its definition must
    be written out independently in tests/helpers.reference_groups before it counts as tested."""
    try:
        idx = reference_groups(name, shape)
    except KeyError:
        pytest.fail(f"no reference definition for group {name!r}: add one to tests/helpers.reference_groups")
    assert idx is not None
    return idx


def sample(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Hand-made, no zeros, mixed signs, distinct magnitudes."""
    n = 1
    for s in shape:
        n *= s
    values = torch.arange(1, n + 1, dtype=torch.float32) / n
    signs = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0]).repeat(n // 5 + 1)[:n]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return (values * signs)[perm].reshape(shape)


ALL = sorted(G.GROUPS)
CASES = [(g, s) for g in ALL for s in SHAPES]


def _applies(name: str, shape_key: str) -> bool:
    """By the reference where this file has one, else by the registry's own misfit."""
    try:
        return reference_groups(name, SHAPES[shape_key]) is not None
    except KeyError:
        return G.GROUPS[name].misfit(SHAPES[shape_key]) is None


FITTING = [(g, s) for g, s in CASES if _applies(g, s)]


# --- registry and spellings ------------------------------------------------------------------------


def test_registry_holds_the_documented_group_types():
    assert {"elements", "filters", "channels", "kernels", "rows", "cols", "layer"} <= set(G.GROUPS)
    for name, group in G.GROUPS.items():
        assert group.name == name
        assert G.get(name) is group


def test_spellings_map_aliases_and_canonical_names():
    spellings = G.spellings()
    assert spellings["3d"] == "filters"
    assert spellings["2d"] == "kernels"
    assert spellings["4d"] == "layer"
    for name, group in G.GROUPS.items():
        assert spellings[name] == name
        for alias in group.aliases:
            assert spellings[alias] == name
    assert all(key == key.lower() for key in spellings)


# --- misfit ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, shape",
    [
        ("channels", (6,)),
        ("filters", (6,)),
        ("kernels", (5, 3)),
        ("kernels", (6,)),
        ("rows", (4, 3, 2, 2)),
        ("cols", (4, 3, 2, 2)),
        ("rows", (4, 3, 5)),
        ("rows", (6,)),
    ],
)
def test_misfit_explains_groups_that_do_not_fit(name, shape):
    message = G.get(name).misfit(shape)
    assert isinstance(message, str)
    assert name in message
    assert str(list(shape)) in message


@pytest.mark.parametrize(
    "name, shape",
    [
        ("elements", (6,)),
        ("layer", (6,)),
        ("filters", (5, 3)),
        ("channels", (5, 3)),
        ("rows", (5, 3)),
        ("cols", (5, 3)),
        ("kernels", (4, 3, 5)),
        ("kernels", (4, 3, 2, 2)),
        ("kernels", (2, 3, 2, 2, 2)),
        ("filters", (2, 3, 2, 2, 2)),
    ],
)
def test_misfit_is_none_where_the_group_fits(name, shape):
    assert G.get(name).misfit(shape) is None


@pytest.mark.parametrize("name, shape_key", CASES)
def test_misfit_agrees_with_the_documented_definition(name, shape_key):
    shape = SHAPES[shape_key]
    try:
        applies = reference_groups(name, shape) is not None
    except KeyError:
        pytest.fail(f"no reference definition for group {name!r}: add one to tests/helpers.reference_groups")
    assert (G.get(name).misfit(shape) is None) == applies


# --- count and norms against the loop reference ----------------------------------------------------


@pytest.mark.parametrize("name, shape_key", FITTING)
def test_count_is_the_number_of_groups(name, shape_key):
    shape = SHAPES[shape_key]
    idx = reference_or_fail(name, shape)
    assert G.get(name).count(shape) == len(idx)


@pytest.mark.parametrize("name, shape_key", FITTING)
def test_group_norms_match_a_loop_over_groups(name, shape_key):
    shape = SHAPES[shape_key]
    idx = reference_or_fail(name, shape)
    w = sample(shape)
    norms = G.group_norms(w, name)
    assert norms.dim() == w.dim()
    assert norms.numel() == len(idx)
    full = norms.expand_as(w)
    for i in idx:
        expected = w[i].norm()
        assert_close(full[i], expected.expand_as(full[i]))


@pytest.mark.parametrize("criterion", ["norm", "mean_abs", "max"])
@pytest.mark.parametrize("name, shape_key", FITTING)
def test_group_statistic_matches_a_loop_over_groups(name, shape_key, criterion):
    shape = SHAPES[shape_key]
    idx = reference_or_fail(name, shape)
    w = sample(shape, seed=1)
    stat = G.group_statistic(w, name, criterion).expand_as(w)
    for i in idx:
        group = w[i]
        expected = {"norm": group.norm(), "mean_abs": group.abs().mean(), "max": group.abs().max()}[criterion]
        assert_close(stat[i], expected.expand_as(stat[i]))


def test_linear_filters_are_rows_and_channels_are_cols():
    w = sample((5, 3))
    assert_close(G.group_norms(w, "filters").flatten(), torch.stack([w[i].norm() for i in range(5)]))
    assert_close(G.group_norms(w, "channels").flatten(), torch.stack([w[:, j].norm() for j in range(3)]))
    assert_close(G.group_norms(w, "filters"), G.group_norms(w, "rows"))
    assert_close(G.group_norms(w, "channels"), G.group_norms(w, "cols"))


def test_hand_computed_norms_of_a_small_linear_weight():
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0], [-6.0, 8.0]])
    assert G.group_norms(w, "filters").flatten().tolist() == [5.0, 0.0, 10.0]
    assert_close(G.group_norms(w, "channels").flatten(), torch.tensor([45.0**0.5, 80.0**0.5]))
    assert_close(G.group_norms(w, "layer").flatten(), torch.tensor([125.0**0.5]))
    assert torch.equal(G.group_norms(w, "elements"), w.abs())
    assert G.group_statistic(w, "filters", "max").flatten().tolist() == [4.0, 0.0, 8.0]
    assert G.group_statistic(w, "filters", "mean_abs").flatten().tolist() == [3.5, 0.0, 7.0]


# --- zero groups -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, shape_key", FITTING)
def test_zero_groups_and_fraction_on_hand_zeroed_groups(name, shape_key):
    shape = SHAPES[shape_key]
    idx = reference_or_fail(name, shape)
    w = sample(shape, seed=2)
    zeroed = set(range(0, len(idx), 2))
    for k in zeroed:
        w[idx[k]] = 0.0
    mask = G.zero_groups(w, name)
    assert mask.dtype == torch.bool
    full = mask.expand_as(w)
    for k, i in enumerate(idx):
        assert bool(full[i].all()) == (k in zeroed)
        assert bool(full[i].any()) == (k in zeroed)
    assert G.zero_fraction(w, name) == pytest.approx(len(zeroed) / len(idx))


@pytest.mark.parametrize("name, shape_key", [c for c in FITTING if c[0] != "elements"])
def test_a_group_with_one_zero_element_is_not_a_zero_group(name, shape_key):
    shape = SHAPES[shape_key]
    idx = reference_or_fail(name, shape)
    w = sample(shape, seed=3)
    if w[idx[0]].numel() < 2:
        pytest.skip("groups of one element cannot be partly zero")
    w[(0,) * len(shape)] = 0.0  # lies in the first group of every reference type
    assert not G.zero_groups(w, name).any()
    assert G.zero_fraction(w, name) == 0.0


# --- properties that hold for any registered group type -------------------------------------------


@pytest.mark.parametrize("name, shape_key", FITTING)
def test_any_group_type_partitions_the_weight(name, shape_key):
    shape = SHAPES[shape_key]
    w = sample(shape, seed=4)
    norms = G.group_norms(w, name)
    assert norms.dim() == w.dim()
    assert all(n in (1, s) for n, s in zip(norms.shape, shape, strict=True))
    assert norms.numel() == G.get(name).count(shape)
    # Groups are disjoint and cover the weight: the squared group norms add up to the squared total.
    assert_close((norms**2).sum(), (w**2).sum())


@pytest.mark.parametrize("name, shape_key", FITTING)
def test_any_group_type_statistics_are_ordered(name, shape_key):
    w = sample(SHAPES[shape_key], seed=5)
    norm = G.group_statistic(w, name, "norm")
    mean_abs = G.group_statistic(w, name, "mean_abs")
    biggest = G.group_statistic(w, name, "max")
    assert norm.shape == mean_abs.shape == biggest.shape
    assert (mean_abs <= biggest + 1e-7).all()
    assert (biggest <= norm + 1e-7).all()
    assert (mean_abs > 0).all()


@pytest.mark.parametrize("name, shape_key", FITTING)
def test_any_group_type_zero_groups_of_dense_and_zero_tensors(name, shape_key):
    shape = SHAPES[shape_key]
    dense = sample(shape, seed=6)
    assert not G.zero_groups(dense, name).any()
    assert G.zero_fraction(dense, name) == 0.0
    zeros = torch.zeros(shape)
    assert G.zero_groups(zeros, name).all()
    assert G.zero_fraction(zeros, name) == 1.0
    assert torch.equal(G.group_norms(zeros, name), torch.zeros_like(G.group_norms(zeros, name)))
