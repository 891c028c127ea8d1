"""The parametrized group types, ``blocks(RxDxHxW)`` and ``strided(K)``, against references written
here from their definitions by explicit loops over the groups of small random tensors (never from
the code under test):

- ``blocks(R x D x H x W)``: a group is R consecutive filters x D consecutive input channels x H x W
  consecutive kernel positions (one block size per dim of the weight);
- ``strided(K)``: within each kernel W[f, c], flattened row-major to L positions, group j holds the
  positions p with p % K == j (Anwar et al. 2015).

The reference lists the groups in the order ``group_scores`` documents: blocks row-major over the
block's index along each dim, strided over (filter, channel, j).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from compress import groups as G
from compress import regularizers as R
from compress.errors import CompressError
from compress.schedule import default_vocabulary, parse_schedule
from tests.helpers import assert_close, invoke, line_no, located_parse_errors

SRC = "blocks.yaml"

# (group, weight shape): blocks of 2-D and 4-D weights (one spanning the whole weight), strided
# groups with L % K == 0 and != 0 (group sizes then differ), on 3-, 4- and 5-D weights
CASES = [
    ("blocks(1x4x1x1)", (3, 8, 2, 2)),
    ("blocks(2x2x1x1)", (4, 6, 3, 3)),
    ("blocks(2x3x3x1)", (4, 6, 3, 2)),
    ("blocks(4x6x3x3)", (4, 6, 3, 3)),
    ("blocks(2x3)", (6, 9)),
    ("blocks(1x1)", (3, 4)),
    ("blocks(5x1)", (5, 3)),
    ("strided(2)", (3, 4, 2, 2)),
    ("strided(3)", (3, 4, 3, 3)),
    ("strided(2)", (3, 4, 3, 3)),
    ("strided(4)", (2, 3, 3, 3)),
    ("strided(5)", (2, 3, 2, 3)),
    ("strided(3)", (2, 3, 5)),
    ("strided(2)", (2, 2, 2, 2, 3)),
]
IDS = [f"{g}-{'x'.join(map(str, s))}" for g, s in CASES]


def _flat_index(index: tuple[int, ...], shape: tuple[int, ...]) -> int:
    flat = 0
    for i, s in zip(index, shape, strict=True):
        flat = flat * s + i
    return flat


def reference(group: str, shape: tuple[int, ...]) -> list[list[int]]:
    """Each group as the flat (row-major) indices of its weights, groups in the documented order."""
    if group.startswith("blocks("):
        block = tuple(int(b) for b in group[len("blocks(") : -1].split("x"))
        grid = [range(s // b) for s, b in zip(shape, block, strict=True)]
        out = []
        for corner in itertools.product(*grid):
            spans = [range(i * b, (i + 1) * b) for i, b in zip(corner, block, strict=True)]
            out.append([_flat_index(index, shape) for index in itertools.product(*spans)])
        return out
    k = int(group[len("strided(") : -1])
    kernel = shape[2:]
    positions = list(itertools.product(*(range(s) for s in kernel)))  # row-major: position p is positions[p]
    out = []
    for f in range(shape[0]):
        for c in range(shape[1]):
            for j in range(k):
                out.append([_flat_index((f, c, *positions[p]), shape) for p in range(len(positions)) if p % k == j])
    return out


def sample(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def ref_scores(w: torch.Tensor, groups: list[list[int]], what: str) -> torch.Tensor:
    flat = w.reshape(-1)
    measures = {
        "l2": lambda g: g.norm(),
        "l1": lambda g: g.abs().sum(),
        "max": lambda g: g.abs().max(),
        "mean_abs": lambda g: g.abs().sum() / len(g),
    }
    return torch.stack([measures[what](flat[idx]) for idx in groups])


def at_groups(broadcast: torch.Tensor, shape: tuple[int, ...], groups: list[list[int]]) -> list[torch.Tensor]:
    """The values a broadcast per-group tensor holds at each group's weights."""
    full = broadcast.expand(shape).reshape(-1)
    return [full[idx] for idx in groups]


# --- count, norms, statistics ----------------------------------------------------------------------


