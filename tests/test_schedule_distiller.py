"""Distiller's schedule format, read unchanged: regularizers, lr_schedulers, policies, their errors,
equality with the native twin, binding to a model and ``compress check`` on Distiller files.

Expected values are written out by hand; line numbers are found by searching the YAML text for a
snippet that occurs on exactly one line, so they never come from the code under test.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from compress.errors import CompressError, Diagnostic
from compress.lr import simulate
from compress.schedule import Epochs, LRSchedulerSpec, Rule, Schedule, Target, load_schedule, parse_schedule
from compress.scheduler import bind
from tests.helpers import invoke, line_no, located_bind_errors, located_parse_errors, normalized, only, yaml_text

SRC = "distiller.yaml"
HERE = Path(__file__).parent / "schedules"
DISTILLER_GROUPS = "2D, 3D, 4D, Filters, Channels, Rows, Cols, Rows+Cols, Cols+Rows, Channels+4D, 4D+Channels"
PENALTY = {"mode": "penalty", "clear_momentum": False}  # Distiller's numerics, the default for its files


# ----------------------------------------------------------------------------- helpers


def errors_of(text: str, match: str) -> list[Diagnostic]:
    return located_parse_errors(text, match, SRC)


def one_regularizer(regims: str, cls: str = "GroupLassoRegularizer", extra: str = "", policy: str = "") -> str:
    """A Distiller schedule with one regularizer ``r`` (``regims``: the reg_regims lines) used once."""
    policy = policy or "    starting_epoch: 0\n    ending_epoch: 10\n    frequency: 1\n"
    return (
        "version: 1\n"
        "regularizers:\n"
        "  r:\n"
        f"    class: {cls}\n"
        "    reg_regims:\n"
        + "".join(f"      {line}\n" for line in regims.strip().splitlines())
        + "".join(f"    {line}\n" for line in extra.strip().splitlines())
        + "policies:\n"
        "  - regularizer:\n"
        "      instance_name: r\n" + policy
    )


def bind_errors(text: str, model, epochs: int = 10) -> list[Diagnostic]:
    return located_bind_errors(text, model, SRC, epochs)


# ----------------------------------------------------------------------------- the example files


def test_lenet5_filters_file():
    schedule = load_schedule(HERE / "distiller_lenet5_filters.yaml")
    filters = ("filters",)
    assert schedule == Schedule(
        rules=(
            Rule(
                name="filters_reg",
                penalty="group_lasso",
                targets=(
                    Target("conv1.weight", 0.005, filters, threshold=0.005),
                    Target("conv2.weight", 0.005, filters, threshold=0.005),
                ),
                epochs=Epochs(start=0, end=7, frequency=2),
                mode="penalty",
                threshold_criterion="mean_abs",
                keep_mask=True,
                keep_mask_at=6,  # ending_epoch - 1, an active epoch
                clear_momentum=False,
            ),
        ),
        lr_schedulers=(
            LRSchedulerSpec("StepLR", (("step_size", 10), ("gamma", 0.1)), Epochs(0, 30, 1), clock="absolute"),
        ),
    )
    assert schedule.warnings == ()
    text = schedule.text
    rule = schedule.rules[0]
    assert rule.line == line_no(text, "- regularizer:")
    assert [t.line for t in rule.targets] == [line_no(text, "conv1.weight:"), line_no(text, "conv2.weight:")]
    assert schedule.lr_schedulers[0].line == line_no(text, "class: StepLR")
    assert rule.epochs.active_epochs(10) == [0, 2, 4, 6]


def test_native_twin_loads_to_the_same_rules_and_rates():
    distiller = load_schedule(HERE / "distiller_lenet5_filters.yaml")
    native = load_schedule(HERE / "native_lenet5_filters.yaml")
    assert native.rules == distiller.rules
    ((ours,), (theirs,)) = native.lr_schedulers, distiller.lr_schedulers
    assert (ours.clock, theirs.clock) == ("own", "absolute")
    assert replace(ours, clock="absolute") == theirs
    assert simulate(native.lr_schedulers, 0.1, 30) == simulate(distiller.lr_schedulers, 0.1, 30)
    assert native.source != distiller.source and native.text != distiller.text  # excluded from ==


def test_mlp_l1_file_with_dataparallel_prefixes(mlp):
    schedule = load_schedule(HERE / "distiller_mlp_l1.yaml")
    elements = ("elements",)
    assert schedule == Schedule(
        rules=(
            Rule(
                name="fc_l1",
                penalty="l1",
                targets=(
                    Target("module.fc1.weight", 1e-4, elements),
                    Target("module.fc2.weight", 2e-4, elements),
                    Target("module.fc3.weight", 5e-4, elements),
                ),
                epochs=Epochs(listed=(0, 1, 2, 3, 5, 8)),
                mode="penalty",
                threshold_criterion="norm",
                keep_mask=False,
                clear_momentum=False,
            ),
        ),
        lr_schedulers=(
            LRSchedulerSpec("ExponentialLR", (("gamma", 0.95),), Epochs(listed=(2, 4, 6, 8)), clock="absolute"),
        ),
    )
    (bound,), warnings = bind(schedule, mlp, epochs=10)
    assert [(t.param_name, tuple(t.param.shape), t.strength) for t in bound.targets] == [
        ("fc1.weight", (300, 784), 1e-4),
        ("fc2.weight", (100, 300), 2e-4),
        ("fc3.weight", (10, 100), 5e-4),
    ]
    assert bound.rule.keep_mask_at is None
    assert warnings == []


def test_lenet5_rows_cols_file(lenet5):
    schedule = load_schedule(HERE / "distiller_lenet5_rowscols.yaml")
    kernels = Target("conv2.weight", 0.0005, ("kernels",), threshold=0.0005)
    distiller = {"mode": "penalty", "clear_momentum": False}
    assert schedule.rules == (
        Rule(
            "fc1_rows_cols",
            "group_lasso",
            (Target("fc1.weight", 0.002, ("rows", "cols"), threshold=0.002),),
            Epochs(0, 10, 1),
            threshold_criterion="max",
            **distiller,
        ),
        Rule(
            "conv2_channels",
            "group_lasso",
            (Target("conv2.weight", 0.001, ("channels", "layer"), threshold=0.001),),
            Epochs(listed=(1, 3, 5)),
            threshold_criterion="mean_abs",
            keep_mask=True,
            keep_mask_at=5,  # the last listed epoch
            channel_epsilon=1e-8,  # Distiller's channel norm: sqrt(sum w^2 + 1e-8)
            **distiller,
        ),
        Rule("conv2_kernels", "group_lasso", (kernels,), Epochs(0, 3, 1), threshold_criterion="max", **distiller),
        Rule(
            "conv2_kernels#2",
            "group_lasso",
            (kernels,),
            Epochs(6, 9, 2),
            threshold_criterion="max",
            keep_mask=True,
            keep_mask_at=8,
            **distiller,
        ),  # fmt: skip
    )
    assert schedule.lr_schedulers == (
        LRSchedulerSpec("MultiStepLR", (("milestones", [4, 8]), ("gamma", 0.5)), Epochs(0, 10, 1), clock="absolute"),
    )
    rules, warnings = bind(schedule, lenet5, epochs=10)
    assert [b.rule.name for b in rules] == ["fc1_rows_cols", "conv2_channels", "conv2_kernels", "conv2_kernels#2"]
    assert warnings == []


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize(
    ("group", "canonical"),
    [
        ("2D", ("kernels",)),
        ("3D", ("filters",)),
        ("'3D'", ("filters",)),
        ("4D", ("layer",)),
        ("Filters", ("filters",)),
        ("Channels", ("channels",)),
        ("Rows", ("rows",)),
        ("Cols", ("cols",)),
        ("Rows+Cols", ("rows", "cols")),
        ("Channels+4D", ("channels", "layer")),
    ],
)
def test_every_distiller_group_name(group, canonical):
    schedule = parse_schedule(one_regularizer(f"conv2.weight: [0.25, {group}]"), SRC)
    (rule,) = schedule.rules
    assert rule.penalty == "group_lasso"
    assert rule.targets == (Target("conv2.weight", 0.25, canonical),)


@pytest.mark.parametrize(("criteria", "criterion"), [("Mean_Abs", "distiller_mean_abs"), ("Max", "max")])
def test_threshold_criteria_use_each_strength_as_the_threshold(criteria, criterion):
    """With rows or columns, Mean_Abs is Distiller's own (a row's L1 norm over the number of rows)."""
    text = one_regularizer(
        "conv1.weight: [0.01, 3D]\nconv2.weight: [0.02, Channels]\nfc1.weight: [3.0e-3, Rows+Cols]",
        extra=f"threshold_criteria: {criteria}",
    )
    (rule,) = parse_schedule(text, SRC).rules
    assert rule.threshold_criterion == criterion
    assert rule.targets == (
        Target("conv1.weight", 0.01, ("filters",), threshold=0.01),
        Target("conv2.weight", 0.02, ("channels",), threshold=0.02),
        Target("fc1.weight", 0.003, ("rows", "cols"), threshold=0.003),
    )


def test_without_threshold_criteria_there_is_no_threshold():
    (rule,) = parse_schedule(one_regularizer("conv1.weight: [0.01, 3D]"), SRC).rules
    assert rule.threshold_criterion == "norm"
    assert rule.targets[0].threshold is None


def test_l1_regularizer_with_threshold_criteria():
    text = one_regularizer("fc1.weight: 0.5\nfc2.weight: 1", cls="L1Regularizer", extra="threshold_criteria: Max")
    (rule,) = parse_schedule(text, SRC).rules
    assert rule.penalty == "l1"
    assert rule.targets == (
        Target("fc1.weight", 0.5, ("elements",), threshold=0.5),
        Target("fc2.weight", 1.0, ("elements",), threshold=1.0),
    )


@pytest.mark.parametrize(
    ("policy", "epochs"),
    [
        ("    epochs: [0, 2, 4]\n", Epochs(listed=(0, 2, 4))),
        ("    epochs: [7, 1, 1, 3]\n", Epochs(listed=(1, 3, 7))),
        ("    epochs: [0]\n", Epochs(listed=(0,))),
        ("    starting_epoch: 2\n    ending_epoch: 7\n", Epochs(2, 7, 1)),
        ("    starting_epoch: 0\n    ending_epoch: 20\n    frequency: 5\n", Epochs(0, 20, 5)),
        ("    starting_epoch: 4\n    ending_epoch: 5\n    frequency: 1\n", Epochs(4, 5, 1)),
    ],
)
def test_policy_epochs(policy, epochs):
    (rule,) = parse_schedule(one_regularizer("conv1.weight: [0.1, 3D]", policy=policy), SRC).rules
    assert rule.epochs == epochs


def test_ending_epoch_is_exclusive():
    text = one_regularizer("conv1.weight: [0.1, 3D]", policy="    starting_epoch: 2\n    ending_epoch: 8\n")
    epochs = parse_schedule(text, SRC).rules[0].epochs
    assert epochs.active_epochs(12) == [2, 3, 4, 5, 6, 7]
    assert not epochs.active(8)


def test_keep_mask_args_and_defaults():
    text = yaml_text(
        """
        regularizers:
          r: {class: L1Regularizer, reg_regims: {fc1.weight: 0.1}}
        policies:
          - regularizer: {instance_name: r, args: {keep_mask: true}}
            epochs: [0]
          - regularizer: {instance_name: r, args: {keep_mask: false}}
            epochs: [1]
          - regularizer: {instance_name: r, args: {}}
            epochs: [2]
          - regularizer: {instance_name: r}
            epochs: [3]
        """
    )
    rules = parse_schedule(text, SRC).rules
    assert [(r.name, r.keep_mask, r.epochs.listed) for r in rules] == [
        ("r", True, (0,)),
        ("r#2", False, (1,)),
        ("r#3", False, (2,)),
        ("r#4", False, (3,)),
    ]
    assert [r.line for r in rules] == [line_no(text, f"epochs: [{i}]") - 1 for i in range(4)]


def test_a_regularizer_used_by_two_policies_becomes_two_rules():
    text = yaml_text(
        """
        regularizers:
          fc_l1: {class: L1Regularizer, reg_regims: {fc1.weight: 0.1}}
          conv_gl: {class: GroupLassoRegularizer, reg_regims: {conv1.weight: [0.2, 3D]}}
        policies:
          - regularizer: {instance_name: fc_l1}
            starting_epoch: 0
            ending_epoch: 5
          - regularizer: {instance_name: conv_gl}
            epochs: [1]
          - regularizer: {instance_name: fc_l1}
            starting_epoch: 5
            ending_epoch: 9
        """
    )
    schedule = parse_schedule(text, SRC)
    l1 = (Target("fc1.weight", 0.1, ("elements",)),)
    assert schedule.rules == (
        Rule("fc_l1", "l1", l1, Epochs(0, 5), **PENALTY),
        Rule("conv_gl", "group_lasso", (Target("conv1.weight", 0.2, ("filters",)),), Epochs(listed=(1,)), **PENALTY),
        Rule("fc_l1#2", "l1", l1, Epochs(5, 9), **PENALTY),
    )
    assert schedule.warnings == ()


@pytest.mark.parametrize(("mode", "expected"), [(None, "penalty"), ("penalty", "penalty"), ("proximal", "proximal")])
def test_mode_defaults_to_penalty_and_proximal_is_an_extension(mode, expected):
    extra = f"mode: {mode}" if mode else ""
    (rule,) = parse_schedule(one_regularizer("conv1.weight: [0.1, 3D]", extra=extra), SRC).rules
    assert rule.mode == expected


def test_l2_regularizer_is_an_extension():
    (rule,) = parse_schedule(one_regularizer("fc2.weight: 5.0e-4", cls="L2Regularizer"), SRC).rules
    assert (rule.penalty, rule.targets) == ("l2", (Target("fc2.weight", 5e-4, ("elements",)),))


def test_lr_schedulers_with_their_policies():
    text = yaml_text(
        """
        lr_schedulers:
          step: {class: StepLR, step_size: 3, gamma: 0.2}
          plateau:
            class: ReduceLROnPlateau
            mode: min
            factor: 0.5
        policies:
          - lr_scheduler: {instance_name: plateau}
            epochs: [4, 8]
          - lr_scheduler:
              instance_name: step
            starting_epoch: 1
            ending_epoch: 9
            frequency: 2
        """
    )
    schedule = parse_schedule(text, SRC)
    assert schedule.rules == ()
    assert schedule.lr_schedulers == (
        LRSchedulerSpec(
            "ReduceLROnPlateau", (("mode", "min"), ("factor", 0.5)), Epochs(listed=(4, 8)), clock="absolute"
        ),
        LRSchedulerSpec("StepLR", (("step_size", 3), ("gamma", 0.2)), Epochs(1, 9, 2), clock="absolute"),
    )
    # a block mapping starts at its first key, a flow mapping at its brace
    assert [s.line for s in schedule.lr_schedulers] == [line_no(text, "class: ReduceLROnPlateau"), 2]


def test_config_extension_is_resolved_next_to_the_file(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("config: run.yaml\n" + one_regularizer("conv1.weight: [0.1, 3D]").replace("version: 1\n", ""))
    assert load_schedule(path).config == str(tmp_path / "run.yaml")


def test_equivalent_l1_schedules_in_both_formats():
    distiller = parse_schedule(
        one_regularizer(
            "fc1.weight: 0.1\nfc2.weight: 0.2",
            cls="L1Regularizer",
            extra="mode: proximal",
            policy="    starting_epoch: 3\n    ending_epoch: 9\n    frequency: 3\n",
        ),
        SRC,
    )
    native = parse_schedule(
        yaml_text(
            """
            rules:
              - name: r
                penalty: l1
                layers: {fc1.weight: 0.1, fc2.weight: 0.2}
                epochs: [3, 9]
                frequency: 3
            """
        ),
        "native.yaml",
    )
    assert distiller == native


def test_lr_scheduler_argument_order_does_not_matter_for_equality():
    distiller = parse_schedule(
        "lr_schedulers:\n  lr: {class: StepLR, gamma: 0.1, step_size: 10}\n"
        "policies:\n  - lr_scheduler: {instance_name: lr}\n    starting_epoch: 0\n    ending_epoch: 30\n",
        SRC,
    )
    native = parse_schedule("lr_scheduler: {class: StepLR, step_size: 10, gamma: 0.1, epochs: [0, 30]}\n", "n.yaml")
    assert distiller.lr_schedulers == tuple(replace(s, clock="absolute") for s in native.lr_schedulers)


# ----------------------------------------------------------------------------- errors


def test_yaml_syntax_error_has_its_line():
    text = "regularizers:\n  r:\n    class: L1Regularizer\n    reg_regims: {fc1.weight: 0.1\npolicies: []\n"
    with pytest.raises(CompressError, match=r"^distiller\.yaml:\d+: invalid YAML: ") as info:
        parse_schedule(text, SRC)
    (d,) = info.value.diagnostics
    assert d.file == SRC and d.line in (4, 5)  # the unclosed flow mapping, found where it should have closed


def test_bad_indentation_is_a_syntax_error_at_its_line():
    text = "policies:\n  - regularizer: {instance_name: r}\n     epochs: [0]\n"
    with pytest.raises(CompressError, match=r"^distiller\.yaml:3: invalid YAML: "):
        parse_schedule(text, SRC)


@pytest.mark.parametrize(
    ("text", "field", "suggestion"),
    [
        ("policy: []\nregularizers: {}\n", "policy", "policies"),
        ("lr_scheduler: {}\npolicies: []\n", "lr_scheduler", "lr_schedulers"),
        (one_regularizer("fc1.weight: [0.1, Rows]", extra="reg_regim: 1"), "regularizers.r.reg_regim", "reg_regims"),
        (
            one_regularizer("fc1.weight: [0.1, Rows]", extra="threshold_criterion: Max"),
            "regularizers.r.threshold_criterion",
            "threshold_criteria",
        ),
        (
            one_regularizer("fc1.weight: [0.1, Rows]", policy="    start_epoch: 0\n    ending_epoch: 3\n"),
            "policies[0].start_epoch",
            "starting_epoch",
        ),
        (
            one_regularizer("fc1.weight: [0.1, Rows]", policy="      args: {keepmask: true}\n    epochs: [0]\n"),
            "policies[0].regularizer.args.keepmask",
            "keep_mask",
        ),
    ],
)
def test_unknown_keys_suggest_the_closest(text, field, suggestion):
    diagnostics = errors_of(text, re.escape(f"unknown key (did you mean {suggestion!r}?)"))
    d = only(diagnostics, field)
    assert d.message == f"unknown key (did you mean {suggestion!r}?)"
    assert d.line == line_no(text, field.rsplit(".", 1)[-1].split("[")[0] + ":")


def test_unknown_instance_key_and_missing_instance_name():
    text = "regularizers:\n  r: {class: L1Regularizer, reg_regims: {fc1.weight: 1}}\npolicies:\n"
    text += "  - regularizer: {instance: r}\n    epochs: [0]\n"
    diagnostics = errors_of(text, "did you mean 'instance_name'")
    assert [(d.line, d.field, d.message) for d in diagnostics] == [
        (4, "policies[0].regularizer.instance", "unknown key (did you mean 'instance_name'?)"),
        (4, "policies[0].regularizer.instance_name", "required key is missing"),
    ]


def test_duplicate_keys_are_warnings_naming_both_lines():
    text = yaml_text(
        """
        version: 1
        regularizers:
          r:
            class: L1Regularizer
            reg_regims:
              fc1.weight: 0.1
              fc1.weight: 0.3
        policies:
          - regularizer: {instance_name: r}
            epochs: [0]
            epochs: [1, 2]
        """
    )
    schedule = parse_schedule(text, SRC)
    assert schedule.rules == (
        Rule("r", "l1", (Target("fc1.weight", 0.3, ("elements",)),), Epochs(listed=(1, 2)), **PENALTY),
    )
    first_w, second_w = line_no(text, "fc1.weight: 0.1"), line_no(text, "fc1.weight: 0.3")
    first_e, second_e = line_no(text, "epochs: [0]"), line_no(text, "epochs: [1, 2]")
    assert [(w.warning, w.file, w.line, w.field, w.message) for w in schedule.warnings] == [
        (
            True,
            SRC,
            second_w,
            "fc1.weight",
            f"duplicate key 'fc1.weight' (lines {first_w} and {second_w}); the later one is used",
        ),
        (
            True,
            SRC,
            second_e,
            "epochs",
            f"duplicate key 'epochs' (lines {first_e} and {second_e}); the later one is used",
        ),
    ]


def test_duplicate_regularizer_names_are_warnings():
    text = yaml_text(
        """
        regularizers:
          r: {class: L1Regularizer, reg_regims: {fc1.weight: 0.1}}
          r: {class: L1Regularizer, reg_regims: {fc2.weight: 0.2}}
        policies:
          - regularizer: {instance_name: r}
            epochs: [0]
        """
    )
    schedule = parse_schedule(text, SRC)
    assert schedule.rules[0].targets == (Target("fc2.weight", 0.2, ("elements",)),)
    (w,) = schedule.warnings
    assert (w.line, w.message) == (3, "duplicate key 'r' (lines 2 and 3); the later one is used")


@pytest.mark.parametrize(
    ("regim", "message"),
    [
        ("[high, 3D]", "expected a number, got a string ('high')"),
        ('["0.1", 3D]', "expected a number, got a string ('0.1')"),
        ("[true, 3D]", "expected a number, got a boolean (true)"),
        ("[-0.5, 3D]", "must be >= 0, got -0.5"),
        ("[-1e-3, Filters]", "must be >= 0, got -0.001"),
        ("[.nan, 3D]", "must be a finite number, got nan"),
        ("[.inf, 3D]", "must be a finite number, got inf"),
        ("[-.inf, 3D]", "must be a finite number, got -inf"),
    ],
)
def test_bad_group_lasso_strengths(regim, message):
    text = one_regularizer(f"conv1.weight: {regim}")
    (d,) = errors_of(text, re.escape(message))
    assert d.message == message
    assert d.line == line_no(text, "conv1.weight:")
    assert d.field.startswith("regularizers.r.reg_regims.conv1.weight")


@pytest.mark.parametrize(
    ("regim", "message"),
    [("-2", "must be >= 0, got -2"), (".nan", "must be a finite number, got nan"), ("no", "expected a number")],
)
def test_bad_l1_strengths(regim, message):
    text = one_regularizer(f"fc1.weight: {regim}", cls="L1Regularizer")
    (d,) = errors_of(text, re.escape(message))
    assert d.line == line_no(text, "fc1.weight:")


def test_bad_strength_field_names_the_reg_regims_entry():
    (d,) = errors_of(one_regularizer("conv1.weight: [-0.5, 3D]"), "must be >= 0")
    assert d.field == "regularizers.r.reg_regims.conv1.weight"


@pytest.mark.parametrize("regim", ["0.1", "[0.1]", "[0.1, 3D, 2D]", "[3D, 0.1]", "{strength: 0.1}"])
def test_group_lasso_needs_strength_and_group(regim):
    text = one_regularizer(f"conv1.weight: {regim}")
    (d,) = errors_of(text, re.escape(f"GroupLassoRegularizer needs [strength, group], group one of {DISTILLER_GROUPS}"))
    assert (d.line, d.field) == (line_no(text, "conv1.weight:"), "regularizers.r.reg_regims.conv1.weight")


@pytest.mark.parametrize(
    ("group", "suggestion"), [("filters", "Filters"), ("3d", "3D"), ("Rows+Col", "Rows+Cols"), ("XYZ", None)]
)
def test_unknown_group_lists_the_valid_ones(group, suggestion):
    text = one_regularizer(f"conv1.weight: [0.1, {group}]")
    hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
    expected = f"unknown group {group!r}{hint}; valid: {DISTILLER_GROUPS}"
    (d,) = errors_of(text, re.escape(expected))
    assert d.message == expected
    assert (d.line, d.field) == (line_no(text, "conv1.weight:"), "regularizers.r.reg_regims.conv1.weight")


def test_l1_regularizer_with_a_group_is_an_error():
    text = one_regularizer("fc1.weight: [0.1, Rows]", cls="L1Regularizer")
    (d,) = errors_of(text, re.escape("expected a number, got a list"))
    assert d.line == line_no(text, "fc1.weight:")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("class", "L1Reg", "unknown class 'L1Reg' (did you mean 'L1Regularizer'?)"),
        ("class", "Pruner", "unknown class 'Pruner'; valid: GroupLassoRegularizer, GroupVarianceRegularizer"),
        ("threshold_criteria", "mean_abs", "unknown value 'mean_abs' (did you mean 'Mean_Abs'?); valid: Max, Mean_Abs"),
        ("mode", "xyz", "unknown value 'xyz'; valid: penalty, proximal"),
        ("mode", "[proximal]", "expected a string, got a list"),
    ],
)
def test_bad_regularizer_values(key, value, message):
    regims = "fc1.weight: 0.1" if key == "class" else "fc1.weight: [0.1, Rows]"
    text = one_regularizer(regims, extra=f"{key}: {value}")
    if key == "class":
        text = text.replace("    class: GroupLassoRegularizer\n", "")
    d = only(errors_of(text, re.escape(message)), f"regularizers.r.{key}")
    assert d.message.startswith(message)
    assert d.line == line_no(text, f"{key}: {value}")


@pytest.mark.parametrize(("key", "value"), [("threshold_criteria", "[Max]"), ("class", "[L1Regularizer]")])
def test_list_where_a_name_belongs_is_an_error_not_a_crash(key, value):
    text = one_regularizer("fc1.weight: [0.1, Rows]", extra=f"{key}: {value}")
    if key == "class":
        text = text.replace("    class: GroupLassoRegularizer\n", "")
    d = only(errors_of(text, "expected a string, got a list"), f"regularizers.r.{key}")
    assert d.line == line_no(text, f"{key}:")


@pytest.mark.parametrize(
    ("text", "field", "line", "message"),
    [
        ("regularizers: [a]\npolicies: []\n", "regularizers", 1, "expected a mapping of instance name -> definition"),
        ("lr_schedulers: {lr: [StepLR]}\npolicies: []\n", "lr_schedulers.lr", 1, "expected a mapping, got a list"),
        ("regularizers: {}\npolicies: {a: 1}\n", "policies", 2, "expected a list of policies"),
        ("policies:\n  - [regularizer, r]\n", "policies[0]", 2, "expected a mapping, got a list"),
        (
            "regularizers:\n  r: {class: L1Regularizer, reg_regims: [fc1.weight]}\npolicies: []\n",
            "regularizers.r.reg_regims",
            2,
            "expected a mapping of parameter name -> strength or [strength, group]",
        ),
        (
            "regularizers:\n  r: {class: L1Regularizer, reg_regims: {}}\npolicies: []\n",
            "regularizers.r.reg_regims",
            2,
            "expected a mapping of parameter name -> strength or [strength, group]",
        ),
        (
            "regularizers:\n  r: {class: L1Regularizer}\npolicies: []\n",
            "regularizers.r.reg_regims",
            2,
            "required key is missing",
        ),
        (
            "regularizers:\n  r: {class: L1Regularizer, reg_regims: {a: 1}}\npolicies:\n"
            "  - regularizer: r\n    epochs: [0]\n",
            "policies[0].regularizer",
            4,
            "expected a mapping, got a string ('r')",
        ),
        (
            "regularizers:\n  r: {class: L1Regularizer, reg_regims: {a: 1}}\npolicies:\n"
            "  - regularizer: {instance_name: r, args: [keep_mask]}\n    epochs: [0]\n",
            "policies[0].regularizer.args",
            4,
            "expected a mapping, got a list",
        ),
        (
            "regularizers:\n  r: {class: L1Regularizer, reg_regims: {a: 1}}\npolicies:\n"
            "  - regularizer: {instance_name: r, args: {keep_mask: 'yes'}}\n    epochs: [0]\n",
            "policies[0].regularizer.args.keep_mask",
            4,
            "expected true or false, got a string ('yes')",
        ),
        (
            "regularizers:\n  r: {class: L1Regularizer, reg_regims: {a: 1}}\npolicies:\n"
            "  - regularizer: {instance_name: [r]}\n    epochs: [0]\n",
            "policies[0].regularizer.instance_name",
            4,
            "expected a string, got a list",
        ),
        (
            "lr_schedulers:\n  lr: {step_size: 1}\npolicies:\n  - lr_scheduler: {instance_name: lr}\n    epochs: [0]\n",
            "lr_schedulers.lr.class",
            2,
            "required key is missing (an lr scheduler class)",
        ),
    ],
)
def test_wrong_types_and_shapes(text, field, line, message):
    d = only(errors_of(text, re.escape(message)), field)
    assert (d.line, d.message) == (line, message)


@pytest.mark.parametrize(
    ("policy", "field", "snippet", "message"),
    [
        (
            "    starting_epoch: 5\n    ending_epoch: 5\n",
            "policies[0].ending_epoch",
            "ending_epoch",
            "empty epoch range [5, 5): the end is exclusive and must exceed the start",
        ),
        (
            "    starting_epoch: 6\n    ending_epoch: 2\n",
            "policies[0].ending_epoch",
            "ending_epoch",
            "inverted epoch range [6, 2): the end is exclusive and must exceed the start",
        ),
        (
            "    starting_epoch: 0\n    ending_epoch: -3\n",
            "policies[0].ending_epoch",
            "ending_epoch",
            "must be >= 0, got -3",
        ),
        ("    epochs: [-1, 3]\n", "policies[0].epochs", "epochs:", "epochs must be >= 0, got [-1, 3]"),
        ("    epochs: []\n", "policies[0].epochs", "epochs:", "expected a non-empty list of integer epochs"),
        ("    epochs: 3\n", "policies[0].epochs", "epochs:", "expected a non-empty list of integer epochs"),
        ("    epochs: [1.5]\n", "policies[0].epochs", "epochs:", "expected a non-empty list of integer epochs"),
        ("    epochs: [true]\n", "policies[0].epochs", "epochs:", "expected a non-empty list of integer epochs"),
        (
            "    starting_epoch: 0\n    ending_epoch: 4\n    frequency: 0\n",
            "policies[0].frequency",
            "frequency",
            "must be >= 1, got 0",
        ),
        (
            "    starting_epoch: 1.5\n    ending_epoch: 4\n",
            "policies[0].starting_epoch",
            "starting_epoch",
            "expected an integer, got float (1.5)",
        ),
        (
            "    starting_epoch: 0\n    ending_epoch: '4'\n",
            "policies[0].ending_epoch",
            "ending_epoch",
            "expected an integer, got a string ('4')",
        ),
        (
            "    starting_epoch: 0\n    ending_epoch: 4\n    epochs: [1]\n",
            "policies[0].epochs",
            "epochs:",
            "give either epochs or starting_epoch/ending_epoch, not both",
        ),
        (
            "    starting_epoch: 0\n",
            "policies[0]",
            "- regularizer:",
            "needs epochs: [...] or starting_epoch and ending_epoch (exclusive)",
        ),
        (
            "    frequency: 1\n",
            "policies[0]",
            "- regularizer:",
            "needs epochs: [...] or starting_epoch and ending_epoch (exclusive)",
        ),
    ],
)
def test_bad_policy_epochs(policy, field, snippet, message):
    text = one_regularizer("conv1.weight: [0.1, 3D]", policy=policy)
    (d,) = errors_of(text, re.escape(message))
    assert (d.field, d.message) == (field, message)
    assert d.line == line_no(text, snippet)


def test_negative_starting_epoch_is_reported_at_starting_epoch():
    text = one_regularizer("conv1.weight: [0.1, 3D]", policy="    starting_epoch: -1\n    ending_epoch: 5\n")
    (d,) = errors_of(text, re.escape("must be >= 0, got -1"))
    assert (d.field, d.line) == ("policies[0].starting_epoch", line_no(text, "starting_epoch"))


@pytest.mark.parametrize(("section", "cls"), [("pruners", "BaiduRNNPruner"), ("quantizers", "DorefaQuantizer")])
def test_distillers_classes_not_run_yet_are_named_once_without_follow_on_errors(section, cls):
    kind = section[:-1]
    text = yaml_text(
        f"""
        {section}:
          thing:
            class: {cls}
            anything_it_takes: [1, 2]
            weights: [no.such.layer]
        policies:
          - {kind}:
              instance_name: thing
              args: {{whatever: 1}}
            epochs: [0]
        """
    )
    (d,) = errors_of(text, f"Distiller's {cls} is not supported yet")
    assert d.message.startswith(f"Distiller's {cls} is not supported yet")
    assert (d.field, d.line) == (f"{section}.thing.class", line_no(text, f"class: {cls}"))


@pytest.mark.parametrize(
    ("section", "cls", "message"),
    [
        ("regularizers", "DropFilterRegularizer", "Distiller's DropFilterRegularizer is not supported yet"),
        ("regularizers", "SplicingPruner", "SplicingPruner is one of Distiller's pruners; define it under pruners:"),
        ("extensions", "L1Regularizer", "L1Regularizer is one of Distiller's regularizers; define it under"),
        ("pruners", "AutomatedGradualPrunr", "unknown class 'AutomatedGradualPrunr' (did you mean 'AutomatedGradual"),
    ],
)
def test_a_class_is_named_for_what_it_is(section, cls, message):
    text = f"{section}:\n  thing:\n    class: {cls}\n"
    (d,) = errors_of(text, re.escape(message))
    assert (d.field, d.line) == (f"{section}.thing.class", 3)


def test_a_file_with_only_pruners_is_read_as_distiller():
    text = "version: 1\npruners:\n  p: {class: FMReconstructionChannelPruner}\n"
    (d,) = errors_of(text, "Distiller's FMReconstructionChannelPruner is not supported yet")
    assert d.line == 3


@pytest.mark.parametrize("kind", ["pruner", "quantizer"])
def test_a_policy_naming_an_undefined_pruner_or_quantizer(kind):
    text = yaml_text(
        f"""
        policies:
          - {kind}:
              instance_name: thing
            epochs: [0]
        """
    )
    (d,) = errors_of(text, f"no {kind}s entry named 'thing'")
    assert (d.field, d.line) == (f"policies[0].{kind}.instance_name", 3)


@pytest.mark.parametrize(
    ("kinds", "line"),
    [("  - regularizer: {instance_name: r}\n    lr_scheduler: {instance_name: lr}\n", 6), ("  - epochs: [0]\n", 6)],
)
def test_a_policy_needs_exactly_one_kind(kinds, line):
    text = (
        "regularizers:\n  r: {class: L1Regularizer, reg_regims: {fc1.weight: 1}}\n"
        "lr_schedulers:\n  lr: {class: StepLR, step_size: 1}\npolicies:\n" + kinds
    )
    if "epochs" not in kinds:
        text += "    epochs: [0]\n"
    diagnostics = errors_of(text, "a policy needs exactly one of: regularizer, lr_scheduler")
    d = only(diagnostics, "policies[0]")
    assert d.line == line


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [
        ("regularizer", "filter_reg", "no regularizers entry named 'filter_reg' (did you mean 'filters_reg'?)"),
        ("regularizer", "zzz", "no regularizers entry named 'zzz'"),
        ("lr_scheduler", "training", "no lr_schedulers entry named 'training' (did you mean 'training_lr'?)"),
    ],
)
def test_unknown_instance_name_suggests_the_closest(kind, name, message):
    text = yaml_text(
        f"""
        regularizers:
          filters_reg: {{class: GroupLassoRegularizer, reg_regims: {{conv1.weight: [0.1, 3D]}}}}
        lr_schedulers:
          training_lr: {{class: StepLR, step_size: 1}}
        policies:
          - regularizer: {{instance_name: filters_reg}}
            epochs: [0]
          - lr_scheduler: {{instance_name: training_lr}}
            epochs: [0]
          - {kind}:
              instance_name: {name}
            epochs: [1]
        """
    )
    (d,) = errors_of(text, re.escape(message))
    assert d.message == message
    assert (d.field, d.line) == (f"policies[2].{kind}.instance_name", line_no(text, f" instance_name: {name}"))


def test_args_are_checked_even_when_the_instance_name_is_unknown():
    text = yaml_text(
        """
        regularizers:
          r: {class: L1Regularizer, reg_regims: {fc1.weight: 0.1}}
        policies:
          - regularizer: {instance_name: r}
            epochs: [0]
          - regularizer: {instance_name: rr, args: {keepmask: true}}
            epochs: [1]
        """
    )
    diagnostics = errors_of(text, "no regularizers entry named 'rr'")
    assert {d.field for d in diagnostics} == {
        "policies[1].regularizer.instance_name",
        "policies[1].regularizer.args.keepmask",
    }


def test_unused_regularizer_and_lr_scheduler_are_warnings():
    text = yaml_text(
        """
        regularizers:
          used: {class: L1Regularizer, reg_regims: {fc1.weight: 0.1}}
          spare: {class: L1Regularizer, reg_regims: {fc2.weight: 0.1}}
        lr_schedulers:
          idle: {class: StepLR, step_size: 1}
        policies:
          - regularizer: {instance_name: used}
            epochs: [0]
        """
    )
    schedule = parse_schedule(text, SRC)
    assert [r.name for r in schedule.rules] == ["used"]
    assert schedule.lr_schedulers == ()
    assert [(w.warning, w.line, w.field, w.message) for w in schedule.warnings] == [
        (True, line_no(text, "spare:"), "spare", "defined but no policy uses it, so it never acts"),
        (True, line_no(text, "idle:"), "idle", "defined but no policy uses it, so it never acts"),
    ]


@pytest.mark.parametrize(
    "tagged",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/new:pathlib.Path ['{marker}']",
        "!!python/object:argparse.Namespace {{a: 1}}",
    ],
)
def test_python_tags_are_rejected_without_constructing_anything(tmp_path, tagged):
    marker = tmp_path / "constructed"
    text = one_regularizer(f"conv1.weight: {tagged.format(marker=marker)}")
    with pytest.raises(CompressError, match="could not determine a constructor for the tag 'tag:yaml.org,2002:python"):
        parse_schedule(text, SRC)
    assert not marker.exists()


def test_mixing_rules_with_policies_is_an_error():
    text = one_regularizer("conv1.weight: [0.1, 3D]") + "rules:\n  - {name: x, penalty: l1, strength: 1, layers: [a]}\n"
    diagnostics = errors_of(text, re.escape("mixes our rules: with Distiller's sections; use one format per file"))
    d = [d for d in diagnostics if d.message.startswith("mixes")][0]
    assert (d.field, d.line) == ("rules", line_no(text, "rules:"))


def test_mixing_rules_with_policies_is_reported_once():
    text = one_regularizer("conv1.weight: [0.1, 3D]") + "rules: []\n"
    (d,) = errors_of(text, "mixes our rules:")
    assert "pruners" not in str(d)


def test_unsupported_version():
    text = one_regularizer("conv1.weight: [0.1, 3D]").replace("version: 1", "version: 2")
    (d,) = errors_of(text, re.escape("unsupported schedule version 2; valid: 1"))
    assert (d.field, d.line) == ("version", 1)


def test_every_error_in_a_file_is_reported_at_once():
    text = yaml_text(
        """
        version: 1
        regularizers:
          gl:
            class: GroupLassoRegularizer
            reg_regims:
              conv1.weight: [0.1, Filter]
              conv2.weight: [-0.2, 3D]
              fc1.weight: 0.3
            threshold_criteria: Average
          l1:
            class: L1Regularizer
            reg_regims:
              fc2.weight: .inf
        lr_schedulers:
          lr: {class: StepLR, step_size: 1}
        policies:
          - regularizer: {instance_name: gl, args: {keep_mask: 1}}
            starting_epoch: 4
            ending_epoch: 4
          - regularizer: {instance_name: l1x}
            epochs: [0]
          - lr_scheduler: {instance_name: lr}
            epochs: [-2]
        pruners:
          p: {class: BaiduRNNPruner, weights: [conv1.weight]}
        """
    )
    diagnostics = errors_of(text, "Distiller's BaiduRNNPruner is not supported yet")
    assert sorted((d.line, d.field) for d in diagnostics) == sorted(
        [
            (line_no(text, "BaiduRNNPruner"), "pruners.p.class"),
            (line_no(text, "Average"), "regularizers.gl.threshold_criteria"),
            (line_no(text, "Filter]"), "regularizers.gl.reg_regims.conv1.weight"),
            (line_no(text, "-0.2"), "regularizers.gl.reg_regims.conv2.weight"),
            (line_no(text, "fc1.weight: 0.3"), "regularizers.gl.reg_regims.fc1.weight"),
            (line_no(text, ".inf"), "regularizers.l1.reg_regims.fc2.weight"),
            (line_no(text, "ending_epoch: 4"), "policies[0].ending_epoch"),
            (line_no(text, "keep_mask: 1"), "policies[0].regularizer.args.keep_mask"),
            (line_no(text, "l1x"), "policies[1].regularizer.instance_name"),
            (line_no(text, "epochs: [-2]"), "policies[2].epochs"),
        ]
    )
    assert len(diagnostics) == 10


# ----------------------------------------------------------------------------- binding to a model


def test_dataparallel_prefixes_bind_to_plain_names(lenet5):
    text = one_regularizer("module.conv1.weight: [0.1, 3D]\nconv2.weight: [0.2, Filters]")
    (bound,), _ = bind(parse_schedule(text, SRC), lenet5, epochs=10)
    assert [(t.param_name, t.strength, t.groups) for t in bound.targets] == [
        ("conv1.weight", 0.1, ("filters",)),
        ("conv2.weight", 0.2, ("filters",)),
    ]


def test_unmatched_name_lists_the_closest(lenet5):
    text = one_regularizer("module.conv3.weight: [0.1, 3D]")
    (d,) = bind_errors(text, lenet5)
    prefix = "'module.conv3.weight' matches no parameter of the model; closest: "
    assert d.message.startswith(prefix)
    assert set(d.message[len(prefix) :].split(", ")[:2]) == {"conv1.weight", "conv2.weight"}
    assert d.line == line_no(text, "module.conv3.weight")


def test_binding_errors_name_the_distiller_field(lenet5):
    (d,) = bind_errors(one_regularizer("conv3.weight: [0.1, 3D]"), lenet5)
    assert d.field == "regularizers.r.reg_regims.conv3.weight"


@pytest.mark.parametrize(
    ("regim", "message"),
    [
        (
            "conv1.bias: [0.1, Channels]",
            "conv1.bias: group 'channels' (W[:, c, ...]: an input channel or feature) needs a weight with at "
            "least 2 dims, got shape [20]",
        ),
        (
            "fc1.bias: [0.1, Filters]",
            "fc1.bias: group 'filters' (W[f, ...]: an output filter or neuron) needs a weight with at least 2 "
            "dims, got shape [500]",
        ),
        (
            "conv2.weight: [0.1, Rows]",
            "conv2.weight: group 'rows' (a row W[i, :] of a 2-D weight) needs a weight with exactly 2 dims, "
            "got shape [50, 20, 5, 5]",
        ),
        (
            "fc1.weight: [0.1, 2D]",
            "fc1.weight: group 'kernels' (W[f, c, ...]: one kernel) needs a weight with at least 3 dims, "
            "got shape [500, 800]",
        ),
    ],
)
def test_group_that_does_not_fit_the_tensor(lenet5, regim, message):
    text = one_regularizer(regim)
    (d,) = bind_errors(text, lenet5)
    assert d.message == message
    assert d.line == line_no(text, regim.split(":")[0] + ":")


def test_channels_plus_4d_on_a_bias_reports_channels_only(lenet5):
    (d,) = bind_errors(one_regularizer("conv2.bias: [0.1, Channels+4D]"), lenet5)
    assert d.message.startswith("conv2.bias: group 'channels'")


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ("{class: StepLr, step_size: 1}", "unknown class 'StepLr' (did you mean 'StepLR'?); valid: "),
        ("{class: StepLR, stepsize: 1}", "StepLR takes no argument 'stepsize' (did you mean 'step_size'?)"),
        ("{class: MultiStepLR, gamma: 0.1}", "MultiStepLR needs argument 'milestones'"),
    ],
)
def test_lr_scheduler_class_and_arguments_are_checked(lenet5, definition, message):
    text = (
        one_regularizer("conv1.weight: [0.1, 3D]")
        + "  - lr_scheduler: {instance_name: lr}\n    epochs: [0]\n"
        + f"lr_schedulers:\n  lr: {definition}\n"
    )
    diagnostics = bind_errors(text, lenet5)
    assert diagnostics[0].message.startswith(message)
    assert diagnostics[0].line == line_no(text, "  lr: {")


@pytest.mark.parametrize(
    ("policy", "described"),
    [
        ("    starting_epoch: 10\n    ending_epoch: 20\n", "epochs [10, 20)"),
        ("    epochs: [12, 15]\n", "epochs 12, 15"),
    ],
)
def test_policy_beyond_the_run_is_a_warning(lenet5, policy, described):
    text = one_regularizer("conv1.weight: [0.1, 3D]", policy=policy)
    rules, warnings = bind(parse_schedule(text, SRC), lenet5, epochs=10)
    assert len(rules) == 1
    (w,) = warnings
    assert w.warning and w.message == f"never active in a run of 10 epochs ({described})"
    assert (w.file, w.line, w.field) == (SRC, line_no(text, "- regularizer:"), "rules[r].epochs")


def test_warnings_of_the_file_come_back_from_bind(lenet5):
    text = one_regularizer("conv1.weight: [0.1, 3D]") + "lr_schedulers:\n  idle: {class: StepLR, step_size: 1}\n"
    _, warnings = bind(parse_schedule(text, SRC), lenet5, epochs=10)
    assert [(w.field, w.message) for w in warnings] == [("idle", "defined but no policy uses it, so it never acts")]


# ----------------------------------------------------------------------------- the CLI


def test_cli_check_prints_the_plan_of_the_filters_file():
    path = HERE / "distiller_lenet5_filters.yaml"
    result = invoke("check", "--schedule", str(path), "--arch", "lenet5", "--epochs", "10")
    assert result.exit_code == 0, result.output
    lines = normalized(result.stdout)
    assert lines[0] == f"schedule {path}: model lenet5, dataset mnist5k, 10 epochs"
    assert lines[1].startswith("rule filters_reg: group_lasso, mode penalty, epochs [0, 7) every 2: ")
    assert lines[1].endswith("of 10, keep_mask (after epoch 6)")
    assert lines[2:] == [
        "conv1.weight 20x1x5x5 20 filters strength 0.005 threshold 0.005 (mean_abs)",
        "conv2.weight 50x20x5x5 50 filters strength 0.005 threshold 0.005 (mean_abs)",
        "lr_scheduler StepLR(step_size=10, gamma=0.1), epochs [0, 30): 10 of 10; Distiller's clock: closed form at "
        "epoch + 1",
        "learning rate 0.01 (epochs 0-9)",
        "OK: 1 rule(s) on 2 parameter(s), 1 lr scheduler(s)",
    ]


def test_cli_check_prints_the_plan_of_the_rows_cols_file():
    path = HERE / "distiller_lenet5_rowscols.yaml"
    result = invoke("check", "--schedule", str(path), "--arch", "lenet5", "--epochs", "10")
    assert result.exit_code == 0, result.output
    lines = normalized(result.stdout)
    assert "rule fc1_rows_cols: group_lasso, mode penalty, epochs [0, 10): 10 of 10" in lines
    assert "fc1.weight 500x800 500 rows + 800 cols strength 0.002 threshold 0.002 (max)" in lines
    assert "conv2.weight 50x20x5x5 20 channels + 1 layer strength 0.001 threshold 0.001 (mean_abs)" in lines
    assert lines.count("conv2.weight 50x20x5x5 1000 kernels strength 0.0005 threshold 0.0005 (max)") == 2
    assert any(
        line.startswith("rule conv2_kernels#2: group_lasso, mode penalty, epochs [6, 9) every 2") for line in lines
    )
    assert any(line.startswith("rule conv2_channels: group_lasso, mode penalty, epochs 1, 3, 5") for line in lines)
    assert (
        "lr_scheduler MultiStepLR(milestones=[4, 8], gamma=0.5), epochs [0, 10): 10 of 10; Distiller's clock: "
        "closed form at epoch + 1" in lines
    )
    assert "learning rate 0.01 (epochs 0-3), 0.005 (4-7), 0.0025 (8-9)" in lines
    assert lines[-1] == "OK: 4 rule(s) on 2 parameter(s), 1 lr scheduler(s)"


def test_cli_check_mlp_file():
    path = HERE / "distiller_mlp_l1.yaml"
    result = invoke("check", "--schedule", str(path), "--arch", "mlp", "--epochs", "10")
    assert result.exit_code == 0, result.output
    lines = normalized(result.stdout)
    assert lines[2:5] == [
        "fc1.weight 300x784 235200 elements strength 0.0001",
        "fc2.weight 100x300 30000 elements strength 0.0002",
        "fc3.weight 10x100 1000 elements strength 0.0005",
    ]
    assert lines[-1] == "OK: 1 rule(s) on 3 parameter(s), 1 lr scheduler(s)"


def test_cli_check_bad_distiller_file_exits_2_with_one_line_per_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml_text(
            """
            regularizers:
              r:
                class: GroupLassoRegularizer
                reg_regims:
                  conv1.weight: [0.1, Filter]
                  conv9.weight: [0.1, 3D]
            policies:
              - regularizer: {instance_name: r}
                starting_epoch: 3
                ending_epoch: 1
            quantizers:
              q: {class: PACTQuantizer, bits_activations: 8}
            """
        )
    )
    result = invoke("check", "--schedule", str(path), "--arch", "lenet5")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Traceback" not in result.output
    errors = result.stderr.splitlines()
    lines = []
    for line in errors:
        match = re.match(rf"^{re.escape(str(path))}:(\d+): \S+: ", line)
        assert match, line
        lines.append(int(match.group(1)))
    assert lines == sorted(lines), "errors come sorted by line"
    assert f"{path}:12: quantizers.q.class: Distiller's PACTQuantizer is not supported yet" in errors
    assert (
        f"{path}:5: regularizers.r.reg_regims.conv1.weight: unknown group 'Filter' (did you mean 'Filters'?); "
        f"valid: {DISTILLER_GROUPS}"
    ) in errors
    assert (
        f"{path}:10: policies[0].ending_epoch: inverted epoch range [3, 1): the end is exclusive and must exceed "
        "the start"
    ) in errors
    # the model-dependent error of the same file comes in the same run
    conv9 = [line for line in errors if "'conv9.weight' matches no parameter of the model" in line]
    assert len(conv9) == 1 and conv9[0].startswith(f"{path}:6: ")
    assert len(errors) == 4


def test_cli_check_crash_free_on_a_python_tag(tmp_path):
    path = tmp_path / "tag.yaml"
    path.write_text("regularizers: !!python/object/apply:os.getcwd []\npolicies: []\n")
    result = invoke("check", "--schedule", str(path))
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{path}:1: invalid YAML: could not determine a constructor for the tag")
