"""Unit tests for compress/scheduler.py: binding schedules to a tiny model, epoch timing, the four
hooks, thresholds, kept masks. Expected weights and gradients are computed here from the formulas
in DESIGN.md with explicit loops over filters."""

from __future__ import annotations

import io
import textwrap

import pytest
import torch
from torch import nn

from compress.errors import CompressError
from compress.schedule import parse_schedule
from compress.schedule.model import Epochs
from compress.scheduler import CompressionScheduler, bind
from tests.helpers import assert_close

# --- helpers ---------------------------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)  # weight 4 x 1 x 3 x 3
        self.conv2 = nn.Conv2d(4, 6, 3)  # weight 6 x 4 x 3 x 3
        self.features = nn.Sequential(nn.Conv2d(6, 2, 1))  # features.0.weight 2 x 6 x 1 x 1
        self.fc = nn.Linear(2, 3)  # weight 3 x 2


@pytest.fixture
def model() -> Tiny:
    torch.manual_seed(0)
    return Tiny()


def schedule(text: str):
    return parse_schedule(textwrap.dedent(text), "t.yaml")


def make(text: str, model: nn.Module, epochs: int = 10, weight_decay: float = 0.0):
    bound, diagnostics = bind(schedule(text), model, epochs=epochs, weight_decay=weight_decay)
    return bound, diagnostics, CompressionScheduler(bound)


def one_rule(rule: str) -> str:
    return f"version: 1\nrules:\n  - {rule}\n"


def targets_of(bound) -> dict[str, float]:
    return {t.param_name: t.strength for b in bound for t in b.targets}


def filter_norms(w: torch.Tensor) -> list[float]:
    return [float(w[f].norm()) for f in range(w.shape[0])]


def prox_filters(w: torch.Tensor, t: float) -> torch.Tensor:
    """Group soft thresholding over filters, one loop iteration per filter."""
    out = w.clone()
    for f in range(w.shape[0]):
        norm = float(w[f].norm())
        out[f] = 0.0 if norm <= t else w[f] * (1 - t / norm)
    return out


def soft_threshold(w: torch.Tensor, t: float) -> torch.Tensor:
    return torch.sign(w) * torch.clamp(w.abs() - t, min=0)


def warnings_of(diagnostics) -> list[str]:
    return [d.message for d in diagnostics if d.warning]


# --- bind: resolving names -------------------------------------------------------------------------


def test_bind_resolves_globs(model):
    bound, diagnostics, _ = make(one_rule('{name: a, penalty: l1, strength: 0.1, layers: ["conv*.weight"]}'), model)
    assert targets_of(bound) == {"conv1.weight": 0.1, "conv2.weight": 0.1}
    params = dict(model.named_parameters())
    for t in bound[0].targets:
        assert t.param is params[t.param_name]
        assert t.groups == ("elements",)
    assert not [d for d in diagnostics if not d.warning]


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("module.conv1.weight", {"conv1.weight"}),
        ("module.conv*.weight", {"conv1.weight", "conv2.weight"}),
        ("features.module.0.weight", {"features.0.weight"}),
        ("module.features.module.0.weight", {"features.0.weight"}),
    ],
)
def test_bind_matches_dataparallel_prefixed_names_to_plain_names(model, pattern, expected):
    bound, _, _ = make(one_rule(f'{{name: a, penalty: l1, strength: 0.1, layers: ["{pattern}"]}}'), model)
    assert set(targets_of(bound)) == expected


def test_bind_per_layer_strengths(model):
    text = one_rule(
        '{name: a, penalty: group_lasso, groups: filters, layers: {"conv1.weight": 0.1, "fc.weight": 0.25}}'
    )
    bound, _, _ = make(text, model)
    assert targets_of(bound) == {"conv1.weight": 0.1, "fc.weight": 0.25}
    assert all(t.groups == ("filters",) for t in bound[0].targets)


