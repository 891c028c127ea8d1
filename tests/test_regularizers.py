"""Unit tests for compress/regularizers.py: values, gradients and proximal steps against closed forms
computed here by explicit loops over groups (and autograd on those loops), never by the code under test."""

from __future__ import annotations

import pytest
import torch

from compress import groups as G
from compress import regularizers as R
from compress.groups import group_scores
from tests.helpers import SHAPES, assert_close, reference_groups


def _gl_cases() -> list[tuple[str, str, str]]:
    cases = []
    for group in sorted(G.GROUPS):
        for key, shape in SHAPES.items():
            try:
                if reference_groups(group, shape) is not None:
                    cases.append(("group_lasso", group, key))
            except KeyError:
                pass  # a group type this file has no reference for
    return cases


CASES = [(p, "elements", key) for p in ("l1", "l2") for key in SHAPES] + _gl_cases()
IDS = [f"{p}-{g}-{k}" for p, g, k in CASES]


def groups_of(group: str, shape: tuple[int, ...]) -> list[tuple]:
    idx = reference_groups(group, shape)
    assert idx is not None
    return idx


def ref_value(penalty: str, w: torch.Tensor, group: str, strength: float) -> torch.Tensor:
    """``strength * R(w)`` from its definition (differentiable, for autograd)."""
    if penalty == "l1":
        return strength * w.abs().sum()
    if penalty == "l2":
        return strength / 2 * (w * w).sum()
    assert penalty == "group_lasso"
    return strength * torch.stack([w[i].norm() for i in groups_of(group, tuple(w.shape))]).sum()


def ref_gradient(penalty: str, w: torch.Tensor, group: str, strength: float) -> torch.Tensor:
    """The (sub)gradient written out, 0 on zero groups."""
    if penalty == "l1":
        return strength * torch.sign(w)
    if penalty == "l2":
        return strength * w
    out = torch.zeros_like(w)
    for i in groups_of(group, tuple(w.shape)):
        norm = w[i].norm()
        if norm > 0:
            out[i] = strength * w[i] / norm
    return out


def ref_prox(penalty: str, w: torch.Tensor, group: str, t: float) -> torch.Tensor:
    if penalty == "l1":
        return torch.sign(w) * torch.clamp(w.abs() - t, min=0)
    if penalty == "l2":
        return w / (1 + t)
    out = w.clone()
    for i in groups_of(group, tuple(w.shape)):
        norm = float(w[i].norm())
        out[i] = 0.0 if norm <= t else w[i] * (1 - t / norm)
    return out


def units(penalty: str, group: str, shape: tuple[int, ...]) -> list[tuple]:
    """The units a penalty shrinks as a whole: single weights for l1/l2, groups for group lasso."""
    return groups_of("elements" if penalty != "group_lasso" else group, shape)


