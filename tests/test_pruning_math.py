"""The numbers of pruning: each criterion's scores, the counts and ties, AGP's schedule, the
sensitivity and splicing thresholds, activation statistics; and the runtime driven by hand (the
compression scheduler's four hooks around manual SGD steps): masks, exact zeros, momentum, release,
Distiller's forward-only masks, double copies, masked gradients, per-mini-batch recomputation, masks
discarded after each step and keep_mask. Every expected value is computed here, with explicit loops
or closed forms written from the papers and from Distiller's source, never taken from the code under
test."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compress import groups as G
from compress.models import build_model
from compress.pruning import activations, levels, masks
from compress.pruning.criteria import CRITERIA, Evidence
from compress.schedule import parse_schedule
from compress.schedule.model import Epochs, Level
from compress.scheduler import CompressionScheduler, bind
from tests.helpers import assert_close, yaml_text

# --- models and a hand-driven training loop ----------------------------------------------------------


class Mlp(nn.Module):
    """fc1 8x6 -> tanh -> fc2 3x8: 48 weights in fc1 to reason about one by one (tanh: no unit is
    ever dead, so every weight has a gradient)."""

    shape = (6,)

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class ConvNet(nn.Module):
    """conv 8x2x3x3 -> BatchNorm -> ReLU, conv2 8x8x1x1 -> ReLU, fc on the pooled channels."""

    shape = (2, 5, 5)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


def build(cls: type[nn.Module], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls()


def make(text: str, model: nn.Module, *, epochs: int = 6, lr: float = 0.1, momentum: float = 0.0, steps: int = 3):
    """The scheduler of ``text`` bound to ``model``, with an SGD optimizer over the model."""
    schedule = parse_schedule(yaml_text(text), "s.yaml")
    rules, _ = bind(schedule, model, epochs=epochs)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    return CompressionScheduler(rules, optimizer, schedule, model=model, steps_per_epoch=steps), optimizer


def batch(model: nn.Module, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.randn(6, *model.shape, generator=g), torch.randint(0, 3, (6,), generator=g)


def step(model, sched, optimizer, seed: int = 0, *, grads: dict | None = None, after_update: dict | None = None):
    """One training step as ``compress.training._step`` runs it. ``grads`` receives each parameter's
    gradient after backward (before the scheduler touches it); ``after_update`` the weights right
    after ``before_step`` (what the optimizer is about to update)."""
    model.train()
    x, y = batch(model, seed)
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    if grads is not None:
        grads.update({n: p.grad.detach().clone() for n, p in model.named_parameters()})
    sched.before_step()
    if after_update is not None:
        after_update.update({n: p.detach().clone() for n, p in model.named_parameters()})
    optimizer.step()
    sched.after_step(optimizer.param_groups[0]["lr"])


def epoch(model, sched, optimizer, e: int, steps: int = 3) -> None:
    sched.on_epoch_begin(e)
    for i in range(steps):
        step(model, sched, optimizer, seed=e * 100 + i)
    sched.on_epoch_end(e, None)


def mask_of(sched, rule: str, param: str) -> torch.Tensor:
    return sched.pruning.masks[rule][param]


def seen_by(module: nn.Module) -> list[torch.Tensor]:
    """The weights each forward pass of ``module`` used (recorded by a pre-hook)."""
    seen: list[torch.Tensor] = []
    module.register_forward_pre_hook(lambda m, _: seen.append(m.weight.detach().clone()))
    return seen


def native(body: str) -> str:
    return "version: 1\nrules:\n  - name: p\n" + "".join(f"    {line}\n" for line in yaml_text(body).splitlines())


def distiller(pruner: str, policy: str = "starting_epoch: 0\nending_epoch: 4\nfrequency: 1", args: str = "") -> str:
    """One Distiller pruner ``p`` (its definition's lines) and one policy running it."""
    ref = f"{{instance_name: p, args: {{{args}}}}}" if args else "{instance_name: p}"
    return ("pruners:\n  p:\n" + "".join(f"    {line}\n" for line in yaml_text(pruner).splitlines())
            + f"policies:\n  - pruner: {ref}\n" + "".join(f"    {line}\n" for line in policy.splitlines()))  # fmt: skip


def lowest_out(values: torch.Tensor, count: int) -> torch.Tensor:
    """1.0 where a value stays when the ``count`` smallest go, ties to the lower index (a loop)."""
    order = sorted(range(values.numel()), key=lambda i: (float(values.flatten()[i]), i))
    keep = torch.ones(values.numel())
    for i in order[:count]:
        keep[i] = 0.0
    return keep.reshape(values.shape)


# --- criteria: scores against loops over groups ------------------------------------------------------


def reference_groups(name: str, shape: tuple[int, ...]) -> list[list[int]]:
    """Flat indices of each group, in row-major order of the group's coordinates, from the group's
    definition: which indices a group fixes (dims types), block index (blocks), (f, c, p mod K)."""
    if name.startswith("blocks("):
        block = [int(b) for b in name[7:-1].split("x")]
        key = lambda idx: tuple(i // b for i, b in zip(idx, block, strict=True))  # noqa: E731
    elif name.startswith("strided("):
        k = int(name[8:-1])
        key = lambda idx: (idx[0], idx[1], _position(idx[2:], shape[2:]) % k)  # noqa: E731
    else:
        spans = {"elements": (), "filters": tuple(range(1, len(shape))), "channels": (0, *range(2, len(shape))),
                 "kernels": tuple(range(2, len(shape))), "rows": (1,), "cols": (0,)}[name]  # fmt: skip
        key = lambda idx: tuple(i for d, i in enumerate(idx) if d not in spans)  # noqa: E731
    found: dict[tuple, list[int]] = {}
    for flat, idx in enumerate(itertools.product(*(range(s) for s in shape))):
        found.setdefault(key(idx), []).append(flat)
    return [found[k] for k in sorted(found)]


def _position(idx: tuple[int, ...], kernel: tuple[int, ...]) -> int:
    """Row-major position of ``idx`` within a kernel of shape ``kernel``."""
    p = 0
    for i, s in zip(idx, kernel, strict=True):
        p = p * s + i
    return p


GROUPED_SHAPES = [
    ("elements", (3, 2, 2, 2)), ("filters", (4, 3, 2, 2)), ("channels", (4, 3, 2, 2)), ("kernels", (4, 3, 2, 2)),
    ("filters", (5, 3)), ("channels", (5, 3)), ("rows", (5, 3)), ("cols", (5, 3)),
    ("blocks(2x1x1x1)", (4, 3, 2, 2)), ("blocks(1x2x1x1)", (3, 4, 2, 2)), ("blocks(2x2x1x2)", (4, 4, 3, 2)),
    ("blocks(1x3)", (4, 6)), ("strided(2)", (3, 2, 3, 3)), ("strided(3)", (2, 2, 2, 2)), ("strided(4)", (2, 3, 3, 3)),
]  # fmt: skip


@pytest.mark.parametrize(("group", "shape"), GROUPED_SHAPES, ids=lambda v: str(v))
def test_l1_is_the_mean_magnitude_and_l2_the_norm_of_each_group(group, shape):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    flat = w.flatten()
    groups = reference_groups(group, shape)
    assert G.get(group).count(shape) == len(groups)
    l1 = torch.tensor([sum(abs(float(flat[i])) for i in g) / len(g) for g in groups], dtype=torch.float64)
    l2 = torch.tensor([math.sqrt(sum(float(flat[i]) ** 2 for i in g)) for g in groups], dtype=torch.float64)
    assert_close(CRITERIA.get("l1").scores(w, group, Evidence()), l1)
    assert_close(CRITERIA.get("l2").scores(w, group, Evidence()), l2)
    # the threshold statistic of each is the same number
    assert_close(CRITERIA.get("l1").statistic(w, group), l1)
    assert_close(CRITERIA.get("l2").statistic(w, group), l2)


@pytest.mark.parametrize(("group", "shape"), GROUPED_SHAPES[:4] + GROUPED_SHAPES[8:9] + GROUPED_SHAPES[12:13])
def test_a_mask_from_per_group_values_covers_exactly_each_groups_weights(group, shape):
    keep = torch.tensor([i % 3 != 0 for i in range(G.get(group).count(shape))])
    w = torch.ones(shape)
    mask = masks.expand(keep, group, w, torch.tensor(2.5)).flatten()
    for g, (kept, indices) in enumerate(zip(keep, reference_groups(group, shape), strict=True)):
        assert all(float(mask[i]) == (2.5 if kept else 0.0) for i in indices), g
    assert masks.pruned_fraction(masks.expand(keep, group, w), group) == pytest.approx(float((~keep).float().mean()))


def test_random_scores_are_uniform_one_per_group_and_follow_the_generator():
    w = torch.randn(200, 3)
    scores = [
        CRITERIA.get("random").scores(w, "filters", Evidence(torch.Generator().manual_seed(s))) for s in (1, 1, 2)
    ]
    assert scores[0].shape == (200,) and torch.equal(scores[0], scores[1]) and not torch.equal(scores[0], scores[2])
    assert float(scores[0].min()) >= 0.0 and float(scores[0].max()) < 1.0
    assert abs(float(scores[0].mean()) - 0.5) < 0.06
    assert CRITERIA.get("random").levels == ("sparsity", "agp")  # no magnitude: no threshold level


def test_bernoulli_drops_each_group_independently_with_the_level():
    w = torch.randn(4000, 2)
    scores = CRITERIA.get("bernoulli").scores(
        w, "filters", Evidence(torch.Generator().manual_seed(3), extra={"level": 0.3})
    )
    assert set(scores.tolist()) == {0.0, 1.0}
    assert abs(float((scores == 0).float().mean()) - 0.3) < 0.03
    again = CRITERIA.get("bernoulli").scores(
        w, "filters", Evidence(torch.Generator().manual_seed(3), extra={"level": 0.3})
    )
    assert torch.equal(scores, again)


def test_what_each_criterion_can_rank_and_what_it_needs():
    expected = {"l1": (None, None), "l2": (None, None), "random": (None, None), "bernoulli": (None, None),
                "apoz": (("filters",), "activations"), "mean_activation": (("filters",), "activations"),
                "gradient": (None, "gradients")}  # fmt: skip
    assert {name: (c.only_groups, c.needs) for name, c in CRITERIA.items()} == expected
    assert "sensitivity" in CRITERIA.get("l1").levels and "splicing" in CRITERIA.get("l1").levels
    assert "threshold" in CRITERIA.get("l2").levels
    evidence = Evidence(activations=torch.tensor([0.5, 0.25]), gradient=torch.tensor([3.0, -1.0, 2.0]))
    assert CRITERIA.get("apoz").scores(torch.zeros(2, 3), "filters", evidence).tolist() == [0.5, 0.25]
    assert CRITERIA.get("gradient").scores(torch.zeros(3, 3), "filters", evidence).tolist() == [3.0, -1.0, 2.0]


# --- counting and ties ---------------------------------------------------------------------------------


def test_count_to_prune_ours_forgives_float_error_distillers_int_does_not():
    assert 0.29 * 100 < 29  # the float error in question
    assert masks.count_to_prune(100, 0.29) == 29
    assert masks.count_to_prune(100, 0.29, distiller=True) == 28
    agp_first = levels.agp_sparsity(0.1, 0.5, 0, 0, 4)  # AGP's initial level, as its formula computes it
    assert agp_first == 0.09999999999999998
    assert masks.count_to_prune(20, agp_first, distiller=True) == 1  # Distiller's int(level * n)
    assert masks.count_to_prune(20, agp_first) == 2
    assert masks.count_to_prune(7, 0.5) == 3 and masks.count_to_prune(7, 0.5, distiller=True) == 3
    assert masks.count_to_prune(5, 0.0) == 0 and masks.count_to_prune(5, 1.0) == 5


def test_keep_one_spares_a_structure_unless_the_level_is_exactly_one():
    assert masks.count_to_prune(10, 1.0, keep_one=True, distiller=True) == 10
    assert masks.count_to_prune(10, 1.0000001, keep_one=True, distiller=True) == 9
    assert masks.count_to_prune(10, 0.9999999999, keep_one=True) == 9  # forgiven up to 10, one kept
    assert masks.count_to_prune(10, 0.9999999999) == 10
    assert masks.count_to_prune(10, 0.95, keep_one=True, distiller=True) == 9


def test_exact_ties_go_lowest_index_first_distillers_take_every_tie():
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 0.5])
    assert masks.keep_lowest_out(scores, 2).tolist() == [True, False, False, True, True, True]
    # Distiller: the 2nd smallest is 0.0, and only what is above it stays
    assert masks.keep_lowest_out(scores, 2, "distiller").tolist() == [True, False, False, False, True, True]
    assert masks.keep_lowest_out(scores, 4).tolist() == [True, False, False, False, True, False]
    assert masks.keep_lowest_out(scores, 0, "distiller").all()
    assert masks.keep_above(scores, 0.5).tolist() == [True, False, False, False, True, False]