def test_bind_reports_every_problem_at_once(model):
    text = """\
    version: 1
    rules:
      - {name: missing, penalty: l1, strength: 0.1, layers: ["conv9.weight"]}
      - {name: misfit, penalty: group_lasso, groups: kernels, strength: 0.1, layers: ["fc.weight"]}
    lr_scheduler:
      - {class: StepLRR, step_size: 1}
      - {class: StepLR, step_size: 1, gama: 0.5}
    """
    with pytest.raises(CompressError, match="conv9.weight") as excinfo:
        bind(schedule(text), model, epochs=10)
    errors = [d for d in excinfo.value.diagnostics if not d.warning]
    assert len(errors) == 4
    by_line = {d.line: d for d in errors}
    assert set(by_line) == {3, 4, 6, 7}
    assert all(d.file == "t.yaml" for d in errors)

    assert "matches no parameter" in by_line[3].message
    assert "closest:" in by_line[3].message and "conv1.weight" in by_line[3].message
    assert "fc.weight" in by_line[4].message and "kernels" in by_line[4].message
    assert "StepLRR" in by_line[6].message and "'StepLR'" in by_line[6].message
    assert "gama" in by_line[7].message and "gamma" in by_line[7].message
    text_of_error = str(excinfo.value)
    for d in errors:
        assert d.message in text_of_error


@pytest.mark.parametrize(
    "rule, pattern",
    [
        ('{name: a, penalty: l1, strength: 0.1, layers: ["fc.wieght"]}', r"'fc\.wieght' matches no parameter"),
        ('{name: a, penalty: group_lasso, groups: rows, strength: 0.1, layers: ["conv1.weight"]}', "rows"),
        ('{name: a, penalty: group_lasso, groups: channels, strength: 0.1, layers: ["fc.bias"]}', "channels"),
        ('{name: a, penalty: l1, strength: 0.1, layers: ["conv*.weight", "conv1.weight"]}', "matched by both"),
    ],
)
def test_bind_errors(model, rule, pattern):
    with pytest.raises(CompressError, match=pattern):
        make(one_rule(rule), model)


def test_bind_lr_scheduler_with_bad_argument_value(model):
    text = one_rule('{name: a, penalty: l1, strength: 0.1, layers: ["fc.weight"]}')
    text += "lr_scheduler: {class: StepLR, step_size: 1, gamma: 0.1, last_epoch: -1, verbose_typo: 1}\n"
    with pytest.raises(CompressError, match="verbose_typo"):
        make(text, model)


# --- bind: warnings --------------------------------------------------------------------------------


def test_warns_for_a_rule_never_active_in_the_run(model):
    bound, diagnostics, _ = make(
        one_rule('{name: late, penalty: l1, strength: 0.1, layers: ["fc.weight"], epochs: [20, 30]}'), model, epochs=10
    )
    assert len(bound) == 1
    (message,) = warnings_of(diagnostics)
    assert "never active" in message


@pytest.mark.parametrize("epochs_spec", ["[0, 20]", "[2]"])
def test_warns_for_keep_mask_beyond_the_run(model, epochs_spec):
    rule = f'{{name: a, penalty: l1, strength: 0.1, layers: ["fc.weight"], epochs: {epochs_spec}, keep_mask: true}}'
    _, diagnostics, _ = make(one_rule(rule), model, epochs=10)
    (message,) = warnings_of(diagnostics)
    assert "keep_mask" in message


def test_no_warning_for_keep_mask_inside_the_run(model):
    rule = '{name: a, penalty: l1, strength: 0.1, layers: ["fc.weight"], epochs: [0, 10], keep_mask: true}'
    _, diagnostics, _ = make(one_rule(rule), model, epochs=10)
    assert warnings_of(diagnostics) == []


def test_warns_for_l2_rule_together_with_optimizer_weight_decay(model):
    text = one_rule('{name: decay, penalty: l2, strength: 0.001, layers: ["conv1.weight"], mode: penalty}')
    _, diagnostics, _ = make(text, model, weight_decay=5e-4)
    (message,) = warnings_of(diagnostics)
    assert "weight_decay" in message and "conv1.weight" in message

    _, diagnostics, _ = make(text, model, weight_decay=0.0)
    assert warnings_of(diagnostics) == []
    _, diagnostics, _ = make(
        one_rule('{name: a, penalty: l1, strength: 0.1, layers: ["conv1.weight"]}'), model, 10, 5e-4
    )
    assert warnings_of(diagnostics) == []


