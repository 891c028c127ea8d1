"""What a Distiller-format schedule means when it runs: thresholds at Distiller's boundary and without
touching momentum, keep_mask on Distiller's clock, its channel norm and group-variance penalty,
every thinning extension at the first mini-batch of its epochs, and `compress check` as a Distiller
user meets it. Expected values are written out here, never taken from the code under test."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compress import groups as G
from compress import regularizers as R
from compress.schedule import parse_schedule
from compress.scheduler import CompressionScheduler, bind
from compress.thinning import plan_thinning
from tests.helpers import assert_close, invoke, line_no, normalized, yaml_text

SRC = "d.yaml"


class TwoLayers(nn.Module):
    """conv (4 filters) -> conv (3 filters), small enough to reason about every weight."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 1, bias=False)
        self.conv2 = nn.Conv2d(4, 3, 1, bias=False)
        self.fc = nn.Linear(3, 2, bias=False)

    def forward(self, x):
        return self.fc(self.conv2(torch.relu(self.conv1(x))).mean(dim=(2, 3)))


def scheduler_for(text: str, model: nn.Module, optimizer=None, epochs: int = 10) -> CompressionScheduler:
    schedule = parse_schedule(text, SRC)
    rules, _ = bind(schedule, model, epochs=epochs)
    return CompressionScheduler(rules, optimizer, schedule)


def one(cls: str, regims: str, extra: str = "", policy: str = "epochs: [0]") -> str:
    return (f"regularizers:\n  r:\n    class: {cls}\n    reg_regims:\n"
            + "".join(f"      {line}\n" for line in regims.strip().splitlines())
            + "".join(f"    {line}\n" for line in extra.strip().splitlines() if line)
            + f"policies:\n  - regularizer: {{instance_name: r}}\n    {policy}\n")  # fmt: skip


# ----------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize("criteria", ["Mean_Abs", "Mean_L1", "L1", "Mean_L2", "L2", "Max"])
def test_every_l1_threshold_criteria_zeroes_weights_at_or_below_the_strength(criteria):
    model = TwoLayers()
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[0.1, 0.3, -0.2], [0.05, -0.3, 0.31]]))
    scheduler = scheduler_for(one("L1Regularizer", "fc.weight: 0.3", f"threshold_criteria: {criteria}"), model)
    scheduler.on_epoch_begin(0)
    scheduler.after_step(0.1)
    # |w| > 0.3 stays: 0.31 only (0.3 itself is at the threshold: Distiller's torch.gt)
    assert model.fc.weight.tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, pytest.approx(0.31)]]


@pytest.mark.parametrize(("criteria", "kept"), [("Mean_Abs", [0]), ("Max", [0, 2, 3])])
def test_group_threshold_keeps_only_what_is_above_the_strength(criteria, kept):
    model = TwoLayers()
    with torch.no_grad():  # per filter of conv1 (2 weights): mean |w| 0.6, 0.2, 0.5, 0.3; max |w| 0.6, 0.2, 0.9, 0.6
        model.conv1.weight.copy_(torch.tensor([[0.6, 0.6], [0.2, 0.2], [0.1, 0.9], [0.0, 0.6]]).view(4, 2, 1, 1))
    text = one("GroupLassoRegularizer", "conv1.weight: [0.5, Filters]", f"threshold_criteria: {criteria}")
    scheduler = scheduler_for(text, model)
    scheduler.on_epoch_begin(0)
    scheduler.after_step(0.1)
    # a statistic equal to the strength (filter 2's mean, 0.5) is zeroed: Distiller keeps only what is above
    alive = (model.conv1.weight.flatten(1).abs().amax(1) > 0).nonzero().flatten().tolist()
    assert alive == kept


