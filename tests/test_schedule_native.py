"""The native schedule reader (``rules:``): every field, every error with its file/line/field,
binding to a model, and ``compress check`` on native files.

Expected values are written out by hand; line numbers are found by searching the YAML text for a
snippet that occurs on exactly one line, so they never come from the code under test.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from compress.errors import CompressError, Diagnostic
from compress.schedule import Epochs, LRSchedulerSpec, Rule, Schedule, Target, load_schedule, parse_schedule
from compress.scheduler import bind
from tests.helpers import invoke, line_no, located_bind_errors, located_parse_errors, normalized, only, yaml_text

SRC = "native.yaml"
HERE = Path(__file__).parent / "schedules"


# ----------------------------------------------------------------------------- helpers


def parse(text: str) -> Schedule:
    return parse_schedule(yaml_text(text), SRC)


def errors_of(text: str, match: str) -> list[Diagnostic]:
    return located_parse_errors(text, match, SRC)


def rule_text(**fields: str) -> str:
    """A valid one-rule schedule with ``fields`` replaced or added (values are raw YAML)."""
    base = {
        "name": "r",
        "penalty": "group_lasso",
        "groups": "filters",
        "strength": "0.01",
        "layers": '["conv*.weight"]',
    }
    base.update(fields)
    body = "".join(f"    {k}: {v}\n" for k, v in base.items() if v is not None)
    return "version: 1\nrules:\n  - " + body[4:]


def bind_errors(text: str, model, epochs: int = 10) -> list[Diagnostic]:
    return located_bind_errors(text, model, SRC, epochs)


# ----------------------------------------------------------------------------- reading: every field


def test_every_field_of_a_rule():
    text = yaml_text(
        """
        version: 1
        rules:
          - name: conv-filters
            penalty: group_lasso
            groups: [3D, layer]
            strength: 0.005
            layers:
              - "conv*.weight"
              - fc1.weight
            epochs: [2, 12]
            frequency: 3
            mode: penalty
            threshold: 1.0e-4
            threshold_criterion: max
            keep_mask: true
        lr_scheduler: {class: StepLR, step_size: 10, gamma: 0.1}
        """
    )
    schedule = parse_schedule(text, SRC)
    groups = ("filters", "layer")
    expected = Schedule(
        rules=(
            Rule(
                name="conv-filters",
                penalty="group_lasso",
                targets=(
                    Target("conv*.weight", 0.005, groups, 1e-4),
                    Target("fc1.weight", 0.005, groups, 1e-4),
                ),
                epochs=Epochs(start=2, end=12, frequency=3),
                mode="penalty",
                threshold_criterion="max",
                keep_mask=True,
                keep_mask_at=11,  # the last active epoch of [2, 12) every 3: 2, 5, 8, 11
            ),
        ),
        lr_schedulers=(LRSchedulerSpec("StepLR", (("step_size", 10), ("gamma", 0.1)), Epochs()),),
    )
    assert schedule == expected
    assert schedule.source == SRC and schedule.text == text and schedule.warnings == ()
    rule = schedule.rules[0]
    assert rule.line == line_no(text, "name: conv-filters")
    assert [t.line for t in rule.targets] == [line_no(text, '- "conv*'), line_no(text, "- fc1.weight")]
    assert schedule.lr_schedulers[0].line == line_no(text, "lr_scheduler:")
    assert rule.epochs.active_epochs(20) == [2, 5, 8, 11]


def test_defaults_of_an_optional_field_free_rule():
    schedule = parse("""
        rules:
          - name: sparse
            penalty: l1
            strength: 2
            layers: fc1.weight
        """)
    assert schedule == Schedule(rules=(Rule("sparse", "l1", (Target("fc1.weight", 2.0, ("elements",)),)),))
    rule = schedule.rules[0]
    # the defaults, spelled out: every epoch, proximal, norm criterion, no threshold, no mask
    assert rule.epochs == Epochs(start=0, end=None, frequency=1, listed=None)
    assert (rule.mode, rule.threshold_criterion, rule.keep_mask) == ("proximal", "norm", False)
    assert rule.targets[0].threshold is None
    assert isinstance(rule.targets[0].strength, float)
    assert schedule.lr_schedulers == () and schedule.config is None


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("filters", "filters"),
        ("3D", "filters"),
        ("3d", "filters"),
        ("Filters", "filters"),
        ("channels", "channels"),
        ("kernels", "kernels"),
        ("2D", "kernels"),
        ("layer", "layer"),
        ("4D", "layer"),
        ("rows", "rows"),
        ("cols", "cols"),
    ],
)
def test_group_spellings_and_aliases(spelling, canonical):
    schedule = parse_schedule(rule_text(groups=spelling), SRC)
    assert schedule.rules[0].targets[0].groups == (canonical,)


def test_groups_as_a_list_keep_their_order():
    schedule = parse_schedule(rule_text(groups="[channels, 2D, 4D]"), SRC)
    assert schedule.rules[0].targets[0].groups == ("channels", "kernels", "layer")


@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_elementwise_penalties_take_elements(penalty):
    implicit = parse_schedule(rule_text(penalty=penalty, groups=None), SRC)
    explicit = parse_schedule(rule_text(penalty=penalty, groups="elements"), SRC)
    assert implicit.rules[0].penalty == penalty
    assert implicit.rules[0].targets[0].groups == ("elements",)
    assert explicit == implicit


def test_layers_as_a_mapping_give_per_layer_strengths_and_lines():
    text = yaml_text(
        """
        rules:
          - name: convs
            penalty: group_lasso
            groups: filters
            threshold: 0.5
            layers:
              conv1.weight: 0.01
              "conv2.*": 5.0e-3
        """
    )
    rule = parse_schedule(text, SRC).rules[0]
    assert rule.targets == (
        Target("conv1.weight", 0.01, ("filters",), 0.5),
        Target("conv2.*", 0.005, ("filters",), 0.5),
    )
    assert [t.line for t in rule.targets] == [line_no(text, "conv1.weight: 0.01"), line_no(text, '"conv2.*"')]


def test_layers_as_a_single_string():
    rule = parse_schedule(rule_text(layers="conv2.weight"), SRC).rules[0]
    assert rule.targets == (Target("conv2.weight", 0.01, ("filters",)),)


@pytest.mark.parametrize(
    ("epochs", "frequency", "expected"),
    [
        ("[0, 20]", None, Epochs(0, 20, 1)),
        ("[5, 6]", None, Epochs(5, 6, 1)),
        ("[5]", None, Epochs(5, None, 1)),
        ("[3]", "2", Epochs(3, None, 2)),
        (None, "4", Epochs(0, None, 4)),
        (None, None, Epochs(0, None, 1)),
        ("null", None, Epochs(0, None, 1)),
    ],
)
def test_epoch_ranges(epochs, frequency, expected):
    rule = parse_schedule(rule_text(epochs=epochs, frequency=frequency), SRC).rules[0]
    assert rule.epochs == expected


def test_epochs_semantics_end_exclusive_with_frequency():
    assert Epochs(0, 20).active_epochs(25) == list(range(20))
    assert Epochs(5).active_epochs(8) == [5, 6, 7]
    assert Epochs(3, None, 2).active_epochs(10) == [3, 5, 7, 9]
    assert Epochs(listed=(1, 4)).active_epochs(10) == [1, 4]


@pytest.mark.parametrize(("value", "expected"), [("proximal", "proximal"), ("penalty", "penalty")])
def test_mode(value, expected):
    assert parse_schedule(rule_text(mode=value), SRC).rules[0].mode == expected


@pytest.mark.parametrize("criterion", ["norm", "mean_abs", "max"])
def test_threshold_and_criterion(criterion):
    rule = parse_schedule(rule_text(threshold="1e-3", threshold_criterion=criterion), SRC).rules[0]
    assert rule.threshold_criterion == criterion
    assert rule.targets[0].threshold == 0.001


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False)])
def test_keep_mask(value, expected):
    assert parse_schedule(rule_text(keep_mask=value), SRC).rules[0].keep_mask is expected


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-4", 1e-4), ("5E-3", 5e-3), ("1.5e2", 150.0), ("2", 2.0), ("0", 0.0), ("+3e-1", 0.3)],
)
def test_numbers_in_scientific_notation_are_numbers(text, value):
    assert parse_schedule(rule_text(strength=text), SRC).rules[0].targets[0].strength == value


def test_lr_scheduler_as_a_list_with_epochs_and_frequency():
    text = yaml_text(
        """
        rules: []
        lr_scheduler:
          - class: StepLR
            step_size: 3
          - class: MultiStepLR
            milestones: [2, 4]
            gamma: 0.5
            epochs: [1, 9]
            frequency: 2
        """
    )
    schedule = parse_schedule(text, SRC)
    assert schedule.rules == ()
    assert schedule.lr_schedulers == (
        LRSchedulerSpec("StepLR", (("step_size", 3),), Epochs()),
        LRSchedulerSpec("MultiStepLR", (("milestones", [2, 4]), ("gamma", 0.5)), Epochs(1, 9, 2)),
    )
    assert [s.line for s in schedule.lr_schedulers] == [line_no(text, "class: StepLR"), line_no(text, "MultiStepLR")]


def test_two_rules_keep_their_order():
    schedule = parse("""
        rules:
          - {name: b, penalty: l2, strength: 0.1, layers: [fc2.weight]}
          - {name: a, penalty: l1, strength: 0.2, layers: [fc1.weight]}
        """)
    assert [(r.name, r.penalty) for r in schedule.rules] == [("b", "l2"), ("a", "l1")]


def test_config_is_resolved_next_to_the_schedule_file(tmp_path):
    path = tmp_path / "sub" / "s.yaml"
    path.parent.mkdir()
    path.write_text("config: ../configs/run.yaml\nrules: []\n")
    schedule = load_schedule(path)
    assert Path(schedule.config) == tmp_path / "sub" / ".." / "configs" / "run.yaml"
    assert schedule.name == "s"
    assert parse_schedule("config: c.yaml\nrules: []\n").config == "c.yaml"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "version: 1\n", "rules: []\n"])
def test_empty_schedules(text):
    assert parse_schedule(text, SRC) == Schedule()


def test_schedule_files_in_this_repo_parse():
    native = load_schedule(HERE / "native_lenet5_filters.yaml")
    assert [r.name for r in native.rules] == ["filters_reg"]


# ----------------------------------------------------------------------------- errors


def test_yaml_syntax_error_has_its_line():
    text = yaml_text(
        """
        rules:
          - name: a
            penalty: l1
             strength: 1
        """
    )
    with pytest.raises(CompressError, match=r"^native\.yaml:4: invalid YAML: mapping values are not allowed") as info:
        parse_schedule(text, SRC)
    (d,) = info.value.diagnostics
    assert (d.file, d.line) == (SRC, line_no(text, " strength: 1"))


def test_unclosed_flow_sequence_is_a_syntax_error():
    text = "rules:\n  - name: a\n    layers: [conv1.weight\n    penalty: l1\n"
    with pytest.raises(CompressError, match="invalid YAML") as info:
        parse_schedule(text, SRC)
    assert info.value.diagnostics[0].file == SRC
    assert info.value.diagnostics[0].line is not None


def test_top_level_must_be_a_mapping():
    with pytest.raises(CompressError, match="a schedule must be a YAML mapping") as info:
        parse_schedule("- name: a\n- name: b\n", SRC)
    assert info.value.diagnostics[0].line == 1


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("strenght", "strength"),
        ("layer", "layers"),
        ("keepmask", "keep_mask"),
        ("threshold_criteria", "threshold_criterion"),
        ("group", "groups"),
    ],
)
def test_unknown_rule_key_suggests_the_closest(key, suggestion):
    text = rule_text(**{key: "1"})
    diagnostics = errors_of(text, re.escape(f"unknown key (did you mean {suggestion!r}?)"))
    d = only(diagnostics, f"rules[r].{key}")
    assert d.message == f"unknown key (did you mean {suggestion!r}?)"
    assert d.line == line_no(text, f"{key}:")


def test_unknown_top_level_key_suggests_the_closest():
    text = "version: 1\nrule:\n  - {name: a}\n"
    d = only(errors_of(text, "did you mean 'rules'"), "rule")
    assert d.line == 2


def test_unknown_key_without_a_close_match_lists_the_valid_keys():
    text = rule_text(colour="red")
    d = only(errors_of(text, "unknown key"), "rules[r].colour")
    assert d.message.startswith("unknown key; valid keys: clear_momentum, epochs, frequency, groups, keep_mask, layers")


def test_duplicate_key_is_an_error_naming_both_lines():
    text = yaml_text(
        """
        rules:
          - name: r
            penalty: l1
            strength: 0.1
            layers: [fc1.weight]
            strength: 0.2
        """
    )
    first, second = line_no(text, "strength: 0.1"), line_no(text, "strength: 0.2")
    (d,) = errors_of(text, re.escape(f"duplicate key 'strength' (lines {first} and {second})"))
    assert d.line == second and d.field == "strength"


def test_duplicate_top_level_key_is_an_error():
    text = "rules: []\nversion: 1\nrules: []\n"
    (d,) = errors_of(text, r"duplicate key 'rules' \(lines 1 and 3\)")
    assert d.line == 3


def test_duplicate_rule_name():
    text = yaml_text(
        """
        rules:
          - {name: same, penalty: l1, strength: 0.1, layers: [fc1.weight]}
          - {name: same, penalty: l1, strength: 0.1, layers: [fc2.weight]}
        """
    )
    (d,) = errors_of(text, r"duplicate rule name 'same' \(first at line 2\)")
    assert d.line == 3 and d.field == "rules[1].name"


def test_merge_key_overrides_are_not_duplicates():
    text = yaml_text(
        """
        rules:
          - &base
            name: a
            penalty: group_lasso
            groups: filters
            strength: 0.1
            layers: [conv1.weight]
          - <<: *base
            name: b
            layers: [conv2.weight]
        """
    )
    schedule = parse_schedule(text, SRC)
    assert [r.name for r in schedule.rules] == ["a", "b"]
    assert schedule.rules[1].targets == (Target("conv2.weight", 0.1, ("filters",)),)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("strength", "high", "expected a number, got a string ('high')"),
        ("strength", '"0.1"', "expected a number, got a string ('0.1')"),
        ("strength", "true", "expected a number, got a boolean (true)"),
        ("strength", "[0.1]", "expected a number, got a list"),
        ("threshold", "no", "expected a number, got a boolean (false)"),
        ("frequency", "1.5", "expected an integer, got float (1.5)"),
        ("frequency", "true", "expected an integer, got a boolean (true)"),
        ("keep_mask", "1", "expected true or false, got int (1)"),
        ("keep_mask", "'yes'", "expected true or false, got a string ('yes')"),
        ("name", "[a]", "expected a string, got a list"),
        ("penalty", "{l1: 1}", "expected a string, got a mapping"),
        ("mode", "3", "expected a string, got int (3)"),
        ("groups", "{filters: 1}", "expected a group name or a list of group names"),
        ("groups", "[]", "expected a group name or a list of group names"),
        ("groups", "[filters, 3]", "expected a group name or a list of group names"),
        ("layers", "7", "expected a list of parameter names or globs, or a mapping name -> strength"),
        ("layers", "[]", "expected a list of parameter names or globs, or a mapping name -> strength"),
        ("layers", "[conv1.weight, 2]", "expected a list of parameter names or globs, or a mapping"),
        ("epochs", "5", "expected [start, end] or [start] with integer epochs"),
        ("epochs", "{start: 1}", "expected [start, end] or [start] with integer epochs"),
        ("epochs", "[]", "expected [start, end] or [start] with integer epochs"),
        ("epochs", "[0, 5, 10]", "expected [start, end] or [start] with integer epochs"),
        ("epochs", "[0.5, 2]", "expected [start, end] or [start] with integer epochs"),
        ("epochs", "[true, 2]", "expected [start, end] or [start] with integer epochs"),
        ("epochs", '["0", 2]', "expected [start, end] or [start] with integer epochs"),
    ],
)
def test_wrong_types(key, value, message):
    text = rule_text(**{key: value})
    diagnostics = errors_of(text, re.escape(message))
    d = only(diagnostics, f"rules[r].{key}" if key != "name" else "rules[0].name")
    assert d.message.startswith(message)
    assert d.line == line_no(text, f"{key}:")


def test_a_rule_that_is_a_list_instead_of_a_mapping():
    text = "rules:\n  - {name: ok, penalty: l1, strength: 1, layers: [a]}\n  - [name, penalty]\n"
    (d,) = errors_of(text, "expected a mapping, got a list")
    assert (d.line, d.field) == (3, "rules[1]")


def test_rules_must_be_a_list():
    text = "version: 1\nrules:\n  r: {penalty: l1}\n"
    (d,) = errors_of(text, "expected a list of rules")
    assert (d.line, d.field) == (2, "rules")


def test_lr_scheduler_as_a_list_of_lists_and_without_class():
    text = yaml_text(
        """
        rules: []
        lr_scheduler:
          - [StepLR, 3]
          - {step_size: 3}
          - {class: 3}
        """
    )
    diagnostics = errors_of(text, "expected a mapping, got a list")
    assert [(d.field, d.line, d.message) for d in diagnostics] == [
        ("lr_scheduler[0]", 3, "expected a mapping, got a list"),
        ("lr_scheduler[1].class", 4, "required key is missing (a torch.optim.lr_scheduler class, e.g. StepLR)"),
        ("lr_scheduler[2].class", 5, "expected a string, got int (3)"),
    ]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"strength": "-0.1"}, "rules[r].strength", "must be >= 0, got -0.1"),
        ({"strength": "-1e-3"}, "rules[r].strength", "must be >= 0, got -0.001"),
        ({"threshold": "-1"}, "rules[r].threshold", "must be >= 0, got -1"),
        ({"frequency": "0"}, "rules[r].frequency", "must be >= 1, got 0"),
        ({"strength": None, "layers": "{conv1.weight: -2}"}, "rules[r].layers.conv1.weight", "must be >= 0, got -2"),
    ],
)
def test_out_of_range_values(fields, field, message):
    text = rule_text(**fields)
    d = only(errors_of(text, re.escape(message)), field)
    assert d.message == message
    assert d.line == line_no(text, ": -" if "-" in message else "frequency:")


@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.inf", "+.Inf", "1e999"])
@pytest.mark.parametrize("key", ["strength", "threshold"])
def test_non_finite_numbers(key, value):
    text = rule_text(**{key: value})
    d = only(errors_of(text, "must be a finite number"), f"rules[r].{key}")
    assert d.line == line_no(text, f"{key}: {value}")
    got = d.message.rsplit(" ", 1)[1]
    assert math.isnan(float(got)) or math.isinf(float(got))


def test_non_finite_per_layer_strength():
    text = rule_text(strength=None, layers="\n      conv1.weight: 0.1\n      conv2.weight: .inf")
    d = only(errors_of(text, r"must be a finite number, got inf"), "rules[r].layers.conv2.weight")
    assert d.line == line_no(text, "conv2.weight: .inf")


@pytest.mark.parametrize(
    ("epochs", "message"),
    [
        ("[3, 3]", "empty epoch range [3, 3): the end is exclusive and must exceed the start"),
        ("[5, 2]", "inverted epoch range [5, 2): the end is exclusive and must exceed the start"),
        ("[-1, 4]", "epochs must be >= 0, got [-1, 4]"),
        ("[-2]", "epochs must be >= 0, got [-2]"),
        ("[2, -4]", "epochs must be >= 0, got [2, -4]"),
    ],
)
def test_bad_epoch_ranges(epochs, message):
    text = rule_text(epochs=epochs)
    d = only(errors_of(text, re.escape(message)), "rules[r].epochs")
    assert d.message == message
    assert d.line == line_no(text, "epochs:")


def test_unknown_penalty_lists_the_valid_ones():
    text = rule_text(penalty="lasso", groups=None)
    d = only(errors_of(text, "unknown value 'lasso'"), "rules[r].penalty")
    assert d.message.endswith("valid: group_lasso, group_variance, l1, l2")
    assert d.line == line_no(text, "penalty:")


def test_unknown_penalty_with_a_close_name_suggests_it():
    d = only(errors_of(rule_text(penalty="group-lasso"), "did you mean 'group_lasso'"), "rules[r].penalty")
    assert d.message.startswith("unknown value 'group-lasso' (did you mean 'group_lasso'?)")


def test_unknown_group_lists_the_valid_ones():
    text = rule_text(groups="filter")
    d = only(errors_of(text, r"unknown group 'filter' \(did you mean 'filters'\?\)"), "rules[r].groups")
    valid = d.message.split("valid: ", 1)[1].split(", ")
    assert set(valid) == {
        "2d",
        "3d",
        "4d",
        "channels",
        "cols",
        "elements",
        "filters",
        "kernels",
        "layer",
        "rows",
        "blocks(RxDxHxW)",
        "strided(K)",
    }
    assert d.line == line_no(text, "groups:")


def test_unknown_group_inside_a_list():
    text = rule_text(groups="[filters, Rows+Cols]")
    (d,) = errors_of(text, "unknown group 'Rows\\+Cols'")
    assert d.field == "rules[r].groups"


def test_group_lasso_over_elements_is_an_error():
    (d,) = errors_of(rule_text(groups="elements"), re.escape("group lasso over elements is plain L1; use penalty: l1"))
    assert d.field == "rules[r].groups"


def test_group_lasso_needs_groups():
    text = rule_text(groups=None)
    (d,) = errors_of(
        text,
        re.escape(
            "group_lasso needs groups; valid: blocks(RxDxHxW), channels, cols, filters, kernels, layer, rows, "
            "strided(K)"
        ),
    )
    assert (d.field, d.line) == ("rules[r].groups", line_no(text, "- name: r"))


@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_elementwise_penalty_with_groups_is_an_error(penalty):
    text = rule_text(penalty=penalty, groups="3D")
    expected = f"{penalty} acts on single weights; use penalty: group_lasso for groups '3D'"
    (d,) = errors_of(text, re.escape(expected))
    assert (d.field, d.line) == ("rules[r].groups", line_no(text, "groups:"))


@pytest.mark.parametrize(("key", "value"), [("mode", "Proximal"), ("threshold_criterion", "Mean_Abs")])
def test_unknown_choice_values(key, value):
    text = rule_text(**{key: value})
    d = only(errors_of(text, f"unknown value '{value}'"), f"rules[r].{key}")
    assert "did you mean" in d.message
    assert d.line == line_no(text, f"{key}:")


@pytest.mark.parametrize("missing", ["name", "penalty", "layers"])
def test_required_keys(missing):
    text = rule_text(**{missing: None})
    field = "rules[0].name" if missing == "name" else f"rules[r].{missing}"
    d = only(errors_of(text, "required key is missing"), field)
    assert d.line == 3  # the rule's first line ("  - name: ..." or its first key)


def test_missing_strength():
    text = rule_text(strength=None)
    (d,) = errors_of(text, re.escape("required key is missing (or give per-layer strengths in layers)"))
    assert (d.field, d.line) == ("rules[r].strength", 3)


def test_strength_and_per_layer_strengths_together():
    text = rule_text(layers="{conv1.weight: 0.1}")
    (d,) = errors_of(text, "give either strength or per-layer strengths in layers, not both")
    assert (d.field, d.line) == ("rules[r].strength", line_no(text, "strength:"))


def test_unsupported_version():
    text = "version: 2\nrules: []\n"
    (d,) = errors_of(text, re.escape("unsupported schedule version 2; valid: 1"))
    assert (d.field, d.line) == ("version", 1)


@pytest.mark.parametrize(
    "tagged",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/new:pathlib.Path ['{marker}']",
        "!!python/object:argparse.Namespace {{a: 1}}",
        "!!python/name:os.system",
    ],
)
def test_python_tags_are_rejected_without_constructing_anything(tmp_path, tagged):
    marker = tmp_path / "constructed"
    text = f"rules:\n  - name: a\n    penalty: {tagged.format(marker=marker)}\n"
    with pytest.raises(CompressError, match="could not determine a constructor for the tag 'tag:yaml.org,2002:python"):
        parse_schedule(text, SRC)
    assert not marker.exists()


def test_every_error_in_a_file_is_reported_at_once():
    text = yaml_text(
        """
        version: 1
        rules:
          - name: a
            penalty: group_lasso
            groups: filter
            strenght: 0.1
            layers: ["conv*.weight"]
            epochs: [4, 2]
          - name: b
            penalty: l1
            groups: rows
            strength: -1
            layers: [fc1.weight]
            mode: fast
          - name: c
            penalty: l2
            strength: .nan
            layers: [fc2.weight]
            keep_mask: maybe
        lr_scheduler: {step_size: 3}
        """
    )
    diagnostics = errors_of(text, "unknown group 'filter'")
    located = sorted((d.line, d.field) for d in diagnostics)
    assert located == sorted(
        [
            (line_no(text, "groups: filter"), "rules[a].groups"),
            (line_no(text, "strenght"), "rules[a].strenght"),
            (line_no(text, "name: a"), "rules[a].strength"),  # missing, reported at the rule
            (line_no(text, "epochs: [4, 2]"), "rules[a].epochs"),
            (line_no(text, "groups: rows"), "rules[b].groups"),
            (line_no(text, "strength: -1"), "rules[b].strength"),
            (line_no(text, "mode: fast"), "rules[b].mode"),
            (line_no(text, "strength: .nan"), "rules[c].strength"),
            (line_no(text, "keep_mask: maybe"), "rules[c].keep_mask"),
            (line_no(text, "lr_scheduler"), "lr_scheduler.class"),
        ]
    )
    assert len(diagnostics) == 10
    assert str(CompressError(diagnostics)).count("\n") == 9


# ----------------------------------------------------------------------------- binding to a model


def test_bind_resolves_globs_to_parameters(lenet5):
    text = rule_text(layers='["conv*.weight", "fc?.bias"]', groups="layer", epochs="[0, 4]", keep_mask="true")
    rules, warnings = bind(parse_schedule(text, SRC), lenet5, epochs=10)
    (bound,) = rules
    assert [(t.param_name, tuple(t.param.shape)) for t in bound.targets] == [
        ("conv1.weight", (20, 1, 5, 5)),
        ("conv2.weight", (50, 20, 5, 5)),
        ("fc1.bias", (500,)),
        ("fc2.bias", (10,)),
    ]
    assert all(t.strength == 0.01 and t.groups == ("layer",) for t in bound.targets)
    assert bound.rule.keep_mask_at == 3
    assert warnings == []


def test_unmatched_glob_lists_the_closest_names(lenet5):
    text = yaml_text(
        """
        rules:
          - name: r
            penalty: l1
            strength: 0.1
            layers:
              - conv1.weight
              - cnv2.weight
        """
    )
    (d,) = bind_errors(text, lenet5)
    assert (
        d.message == "'cnv2.weight' matches no parameter of the model; closest: conv2.weight, conv1.weight, fc2.weight"
    )
    assert (d.line, d.field) == (line_no(text, "cnv2.weight"), "rules[r].layers")


def test_unmatched_name_without_close_names_points_to_list_params(lenet5):
    (d,) = bind_errors(rule_text(layers="[zzzzzz]", penalty="l1", groups=None), lenet5)
    assert d.message == "'zzzzzz' matches no parameter of the model; `compress check --list-params` lists them"


@pytest.mark.parametrize(
    ("group", "param", "shape"), [("channels", "conv1.bias", "[20]"), ("filters", "fc2.bias", "[10]")]
)
def test_structured_group_on_a_bias_is_an_error(lenet5, group, param, shape):
    text = rule_text(groups=group, layers=f'["{param}"]')
    (d,) = bind_errors(text, lenet5)
    assert d.message.startswith(f"{param}: group '{group}'")
    assert d.message.endswith(f"needs a weight with at least 2 dims, got shape {shape}")
    assert (d.line, d.field) == (line_no(text, "layers:"), "rules[r].layers")


def test_rows_on_a_conv_weight_is_an_error(lenet5):
    (d,) = bind_errors(rule_text(groups="rows", layers="[conv2.weight]"), lenet5)
    assert d.message.endswith("needs a weight with exactly 2 dims, got shape [50, 20, 5, 5]")


def test_a_glob_over_weights_and_biases_reports_every_bias(lenet5):
    diagnostics = bind_errors(rule_text(groups="filters", layers='["conv*"]'), lenet5)
    assert [d.message.split(":")[0] for d in diagnostics] == ["conv1.bias", "conv2.bias"]


def test_one_parameter_matched_by_two_patterns(lenet5):
    (d,) = bind_errors(rule_text(layers='["conv1.weight", "conv1.*"]', groups="layer"), lenet5)
    assert d.message == "conv1.weight is matched by both 'conv1.weight' and 'conv1.*'"


def test_mlp_binds_with_rows_and_cols(mlp):
    text = rule_text(groups="[rows, cols]", layers='["fc*.weight"]')
    (bound,), _ = bind(parse_schedule(text, SRC), mlp, epochs=3)
    assert [(t.param_name, tuple(t.param.shape)) for t in bound.targets] == [
        ("fc1.weight", (300, 784)),
        ("fc2.weight", (100, 300)),
        ("fc3.weight", (10, 100)),
    ]


@pytest.mark.parametrize(
    ("lr", "message", "field"),
    [
        (
            "{class: StepLr, step_size: 1}",
            "unknown class 'StepLr' (did you mean 'StepLR'?); valid: ",
            "lr_scheduler StepLr",
        ),
        ("{class: StepLR, step_siz: 1}", "StepLR takes no argument 'step_siz' (did you mean 'step_size'?)", None),
        ("{class: StepLR, gamma: 0.5}", "StepLR needs argument 'step_size'", "lr_scheduler StepLR"),
        ("{class: ExponentialLR, gamma: 0.5, colour: 1}", "ExponentialLR takes no argument 'colour'; valid: ", None),
    ],
)
def test_lr_scheduler_class_and_arguments_are_checked(lenet5, lr, message, field):
    text = rule_text() + f"lr_scheduler: {lr}\n"
    diagnostics = bind_errors(text, lenet5)
    d = diagnostics[0]
    assert d.message.startswith(message)
    assert d.line == line_no(text, "lr_scheduler:")
    if field is not None:
        assert d.field == field
    else:
        assert d.field.startswith("lr_scheduler ") and "." in d.field


def test_rule_beyond_the_run_is_a_warning(lenet5):
    text = rule_text(epochs="[12, 20]")
    rules, warnings = bind(parse_schedule(text, SRC), lenet5, epochs=10)
    assert len(rules) == 1
    (w,) = warnings
    assert w.warning is True
    assert w.message == "never active in a run of 10 epochs (epochs [12, 20))"
    assert (w.file, w.line, w.field) == (SRC, 3, "rules[r].epochs")


@pytest.mark.parametrize(("epochs", "last", "detail"), [("[5]", None, "end"), ("[2, 15]", 14, "after epoch 14")])
def test_keep_mask_that_never_fires_is_a_warning(lenet5, epochs, last, detail):
    rules, warnings = bind(parse_schedule(rule_text(epochs=epochs, keep_mask="true"), SRC), lenet5, epochs=10)
    (w,) = warnings
    assert w.warning and (w.file, w.line, w.field) == (SRC, 3, "rules[r].epochs")
    assert w.message.startswith("keep_mask") and "no mask" in w.message and detail in w.message
    assert rules[0].rule.keep_mask_at == last


def test_l2_rule_next_to_weight_decay_is_a_warning(lenet5):
    text = rule_text(penalty="l2", groups=None, layers="[fc2.weight]")
    _, warnings = bind(parse_schedule(text, SRC), lenet5, epochs=10, weight_decay=1e-4)
    (w,) = warnings
    assert w.message == "rule's L2 and the optimizer's weight_decay=0.0001 both decay fc2.weight"


def test_lr_scheduler_beyond_the_run_is_a_warning(lenet5):
    text = rule_text() + "lr_scheduler: {class: StepLR, step_size: 1, epochs: [20, 30]}\n"
    _, warnings = bind(parse_schedule(text, SRC), lenet5, epochs=10)
    assert any("never" in w.message and w.line == line_no(text, "lr_scheduler") for w in warnings)


# ----------------------------------------------------------------------------- the CLI


def test_cli_check_prints_the_plan_of_a_good_file():
    path = HERE / "native_lenet5_filters.yaml"
    result = invoke("check", "--schedule", str(path), "--arch", "lenet5", "--epochs", "10")
    assert result.exit_code == 0, result.output
    assert normalized(result.stdout) == [
        f"schedule {path}: model lenet5, dataset mnist5k, 10 epochs",
        "rule filters_reg: group_lasso, mode penalty, epochs [0, 7) every 2: active in 0, 2, 4, 6 of 10, "
        "keep_mask (after epoch 6)",
        "conv1.weight 20x1x5x5 20 filters strength 0.005 threshold 0.005 (mean_abs)",
        "conv2.weight 50x20x5x5 50 filters strength 0.005 threshold 0.005 (mean_abs)",
        "lr_scheduler StepLR(step_size=10, gamma=0.1), epochs [0, 30): 10 of 10",
        "learning rate 0.01 (epochs 0-9)",
        "OK: 1 rule(s) on 2 parameter(s), 1 lr scheduler(s)",
    ]
    assert result.stderr == ""


def test_cli_check_prints_warnings_on_stderr(tmp_path):
    path = tmp_path / "late.yaml"
    path.write_text(rule_text(epochs="[12, 20]"))
    result = invoke("check", "--schedule", str(path), "--arch", "lenet5", "--epochs", "10")
    assert result.exit_code == 0
    assert (
        result.stderr == f"{path}:3: rules[r].epochs: warning: never active in a run of 10 epochs (epochs [12, 20))\n"
    )
    assert "rule r: group_lasso, mode proximal, epochs [12, 20): 0 of 10" in normalized(result.stdout)


def test_cli_check_bad_file_prints_one_line_per_error_and_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml_text(
            """
            rules:
              - name: a
                penalty: l3
                strength: -1
                layers: [conv1.weight]
                epochs: [3, 3]
            """
        )
    )
    result = invoke("check", "--schedule", str(path), "--arch", "lenet5")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}:3: rules[a].penalty: unknown value 'l3' (did you mean 'l2'?); "
        "valid: group_lasso, group_variance, l1, l2",
        f"{path}:4: rules[a].strength: must be >= 0, got -1",
        f"{path}:6: rules[a].epochs: empty epoch range [3, 3): the end is exclusive and must exceed the start",
    ]
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_cli_check_reports_binding_errors_with_exit_2(tmp_path):
    path = tmp_path / "unbound.yaml"
    path.write_text(rule_text(layers='["conv3.weight"]'))
    result = invoke("check", "--schedule", str(path), "--arch", "lenet5")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    prefix = f"{path}:7: rules[r].layers: 'conv3.weight' matches no parameter of the model; closest: "
    assert line.startswith(prefix)
    assert set(line[len(prefix) :].split(", ")[:2]) == {"conv1.weight", "conv2.weight"}


def test_cli_check_yaml_syntax_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("rules:\n  - name: a\n   penalty: l1\n")
    result = invoke("check", "--schedule", str(path))
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{path}:3: invalid YAML: ")
    assert "Traceback" not in result.output


def test_cli_check_missing_file():
    result = invoke("check", "--schedule", "no/such/schedule.yaml")
    assert result.exit_code == 2
    assert result.stderr == "error: --schedule: file not found: no/such/schedule.yaml\n"


def test_cli_list_params_of_mlp():
    result = invoke("check", "--arch", "mlp", "--list-params")
    assert result.exit_code == 0, result.output
    assert normalized(result.stdout) == [
        "mlp: 6 parameter tensors, 266,610 weights",
        "fc1.weight 300x784 235200",
        "fc1.bias 300 300",
        "fc2.weight 100x300 30000",
        "fc2.bias 100 100",
        "fc3.weight 10x100 1000",
        "fc3.bias 10 10",
    ]


def test_cli_check_without_schedule_or_list_params_is_a_usage_error():
    result = invoke("check", "--arch", "mlp")
    assert result.exit_code == 2
    assert "give --schedule to check, or --list-params" in result.stderr