# --- epoch timing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "epochs, active",
    [
        (Epochs(2, 5), {2, 3, 4}),
        (Epochs(3), set(range(3, 40))),
        (Epochs(), set(range(40))),
        (Epochs(1, 10, 3), {1, 4, 7}),
        (Epochs(0, 10, 4), {0, 4, 8}),
        (Epochs(5, None, 10), {5, 15, 25, 35}),
        (Epochs(listed=(0, 2, 7)), {0, 2, 7}),
    ],
)
def test_epochs_active(epochs, active):
    assert {e for e in range(40) if epochs.active(e)} == active
    assert epochs.active_epochs(12) == sorted(e for e in active if e < 12)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("epochs: [2, 5]", Epochs(2, 5)),
        ("epochs: [3]", Epochs(3, None)),
        ("epochs: [1, 10], frequency: 3", Epochs(1, 10, 3)),
        ("frequency: 2", Epochs(0, None, 2)),
    ],
)
def test_native_epoch_spellings(spec, expected):
    rule = schedule(one_rule(f'{{name: a, penalty: l1, strength: 0.1, layers: ["fc.weight"], {spec}}}')).rules[0]
    assert rule.epochs == expected


TIMING = """\
version: 1
rules:
  - {name: early, penalty: l1, strength: 0.1, layers: [conv1.weight], epochs: [0, 2], mode: MODE}
  - {name: late, penalty: l1, strength: 0.1, layers: [conv2.weight], epochs: [3], mode: MODE}
  - {name: every2, penalty: l1, strength: 0.1, layers: [fc.weight], epochs: [1, 6], frequency: 2, mode: MODE}
  - {name: always, penalty: l1, strength: 0.1, layers: [features.0.weight], mode: MODE}
"""
EXPECTED_ACTIVE = {
    "early": {0, 1},
    "late": {3, 4, 5, 6, 7},
    "every2": {1, 3, 5},
    "always": set(range(8)),
}
PARAM_OF = {"early": "conv1.weight", "late": "conv2.weight", "every2": "fc.weight", "always": "features.0.weight"}


@pytest.mark.parametrize("mode", ["proximal", "penalty"])
def test_exactly_the_active_rules_act(model, mode):
    _, _, sched = make(TIMING.replace("MODE", mode), model, epochs=8)
    params = dict(model.named_parameters())
    for epoch in range(8):
        expected = {name for name, epochs in EXPECTED_ACTIVE.items() if epoch in epochs}
        sched.on_epoch_begin(epoch)
        assert {b.rule.name for b in sched.active} == expected
        before = {name: p.detach().clone() for name, p in params.items()}
        for p in params.values():
            p.grad = torch.zeros_like(p)
        penalty_losses = sched.before_step()
        proximal_losses = sched.after_step(lr=0.01)
        if mode == "proximal":
            assert set(proximal_losses) == expected and penalty_losses == {}
        else:
            assert set(penalty_losses) == expected and proximal_losses == {}
        for rule, name in PARAM_OF.items():
            weight_changed = not torch.equal(params[name], before[name])
            grad_changed = bool(params[name].grad.ne(0).any())
            if mode == "proximal":
                assert weight_changed == (rule in expected), (epoch, rule)
                assert not grad_changed
            else:
                assert grad_changed == (rule in expected), (epoch, rule)
                assert not weight_changed
        sched.on_epoch_end(epoch, {})


# --- penalty mode ----------------------------------------------------------------------------------

PENALTY_RULES = """\
version: 1
rules:
  - {name: l1c, penalty: l1, strength: 0.01, layers: [conv1.weight], mode: penalty}
  - {name: l2c, penalty: l2, strength: 0.05, layers: [conv2.weight], mode: penalty}
  - {name: glf, penalty: group_lasso, groups: [filters, channels], strength: 0.2, layers: [fc.weight], mode: penalty}
"""