def test_distillers_mean_abs_of_rows_divides_by_the_number_of_rows():
    """norms.sub_matrix_norm divides a row's L1 norm by param.size(0): 3 rows of 2 weights here."""
    w = torch.tensor([[0.3, 0.3], [0.9, 0.0], [0.1, 0.1]])
    assert G.group_statistic(w, "rows", "distiller_mean_abs").flatten().tolist() == pytest.approx([0.2, 0.3, 2 / 30])
    assert G.group_statistic(w, "rows", "mean_abs").flatten().tolist() == pytest.approx([0.3, 0.45, 0.1])
    assert G.group_statistic(w, "cols", "distiller_mean_abs").flatten().tolist() == pytest.approx([0.65, 0.2])


def test_distiller_thresholds_leave_momentum_alone_and_clear_momentum_opts_in():
    for extra, cleared in (("threshold_criteria: Max", False), ("threshold_criteria: Max\nclear_momentum: true", True)):
        model = TwoLayers()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        with torch.no_grad():
            model.conv1.weight.copy_(torch.tensor([[0.5, 0.5], [0.01, 0.0], [0.9, 0.9], [0.8, 0.1]]).view(4, 2, 1, 1))
        for p in model.parameters():
            optimizer.state[p]["momentum_buffer"] = torch.ones_like(p)
        scheduler = scheduler_for(one("GroupLassoRegularizer", "conv1.weight: [0.1, 3D]", extra), model, optimizer)
        scheduler.on_epoch_begin(0)
        scheduler.after_step(0.1)
        assert model.conv1.weight[1].abs().sum() == 0
        momentum = optimizer.state[model.conv1.weight]["momentum_buffer"]
        assert bool(momentum[1].abs().sum() == 0) is cleared
        assert bool(momentum[0].abs().sum() > 0)


def test_kept_masks_apply_before_thresholds_as_in_distiller():
    """A kept filter mask zeroes a filter first; a channel threshold then sees the masked weights."""
    model = TwoLayers()
    text = yaml_text(
        """
        regularizers:
          f: {class: GroupLassoRegularizer, reg_regims: {conv2.weight: [0.0, 3D]}, threshold_criteria: Max}
          c: {class: GroupLassoRegularizer, reg_regims: {conv2.weight: [0.25, Channels]}, threshold_criteria: Max}
        policies:
          - regularizer: {instance_name: f, args: {keep_mask: true}}
            epochs: [0]
          - regularizer: {instance_name: c}
            epochs: [1]
        """
    )
    scheduler = scheduler_for(text, model)
    with torch.no_grad():
        model.conv2.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 0.2], [0.0] * 4, [0.1, 0.1, 0.1, 0.3]]).view(3, 4, 1, 1))
    scheduler.on_epoch_begin(0)
    scheduler.after_step(0.1)
    scheduler.on_epoch_end(0, None)  # keeps filter 1 (zero)
    with torch.no_grad():
        model.conv2.weight[1] = 0.5  # a step moved the kept filter
    scheduler.on_epoch_begin(1)
    scheduler.after_step(0.1)
    # masked first: filter 1 is zero again, so channel 3's largest |w| is 0.3 (> 0.25: stays) not 0.5
    assert model.conv2.weight[1].abs().sum() == 0
    assert model.conv2.weight[:, 3].flatten().tolist() == pytest.approx([0.2, 0.0, 0.3])
    assert model.conv2.weight[:, 0].abs().sum() > 0


# ----------------------------------------------------------------------------- keep_mask on Distiller's clock


@pytest.mark.parametrize(
    ("policy", "at", "warning"),
    [
        ("starting_epoch: 0\n    ending_epoch: 6\n    frequency: 1", 5, None),
        ("starting_epoch: 0\n    ending_epoch: 6\n    frequency: 2", None, "keep_mask never fires"),
        ("epochs: [4, 1, 2]", 2, None),  # Distiller's ending_epoch: the last epoch as written, + 1
    ],
)
def test_keep_mask_fires_in_ending_epoch_minus_one_if_the_policy_runs_then(policy, at, warning):
    text = one("GroupLassoRegularizer", "conv1.weight: [0.1, 3D]", "threshold_criteria: Max", policy).replace(
        "{instance_name: r}", "{instance_name: r, args: {keep_mask: true}}"
    )
    schedule = parse_schedule(text, SRC)
    assert schedule.rules[0].keep_mask_at == at
    assert [w.message.split(":")[0] for w in schedule.warnings] == ([warning] if warning else [])