@pytest.mark.parametrize(("group", "shape"), CASES, ids=IDS)
def test_count_and_the_groups_partition_the_weight(group, shape):
    groups = reference(group, shape)
    assert G.get(group).misfit(shape) is None
    assert G.get(group).count(shape) == len(groups)
    assert sorted(i for idx in groups for i in idx) == list(range(torch.Size(shape).numel()))


@pytest.mark.parametrize(("group", "shape"), CASES, ids=IDS)
def test_scores_are_one_per_group_in_the_documented_order(group, shape):
    groups, w = reference(group, shape), sample(shape)
    for norm in ("l1", "l2"):
        scores = G.group_scores(w, group, norm)
        assert scores.dim() == 1
        assert_close(scores, ref_scores(w, groups, norm))


@pytest.mark.parametrize(("group", "shape"), CASES, ids=IDS)
def test_group_norms_broadcast_each_groups_norm_over_it(group, shape):
    groups, w = reference(group, shape), sample(shape, seed=1)
    norms = G.group_norms(w, group)
    assert torch.broadcast_shapes(norms.shape, w.shape) == w.shape
    for values, expected in zip(at_groups(norms, shape, groups), ref_scores(w, groups, "l2"), strict=True):
        assert_close(values, expected.expand_as(values))
    with_eps = G.group_norms(w, group, eps=0.5)
    expected = torch.stack([(w.reshape(-1)[idx].pow(2).sum() + 0.5).sqrt() for idx in groups])
    for values, e in zip(at_groups(with_eps, shape, groups), expected, strict=True):
        assert_close(values, e.expand_as(values))
    assert_close(G.group_scores(w, group, "l2", eps=0.5), expected)


@pytest.mark.parametrize("criterion", ["norm", "max", "mean_abs", "distiller_mean_abs"])
@pytest.mark.parametrize(("group", "shape"), CASES, ids=IDS)
def test_statistics_match_a_loop_over_groups(group, shape, criterion):
    groups, w = reference(group, shape), sample(shape, seed=2)
    what = {"norm": "l2", "distiller_mean_abs": "mean_abs"}.get(criterion, criterion)
    stat = G.group_statistic(w, group, criterion)
    for values, expected in zip(at_groups(stat, shape, groups), ref_scores(w, groups, what), strict=True):
        assert_close(values, expected.expand_as(values))


@pytest.mark.parametrize(("group", "shape"), CASES, ids=IDS)
def test_kept_by_threshold_keeps_groups_strictly_above(group, shape):
    groups, w = reference(group, shape), sample(shape, seed=3)
    for criterion, what in (("norm", "l2"), ("max", "max"), ("mean_abs", "mean_abs")):
        ref = ref_scores(w, groups, what)
        threshold = _between_norms(ref)
        keep = G.kept_by_threshold(w, group, criterion, threshold)
        assert keep.dtype == w.dtype
        for values, score in zip(at_groups(keep, shape, groups), ref, strict=True):
            assert values.tolist() == [1.0 if score > threshold else 0.0] * len(values)
        # a group whose statistic is the threshold itself is zeroed (Distiller's boundary)
        last = groups[-1]
        on = float(G.group_statistic(w, group, criterion).expand(shape).reshape(-1)[last[0]])
        assert at_groups(G.kept_by_threshold(w, group, criterion, on), shape, groups)[-1].tolist() == [0.0] * len(last)


# --- zero groups -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("group", "shape"), CASES, ids=IDS)
def test_zero_groups_and_fraction_count_groups_not_weights(group, shape):
    groups, w = reference(group, shape), sample(shape, seed=4)
    zeroed = set(range(1, len(groups), 3)) | {len(groups) - 1}
    flat = w.view(-1)
    for k in zeroed:
        flat[groups[k]] = 0.0
    if len(groups[0]) > 1 and 0 not in zeroed:
        flat[groups[0][0]] = 0.0  # partly zero: not a zero group
    mask = G.zero_groups(w, group)
    assert mask.dtype == torch.bool
    for k, values in enumerate(at_groups(mask, shape, groups)):
        assert values.tolist() == [k in zeroed] * len(values)
    assert G.zero_fraction(w, group) == pytest.approx(len(zeroed) / len(groups))
    assert G.zero_fraction(torch.zeros(shape), group) == 1.0
    assert G.zero_fraction(sample(shape), group) == 0.0