def test_before_step_adds_exact_gradients_and_returns_values(model):
    _, _, sched = make(PENALTY_RULES, model)
    w1, w2, wf = model.conv1.weight, model.conv2.weight, model.fc.weight
    w1.grad = None
    g2 = torch.randn(w2.shape, generator=torch.Generator().manual_seed(1))
    gf = torch.randn(wf.shape, generator=torch.Generator().manual_seed(2))
    w2.grad, wf.grad = g2.clone(), gf.clone()
    before = [w.detach().clone() for w in (w1, w2, wf)]

    sched.on_epoch_begin(0)
    losses = sched.before_step()

    x1, x2, xf = (w.detach().clone().requires_grad_(True) for w in (w1, w2, wf))
    v1 = 0.01 * x1.abs().sum()
    v2 = 0.05 / 2 * (x2 * x2).sum()
    vf = 0.2 * (sum(xf[i].norm() for i in range(3)) + sum(xf[:, j].norm() for j in range(2)))
    (v1 + v2 + vf).backward()

    assert w1.grad is not None
    assert_close(w1.grad, x1.grad)
    assert_close(w2.grad - g2, x2.grad)
    assert_close(wf.grad - gf, xf.grad)
    assert set(losses) == {"l1c", "l2c", "glf"}
    assert_close(losses["l1c"], v1.detach())
    assert_close(losses["l2c"], v2.detach())
    assert_close(losses["glf"], vf.detach())
    for w, b in zip((w1, w2, wf), before, strict=True):
        assert torch.equal(w, b)


# --- proximal mode ---------------------------------------------------------------------------------


def test_after_step_applies_prox_with_lr_times_strength_and_returns_new_values(model):
    text = """\
    version: 1
    rules:
      - {name: p1, penalty: l1, strength: 0.5, layers: [conv1.weight]}
      - {name: pg, penalty: group_lasso, groups: filters, layers: {"conv2.weight": 2.0, "fc.weight": 3.0}}
    """
    _, _, sched = make(text, model)
    lr = 0.1
    w1, w2, wf = (w.detach().clone() for w in (model.conv1.weight, model.conv2.weight, model.fc.weight))
    # one fc filter is below its threshold t = 0.3, the others are not
    wf[0] = wf[0] / wf[0].norm() * 0.2
    wf[1] = wf[1] / wf[1].norm() * 0.9
    with torch.no_grad():
        model.fc.weight.copy_(wf)
    assert min(filter_norms(w2)) > 0.2  # conv2: every filter only shrinks

    sched.on_epoch_begin(0)
    assert sched.before_step() == {}
    losses = sched.after_step(lr)

    e1 = soft_threshold(w1, lr * 0.5)
    e2 = prox_filters(w2, lr * 2.0)
    ef = prox_filters(wf, lr * 3.0)
    assert_close(model.conv1.weight.detach(), e1)
    assert_close(model.conv2.weight.detach(), e2)
    assert_close(model.fc.weight.detach(), ef)
    assert (model.fc.weight[0] == 0).all() and (model.fc.weight[1] != 0).all()
    assert_close(losses["p1"], 0.5 * e1.abs().sum())
    expected_pg = 2.0 * sum(filter_norms(e2)) + 3.0 * sum(filter_norms(ef))
    assert float(losses["pg"]) == pytest.approx(expected_pg, rel=1e-5)