def sample(shape: tuple[int, ...], seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """Random, no zeros, magnitudes away from 0."""
    gen = torch.Generator().manual_seed(seed)
    magnitude = 0.2 + torch.rand(shape, generator=gen, dtype=torch.float64)
    sign = torch.where(torch.rand(shape, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
    return (magnitude * sign).to(dtype)


# --- registry --------------------------------------------------------------------------------------


def test_registry_and_kinds():
    assert set(R.PENALTIES) >= {"l1", "l2", "group_lasso"}
    kinds = R.penalty_kinds()
    assert kinds["l1"] is False and kinds["l2"] is False and kinds["group_lasso"] is True
    for name in ("l1", "l2", "group_lasso"):
        assert R.get(name).name == name


# --- values ----------------------------------------------------------------------------------------


def test_hand_computed_values():
    w = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    assert float(R.get("l1").value(w, "elements", 1.0)) == 6.0
    assert float(R.get("l1").value(w, "elements", 0.5)) == 3.0
    assert float(R.get("l2").value(w, "elements", 2.0)) == 14.0  # 2/2 * (1 + 4 + 9)
    v = torch.tensor([[3.0, 4.0], [0.0, 0.0], [-6.0, 8.0]])
    gl = R.get("group_lasso")
    assert float(gl.value(v, "filters", 0.5)) == pytest.approx(7.5)  # 0.5 * (5 + 0 + 10)
    assert float(gl.value(v, "channels", 1.0)) == pytest.approx(45**0.5 + 80**0.5)
    assert float(gl.value(v, "layer", 1.0)) == pytest.approx(125**0.5)
    assert float(gl.value(v, "elements", 1.0)) == pytest.approx(21.0)


@pytest.mark.parametrize("penalty, group, shape_key", CASES, ids=IDS)
def test_value_matches_closed_form(penalty, group, shape_key):
    w = sample(SHAPES[shape_key])
    value = R.get(penalty).value(w, group, 0.3)
    assert value.requires_grad is False
    assert_close(value, ref_value(penalty, w, group, 0.3))


def test_value_builds_no_autograd_graph_for_a_parameter():
    w = torch.nn.Parameter(sample((4, 3, 2, 2)))
    with torch.no_grad():
        for name, group in (("l1", "elements"), ("l2", "elements"), ("group_lasso", "filters")):
            assert R.get(name).value(w, group, 0.1).grad_fn is None


# --- gradients -------------------------------------------------------------------------------------


@pytest.mark.parametrize("penalty, group, shape_key", CASES, ids=IDS)
def test_add_gradient_adds_autograd_gradient_and_returns_value(penalty, group, shape_key):
    shape = SHAPES[shape_key]
    w = sample(shape, seed=1)
    before = w.clone()
    g0 = sample(shape, seed=2)
    grad = g0.clone()
    strength = 0.7
    returned = R.get(penalty).add_gradient(w, grad, group, strength)

    x = w.clone().requires_grad_(True)
    expected_value = ref_value(penalty, x, group, strength)
    expected_value.backward()
    assert_close(grad - g0, x.grad)
    assert_close(returned, expected_value.detach())
    assert torch.equal(w, before)


@pytest.mark.parametrize("penalty, group, shape_key", CASES, ids=IDS)
def test_zero_groups_give_finite_values_zero_subgradient_and_stay_zero(penalty, group, shape_key):
    shape = SHAPES[shape_key]
    w = sample(shape, seed=3)
    idx = units(penalty, group, shape)
    zeroed = idx[::2]
    for i in zeroed:
        w[i] = 0.0
    p = R.get(penalty)
    strength = 0.4

    value = p.value(w, group, strength)
    assert torch.isfinite(value)
    assert_close(value, ref_value(penalty, w, group, strength))

    grad = torch.zeros_like(w)
    returned = p.add_gradient(w, grad, group, strength)
    assert torch.isfinite(grad).all() and torch.isfinite(returned)
    for i in zeroed:
        assert (grad[i] == 0).all()
    assert_close(grad, ref_gradient(penalty, w, group, strength))

    x = w.clone()
    p.proximal(x, group, 0.05)
    assert torch.isfinite(x).all()
    for i in zeroed:
        assert (x[i] == 0).all()
    assert_close(x, ref_prox(penalty, w, group, 0.05))


@pytest.mark.parametrize("penalty, group, shape_key", CASES, ids=IDS)
def test_all_zero_weight_is_handled_without_nan(penalty, group, shape_key):
    w = torch.zeros(SHAPES[shape_key])
    p = R.get(penalty)
    assert float(p.value(w, group, 1.0)) == 0.0
    grad = torch.zeros_like(w)
    assert float(p.add_gradient(w, grad, group, 1.0)) == 0.0
    assert torch.equal(grad, torch.zeros_like(w))
    p.proximal(w, group, 0.5)
    assert torch.equal(w, torch.zeros_like(w))


def test_group_lasso_gradient_of_tiny_groups_is_bounded():
    """Groups whose squares underflow float32 (norm < NORM_FLOOR) divide by the floor: a subgradient of
    norm below 1 (no blow-up, no NaN), exactly 0 for an all-zero group; small groups above the floor
    still get a unit-norm gradient."""
    w = torch.tensor([[1e-30, -2e-30, 2e-30], [3.0, 0.0, 4.0], [1e-18, -2e-18, 2e-18], [0.0, 0.0, 0.0]])
    grad = torch.zeros_like(w)
    R.get("group_lasso").add_gradient(w, grad, "filters", 1.0)
    expected = torch.tensor([[1e-30, -2e-30, 2e-30], [0.6, 0.0, 0.8], [1 / 3, -2 / 3, 2 / 3], [0.0, 0.0, 0.0]])
    expected[0] /= R.NORM_FLOOR
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=0)
    assert float(grad[0].norm()) < 1e-9 and torch.equal(grad[3], torch.zeros(3))
    assert 3e-30 < R.NORM_FLOOR < 3e-18


# --- proximal steps --------------------------------------------------------------------------------


def test_hand_computed_proximal_steps():
    w = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    R.get("l1").proximal(w, "elements", 1.5)
    assert w.tolist() == [[0.0, -0.5], [1.5, 0.0]]

    w = torch.tensor([[1.0, -2.0]])
    R.get("l2").proximal(w, "elements", 1.0)
    assert w.tolist() == [[0.5, -1.0]]

    w = torch.tensor([[3.0, 4.0], [6.0, 8.0], [0.3, 0.4]])  # filter norms 5, 10, 0.5
    R.get("group_lasso").proximal(w, "filters", 5.0)  # norm == t becomes exactly zero too
    assert w[0].tolist() == [0.0, 0.0]
    assert_close(w[1], torch.tensor([3.0, 4.0]))
    assert w[2].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("where", ["below_all", "between", "above_all"])
@pytest.mark.parametrize("penalty, group, shape_key", CASES, ids=IDS)
def test_proximal_matches_closed_form(penalty, group, shape_key, where):
    shape = SHAPES[shape_key]
    w = sample(shape, seed=4)
    idx = units(penalty, group, shape)
    norms = sorted(float(w[i].norm()) for i in idx)
    m = len(norms) // 2
    between = (norms[m - 1] + norms[m]) / 2 if len(norms) > 1 else 0.5 * norms[0]  # some units zero, some not
    t = {"below_all": 0.5 * norms[0], "between": between, "above_all": 1.01 * norms[-1]}[where]
    x = w.clone()
    keep = R.get(penalty).proximal(x, group, t)
    assert_close(x, ref_prox(penalty, w, group, t))
    if penalty == "l2":
        assert keep is None, "L2's operator only shrinks: nothing to clear in the optimizer"
        return
    expected_keep = torch.zeros(shape, dtype=torch.bool)
    for i in idx:
        if float(w[i].norm()) <= t:
            assert (x[i] == 0).all(), "a unit whose norm is <= t must become exactly zero"
        else:
            assert (x[i] != 0).all(), "a unit whose norm exceeds t only shrinks"
            assert float(x[i].norm()) < float(w[i].norm())
            expected_keep[i] = True
    assert torch.equal(keep.expand(shape), expected_keep.to(keep.dtype)), "1 exactly where the step left units alive"


@pytest.mark.parametrize("penalty, group, shape_key", CASES, ids=IDS)
def test_proximal_with_t_zero_leaves_weights_unchanged(penalty, group, shape_key):
    w = sample(SHAPES[shape_key], seed=5)
    x = w.clone()
    R.get(penalty).proximal(x, group, 0.0)
    assert torch.equal(x, w)


ARGMIN_CASES = [c for c in CASES if c[2] in ("linear", "conv2d")]


@pytest.mark.parametrize("penalty, group, shape_key", ARGMIN_CASES, ids=[f"{p}-{g}-{k}" for p, g, k in ARGMIN_CASES])
def test_proximal_point_minimizes_the_prox_objective(penalty, group, shape_key):
    shape = SHAPES[shape_key]
    gen = torch.Generator().manual_seed(6)
    w = torch.randn(shape, generator=gen, dtype=torch.float64) * 0.5
    t = 0.4

    def objective(x: torch.Tensor) -> float:
        return float(0.5 * ((x - w) ** 2).sum() + t * ref_value(penalty, x, group, 1.0))

    p = w.clone()
    R.get(penalty).proximal(p, group, t)
    best = objective(p)
    candidates = [w, torch.zeros_like(w)]
    for scale in (1.0, 1e-2, 1e-4):
        for _ in range(12):
            candidates.append(p + scale * torch.randn(shape, generator=gen, dtype=torch.float64))
    for c in candidates:
        assert best <= objective(c) + 1e-12


@pytest.mark.parametrize("penalty, group", [("l1", "elements"), ("group_lasso", "filters"),
                                            ("group_lasso", "channels")])  # fmt: skip
def test_proximal_in_place_on_any_layout_and_without_the_alive_mask(penalty, group):
    """The operators write into the weight itself: a channels_last or transposed copy gets the same
    values as a contiguous one (group norms to rounding: the reduction order follows the layout), and
    ``alive=False`` (no momentum to clear) changes the weights the same way while returning nothing."""
    w = sample((8, 4, 3, 3), seed=7)
    units = (w.abs() if penalty == "l1" else group_scores(w, group)).flatten().sort().values
    middle = len(units) // 2
    t = float(units[middle - 1] + units[middle]) / 2  # half of the units become zero, none on the boundary
    expected = w.clone()
    keep = R.get(penalty).proximal(expected, group, t)
    assert (expected == 0).any() and keep is not None
    transposed = w.clone().transpose(0, 1).contiguous().transpose(0, 1)  # the same values, strided
    for view in (w.clone().to(memory_format=torch.channels_last), transposed):
        assert torch.equal(R.get(penalty).proximal(view, group, t).expand(w.shape), keep.expand(w.shape))
        torch.testing.assert_close(view, expected, rtol=1e-5, atol=0)
        assert torch.equal(view == 0, expected == 0)
    quiet = w.clone()
    assert R.get(penalty).proximal(quiet, group, t, alive=False) is None
    assert torch.equal(quiet, expected)


@pytest.mark.parametrize("penalty, group, shape_key", CASES, ids=IDS)
def test_proximal_step_clears_the_momentum_of_exactly_what_it_zeroed(penalty, group, shape_key):
    """What the scheduler calls: the operator, and every momentum buffer zeroed where (and only where)
    the operator zeroed the weight; L1 does it its own fused way (from the weight before it shrinks),
    so a weight exactly on the threshold is included: it becomes 0, its momentum too."""
    shape = SHAPES[shape_key]
    w = sample(shape, seed=8)
    idx = units(penalty, group, shape)
    norms = sorted(float(w[i].norm()) for i in idx)
    middle = len(norms) // 2
    # a single weight's norm is exact, so one sits exactly on the threshold; a group norm is only
    # computed to rounding, so the threshold falls between two (half the only one's norm: it survives)
    if penalty != "group_lasso":
        t = norms[middle]
    else:
        t = (norms[middle - 1] + norms[middle]) / 2 if len(norms) > 1 else norms[0] / 2
    x = w.clone()
    strided = sample(shape, seed=10)
    if strided.dim() >= 2:  # the same values, laid out differently from the weight
        strided = strided.transpose(0, 1).contiguous().transpose(0, 1)
    buffers = [sample(shape, seed=9), strided]
    before = [b.clone() for b in buffers]
    R.get(penalty).proximal_step(x, group, t, buffers)
    assert_close(x, ref_prox(penalty, w, group, t))
    for buffer, old in zip(buffers, before, strict=True):
        for i in idx:
            died = penalty != "l2" and float(w[i].norm()) <= t
            assert (x[i] == 0).all() == died
            assert torch.equal(buffer[i], torch.zeros_like(old[i]) if died else old[i])
    quiet = w.clone()
    R.get(penalty).proximal_step(quiet, group, t, [])
    assert torch.equal(quiet, x), "without buffers the step changes the weight the same way"