def test_keep_mask_without_a_threshold_does_nothing_as_in_distiller():
    text = one("GroupLassoRegularizer", "conv1.weight: [0.1, 3D]").replace(
        "{instance_name: r}", "{instance_name: r, args: {keep_mask: true}}"
    )
    schedule = parse_schedule(text, SRC)
    assert schedule.rules[0].keep_mask_at is None
    (w,) = schedule.warnings
    assert w.message.startswith("keep_mask has no effect without threshold_criteria")
    assert w.field == "policies[0].regularizer.args.keep_mask"
    proximal = parse_schedule(text.replace("    reg_regims:", "    mode: proximal\n    reg_regims:"), SRC)
    assert proximal.rules[0].keep_mask_at == 0 and proximal.warnings == ()


# ----------------------------------------------------------------------------- penalties


def distiller_channel_l2(w: torch.Tensor) -> torch.Tensor:
    """sqrt(sum over filters and kernel of w^2 + 1e-8), one per input channel, by a plain loop."""
    return torch.stack([((w[:, c] ** 2).sum() + 1e-8).sqrt() for c in range(w.shape[1])])


def test_distiller_channels_group_lasso_adds_its_epsilon():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 2, 2)
    w[:, 1] = 0  # a zero channel: its norm is sqrt(1e-8), not 0
    rule = parse_schedule(one("GroupLassoRegularizer", "conv2.weight: [0.5, Channels]"), SRC).rules[0]
    assert rule.channel_epsilon == 1e-8
    gl = R.get("group_lasso")
    assert float(gl.value(w, "channels", 0.5, eps=1e-8)) == pytest.approx(0.5 * float(distiller_channel_l2(w).sum()))
    leaf = w.clone().requires_grad_(True)
    (0.5 * distiller_channel_l2(leaf).sum()).backward()
    gradient, _ = gl.gradient(w, "channels", 0.5, eps=1e-8)
    assert_close(gradient, leaf.grad)


def test_group_variance_is_the_inverse_variance_of_the_channel_norms():
    torch.manual_seed(1)
    w = torch.randn(5, 4, 3, 3)
    norms = distiller_channel_l2(w)
    mean = norms.mean()
    variance = ((norms - mean) ** 2).sum() / (len(norms) - 1)  # unbiased, as torch's var
    gv = R.get("group_variance")
    assert float(gv.value(w, "channels", 0.3, eps=1e-8)) == pytest.approx(0.3 / float(variance), rel=1e-5)
    leaf = w.clone().requires_grad_(True)
    (0.3 / ((distiller_channel_l2(leaf) - distiller_channel_l2(leaf).mean()) ** 2).sum().mul(1 / 3)).backward()
    gradient, value = gv.gradient(w, "channels", 0.3, value=True, eps=1e-8)
    assert_close(gradient, leaf.grad)


def test_group_variance_in_both_formats_and_its_limits():
    rule = parse_schedule(one("GroupVarianceRegularizer", "conv2.weight: [1.0e-4, Channels]"), SRC).rules[0]
    assert (rule.penalty, rule.mode, rule.targets[0].groups, rule.channel_epsilon) == (
        "group_variance", "penalty", ("channels",), 1e-8
    )  # fmt: skip
    bad = [
        (one("GroupVarianceRegularizer", "conv2.weight: [1.0e-4, Filters]"), "defined for groups channels only"),
        (one("GroupVarianceRegularizer", "conv2.weight: [1.0e-4, Channels]", "mode: proximal"), "no proximal"),
        (
            one("GroupVarianceRegularizer", "conv2.weight: [1.0e-4, Channels]", "threshold_criteria: Max"),
            "takes no threshold_criteria",
        ),  # fmt: skip
        (
            "rules:\n  - {name: v, penalty: group_variance, groups: channels, strength: 1, layers: [c]}\n",
            "no proximal operator; add mode: penalty",
        ),  # fmt: skip
    ]
    for text, message in bad:
        with pytest.raises(Exception, match=message):
            parse_schedule(text, SRC)
    native = "rules:\n  - {name: v, penalty: group_variance, groups: channels, strength: 1, layers: [c], mode: penalty}"
    assert parse_schedule(native, SRC).rules[0].penalty == "group_variance"