@pytest.mark.parametrize("mode", ["proximal", "penalty"])
def test_a_few_steps_give_exact_zeros_only_in_proximal_mode(model, mode):
    text = one_rule(
        f"{{name: g, penalty: group_lasso, groups: filters, strength: 0.5, layers: [conv1.weight], mode: {mode}}}"
    )
    _, _, sched = make(text, model)
    w = model.conv1.weight
    lr = 0.1
    t = lr * 0.5
    assert max(filter_norms(w.detach())) < 30 * t  # enough steps to bring every filter to zero
    sched.on_epoch_begin(0)
    for _ in range(30):
        w.grad = None
        sched.before_step()
        assert w.grad is not None or mode == "proximal"
        if w.grad is not None:
            with torch.no_grad():
                w.sub_(lr * w.grad)  # plain SGD on the penalty alone
        sched.after_step(lr)
    if mode == "proximal":
        assert (w == 0).all()
    else:
        assert (w != 0).all()
        assert max(filter_norms(w.detach())) <= t * (1 + 1e-4)


# --- thresholds ------------------------------------------------------------------------------------


def _threshold_weight() -> torch.Tensor:
    w = torch.zeros(4, 1, 3, 3)
    w[0] = 0.1  # norm 0.3, mean_abs 0.1, max 0.1
    w[1, 0, 1, 1] = 0.9  # norm 0.9, mean_abs 0.1, max 0.9
    w[2] = 0.3  # norm 0.9, mean_abs 0.3, max 0.3
    w[3] = -1.0  # norm 3.0, mean_abs 1.0, max 1.0
    return w


@pytest.mark.parametrize("criterion", ["norm", "mean_abs", "max"])
def test_threshold_zeroes_groups_whose_statistic_is_below(model, criterion):
    text = one_rule(
        "{name: th, penalty: group_lasso, groups: filters, strength: 0.0, layers: [conv1.weight], "
        f"mode: penalty, threshold: 0.5, threshold_criterion: {criterion}}}"
    )
    _, _, sched = make(text, model)
    w = _threshold_weight()
    with torch.no_grad():
        model.conv1.weight.copy_(w)
    statistic = {
        "norm": lambda g: float(g.norm()),
        "mean_abs": lambda g: float(g.abs().mean()),
        "max": lambda g: float(g.abs().max()),
    }[criterion]
    expected = w.clone()
    for f in range(4):
        if statistic(w[f]) < 0.5:
            expected[f] = 0.0
    sched.on_epoch_begin(0)
    sched.after_step(0.1)
    assert torch.equal(model.conv1.weight.detach(), expected)


def test_threshold_criteria_zero_different_filters(model):
    zeroed = {}
    for criterion in ("norm", "mean_abs", "max"):
        text = one_rule(
            "{name: th, penalty: group_lasso, groups: filters, strength: 0.0, layers: [conv1.weight], "
            f"mode: penalty, threshold: 0.5, threshold_criterion: {criterion}}}"
        )
        _, _, sched = make(text, model)
        with torch.no_grad():
            model.conv1.weight.copy_(_threshold_weight())
        sched.on_epoch_begin(0)
        sched.after_step(0.1)
        zeroed[criterion] = {f for f in range(4) if (model.conv1.weight[f] == 0).all()}
    assert zeroed == {"norm": {0}, "mean_abs": {0, 1, 2}, "max": {0, 2}}


# --- keep_mask -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "epochs_spec, run_epochs, fires_after",
    [
        ("epochs: [0, 10], frequency: 4", 12, 8),  # active 0, 4, 8: the range's last epoch 9 is skipped
        ("epochs: [0, 3]", 5, 2),
        ("epochs: [2, 10], frequency: 3", 12, 8),  # active 2, 5, 8
        ("epochs: [1, 10], frequency: 4", 12, 9),  # active 1, 5, 9
    ],
)
def test_keep_mask_fires_at_the_end_of_the_last_active_epoch(model, epochs_spec, run_epochs, fires_after):
    text = one_rule(
        "{name: km, penalty: group_lasso, groups: filters, strength: 1.0e-6, layers: [conv1.weight], "
        f"keep_mask: true, {epochs_spec}}}"
    )
    _, diagnostics, sched = make(text, model, epochs=run_epochs)
    assert warnings_of(diagnostics) == []
    w = model.conv1.weight
    with torch.no_grad():
        w[1] = 0.0
    for epoch in range(run_epochs):
        sched.on_epoch_begin(epoch)
        sched.after_step(0.1)
        sched.on_epoch_end(epoch, {})
        assert ("conv1.weight" in sched.masks) == (epoch >= fires_after), epoch