def test_zero_fraction_of_uneven_strided_groups_counts_each_group_once():
    """strided(2) of a 3x3 kernel: group 0 has 5 positions, group 1 has 4; zeroing group 1 only is
    half the groups though fewer than half the weights."""
    w = sample((1, 1, 3, 3))
    w.view(-1)[1::2] = 0.0
    assert G.zero_fraction(w, "strided(2)") == 0.5
    assert G.zero_groups(w, "strided(2)").reshape(-1).tolist() == [False, True] * 4 + [False]


# --- group_scores / expand_groups ------------------------------------------------------------------


@pytest.mark.parametrize(("group", "shape"), CASES, ids=IDS)
def test_expand_groups_puts_value_k_on_group_k(group, shape):
    groups = reference(group, shape)
    expanded = G.expand_groups(torch.arange(len(groups), dtype=torch.float32), group, shape)
    assert torch.broadcast_shapes(expanded.shape, shape) == torch.Size(shape)
    for k, values in enumerate(at_groups(expanded, shape, groups)):
        assert values.tolist() == [float(k)] * len(values)


@pytest.mark.parametrize(("group", "shape"), CASES, ids=IDS)
def test_scores_and_expand_round_trip_to_the_broadcast_measures_exactly(group, shape):
    w = sample(shape, seed=5)
    for eps in (0.0, 1e-3):
        assert torch.equal(
            G.expand_groups(G.group_scores(w, group, "l2", eps), group, shape), G.group_norms(w, group, eps)
        )
    l1 = G.group_scores(w, group, "l1")
    sizes = G.group_scores(torch.ones(shape), group, "l1")
    assert torch.equal(
        G.expand_groups(l1 / sizes, group, shape).expand(shape), G.group_statistic(w, group, "mean_abs").expand(shape)
    )


@pytest.mark.parametrize("group", ["filters", "channels", "kernels", "layer", "elements"])
def test_scores_of_the_dims_types_are_their_norms_flattened(group):
    w = sample((4, 3, 2, 2), seed=6)
    assert torch.equal(G.group_scores(w, group, "l2"), G.group_norms(w, group).flatten())
    assert torch.equal(G.expand_groups(G.group_scores(w, group), group, w.shape), G.group_norms(w, group))
    with pytest.raises(ValueError, match="unknown norm 'l3'"):
        G.group_scores(w, group, "l3")


# --- misfit ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "shape", "message"),
    [
        (
            "blocks(1x3x1x1)",
            (50, 20, 5, 5),
            "blocks(1x3x1x1): 3 does not divide 20 input channels of a weight of shape [50, 20, 5, 5]",
        ),
        ("blocks(3x1x1x1)", (50, 20, 5, 5), "blocks(3x1x1x1): 3 does not divide 50 filters of a weight of shape"),
        ("blocks(1x1x2x1)", (50, 20, 5, 5), "blocks(1x1x2x1): 2 does not divide 5 kernel rows of a weight"),
        ("blocks(1x1x1x2)", (50, 20, 5, 5), "blocks(1x1x1x2): 2 does not divide 5 kernel columns of a weight"),
        (
            "blocks(4x3)",
            (500, 800),
            "blocks(4x3): 3 does not divide 800 input features of a weight of shape [500, 800]",
        ),
        (
            "blocks(1x4)",
            (50, 20, 5, 5),
            "blocks(1x4): 2 block sizes for a weight of shape [50, 20, 5, 5], which has 4 dims",
        ),
        ("blocks(1x4x1x1)", (500, 800), "which has 2 dims; give one size per dim (blocks(RxD))"),
        ("strided(26)", (50, 20, 5, 5), "strided(26): K = 26 is more than the 25 positions of a 5x5 kernel"),
        ("strided(2)", (500, 800), "group 'strided(2)'"),
        ("strided(2)", (6,), "needs a weight with at least 3 dims"),
    ],
)
def test_misfit_explains_what_does_not_fit(group, shape, message):
    found = G.get(group).misfit(shape)
    assert found is not None and message in found
    assert "\n" not in found