# --- levels ---------------------------------------------------------------------------------------------


def distiller_agp(initial: float, final: float, epoch: int, start: int, end: int, freq: int) -> float:
    """Distiller's AgpPruningRate.step, written from its definition."""
    span = ((end - start - 1) // freq) * freq
    return final + (initial - final) * (1.0 - ((epoch - start) / span)) ** 3


@pytest.mark.parametrize(("start", "end", "freq"), [(0, 10, 1), (2, 11, 3), (1, 8, 2), (0, 7, 3), (3, 5, 1)])
def test_agp_is_zhu_and_guptas_closed_form_over_distillers_span(start, end, freq):
    initial, final = 0.05, 0.8
    epochs = Epochs(start, end, freq)
    active = epochs.active_epochs(end + 2)
    n = (end - start - 1) // freq  # Zhu & Gupta's n pruning steps of dt = freq epochs after t0
    got = [levels.target_sparsity(Level("agp", final, initial=initial), final, e, epochs) for e in active]
    zhu_gupta = [final + (initial - final) * (1 - (e - start) / (n * freq)) ** 3 for e in active]
    assert got == pytest.approx(zhu_gupta, rel=1e-12, abs=1e-15)
    assert got == [distiller_agp(initial, final, e, start, end, freq) for e in active]  # to the bit
    assert got[-1] == final and got == sorted(got) and got[0] == pytest.approx(initial)


def test_agp_with_one_pruning_epoch_prunes_to_the_final_level_at_once():
    assert levels.target_sparsity(Level("agp", 0.7, initial=0.1), 0.7, 4, Epochs(4, 5)) == 0.7
    assert levels.target_sparsity(Level("agp", 0.7, initial=0.1), 0.6, 4, Epochs(4, 7, 3)) == 0.6  # a target's own


def test_sparsity_levels_are_constant_and_thresholds_have_none():
    assert levels.target_sparsity(Level("sparsity", 0.4), 0.3, 7, Epochs()) == 0.3
    for kind in ("threshold", "sensitivity", "splicing", "uniform"):
        assert levels.target_sparsity(Level(kind, 0.4), 0.4, 1, Epochs()) is None


def test_splicing_sensitivity_grows_linearly_from_the_first_epoch():
    level = Level("splicing", 0.5, low=0.9, high=1.1, growth=0.25)
    assert [levels.splicing_sensitivity(level, 0.5, e, 2) for e in (2, 3, 6)] == [0.5, 0.5 * 1.25, 0.5 * 2.0]
    assert levels.splicing_sensitivity(Level("splicing", 0.5), 0.7, 9, 2) == 0.7


# --- the runtime: masks, zeros, momentum ---------------------------------------------------------------


AGP_FC1 = """
prune: l1
sparsity: {from: 0.25, to: 0.75}
layers: [fc1.weight]
epochs: [0, 3]
"""


def test_agp_prunes_the_lowest_magnitudes_to_each_epochs_level_and_the_zeros_hold_after_every_step():
    model = build(Mlp)
    sched, opt = make(native(AGP_FC1), model, momentum=0.9)
    w = model.fc1.weight
    expected = None
    for e, count in enumerate([12, 33, 36, 36]):  # 48 weights: 25%, 0.75 - 0.5 x 0.5^3 = 68.75%, 75%
        before = w.detach().clone()
        sched.on_epoch_begin(e)
        expected = lowest_out(before.abs(), count) if e < 3 else expected
        assert torch.equal(mask_of(sched, "p", "fc1.weight"), expected), e
        assert torch.equal(w.detach(), before * expected), "a pruning step zeroes exactly the masked weights"
        for i in range(3):
            step(model, sched, opt, seed=10 * e + i)
            assert (w[expected == 0] == 0).all() and (w[expected == 1] != 0).all(), "masks apply after every step"
        sched.on_epoch_end(e, None)
        target = [0.25, 0.6875, 0.75, 0.75][e]
        assert sched.pruning_report() == {"p": (target, count / 48)}


@pytest.mark.parametrize("fmt", ["native", "distiller"])
def test_ours_clears_the_momentum_of_what_a_pruning_step_zeroes_distiller_left_it(fmt):
    model = build(Mlp)
    text = native("prune: l1\nsparsity: 0.5\nlayers: [fc1.weight]\nepochs: [1, 3]") if fmt == "native" else \
        distiller("class: SparsityLevelParameterPruner\nlevels: {fc1.weight: 0.5}", "epochs: [1, 2]")  # fmt: skip
    sched, opt = make(text, model, momentum=0.9)
    epoch(model, sched, opt, 0)
    buffer = opt.state[model.fc1.weight]["momentum_buffer"]
    momentum = buffer.clone()
    assert (momentum != 0).all()
    sched.on_epoch_begin(1)
    keep = mask_of(sched, "p", "fc1.weight")
    assert int((keep == 0).sum()) == 24
    assert torch.equal(buffer, momentum * keep if fmt == "native" else momentum)
    step(model, sched, opt, seed=5)
    pruned = keep == 0
    assert (model.fc1.weight[pruned] == 0).all(), "re-applied after the step, whatever the momentum did"
    assert (buffer[pruned] != 0).all() if fmt == "distiller" else True, "Distiller's momentum kept moving them"


def test_sensitivity_prunes_below_s_times_the_std_taken_at_the_first_step_only():
    model = build(Mlp)
    sched, opt = make(native("prune: l1\nsensitivity: 0.5\nlayers: [fc1.weight]\nepochs: [0, 3]"), model)
    w = model.fc1.weight
    w0 = w.detach().clone()
    sched.on_epoch_begin(0)
    std0 = float(torch.std(w0))  # Han et al.'s std of the layer's weights (unbiased, as torch.std)
    assert torch.equal(mask_of(sched, "p", "fc1.weight"), (w0.abs() > 0.5 * std0).float())
    sched.on_epoch_end(0, None)
    with torch.no_grad():
        w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(2)))  # new weights, a larger std
    w1 = w.detach().clone()
    sched.on_epoch_begin(1)
    frozen = (w1.abs() > 0.5 * std0).float()
    assert torch.equal(mask_of(sched, "p", "fc1.weight"), frozen)
    assert not torch.equal(frozen, (w1.abs() > 0.5 * float(torch.std(w1))).float()), "the test tells them apart"
    assert torch.equal(w.detach(), w1 * frozen)