def _fire_mask(model, run_epochs=12):
    """A filters rule over epochs [0, 10) every 4 with keep_mask; filter 1 zero, one weight of filter 2 zero."""
    text = one_rule(
        "{name: km, penalty: group_lasso, groups: filters, strength: 1.0e-6, layers: [conv1.weight], "
        "keep_mask: true, epochs: [0, 10], frequency: 4}"
    )
    bound, _, sched = make(text, model, epochs=run_epochs)
    w = model.conv1.weight
    with torch.no_grad():
        w[1] = 0.0
        w[2, 0, 0, 0] = 0.0
    for epoch in range(9):
        sched.on_epoch_begin(epoch)
        sched.after_step(0.1)
        sched.on_epoch_end(epoch, {})
    return bound, sched


def test_kept_mask_stops_momentum_from_reviving_zero_structures(model):
    _, sched = _fire_mask(model)
    w = model.conv1.weight
    expected_mask = torch.ones_like(w)
    for f in range(4):
        if (w[f] == 0).all():
            expected_mask[f] = 0.0
    assert torch.equal(sched.masks["conv1.weight"], expected_mask)
    assert expected_mask[1].eq(0).all() and expected_mask[2].eq(1).all()

    for epoch in (9, 10, 11):  # the rule is no longer active; the mask still holds
        sched.on_epoch_begin(epoch)
        assert sched.active == []
        with torch.no_grad():
            w.add_(0.5)  # what a momentum step would do
        expected = w.detach().clone()
        expected[1] = 0.0
        sched.after_step(0.1)
        assert torch.equal(w.detach(), expected)
        assert (w[1] == 0).all()
        assert w[2, 0, 0, 0] != 0  # a single zero weight is not a zero filter: it may come back
        sched.on_epoch_end(epoch, {})


def _momentum_run(model, optimizer_cls, clear: bool, **kwargs):
    """Filter 0 of conv1 gets a steady gradient that builds momentum, then a proximal step
    (threshold t = lr * strength) zeroes it; after that its gradient is 0. Returns conv1's weight
    after one more optimizer step and the optimizer."""
    text = one_rule("{name: g, penalty: group_lasso, groups: filters, strength: 1.0, layers: [conv1.weight]}")
    bound, _ = bind(schedule(text), model, epochs=10)
    w = model.conv1.weight
    optimizer = optimizer_cls([w], lr=0.1, **kwargs)
    sched = CompressionScheduler(bound, optimizer if clear else None)
    with torch.no_grad():
        w.copy_(torch.ones_like(w))  # filter norms 3: the first prox (t = 0.1) only shrinks
    sched.on_epoch_begin(0)
    for _ in range(3):
        w.grad = torch.ones_like(w)  # pushes every filter down: momentum builds up
        optimizer.step()
        sched.after_step(0.1)
    w.grad = torch.zeros_like(w)
    optimizer.step()
    with torch.no_grad():
        w[0] = 0.05  # as if this step had left filter 0 at norm 0.15: the prox (t = 0.2) zeroes it
    sched.after_step(0.2)
    assert (w[0] == 0).all()
    w.grad = torch.zeros_like(w)  # no gradient at all: only momentum could move the filter
    optimizer.step()
    return w.detach().clone(), optimizer


@pytest.mark.parametrize(
    "optimizer_cls, kwargs, key",
    [(torch.optim.SGD, {"momentum": 0.9}, "momentum_buffer"), (torch.optim.Adam, {}, "exp_avg")],
)
def test_a_group_zeroed_by_the_proximal_step_loses_its_momentum(model, optimizer_cls, kwargs, key):
    w, optimizer = _momentum_run(model, optimizer_cls, clear=True, **kwargs)
    assert (w[0] == 0).all(), "no gradient and no momentum: the zeroed filter stays exactly zero"
    state = optimizer.state[model.conv1.weight]
    assert (state[key][0] == 0).all()
    assert (state[key][1:] != 0).all(), "the momentum of filters still alive is untouched"
    if "exp_avg_sq" in state:
        assert (state["exp_avg_sq"][0] != 0).all(), "second moments only scale steps: kept"

    torch.manual_seed(0)
    revived, _ = _momentum_run(Tiny(), optimizer_cls, clear=False, **kwargs)
    assert (revived[0] != 0).all(), "without clearing, momentum pushes the zeroed filter back out"