def test_misfit_at_the_edges():
    assert G.get("strided(25)").misfit((50, 20, 5, 5)) is None
    assert G.get("blocks(50x20x5x5)").misfit((50, 20, 5, 5)) is None
    assert "at least 2" in G.StridedGroup(1).misfit((50, 20, 5, 5))


# --- spellings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("blocks(1x4x1x1)", "blocks(1x4x1x1)"),
        ("Blocks(1x4x1x1)", "blocks(1x4x1x1)"),
        ("blocks(1 x 4 x 1 x 1)", "blocks(1x4x1x1)"),
        ("BLOCKS( 2X3 )", "blocks(2x3)"),
        ("blocks(01x4)", "blocks(1x4)"),
        ("strided(2)", "strided(2)"),
        ("Strided( 12 )", "strided(12)"),
    ],
)
def test_parametrized_spellings_are_read_to_a_cached_canonical_type(spelling, canonical):
    kind = G.get(spelling)
    assert kind.name == canonical
    assert kind is G.get(canonical) is G.GROUPS.get(spelling)
    assert spelling in G.GROUPS
    assert G.parametrized_name(spelling) == canonical
    assert default_vocabulary().canonical_group(spelling) == canonical


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("blocks(1x0x1)", "expected blocks(RxDxHxW)"),
        ("blocks()", "expected blocks(RxDxHxW)"),
        ("blocks", "expected blocks(RxDxHxW)"),
        ("blocks(1x4", "expected blocks(RxDxHxW)"),
        ("blocks(1x-4)", "expected blocks(RxDxHxW)"),
        ("blocks(RxDxHxW)", "expected blocks(RxDxHxW)"),
        ("strided(x)", "expected strided(K) with an integer K >= 2"),
        ("strided(1)", "expected strided(K) with an integer K >= 2"),
        ("strided(0)", "expected strided(K) with an integer K >= 2"),
        ("strided(2x2)", "expected strided(K) with an integer K >= 2"),
    ],
)
def test_malformed_parameters_say_what_is_expected(spelling, expected):
    with pytest.raises(CompressError) as info:
        G.get(spelling)
    assert str(info.value).startswith(f"malformed group {spelling!r}: {expected}")
    assert spelling not in G.GROUPS
    vocab = default_vocabulary()
    assert vocab.canonical_group(spelling) is None
    assert vocab.group_problem(spelling) == str(info.value)


def test_the_registry_lists_and_spells_only_the_registered_types():
    assert sorted(G.GROUPS) == ["channels", "cols", "elements", "filters", "kernels", "layer", "rows"]
    assert not any("(" in spelling for spelling in G.spellings())
    assert default_vocabulary().group_problem("filters") is None
    with pytest.raises(CompressError, match="unknown group 'blokcs"):
        G.get("blokcs(1x4)")


# --- group lasso: proximal step and penalty gradient -------------------------------------------------


def _between_norms(norms: torch.Tensor) -> float:
    """A step size halfway between two group norms near the middle: some groups are zeroed, some
    shrink, none sits on the boundary."""
    ordered = norms.sort().values
    mid = len(ordered) // 2
    return float(ordered[mid] + ordered[max(mid - 1, 0)]) / 2 if len(ordered) > 1 else float(ordered[0]) / 2


@pytest.mark.parametrize(("group", "shape"), CASES, ids=IDS)
def test_proximal_group_lasso_shrinks_each_group_and_zeroes_exactly(group, shape):
    groups, w = reference(group, shape), sample(shape, seed=7)
    norms = ref_scores(w, groups, "l2")
    t = _between_norms(norms)
    expected = w.clone().reshape(-1)
    for idx, norm in zip(groups, norms, strict=True):
        expected[idx] = w.reshape(-1)[idx] * max(0.0, 1.0 - t / float(norm))
    alive = R.get("group_lasso").proximal(w, group, t)
    assert_close(w.reshape(-1), expected)
    for idx, norm, values, live in zip(
        groups, norms, at_groups(w, shape, groups), at_groups(alive, shape, groups), strict=True
    ):
        dead = float(norm) <= t
        assert bool((values == 0).all()) == dead  # exact zeros, whole groups
        assert live.tolist() == [0.0 if dead else 1.0] * len(idx)
    assert G.zero_fraction(w, group) == pytest.approx(float((norms <= t).float().mean()))