def splice(w: torch.Tensor, old: torch.Tensor, mean: float, std: float, s: float, low: float, high: float):
    """Guo et al.'s surgery function h(W): 0 below a = low x (mean + s std), 1 at or above b = high x
    (mean + s std), the old mask in between."""
    base = mean + s * std
    out = old.clone()
    for i in range(w.numel()):
        magnitude = abs(float(w.flatten()[i]))
        if magnitude < low * base:
            out.view(-1)[i] = 0.0
        elif magnitude >= high * base:
            out.view(-1)[i] = 1.0
    return out


SPLICING = """
class: SplicingPruner
low_thresh_mult: 0.9
hi_thresh_mult: 1.1
sensitivity_multiplier: {growth}
sensitivities: {{fc1.weight: 0.5}}
"""


def test_splicing_prunes_below_low_splices_back_at_high_and_keeps_the_mask_in_between():
    model = build(Mlp)
    sched, _ = make(distiller(SPLICING.format(growth=0)), model)
    w = model.fc1.weight
    w0 = w.detach().clone()
    mean, std = float(w0.abs().mean()), float(torch.std(w0.abs()))  # of |W|, taken once
    sched.on_epoch_begin(0)
    m0 = splice(w0, torch.ones_like(w0), mean, std, 0.5, 0.9, 1.1)
    assert torch.equal(mask_of(sched, "p", "fc1.weight"), m0) and 0 < int((m0 == 0).sum()) < 48
    base = mean + 0.5 * std
    pruned, kept = (m0 == 0).nonzero()[:2].tolist(), (m0 == 1).nonzero()[:2].tolist()
    with torch.no_grad():
        w[tuple(pruned[0])] = 1.2 * base  # at or above high: spliced back
        w[tuple(pruned[1])] = -1.0 * base  # between: stays pruned
        w[tuple(kept[0])] = 0.5 * base  # below low: pruned
        w[tuple(kept[1])] = 1.0 * base  # between: stays
    w1 = w.detach().clone()
    sched.on_epoch_begin(1)
    m1 = mask_of(sched, "p", "fc1.weight")
    assert torch.equal(m1, splice(w1, m0, mean, std, 0.5, 0.9, 1.1))
    assert [float(m1[tuple(i)]) for i in (*pruned, *kept)] == [1.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(("policy", "start"), [("starting_epoch: 2\nending_epoch: 6\nfrequency: 1", 2),
                                                ("epochs: [2, 3, 4]", 2)])  # fmt: skip
def test_splicing_sensitivity_grows_from_the_policys_first_epoch(policy, start):
    """Distiller: ``sensitivity x ((epoch - starting_epoch) x multiplier + 1)``; a policy with an
    epochs list has ``starting_epoch = epochs[0]`` (Distiller's add_policy)."""
    model = build(Mlp)
    sched, _ = make(distiller(SPLICING.format(growth=0.5), policy), model)
    w = model.fc1.weight
    mean, std = float(w.detach().abs().mean()), float(torch.std(w.detach().abs()))
    sched.on_epoch_begin(2)
    old = mask_of(sched, "p", "fc1.weight").clone()
    with torch.no_grad():
        w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(4)) * 0.3)
    w3 = w.detach().clone()
    sched.on_epoch_begin(3)
    s = 0.5 * ((3 - start) * 0.5 + 1)
    assert torch.equal(mask_of(sched, "p", "fc1.weight"), splice(w3, old, mean, std, s, 0.9, 1.1))