def test_threshold_clears_momentum_too(model):
    text = one_rule(
        "{name: th, penalty: group_lasso, groups: filters, strength: 0.0, layers: [conv1.weight], "
        "mode: penalty, threshold: 0.5}"
    )
    bound, _ = bind(schedule(text), model, epochs=10)
    w = model.conv1.weight
    optimizer = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    sched = CompressionScheduler(bound, optimizer)
    with torch.no_grad():
        w.copy_(_threshold_weight())  # filter 0 has norm 0.3 < 0.5
    w.grad = torch.ones_like(w)
    optimizer.step()
    sched.on_epoch_begin(0)
    sched.after_step(0.1)
    buffer = optimizer.state[w]["momentum_buffer"]
    assert (w[0] == 0).all() and (w[1:] != 0).any()
    assert (buffer[0] == 0).all() and (buffer[1:] != 0).all()


def test_state_dict_round_trips_masks(model):
    bound, sched = _fire_mask(model)
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)

    torch.manual_seed(1)
    other = Tiny()
    other_bound, _ = bind(
        schedule(
            one_rule(
                "{name: km, penalty: group_lasso, groups: filters, strength: 1.0e-6, layers: [conv1.weight], "
                "keep_mask: true, epochs: [0, 10], frequency: 4}"
            )
        ),
        other,
        epochs=12,
    )
    restored = CompressionScheduler(other_bound)
    restored.load_state_dict(state)
    assert set(restored.masks) == set(sched.masks)
    assert torch.equal(restored.masks["conv1.weight"], sched.masks["conv1.weight"])

    assert (other.conv1.weight[1] != 0).all()
    restored.on_epoch_begin(10)
    restored.after_step(0.1)
    assert (other.conv1.weight[1] == 0).all()
    assert (other.conv1.weight[0] != 0).all()


FIT_CASES = [
    ("l1", "penalty", None), ("l1", "proximal", None), ("l2", "penalty", None), ("l2", "proximal", None),
    ("group_lasso", "penalty", "filters"), ("group_lasso", "proximal", "channels"),
    ("group_variance", "penalty", "channels"),
]  # fmt: skip


def test_the_fit_cases_cover_every_registered_penalty():
    from compress.regularizers import PENALTIES

    assert {penalty for penalty, _, _ in FIT_CASES} == set(PENALTIES.names())


@pytest.mark.parametrize(("penalty", "mode", "groups"), FIT_CASES)
def test_every_penalty_and_mode_trains_two_batches_through_fit(penalty, mode, groups):
    """The loop, the hooks and each penalty together: two steps change the weights, stay finite, and
    the rule's value is reported."""
    from compress.datasets.loaders import TensorLoader
    from compress.training import Loop, fit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    group_line = f"groups: {groups}, " if groups else ""
    rule = f"{{name: r, penalty: {penalty}, {group_line}strength: 0.01, layers: ['2.weight'], mode: {mode}}}"
    text = f"rules:\n  - {rule}\n"
    schedule = parse_schedule(text, "s.yaml")
    rules, _ = bind(schedule, model, epochs=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = CompressionScheduler(rules, optimizer, schedule)
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8) % 3
    loader = TensorLoader(x, y, 4, shuffle=True)
    before = model[2].weight.detach().clone()
    (result,) = fit(model, loader, loader, optimizer, scheduler, loop=Loop(1))
    assert not torch.equal(before, model[2].weight) and torch.isfinite(model[2].weight).all()
    assert set(result.rule_losses) == {"r"} and result.rule_losses["r"] > 0