@pytest.mark.parametrize(("group", "shape"), CASES, ids=IDS)
def test_penalty_gradient_and_value_match_autograd_of_the_sum_of_group_norms(group, shape):
    groups, w = reference(group, shape), sample(shape, seed=8)
    strength = 0.03
    leaf = w.clone().requires_grad_(True)
    total = strength * torch.stack([leaf.reshape(-1)[idx].norm() for idx in groups]).sum()
    (expected,) = torch.autograd.grad(total, leaf)
    gradient, value = R.get("group_lasso").gradient(w, group, strength)
    assert_close(gradient, expected)
    assert_close(value, total.detach())
    assert_close(R.get("group_lasso").value(w, group, strength), total.detach())


def test_penalty_gradient_is_zero_on_a_zero_group():
    w = sample((2, 4, 3, 3))
    w[:, :2] = 0.0  # the first blocks(1x2x3x3) of each filter
    gradient, _ = R.get("group_lasso").gradient(w, "blocks(1x2x3x3)", 0.1)
    assert torch.equal(gradient[:, :2], torch.zeros_like(gradient[:, :2]))
    assert not (gradient[:, 2:] == 0).any()


# --- schedules --------------------------------------------------------------------------------------


def rule_yaml(groups: str, mode: str = "proximal") -> str:
    return (
        "version: 1\nrules:\n  - name: b\n    penalty: group_lasso\n"
        f"    groups: {groups}\n    strength: 0.01\n    layers: [conv2.weight]\n    mode: {mode}\n"
    )


def test_a_schedule_reads_parametrized_groups_to_canonical_names():
    schedule = parse_schedule(rule_yaml("[Blocks(1 x 4 x 1 x 1), strided( 2 ), filters]"), SRC)
    assert schedule.rules[0].targets[0].groups == ("blocks(1x4x1x1)", "strided(2)", "filters")


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ("blocks(1x0x1)", "malformed group 'blocks(1x0x1)': expected blocks(RxDxHxW)"),
        ("strided(1)", "malformed group 'strided(1)': expected strided(K) with an integer K >= 2"),
    ],
)
def test_a_schedule_with_malformed_parameters_is_a_located_error(groups, message):
    text = rule_yaml(groups)
    (d,) = located_parse_errors(text, message.replace("(", r"\(").replace(")", r"\)"), SRC)
    assert (d.field, d.line) == ("rules[b].groups", line_no(text, "groups:"))


def test_unknown_groups_list_the_parametrized_spellings():
    (d,) = located_parse_errors(rule_yaml("blokcs"), "unknown group 'blokcs'", SRC)
    valid = d.message.split("valid: ", 1)[1].split(", ")
    assert "blocks(RxDxHxW)" in valid and "strided(K)" in valid and "filters" in valid


def test_l1_with_parametrized_groups_is_an_error():
    text = rule_yaml("blocks(1x4x1x1)").replace("group_lasso", "l1")
    located_parse_errors(text, "l1 acts on single weights", SRC)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["proximal", "penalty"])
def test_training_with_blocks_end_to_end(tmp_path, mode):
    path = tmp_path / "blocks.yaml"
    path.write_text(rule_yaml("blocks(1x4x1x1)", mode))
    result = invoke(
        "train", "--schedule", path, "--epochs", "1", "--limit-batches", "2", "--out-dir", tmp_path, "--name", "b"
    )
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_blocks_that_do_not_divide_the_weight_are_a_located_one_line_error(tmp_path):
    path = tmp_path / "blocks.yaml"
    text = rule_yaml("blocks(1x3x1x1)")
    path.write_text(text)
    result = invoke(
        "train", "--schedule", path, "--epochs", "1", "--limit-batches", "2", "--out-dir", tmp_path, "--name", "b"
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"{path}:{line_no(text, 'layers:')}: rules[b].layers: conv2.weight: blocks(1x3x1x1): 3 does not divide 20 "
        "input channels of a weight of shape [50, 20, 5, 5]"
    ]