def test_native_splicing_keeps_the_dense_weights_learning_and_splices_them_back_with_their_values():
    model = build(Mlp)
    text = native("prune: l1\nsplicing: {sensitivity: 0.3, low: 0.9, high: 1.1}\nlayers: [fc1.weight]\nepochs: [0, 3]")
    sched, opt = make(text, model, lr=0.5)
    w, seen = model.fc1.weight, seen_by(model.fc1)
    w0 = w.detach().clone()
    mean, std = float(w0.abs().mean()), float(torch.std(w0.abs()))
    sched.on_epoch_begin(0)
    m0 = splice(w0, torch.ones_like(w0), mean, std, 0.3, 0.9, 1.1)
    assert torch.equal(mask_of(sched, "p", "fc1.weight"), m0) and torch.equal(w.detach(), w0 * m0)
    dense = w0
    for i in range(3):
        grads, update = {}, {}
        step(model, sched, opt, seed=i, grads=grads, after_update=update)
        assert torch.equal(seen[-1], dense * m0), "the forward pass sees the masked weights"
        assert torch.equal(update["fc1.weight"], dense), "the optimizer updates the dense weights"
        dense = dense - 0.5 * grads["fc1.weight"]
        assert_close(w.detach(), dense * m0)
        dense = w.detach() + (1 - m0) * dense  # exactly what the optimizer left (the kept part is in w)
    sched.on_epoch_end(0, None)
    sched.on_epoch_begin(1)
    m1 = splice(dense, m0, mean, std, 0.3, 0.9, 1.1)
    assert torch.equal(mask_of(sched, "p", "fc1.weight"), m1)
    assert_close(w.detach(), dense * m1)


def test_distillers_bernoulli_mask_is_rescaled_by_the_kept_fraction():
    model = build(ConvNet)
    text = distiller("class: BernoulliFilterPruner\ndesired_sparsity: 0.5\ngroup_type: Filters\nweights: [conv.weight]",
                     "epochs: [0]", "mask_on_forward_only: true, use_double_copies: true")  # fmt: skip
    sched, opt = make(text, model)
    w0, seen = model.conv.weight.detach().clone(), seen_by(model.conv)
    sched.on_epoch_begin(0)
    mask = mask_of(sched, "p", "conv.weight")
    per_filter = [set(mask[f].flatten().tolist()) for f in range(8)]
    kept = sum(1 for values in per_filter if values != {0.0})
    assert 0 < kept < 8, "seed-dependent, but 8 filters at p = 0.5 keep some and drop some"
    assert all(values in ({0.0}, {8 / kept}) for values in per_filter), per_filter
    step(model, sched, opt, seed=0)
    assert_close(seen[-1], w0 * mask)


DROPFILTER_ARGS = "mask_on_forward_only: true, use_double_copies: true, discard_masks_at_minibatch_end: true, " \
    "mini_batch_pruning_frequency: 1"  # fmt: skip


def test_dropfilter_draws_a_new_scaled_mask_each_step_and_the_dense_weights_never_compound():
    model = build(ConvNet)
    text = distiller("class: BernoulliFilterPruner\ndesired_sparsity: 0.5\ngroup_type: Filters\nweights: [conv.weight]",
                     "starting_epoch: 0\nending_epoch: 2\nfrequency: 1", DROPFILTER_ARGS)  # fmt: skip
    sched, opt = make(text, model, lr=0.1)
    w, seen = model.conv.weight, seen_by(model.conv)
    drawn = []
    sched.on_epoch_begin(0)
    for i in range(3):
        before, grads = w.detach().clone(), {}
        step(model, sched, opt, seed=i, grads=grads)
        ratio = seen[-1] / before  # the forward's weights: the dense ones times this step's mask
        drawn.append(tuple(round(float(ratio[f].mean()), 5) for f in range(8)))
        assert all(value in (0.0, round(8 / sum(1 for v in drawn[-1] if v), 5)) for value in drawn[-1])
        assert_close(w.detach(), before - 0.1 * grads["conv.weight"])  # no mask, no scaling left behind
        assert "p" not in sched.pruning.masks, "discarded at the end of each step"
    assert len(set(drawn)) > 1, "a new draw for every mini-batch"


@pytest.mark.parametrize("fmt", ["native", "distiller"])
def test_a_leaders_choice_of_filters_is_every_followers(fmt):
    model = build(ConvNet)
    with torch.no_grad():
        lead = torch.tensor([0.1, 0.2, 5.0, 6.0, 0.3, 7.0, 8.0, 9.0])  # the leader's lowest: filters 0, 1, 4, 2
        follow = torch.tensor([9.0, 8.0, 7.0, 6.0, 5.0, 0.1, 0.2, 0.3])  # its own lowest would be 5, 6, 7, 4
        model.conv.weight.copy_(torch.ones_like(model.conv.weight) * lead.view(8, 1, 1, 1))
        model.conv2.weight.copy_(torch.ones_like(model.conv2.weight) * follow.view(8, 1, 1, 1))
    text = native("prune: l1\ngroups: filters\nsparsity: 0.5\nlayers: [conv.weight, conv2.weight]\ndependency: leader")
    if fmt == "distiller":
        text = distiller("class: L1RankedStructureParameterPruner\ndesired_sparsity: 0.5\ngroup_type: Filters\n"
                         "group_dependency: Leader\nweights: [conv.weight, conv2.weight]", "epochs: [0]")  # fmt: skip
    sched, _ = make(text, model)
    sched.on_epoch_begin(0)
    for name in ("conv.weight", "conv2.weight"):
        mask = mask_of(sched, "p", name)
        assert [int(mask[f].max()) for f in range(8)] == [0, 0, 0, 1, 0, 1, 1, 1], name
    assert model.conv2.weight[[0, 1, 2, 4]].abs().sum() == 0 and (model.conv2.weight[[3, 5, 6, 7]] != 0).all()