@pytest.mark.parametrize(
    ("spelling", "groups"), [("Cols+Rows", ("rows", "cols")), ("4D+Channels", ("channels", "layer"))]
)
def test_the_other_orders_of_distillers_combined_groups(spelling, groups):
    regim = "fc.weight" if "Rows" in spelling else "conv2.weight"
    (rule,) = parse_schedule(one("GroupLassoRegularizer", f"{regim}: [0.1, {spelling}]"), SRC).rules
    assert rule.targets[0].groups == groups


# ----------------------------------------------------------------------------- thinning extensions


@pytest.mark.parametrize(
    ("cls", "func", "timing", "structures"),
    [
        ("StructureRemover", "remove_filters", "begin", "filters"),
        ("FilterRemover", "remove_filters", "begin", "filters"),
        ("ChannelRemover", "remove_channels", "begin", "channels"),
        ("StructureRemover", "contract_model", "begin", "both"),
        ("ResnetCifarFilterRemover", "resnet_cifar_remove_filters", "begin", "filters"),
        ("ResnetCifarChannelRemover", "resnet_cifar_remove_channels", "end", "channels"),
    ],
)
def test_every_thinning_extension_is_read(cls, func, timing, structures):
    text = yaml_text(
        f"""
        extensions:
          thinner: {{class: {cls}, thinning_func_str: {func}, arch: resnet20_cifar, dataset: cifar10}}
        policies:
          - extension: {{instance_name: thinner}}
            epochs: [3, 6]
        """
    )
    (step,) = parse_schedule(text, SRC).thinning
    assert (step.timing, step.structures, step.epochs.listed) == (timing, structures, (3, 6))


def test_several_thinning_policies_and_their_errors():
    text = yaml_text(
        """
        extensions:
          filters: {class: FilterRemover, thinning_func_str: remove_filters}
          channels: {class: ChannelRemover, thinning_func_str: remove_channels}
          broken: {class: StructureRemover, thinning_func_str: remove_layers}
          bare: {class: StructureRemover}
        policies:
          - extension: {instance_name: filters}
            epochs: [2]
          - extension: {instance_name: channels}
            epochs: [4, 30]
        """
    )
    with pytest.raises(Exception) as info:
        parse_schedule(text, SRC)
    messages = {d.field: d.message for d in info.value.diagnostics}
    assert "unknown value 'remove_layers'" in messages["extensions.broken.thinning_func_str"]
    assert messages["extensions.bare.thinning_func_str"] == "required key is missing"
    broken = "  broken: {class: StructureRemover, thinning_func_str: remove_layers}\n"
    good = parse_schedule(text.replace(broken, "").replace("  bare: {class: StructureRemover}\n", ""), SRC)
    assert [(s.structures, s.epochs.listed) for s in good.thinning] == [("filters", (2,)), ("channels", (4, 30))]


def test_filters_only_and_channels_only_thinning():
    """conv2 has a zero filter (its output channel is a constant 0) and a zero input channel."""
    model = TwoLayers()
    with torch.no_grad():
        model.conv2.weight[1] = 0  # filter 1 of conv2: fc's input 1 reads a zero
        model.conv2.weight[:, 2] = 0  # input channel 2 of conv2: conv1's filter 2 feeds nothing
    x = torch.randn(2, 2, 3, 3)
    both = plan_thinning(model, x, "both").spec
    filters = plan_thinning(model, x, "filters").spec
    channels = plan_thinning(model, x, "channels").spec
    assert both == {"conv1": {"out_channels": 3}, "conv2": {"in_channels": 3, "out_channels": 2},
                    "fc": {"in_features": 2}}  # fmt: skip
    assert filters == {"conv2": {"out_channels": 2}, "fc": {"in_features": 2}}
    assert channels == {"conv1": {"out_channels": 3}, "conv2": {"in_channels": 3}}