def test_distillers_structure_pruner_thresholds_its_own_statistic():
    model = build(ConvNet)
    w = model.conv.weight.detach().clone()
    maxima = [max(abs(float(v)) for v in w[f].flatten()) for f in range(8)]
    threshold = sorted(maxima)[3]  # at or below goes: 4 filters
    text = distiller("class: StructureParameterPruner\nthreshold_criteria: Max\n"
                     f"reg_regims: {{conv.weight: [{threshold!r}, Filters]}}", "epochs: [0]")  # fmt: skip
    sched, _ = make(text, model)
    sched.on_epoch_begin(0)
    mask = mask_of(sched, "p", "conv.weight")
    assert [bool(mask[f].max()) for f in range(8)] == [m > threshold for m in maxima]
    assert set(mask.flatten().tolist()) == {0.0, 1.0} and int((mask.amax(dim=(1, 2, 3)) == 0).sum()) == 4
    model = build(Mlp)
    w = model.fc1.weight.detach().clone()
    # Distiller's sub_matrix_norm: a row's L1 norm over the number of rows (8), not over its length (6)
    means = [sum(abs(float(v)) for v in w[r]) / 8 for r in range(8)]
    threshold = sorted(means)[2] + 1e-7  # a threshold between two rows' statistics: 3 rows go
    text = distiller("class: StructureParameterPruner\nthreshold_criteria: Mean_Abs\n"
                     f"reg_regims: {{fc1.weight: [{threshold!r}, Rows]}}", "epochs: [0]")  # fmt: skip
    sched, _ = make(text, model)
    sched.on_epoch_begin(0)
    assert [bool(mask_of(sched, "p", "fc1.weight")[r].max()) for r in range(8)] == [m > threshold for m in means]
    assert sum(m > threshold for m in means) == 5


@pytest.mark.parametrize(("criterion", "group", "statistic"), [
    ("l1", "filters", lambda g: g.abs().mean()), ("l2", "kernels", lambda g: g.norm()),
    ("l1", "elements", lambda g: g.abs())])  # fmt: skip
def test_a_threshold_keeps_the_groups_whose_statistic_is_above_it(criterion, group, statistic):
    model = build(ConvNet)
    w = model.conv.weight.detach().clone()
    values = {"filters": [statistic(w[f]) for f in range(8)], "kernels": [statistic(w[f, c]) for f in range(8)
              for c in range(2)], "elements": [statistic(v) for v in w.flatten()]}[group]  # fmt: skip
    threshold = float(torch.stack(values).median())  # the median itself goes (at or below: pruned)
    sched, _ = make(
        native(f"prune: {criterion}\ngroups: {group}\nthreshold: {threshold}\nlayers: [conv.weight]"), model
    )
    sched.on_epoch_begin(0)
    keep = torch.tensor([float(v) > threshold for v in values])
    assert torch.equal(mask_of(sched, "p", "conv.weight"), masks.expand(keep, group, w))
    assert sched.pruning_report()["p"] == (None, float((~keep).float().mean()))


def test_release_ends_the_masks_the_pruned_weights_restart_from_zero_without_momentum():
    model = build(Mlp)
    text = native("prune: l1\nsparsity: 0.5\nlayers: [fc1.weight]\nepochs: [0, 2]\nrelease: 2")
    sched, opt = make(text, model, momentum=0.9)
    w = model.fc1.weight
    epoch(model, sched, opt, 0)
    epoch(model, sched, opt, 1)
    pruned = mask_of(sched, "p", "fc1.weight") == 0
    assert (w[pruned] == 0).all()
    sched.on_epoch_begin(2)
    assert "p" not in sched.pruning.masks and sched.pruning_report() == {"p": (None, 0.0)}
    assert (w[pruned] == 0).all() and (opt.state[w]["momentum_buffer"][pruned] == 0).all()
    grads = {}
    step(model, sched, opt, seed=7, grads=grads)
    assert_close(w[pruned], -0.1 * grads["fc1.weight"][pruned])  # plain SGD from zero: no old momentum
    assert (w[pruned] != 0).all()


# --- Distiller's PruningPolicy arguments ---------------------------------------------------------------

LEVEL_FC1 = "class: SparsityLevelParameterPruner\nlevels: {fc1.weight: 0.5}"
EPOCHS_0_2 = "starting_epoch: 0\nending_epoch: 2\nfrequency: 1"


def test_forward_only_masks_act_on_training_forwards_of_the_policys_epochs_only():
    model = build(Mlp)
    sched, opt = make(distiller(LEVEL_FC1, EPOCHS_0_2, "mask_on_forward_only: true"), model)
    w, seen = model.fc1.weight, seen_by(model.fc1)
    sched.on_epoch_begin(0)
    mask = mask_of(sched, "p", "fc1.weight")
    assert (w[mask == 0] != 0).all(), "nothing is masked before a training forward"
    before, grads = w.detach().clone(), {}
    step(model, sched, opt, seed=1, grads=grads)
    assert torch.equal(seen[-1], before * mask), "the training forward sees the masked weights"
    assert_close(w.detach(), before * mask - 0.1 * grads["fc1.weight"])  # and the step is not masked after
    assert (w[mask == 0] != 0).all()
    model.eval()
    with torch.no_grad():
        model(batch(model, 0)[0])
    assert torch.equal(seen[-1], w.detach()), "validation sees the weights unmasked"
    sched.on_epoch_end(0, None)
    epoch(model, sched, opt, 1)
    sched.on_epoch_begin(2)  # past the policy's epochs, and no keep_mask
    current = w.detach().clone()
    step(model, sched, opt, seed=2)
    assert torch.equal(seen[-1], current) and (w[mask_of(sched, "p", "fc1.weight") == 0] != 0).all()


def test_double_copies_put_back_the_weights_the_forward_did_not_see_before_the_update():
    model = build(Mlp)
    args = "mask_on_forward_only: true, use_double_copies: true"
    sched, opt = make(distiller(LEVEL_FC1, EPOCHS_0_2, args), model)
    w, seen = model.fc1.weight, seen_by(model.fc1)
    sched.on_epoch_begin(0)
    mask = mask_of(sched, "p", "fc1.weight")
    for i in range(2):
        before, grads, update = w.detach().clone(), {}, {}
        step(model, sched, opt, seed=i, grads=grads, after_update=update)
        assert torch.equal(seen[-1], before * mask)
        assert torch.equal(update["fc1.weight"], before), "the dense weights are what the optimizer updates"
        assert_close(w.detach(), before - 0.1 * grads["fc1.weight"])


def test_masked_gradients_keep_forward_only_masked_weights_at_zero_within_the_policy():
    model = build(Mlp)
    args = "mask_on_forward_only: true, mask_gradients: true"
    sched, opt = make(distiller(LEVEL_FC1, EPOCHS_0_2, args), model)
    w = model.fc1.weight
    sched.on_epoch_begin(0)
    pruned = mask_of(sched, "p", "fc1.weight") == 0
    for e in range(2):
        sched.on_epoch_begin(e)
        for i in range(2):
            step(model, sched, opt, seed=10 * e + i)
            assert (w.grad[pruned] == 0).all() and (w.grad[~pruned] != 0).all()
            assert (w[pruned] == 0).all(), "masked in the forward, no gradient, plain SGD: they stay zero"
        sched.on_epoch_end(e, None)
    sched.on_epoch_begin(2)  # Distiller removed the gradient hook at the end of ending_epoch - 1
    step(model, sched, opt, seed=3)
    assert (w.grad[pruned] != 0).all()


def test_masks_recomputed_every_n_mini_batches_on_distillers_global_step():
    model = build(Mlp)
    sched, opt = make(distiller(LEVEL_FC1, EPOCHS_0_2, "mini_batch_pruning_frequency: 2"), model, steps=3)
    w = model.fc1.weight
    recomputed = []
    for e in range(2):
        sched.on_epoch_begin(e)
        for i in range(3):
            old = mask_of(sched, "p", "fc1.weight").clone()
            with torch.no_grad():  # new weights before each forward: a recomputed mask follows them
                w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(50 + 3 * e + i)))
            fresh = (w.detach().abs() > w.detach().abs().flatten().kthvalue(24).values).float()
            step(model, sched, opt, seed=i)
            now = mask_of(sched, "p", "fc1.weight")
            assert torch.equal(now, fresh) or torch.equal(now, old)
            recomputed += [(e, i)] if torch.equal(now, fresh) and not torch.equal(now, old) else []
        sched.on_epoch_end(e, None)
    # global mini-batch e x 3 + i, a multiple of 2, and never the first of an epoch (its epoch-begin step)
    assert recomputed == [(0, 2), (1, 1)]


def test_masks_discarded_after_each_step_leave_the_weights_free_until_the_next_pruning():
    model = build(Mlp)
    sched, opt = make(distiller(LEVEL_FC1, EPOCHS_0_2, "discard_masks_at_minibatch_end: true"), model)
    w = model.fc1.weight
    sched.on_epoch_begin(0)
    pruned = mask_of(sched, "p", "fc1.weight") == 0
    step(model, sched, opt, seed=0)
    assert (w[pruned] == 0).all(), "the step's mask applies once more before it goes"
    assert "p" not in sched.pruning.masks
    step(model, sched, opt, seed=1)
    assert (w[pruned] != 0).all()
    sched.on_epoch_end(0, None)
    sched.on_epoch_begin(1)
    assert (mask_of(sched, "p", "fc1.weight") == 0).sum() == 24


@pytest.mark.parametrize("keep", [True, False])
def test_keep_mask_makes_forward_only_masks_permanent_after_the_policys_last_epoch(keep):
    model = build(Mlp)
    args = f"mask_on_forward_only: true, keep_mask: {str(keep).lower()}"
    sched, opt = make(distiller(LEVEL_FC1, EPOCHS_0_2, args), model)
    w = model.fc1.weight
    epoch(model, sched, opt, 0)
    sched.on_epoch_begin(1)
    step(model, sched, opt, seed=4)
    pruned = mask_of(sched, "p", "fc1.weight") == 0
    assert (w[pruned] != 0).all()
    sched.on_epoch_end(1, None)
    assert (w[pruned] == 0).all() == keep, "kept: masked at the end of ending_epoch - 1"
    for e in (2, 3):
        epoch(model, sched, opt, e)
        assert (w[pruned] == 0).all() == keep and (w[pruned] != 0).all() != keep


# --- gradient and activation criteria in the runtime ---------------------------------------------------


def filter_sums(values: torch.Tensor) -> torch.Tensor:
    return torch.tensor([float(values[f].sum()) for f in range(values.shape[0])], dtype=torch.float64)


def test_our_gradient_criterion_averages_the_taylor_magnitude_since_the_last_pruning_step():
    """On conv2: conv's filters feed a BatchNorm, which makes sum(w x dL/dw) of each exactly 0 in
    theory (scale invariance), rounding noise in practice."""
    model = build(ConvNet, seed=3)
    text = native("prune: gradient\ngroups: filters\nsparsity: {from: 0.125, to: 0.625}\nlayers: [conv2.weight]\n"
                  "epochs: [1, 3]")  # fmt: skip
    sched, opt = make(text, model)
    w = model.conv2.weight
    per_epoch, last = [], None
    for e in range(2):
        sched.on_epoch_begin(e)
        taylor = torch.zeros(8, dtype=torch.float64)
        for i in range(3):
            before, grads = w.detach().clone(), {}
            step(model, sched, opt, seed=10 * e + i, grads=grads)
            last = filter_sums(before * grads["conv2.weight"]).abs()  # Molchanov et al.: |sum w dL/dw|
            taylor += last
        per_epoch.append(taylor / 3)
        sched.on_epoch_end(e, None)
    assert not torch.equal(lowest_out(per_epoch[1], 5), lowest_out(per_epoch[0] + per_epoch[1], 5))
    sched.on_epoch_begin(2)
    keep = lowest_out(per_epoch[1], 5)  # from epoch 1's steps alone: pruning started the evidence afresh
    assert [float(mask_of(sched, "p", "conv2.weight")[f].max()) for f in range(8)] == keep.tolist()


def test_our_gradient_criterion_prunes_epoch_ones_first_step_from_epoch_zeros_average():
    model = build(ConvNet)
    sched, opt = make(native("prune: gradient\ngroups: filters\nsparsity: 0.5\nlayers: [conv2.weight]\nepochs: [1, 2]"),
                      model)  # fmt: skip
    w = model.conv2.weight
    sched.on_epoch_begin(0)
    taylor, steps = torch.zeros(8, dtype=torch.float64), []
    for i in range(3):
        before, grads = w.detach().clone(), {}
        step(model, sched, opt, seed=i, grads=grads)
        steps.append(filter_sums(before * grads["conv2.weight"]).abs())
        taylor += steps[-1]
    sched.on_epoch_end(0, None)
    sched.on_epoch_begin(1)
    keep = lowest_out(taylor / 3, 4)
    assert [float(mask_of(sched, "p", "conv2.weight")[f].max()) for f in range(8)] == keep.tolist()
    assert any(not torch.equal(keep, lowest_out(s, 4)) for s in steps), "the average is not any one step's"


def test_distillers_gradient_pruner_ranks_by_the_signed_sum_of_the_last_step():
    model = build(ConvNet)
    text = distiller("class: GradientRankedFilterPruner\ndesired_sparsity: 0.375\ngroup_type: Filters\n"
                     "weights: [conv2.weight]", "epochs: [1]")  # fmt: skip
    sched, opt = make(text, model)
    sched.on_epoch_begin(0)
    for i in range(3):
        grads = {}
        step(model, sched, opt, seed=i, grads=grads)
    sched.on_epoch_end(0, None)
    signed = filter_sums(model.conv2.weight.detach() * grads["conv2.weight"])  # weights after the step x its gradient
    sched.on_epoch_begin(1)
    keep = lowest_out(signed, 3)  # int(0.375 x 8) = 3 filters of the lowest signed sum
    assert [float(mask_of(sched, "p", "conv2.weight")[f].max()) for f in range(8)] == keep.tolist()
    assert not torch.equal(keep, lowest_out(signed.abs(), 3)), "the sign matters"