# ----------------------------------------------------------------------------- compress check


def test_check_names_the_model_it_checked_against_and_every_thinning_step(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml_text(
            """
            extensions:
              thinner: {class: FilterRemover, thinning_func_str: remove_filters, arch: lenet5, dataset: mnist}
            lr_schedulers:
              lr: {class: StepLR, step_size: 3, gamma: 0.1}
            policies:
              - extension: {instance_name: thinner}
                epochs: [2, 12]
              - lr_scheduler: {instance_name: lr}
                starting_epoch: 4
                ending_epoch: 10
                frequency: 1
            """
        )
    )
    result = invoke("check", "--schedule", str(path), "--epochs", "10")
    assert result.exit_code == 0, result.output
    lines = normalized(result.stdout)
    assert lines[0] == f"schedule {path}: model lenet5 (the default; --arch names another), dataset mnist5k, 10 epochs"
    assert "thin zero filters at the start of epochs 2, 12: 2" in lines
    assert "learning rate 0.01 (epochs 0-4), 0.001 (5), 0.0001 (6-8), 1e-05 (9)" in lines
    assert f"{path}:6: extensions.thinner: warning: thins in epoch 12, outside this run of 10 epochs (0-9): it " \
           "never fires there" in result.stderr  # fmt: skip


def test_a_schedule_for_another_model_is_said_once(tmp_path, repo):
    result = invoke("check", "--schedule", str(repo / "schedules/resnet20-cifar10-distiller.yaml"), "--arch", "mlp",
                    "--dataset", "mnist5k")  # fmt: skip
    assert result.exit_code == 2
    errors = result.stderr.splitlines()
    assert (
        "18 of the 18 parameter names match nothing in model mlp: is the schedule written for another model?"
        in (errors[0])
    )
    assert len(errors) == 5 and errors[-1].endswith("... and 15 more names that match nothing")


def test_every_mistake_at_once_sorted_with_a_missing_config_and_a_broken_rules_names(tmp_path):
    path = tmp_path / "s.yaml"
    text = yaml_text(
        """
        version: 1
        config: missing.yaml
        rules:
          - name: bad
            penalty: group_lasso
            groups: filtres
            strength: 0.1
            layers: [conv9.weight]
          - name: good
            penalty: l1
            strength: 0.1
            layers: [fc9.weight]
        """
    )
    path.write_text(text)
    result = invoke("check", "--schedule", str(path))
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = result.stderr.splitlines()
    assert errors[0] == f"{path}:2: config: file not found: {tmp_path / 'missing.yaml'}"
    assert errors[1].startswith(f"{path}:{line_no(text, 'filtres')}: rules[bad].groups: unknown group 'filtres'")
    assert errors[2].startswith(f"{path}:{line_no(text, 'conv9')}: rules[bad].layers: 'conv9.weight' matches no")
    assert errors[3].startswith(f"{path}:{line_no(text, 'fc9')}: rules[good].layers: 'fc9.weight' matches no")
    assert len(errors) == 4


def test_a_regularizer_with_a_class_typo_still_gets_its_names_checked(lenet5):
    text = one("L1Regularizr", "conv1.weight: 0.1\nconv7.weight: 0.1")
    with pytest.raises(Exception) as info:
        bind(parse_schedule(text, SRC, defer_errors=True), lenet5, epochs=10)
    fields = sorted(d.field for d in info.value.diagnostics)
    assert fields == ["regularizers.r.class", "regularizers.r.reg_regims.conv7.weight"]
    pruner = "pruners:\n  p: {class: BaiduRNNPruner, weights: [conv7.weight]}\n"
    with pytest.raises(Exception) as info:
        bind(parse_schedule(pruner, SRC, defer_errors=True), lenet5, epochs=10)
    assert [d.field for d in info.value.diagnostics] == ["pruners.p.class"], "no follow-on errors"