def relu_inputs(module: nn.Module, training: bool) -> list[torch.Tensor]:
    """What ``module`` (the one before the ReLU) outputs in training (or evaluation) forwards."""
    out: list[torch.Tensor] = []
    module.register_forward_hook(lambda m, i, o: out.append(o.detach().clone()) if m.training == training else None)
    return out


def channel_fraction_nonzero(outputs: list[torch.Tensor]) -> torch.Tensor:
    zeros = [sum(int((o[:, c] <= 0).sum()) for o in outputs) for c in range(outputs[0].shape[1])]
    seen = sum(o.numel() // o.shape[1] for o in outputs)
    return torch.tensor([1.0 - z / seen for z in zeros], dtype=torch.float64)


def test_apoz_prunes_the_filters_whose_relu_outputs_are_most_often_zero_over_the_training_forwards():
    model = build(ConvNet)
    sched, opt = make(
        native("prune: apoz\ngroups: filters\nsparsity: 0.5\nlayers: [conv.weight]\nepochs: [1, 2]"), model
    )
    outputs = relu_inputs(model.bn, training=True)
    epoch(model, sched, opt, 0)
    model.eval()
    with torch.no_grad():
        model(batch(model, 9)[0])  # evaluation forwards do not count for ours
    sched.on_epoch_begin(1)
    keep = lowest_out(channel_fraction_nonzero(outputs), 4)
    assert [float(mask_of(sched, "p", "conv.weight")[f].max()) for f in range(8)] == keep.tolist()


def test_distillers_mean_activation_pruner_cuts_the_highest_means_of_the_last_validation_pass():
    model = build(ConvNet)
    text = distiller("class: ActivationMeanRankedFilterPruner\ndesired_sparsity: 0.5\ngroup_type: Filters\n"
                     "weights: [conv.weight]", "epochs: [1]")  # fmt: skip
    sched, opt = make(text, model)
    outputs = relu_inputs(model.bn, training=False)
    sched.on_epoch_begin(0)
    for passes in ((1, 2), (3,)):  # two validation passes, a training step between them
        step(model, sched, opt, seed=passes[0])
        outputs.clear()
        model.eval()
        with torch.no_grad():
            for seed in passes:
                model(batch(model, seed)[0])
    sched.on_epoch_end(0, None)
    seen = sum(o.numel() // o.shape[1] for o in outputs)
    means = torch.tensor([sum(float(o[:, c].clamp_min(0).sum()) for o in outputs) / seen for c in range(8)])
    sched.on_epoch_begin(1)
    highest = set(torch.argsort(means)[-4:].tolist())  # Distiller's argsort(mean)[:-k] kept the lowest
    assert [float(mask_of(sched, "p", "conv.weight")[f].max()) for f in range(8)] == \
        [0.0 if f in highest else 1.0 for f in range(8)]  # fmt: skip


def test_channel_statistics_count_zeros_and_sum_the_relu_output_per_channel():
    stats = activations.ChannelStats()
    a = torch.tensor([[[1.0, -2.0], [0.0, 0.0], [3.0, 4.0]], [[-1.0, 0.5], [2.0, -3.0], [0.0, 1.0]]])  # N=2, C=3, L=2
    b = torch.tensor([[-1.0, 2.0, 6.0]])  # a 2-D output (N=1, C=3) adds one position per channel
    stats.add(a.unsqueeze(-1))
    stats.add(b.view(1, 3, 1, 1))
    # channel 0: 1, -2, -1, 0.5, -1 -> 3 zeros of 5, sum 1.5; channel 1: 0, 0, 2, -3, 2 -> 3 of 5, sum 4;
    # channel 2: 3, 4, 0, 1, 6 -> 1 of 5, sum 14
    assert stats.seen == 5
    assert stats.score("apoz").tolist() == pytest.approx([2 / 5, 2 / 5, 4 / 5])
    assert stats.score("mean_activation").tolist() == pytest.approx([1.5 / 5, 4 / 5, 14 / 5])
    flat = activations.ChannelStats()
    flat.add(torch.tensor([[1.0, -1.0], [2.0, 0.0], [-3.0, 5.0]]))  # a Linear's (N, C) output
    assert flat.seen == 3 and flat.score("apoz").tolist() == pytest.approx([2 / 3, 1 / 3])


class PoolThenRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = torch.relu(self.pool(self.conv(x)))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return self.fc(x.flatten(1))


def test_activation_source_finds_the_module_before_the_relu_and_refuses_a_layer_without_one(lenet5):
    model = ConvNet()
    assert (
        activations.activation_source(model, "conv") == "bn" and activations.following_batchnorm(model, "conv") == "bn"
    )
    assert activations.activation_source(model, "conv2") == "conv2"
    pooled = PoolThenRelu()
    assert activations.activation_source(pooled, "conv") == "conv"  # max-pooling between is looked through
    assert activations.activation_source(pooled, "conv2") == "conv2"
    with pytest.raises(ValueError, match=r"no ReLU reads conv1's output \(it goes to conv2\)"):
        activations.activation_source(lenet5, "conv1")
    with pytest.raises(ValueError, match="no ReLU reads fc's output"):
        activations.activation_source(model, "fc")
    resnet = build_model("resnet20_cifar", num_classes=10, in_channels=3, input_size=32)
    assert activations.activation_source(resnet, "layer1.0.conv1") == "layer1.0.bn1"
    with pytest.raises(ValueError, match=r"no ReLU reads layer1.0.conv2's output \(it goes to \+\)"):
        activations.activation_source(resnet, "layer1.0.conv2")


# --- counted levels at runtime: ties, random criteria ----------------------------------------------------


@pytest.mark.parametrize(("fmt", "pruned"), [("native", 12), ("distiller", 20)])
def test_ties_at_the_cut_exact_ours_all_of_them_distillers(fmt, pruned):
    model = build(Mlp)
    with torch.no_grad():
        w = model.fc1.weight
        w.copy_(torch.linspace(1.0, 2.0, 48).view(8, 6))
        w.view(-1)[torch.arange(0, 40, 2)] = -0.5  # 20 weights tie at the lowest magnitude
    text = native("prune: l1\nsparsity: 0.25\nlayers: [fc1.weight]") if fmt == "native" else \
        distiller("class: SparsityLevelParameterPruner\nlevels: {fc1.weight: 0.25}", "epochs: [0]")  # fmt: skip
    sched, _ = make(text, model)
    before = model.fc1.weight.detach().clone()
    sched.on_epoch_begin(0)
    mask = mask_of(sched, "p", "fc1.weight")
    assert int((mask == 0).sum()) == pruned  # 12 = 25% of 48; Distiller: every weight at the 12th's magnitude
    assert torch.equal(mask, lowest_out(before.abs(), 12) if fmt == "native" else (before.abs() > 0.5).float())


def test_random_ranking_prunes_exactly_the_count_and_the_seed_decides_which():
    chosen = []
    for seed in (0, 0, 1):
        model = build(ConvNet)
        text = native("prune: random\ngroups: filters\nsparsity: 0.5\nlayers: [conv.weight]")
        schedule = parse_schedule(yaml_text(text), "s.yaml")
        sched = CompressionScheduler(bind(schedule, model, epochs=2)[0], None, schedule, model=model, seed=seed)
        sched.on_epoch_begin(0)
        mask = mask_of(sched, "p", "conv.weight")
        chosen.append(tuple(int(mask[f].max()) for f in range(8)))
        assert sum(chosen[-1]) == 4
    assert chosen[0] == chosen[1] != chosen[2]


def test_a_random_level_is_drawn_in_its_range_and_ranked_by_l1_at_each_step():
    model = build(ConvNet)
    text = distiller("class: RandomLevelStructureParameterPruner\nsparsity_range: [0.25, 0.75]\ngroup_type: Filters\n"
                     "weights: [conv.weight]", "starting_epoch: 0\nending_epoch: 3\nfrequency: 1")  # fmt: skip
    sched, opt = make(text, model)
    drawn = []
    for e in range(3):
        norms = [float(model.conv.weight[f].detach().abs().mean()) for f in range(8)]
        sched.on_epoch_begin(e)
        level = sched.pruning_report()["p"][0]
        drawn.append(level)
        count = int(level * 8)
        assert 0.25 <= level <= 0.75
        cut = sorted(norms)[count - 1] if count else -1.0  # Distiller's ties: all at the cut go (old zeros too)
        expected = [float(n > cut) for n in norms]
        assert [float(mask_of(sched, "p", "conv.weight")[f].max()) for f in range(8)] == expected
        sched.on_epoch_end(e, None)
    assert len(set(drawn)) == 3


def test_a_rescaled_bernoulli_mask_never_compounds_in_the_stored_weights():
    """DropFilter's 1 / kept-fraction scaling belongs to one forward pass. Without forward-only masks
    (Distiller's DropFilter ran with mask_on_forward_only, double copies and discarded masks), a mask
    of values 2.0 re-applied after every step would double the kept weights at every step: such a
    schedule must either be refused or scale the weights once."""
    from compress.errors import CompressError

    model = build(ConvNet)
    text = distiller("class: BernoulliFilterPruner\ndesired_sparsity: 0.5\ngroup_type: Filters\nweights: [conv.weight]",
                     EPOCHS_0_2)  # fmt: skip
    try:
        sched, opt = make(text, model, lr=0.0)
    except CompressError as refused:
        assert "mask_on_forward_only" in str(refused)
        return
    w0 = model.conv.weight.detach().clone()
    sched.on_epoch_begin(0)
    mask = mask_of(sched, "p", "conv.weight")
    for i in range(3):
        step(model, sched, opt, seed=i)  # lr 0: nothing but the masks changes the weights
        assert_close(model.conv.weight.detach(), w0 * mask)


@pytest.mark.parametrize("fmt", ["native", "distiller"])
def test_gradient_masks_recomputed_every_n_mini_batches_in_the_last_pruning_epoch(fmt):
    """Distiller read ``param.grad`` (the previous step's) whenever mini_batch_pruning_frequency said
    so, in the policy's last epoch too; ours averages what the steps since the last pruning gathered."""
    model = build(ConvNet)
    text = native("prune: gradient\ngroups: filters\nsparsity: 0.5\nlayers: [conv2.weight]\nepochs: [1, 3]\n"
                  "recompute_every: 2") if fmt == "native" else distiller(
        "class: GradientRankedFilterPruner\ndesired_sparsity: 0.5\ngroup_type: Filters\nweights: [conv2.weight]",
        "starting_epoch: 1\nending_epoch: 3\nfrequency: 1", "mini_batch_pruning_frequency: 2")  # fmt: skip
    sched, opt = make(text, model, steps=3)
    w = model.conv2.weight
    epoch(model, sched, opt, 0)
    epoch(model, sched, opt, 1)
    sched.on_epoch_begin(2)  # global mini-batches 6, 7, 8: the masks are recomputed before the third
    taylor, signed = torch.zeros(8, dtype=torch.float64), None
    for i in range(2):
        before, grads = w.detach().clone(), {}
        step(model, sched, opt, seed=20 + i, grads=grads)
        taylor += filter_sums(before * grads["conv2.weight"]).abs()
        signed = filter_sums(w.detach() * grads["conv2.weight"])
    step(model, sched, opt, seed=22)
    keep = lowest_out(taylor / 2 if fmt == "native" else signed, 4)
    assert [float(mask_of(sched, "p", "conv2.weight")[f].max()) for f in range(8)] == keep.tolist()


def test_the_reported_target_of_a_rule_with_per_layer_levels_weighs_each_layers_groups():
    """pruned/<rule> is the share of all the rule's groups that are zero; target/<rule>, beside it in
    metrics.csv and the epoch line, must be the same kind of share: the layers' levels weighted by
    their groups (here (0.75 x 8 + 0.25 x 8) / 16), not the last layer's level."""
    model = build(ConvNet)
    layers = "layers: {conv.weight: 0.75, conv2.weight: 0.25}"
    sched, _ = make(native(f"prune: l1\ngroups: filters\nsparsity: 0.5\n{layers}"), model)
    sched.on_epoch_begin(0)
    zero = [int((mask_of(sched, "p", n).amax(dim=(1, 2, 3)) == 0).sum()) for n in ("conv.weight", "conv2.weight")]
    assert zero == [6, 2]
    assert sched.pruning_report() == {"p": (0.5, 0.5)}


def test_fold_batchnorm_ranks_filters_by_the_weights_inference_sees():
    """Distiller's fold_batchnorm: rank by ``w x gamma / sqrt(running_var + eps)`` per filter."""
    model = build(ConvNet)
    with torch.no_grad():
        model.bn.weight.copy_(torch.tensor([8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]))
        model.bn.running_var.copy_(torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 4.0, 9.0]))
    gamma, var = model.bn.weight.tolist(), model.bn.running_var.tolist()
    folded = torch.tensor([(f + 1) * gamma[f] / math.sqrt(var[f] + 1e-5) for f in range(8)])
    ranker = (
        "class: L1RankedStructureParameterPruner\ndesired_sparsity: 0.5\ngroup_type: Filters\nweights: [conv.weight]"
    )
    kept = {}
    for args in ("", "fold_batchnorm: true"):
        with torch.no_grad():  # filter f is all (f + 1)
            model.conv.weight.copy_(torch.ones_like(model.conv.weight) * torch.arange(1.0, 9.0).view(8, 1, 1, 1))
        sched, _ = make(distiller(ranker, "epochs: [0]", args), model)
        sched.on_epoch_begin(0)
        kept[args] = [float(mask_of(sched, "p", "conv.weight")[f].max()) for f in range(8)]
    assert kept[""] == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert kept["fold_batchnorm: true"] == lowest_out(folded, 4).tolist() != kept[""]
