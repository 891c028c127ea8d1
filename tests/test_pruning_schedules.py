"""Pruning rules as the two readers see them: every key of our ``prune:`` rules and every located error;
every Distiller pruner class mapped to the rule Distiller's source says it is (criterion, groups,
level, ties, never all structures, no momentum clearing, Bernoulli's rescaling, the signed gradient,
ActivationMean's highest-go), its ``'*'`` fallback, its policy arguments, blocks, unsupported classes;
and our Distiller-style fixture schedules under ``tests/schedules/pruning/`` pass ``compress check``.
Expected values are written out by hand; lines are found by searching the YAML for a snippet."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from compress.errors import CompressError
from compress.models import build_model
from compress.schedule import parse_schedule
from compress.schedule.distiller_pruners import MAPPED
from compress.schedule.model import Epochs, Level, Masking, PruneRule, PruneTarget
from compress.scheduler import CompressionScheduler, bind
from tests.helpers import invoke, line_no, located_bind_errors, located_parse_errors, yaml_text

SRC = "s.yaml"
FIXTURES = Path(__file__).parent / "schedules" / "pruning"


def rules_of(text: str) -> tuple[PruneRule, ...]:
    return parse_schedule(yaml_text(text), SRC).pruning


def one_error(text: str, snippet: str, field: str, message: str, match: str | None = None) -> None:
    """``text`` fails with exactly one error, at the line of ``snippet``, naming ``field``."""
    text = yaml_text(text)
    errors = located_parse_errors(text, match or re.escape(message), SRC)
    assert [(d.line, d.field) for d in errors] == [(line_no(text, snippet), field)], errors
    assert message in errors[0].message and "\n" not in str(errors[0])


# --- our format ------------------------------------------------------------------------------------------


def test_every_key_of_a_prune_rule():
    (rule,) = rules_of("""
        version: 1
        rules:
          - name: conv-agp
            prune: l2
            groups: filters
            sparsity: {from: 0.1, to: 0.6}
            layers: {conv1.weight: 0.5, conv2.weight: 0.7}
            epochs: [1, 9]
            frequency: 2
            release: 12
            dependency: leader
            clear_momentum: false
            recompute_every: 5
        """)
    assert rule == PruneRule(
        "conv-agp", "l2", "filters", Level("agp", 0.6, initial=0.1),
        (PruneTarget("conv1.weight", 0.5), PruneTarget("conv2.weight", 0.7)), Epochs(1, 9, 2),
        Masking(release_at=12, recompute_every=5), dependency="leader", clear_momentum=False)  # fmt: skip
    assert (rule.ties, rule.structures_keep_one, rule.rescale, rule.stats) == ("exact", False, False, "train")


@pytest.mark.parametrize(("key", "level", "masking"), [
    ("sparsity: 0.3", Level("sparsity", 0.3), Masking()),
    ("threshold: 0.02", Level("threshold", 0.02), Masking()),
    ("sensitivity: 0.5", Level("sensitivity", 0.5), Masking()),
    ("splicing: {sensitivity: 0.4}", Level("splicing", 0.4, low=0.9, high=1.1), Masking(dense_copy=True)),
    ("splicing: {sensitivity: 0.4, low: 0.8, high: 1.2, growth: 0.1}",
     Level("splicing", 0.4, low=0.8, high=1.2, growth=0.1), Masking(dense_copy=True)),
])  # fmt: skip
def test_each_level_key_and_the_defaults(key, level, masking):
    (rule,) = rules_of(f"rules:\n  - name: r\n    prune: l1\n    {key}\n    layers: fc1.weight\n")
    assert rule == PruneRule("r", "l1", "elements", level, (PruneTarget("fc1.weight"),), Epochs(), masking)
    assert rule.clear_momentum and rule.dependency is None


PRUNE = "version: 1\nrules:\n  - name: p\n    prune: {criterion}\n{body}    layers: [fc1.weight]\n"


def prune_rule(body: str, criterion: str = "l1") -> str:
    return PRUNE.format(criterion=criterion, body="".join(f"    {line}\n" for line in body.splitlines()))


@pytest.mark.parametrize(("criterion", "body", "snippet", "field", "message"), [
    ("l1", "epochs: [0, 3]", "- name: p", "rules[p]",
     "give exactly one of sparsity, threshold, sensitivity, splicing (how much to prune); got none"),
    ("l1", "sparsity: 0.5\nthreshold: 0.1", "- name: p", "rules[p]", "got sparsity, threshold"),
    ("l1", "sparsity: 1.5", "sparsity: 1.5", "rules[p].sparsity", "a fraction of the groups: expected 0..1, got 1.5"),
    ("l1", "sparsity: {from: 0.1, to: 0.5}", "sparsity:", "rules[p].sparsity",
     "AGP needs an end: give epochs: [start, end]"),
    ("l1", "sparsity: {from: 0.5, to: 0.5}\nepochs: [0, 4]", "sparsity:", "rules[p].sparsity",
     "AGP goes up: expected 0 <= from < to <= 1, got from 0.5 to 0.5"),
    ("l1", "sparsity: {from: 0.6, to: 0.2}\nepochs: [0, 4]", "sparsity:", "rules[p].sparsity", "got from 0.6 to 0.2"),
    ("l1", "groups: filters\nsensitivity: 0.5", "sensitivity:", "rules[p].sensitivity",
     "sensitivity prunes single weights: use groups: elements"),
    ("random", "threshold: 0.1", "threshold:", "rules[p].threshold",
     "random cannot prune by threshold: it serves sparsity, agp"),
    ("apoz", "groups: rows\nsparsity: 0.5\nepochs: [1, 3]", "groups:", "rules[p].groups",
     "apoz ranks filters only, got rows"),
    ("l11", "sparsity: 0.5", "prune: l11", "rules[p].prune", "unknown value 'l11' (did you mean 'l1'?)"),
    ("l1", "splicing: {sensitivity: 0.5, low: 1.2, high: 1.1}", "splicing:", "rules[p].splicing.low",
     "must not exceed high (1.1), got 1.2"),
    ("l1", "sparsty: 0.5\nsparsity: 0.5", "sparsty:", "rules[p].sparsty", "unknown key (did you mean 'sparsity'?)"),
    ("l1", "sparsity: 0.5\ndependency: follower", "dependency:", "rules[p].dependency", "follower"),
])  # fmt: skip
def test_each_mistake_in_a_prune_rule_is_one_located_error(criterion, body, snippet, field, message):
    text = prune_rule(body, criterion)
    one_error(text, snippet, field, message)


def test_a_rule_that_both_prunes_and_penalizes_is_one_error():
    text = (
        "version: 1\nrules:\n  - name: p\n    prune: l1\n    penalty: l1\n    sparsity: 0.5\n    layers: [fc1.weight]\n"
    )
    one_error(text, "prune: l1", "rules[0].prune", "a rule either regularizes (penalty:) or prunes (prune:), not both")


def test_a_per_layer_sparsity_above_one_names_the_layer():
    text = prune_rule("sparsity: 0.5").replace("[fc1.weight]", "\n      fc1.weight: 1.5\n      fc2.weight: 0.5")
    one_error(text, "fc1.weight: 1.5", "rules[p].layers.fc1.weight", "a fraction of the groups: expected 0..1, got 1.5")


@pytest.mark.parametrize(("arch", "body", "field", "message"), [
    ("mlp", "sparsity: 0.5\nepochs: [2, 4]\nrelease: 2", "rules[p].release",
     "release: 2 is not after the first pruning epoch (2)"),
    ("mlp", "groups: filters\nsparsity: 0.5\nepochs: [0, 3]", "rules[p].epochs",
     "apoz ranks by activation statistics gathered over an epoch, but the rule prunes in epoch 0 before any"),
    ("lenet5", "groups: filters\nsparsity: 0.5\nepochs: [1, 3]", "rules[p].prune",
     "conv1.weight: apoz cannot rank it: no ReLU reads conv1's output (it goes to conv2)"),
    ("mlp", "groups: filters\nsparsity: 0.5\ndependency: leader", "rules[p].dependency",
     "fc2.weight has 100 filters, the leader fc1.weight 300: a dependent layer must have as many"),
])  # fmt: skip
def test_each_mistake_binding_a_prune_rule_is_one_located_error(arch, body, field, message):
    model = build_model(arch, num_classes=10, in_channels=1, input_size=28)
    criterion = "apoz" if "apoz" in message else "l1"
    text = prune_rule(body, criterion)
    if arch == "lenet5":
        text = text.replace("fc1.weight", "conv1.weight")
    if "leader" in body:
        text = text.replace("[fc1.weight]", "[fc1.weight, fc2.weight]")
    (error,) = located_bind_errors(text, model, SRC)
    assert error.field == field and message in error.message, error
    assert error.line == line_no(text, "- name: p")  # the rule's line (binding knows the rule, not the key)


def test_a_gradient_rule_in_epoch_zero_and_a_name_that_matches_nothing(mlp):
    text = prune_rule("sparsity: 0.5", "gradient").replace("[fc1.weight]", "[fc1.weight, fc9.weight]")
    errors = located_bind_errors(text, mlp, SRC)
    assert [d.field for d in errors] == ["rules[p].epochs", "rules[p].layers"], errors
    assert "gradient ranks by gradients gathered over an epoch" in errors[0].message
    assert "fc9.weight" in errors[1].message and errors[1].line == line_no(text, "layers:")


def test_a_release_beyond_the_run_is_a_warning(mlp):
    text = prune_rule("sparsity: 0.5\nepochs: [0, 2]\nrelease: 12")
    _, warnings = bind(parse_schedule(text, SRC), mlp, epochs=10)
    assert [w.message for w in warnings if w.warning] == [
        "release: 12 is beyond this run's 10 epochs: the masks hold to the end"]  # fmt: skip


# --- Distiller's pruners -----------------------------------------------------------------------------------

POLICY = "starting_epoch: 1\nending_epoch: 7\nfrequency: 2"


def distiller(pruner: str, policy: str = POLICY, args: str = "") -> str:
    ref = f"{{instance_name: p, args: {{{args}}}}}" if args else "{instance_name: p}"
    return ("version: 1\npruners:\n  p:\n" + "".join(f"    {line}\n" for line in yaml_text(pruner).splitlines())
            + f"policies:\n  - pruner: {ref}\n" + "".join(f"    {line}\n" for line in policy.splitlines()))  # fmt: skip


def ranked(cls: str, group: str = "Filters") -> str:
    level = "initial_sparsity: 0.1\nfinal_sparsity: 0.6" if cls.endswith("_AGP") else "desired_sparsity: 0.4"
    return f"class: {cls}\n{level}\ngroup_type: {group}\nweights: [conv1.weight]"


CONV1 = (PruneTarget("conv1.weight"),)
AGP = Level("agp", 0.6, initial=0.1)
DISTILLERS = {"clear_momentum": False, "stats": "eval"}  # every Distiller pruner: momentum untouched, eval stats
# (criterion, ties, keep one structure, rescale, signed gradient, highest go) from each class's
# source: Lp-ranked structures cut `score > k-th smallest` (Distiller's ties) and never all of them
# (num_structs_to_prune); the activation, gradient and random rankers argsort and cut exactly int(level x n),
# ActivationMean cutting the highest means; Bernoulli divides its mask by the kept fraction.
RANKED = {
    "L1RankedStructureParameterPruner": ("l1", "distiller", True, False, False, False),
    "L2RankedStructureParameterPruner": ("l2", "distiller", True, False, False, False),
    "ActivationAPoZRankedFilterPruner": ("apoz", "exact", False, False, False, False),
    "ActivationMeanRankedFilterPruner": ("mean_activation", "exact", False, False, False, True),
    "GradientRankedFilterPruner": ("gradient", "exact", False, False, True, False),
    "RandomRankedFilterPruner": ("random", "exact", False, False, False, False),
    "BernoulliFilterPruner": ("bernoulli", "exact", False, True, False, False),
}


@pytest.mark.parametrize("cls", sorted([*RANKED, *(f"{c}_AGP" for c in RANKED)]))
def test_each_ranked_pruner_maps_to_the_rule_distillers_source_describes(cls):
    criterion, ties, keep_one, rescale, signed, highest = RANKED[cls.removesuffix("_AGP")]
    # Bernoulli's rescaled masks only make sense on the forward pass (DropFilter's arguments)
    args, masking = ("", Masking())
    if rescale:
        args, masking = (
            "mask_on_forward_only: true, use_double_copies: true",
            Masking(forward_only=True, dense_copy=True),
        )
    (rule,) = rules_of(distiller(ranked(cls), args=args))
    level = AGP if cls.endswith("_AGP") else Level("sparsity", 0.4)
    assert rule == PruneRule("p", criterion, "filters", level, CONV1, Epochs(1, 7, 2), masking, ties=ties,
                             structures_keep_one=keep_one, rescale=rescale, signed_gradient=signed, highest_go=highest,
                             **DISTILLERS)  # fmt: skip


def per_parameter(cls: str, key: str, extra: str = "") -> str:
    return f"class: {cls}\n{key}: {{conv1.weight: 0.3, '*': 0.1}}\n{extra}"


def by_l1(groups: str, level: Level, targets: tuple = (), **extra) -> PruneRule:
    """A Distiller rule ranked or thresholded by magnitude (targets () stands for FALLBACK below)."""
    return PruneRule("p", "l1", groups, level, targets, ties="distiller", **extra)


AGP_TEXT = "class: AutomatedGradualPruner\ninitial_sparsity: 0.1\nfinal_sparsity: 0.6\nweights: [conv1.weight]"
SPLICING_TEXT = "low_thresh_mult: 0.9\nhi_thresh_mult: 1.1\nsensitivity_multiplier: 0.02"
STRUCTURE_TEXT = "class: StructureParameterPruner\nthreshold_criteria: Max\nreg_regims: {conv1.weight: [0.3, Filters]}"
RANDOM_LEVEL_TEXT = ("class: RandomLevelStructureParameterPruner\nsparsity_range: [0.1, 0.4]\ngroup_type: Channels\n"
                     "weights: [conv1.weight]")  # fmt: skip
OTHERS = {
    "AutomatedGradualPruner": (AGP_TEXT, by_l1("elements", AGP, CONV1)),
    "SparsityLevelParameterPruner": (per_parameter("SparsityLevelParameterPruner", "levels"),
                                     by_l1("elements", Level("sparsity", 0.0))),
    "MagnitudeParameterPruner": (per_parameter("MagnitudeParameterPruner", "thresholds"),
                                 by_l1("elements", Level("threshold", 0.0))),
    "SensitivityPruner": (per_parameter("SensitivityPruner", "sensitivities"),
                          by_l1("elements", Level("sensitivity", 0.0))),
    "SplicingPruner": (per_parameter("SplicingPruner", "sensitivities", SPLICING_TEXT),
                       by_l1("elements", Level("splicing", 0.0, low=0.9, high=1.1, growth=0.02))),
    "StructureParameterPruner": (STRUCTURE_TEXT, by_l1("filters", Level("threshold", 0.0),
                                                       (PruneTarget("conv1.weight", 0.3),), threshold_statistic="max")),
    "RandomLevelStructureParameterPruner": (RANDOM_LEVEL_TEXT, by_l1("channels", Level("uniform", 0.4, initial=0.1),
                                                                     CONV1, structures_keep_one=True)),
}  # fmt: skip
FALLBACK = (PruneTarget("conv1.weight", 0.3), PruneTarget("*", 0.1, fallback=True))


@pytest.mark.parametrize("cls", sorted(OTHERS))
def test_each_other_pruner_maps_to_the_rule_distillers_source_describes(cls):
    text, expected = OTHERS[cls]
    (rule,) = rules_of(distiller(text))
    if not expected.targets:
        expected = replace(expected, targets=FALLBACK)
    assert rule == replace(expected, epochs=Epochs(1, 7, 2), **DISTILLERS)


def test_every_mapped_class_is_covered_above():
    assert {*RANKED, *(f"{c}_AGP" for c in RANKED), *OTHERS} == MAPPED


@pytest.mark.parametrize(("group_type", "groups"), [("3D", "filters"), ("Filters", "filters"), ("Channels", "channels"),
                                                    ("Rows", "channels")])  # fmt: skip
def test_ranked_group_types_as_distiller_ranked_them(group_type, groups):
    """Distiller's LpRankedStructureParameterPruner ranks 'Rows' with rank_and_prune_channels."""
    (rule,) = rules_of(distiller(ranked("L1RankedStructureParameterPruner", group_type)))
    assert rule.groups == groups


def test_structure_pruner_mean_abs_of_rows_is_distillers_own_mean():
    text = "class: StructureParameterPruner\nthreshold_criteria: Mean_Abs\nreg_regims: {fc1.weight: [0.3, Rows]}"
    (rule,) = rules_of(distiller(text))
    assert (rule.groups, rule.threshold_statistic) == ("rows", "distiller_mean_abs")
    text = "class: StructureParameterPruner\nthreshold_criteria: Mean_Abs\nreg_regims: {conv1.weight: [0.3, 3D]}"
    assert [(r.groups, r.threshold_statistic) for r in rules_of(distiller(text))] == [("filters", "mean_abs")]


def test_explicit_names_win_over_the_star_wherever_it_is_written(mlp):
    text = distiller("class: SparsityLevelParameterPruner\nlevels: {'*': 0.5, fc2.weight: 0.25}", "epochs: [0]")
    (bound,), _ = bind(parse_schedule(text, SRC), mlp, epochs=2)
    values = {t.param_name: t.value for t in bound.targets}
    assert values == {"fc1.weight": 0.5, "fc1.bias": 0.5, "fc2.weight": 0.25, "fc2.bias": 0.5, "fc3.weight": 0.5,
                      "fc3.bias": 0.5}  # biases too, as Distiller's pruners saw every named parameter  # fmt: skip


def test_a_level_of_zero_keeps_a_named_parameter_out_of_the_star():
    """Distiller's SparsityLevelParameterPruner: ``levels.get(name, levels.get('*', 0))``; a level of 0
    returns before pruning, so a parameter named with 0 is not pruned, whatever '*' says."""
    model = build_model("mlp", num_classes=10, in_channels=1, input_size=28)
    text = distiller("class: SparsityLevelParameterPruner\nlevels: {fc1.weight: 0, '*': 0.5}", "epochs: [0]")
    schedule = parse_schedule(text, SRC)
    sched = CompressionScheduler(bind(schedule, model, epochs=2)[0], None, schedule, model=model)
    before = model.fc1.weight.detach().clone()
    sched.on_epoch_begin(0)
    assert float((model.fc2.weight == 0).float().mean()) == 0.5
    assert torch.equal(model.fc1.weight.detach(), before), "fc1.weight was named with level 0"


@pytest.mark.parametrize(("args", "masking"), [
    ("", Masking()),
    ("mask_on_forward_only: true", Masking(forward_only=True)),
    ("mask_on_forward_only: true, use_double_copies: true", Masking(forward_only=True, dense_copy=True)),
    ("use_double_copies: true", Masking()),  # Distiller masked again after each step: the copies never showed
    ("mask_on_forward_only: true, mask_gradients: true", Masking(forward_only=True, gradients=True)),
    ("mini_batch_pruning_frequency: 3", Masking(recompute_every=3)),
    ("discard_masks_at_minibatch_end: true", Masking(discard_each_step=True)),
    ("keep_mask: true", Masking(keep_at_end=True)),
    ("mask_on_forward_only: true, use_double_copies: true, mask_gradients: true, mini_batch_pruning_frequency: 1, "
     "discard_masks_at_minibatch_end: true, keep_mask: true",
     Masking(forward_only=True, dense_copy=True, gradients=True, recompute_every=1, discard_each_step=True,
             keep_at_end=True)),
])  # fmt: skip
def test_policy_arguments_say_when_the_masks_act(args, masking):
    (rule,) = rules_of(distiller(ranked("L1RankedStructureParameterPruner_AGP"), args=args))
    assert rule.masking == masking and not rule.fold_batchnorm


def test_fold_batchnorm_and_levels_arguments():
    (rule,) = rules_of(distiller(ranked("L1RankedStructureParameterPruner"), args="fold_batchnorm: true"))
    assert rule.fold_batchnorm
    text = distiller(
        "class: SparsityLevelParameterPruner\nlevels: {conv1.weight: 0.3}", args="levels: {conv2.weight: 0.6}"
    )
    (rule,) = rules_of(text)
    assert rule.targets == (PruneTarget("conv2.weight", 0.6),)


def test_mask_gradients_needs_forward_only_masks():
    text = distiller(ranked("L1RankedStructureParameterPruner"), args="mask_gradients: true")
    one_error(
        text,
        "mask_gradients",
        "policies[0].pruner.args.mask_gradients",
        "needs mask_on_forward_only: true (in Distiller the two are mutually exclusive otherwise)",
    )


def test_agp_on_an_epochs_list_is_an_error():
    text = distiller(ranked("L1RankedStructureParameterPruner_AGP"), "epochs: [0, 2, 4]")
    one_error(text, "epochs: [0, 2, 4]", "policies[0].epochs", "an AGP pruner needs starting_epoch, ending_epoch and "
              "frequency (Distiller's AGP cannot run on an epochs list)")  # fmt: skip


def blocks(shape: str) -> str:
    return (f"class: L1RankedStructureParameterPruner_AGP\ninitial_sparsity: 0.1\nfinal_sparsity: 0.5\n"
            f"group_type: Blocks\nkwargs: {{block_shape: {shape}}}\nweights: [conv2.weight]")  # fmt: skip


@pytest.mark.parametrize(("shape", "group"), [("[1, 4, 1, 1]", "blocks(1x4x1x1)"), ("[2, 1, 1, 1]", "blocks(2x1x1x1)"),
                                              ("[1, 1, 1, 1]", "blocks(1x1x1x1)")])  # fmt: skip
def test_distillers_block_shapes_map_to_blocks(shape, group):
    (rule,) = rules_of(distiller(blocks(shape)))
    assert rule.groups == group and rule.criterion == "l1" and rule.ties == "distiller"


@pytest.mark.parametrize(("shape", "message"), [
    ("[2, 4, 1, 1]", "[2, 4, 1, 1]: Distiller ran blocks of [R, 1, 1, 1] or [1, D, 1, 1] only"),
    ("[1, 4, 2, 2]", "Distiller ran blocks of [R, 1, 1, 1] or [1, D, 1, 1] only"),
    ("[1, 4, 1]", "group_type Blocks needs kwargs: {block_shape: [repetitions, depth, 1, 1]}"),
    ("[0, 4, 1, 1]", "with positive integers"),
])  # fmt: skip
def test_block_shapes_distiller_never_ran_are_refused(shape, message):
    one_error(distiller(blocks(shape)), "block_shape", "pruners.p.kwargs.block_shape", message)


def test_blocks_without_a_shape_and_blocks_for_an_activation_ranker():
    text = distiller(blocks("[1, 4, 1, 1]").replace("kwargs: {block_shape: [1, 4, 1, 1]}\n", ""))
    one_error(text, "class:", "pruners.p.kwargs.block_shape", "group_type Blocks needs kwargs")
    text = distiller(ranked("ActivationAPoZRankedFilterPruner", "Blocks"))
    one_error(text, "group_type:", "pruners.p.group_type", "unknown group_type 'Blocks'")


@pytest.mark.parametrize("cls", ["BaiduRNNPruner", "FMReconstructionChannelPruner"])
def test_an_unsupported_pruner_is_one_error_with_no_follow_on(cls, mlp):
    text = distiller(f"class: {cls}\ngroup_type: Channels\ndesired_sparsity: 0.5\nweights: [fc9.weight]")
    schedule = parse_schedule(text, SRC, defer_errors=True)
    with pytest.raises(CompressError) as info:
        bind(schedule, mlp, epochs=10)
    (error,) = info.value.diagnostics
    assert (error.line, error.field) == (line_no(text, "class:"), "pruners.p.class") and cls in error.message


def test_a_pruner_in_two_policies_is_two_rules():
    text = distiller(ranked("L1RankedStructureParameterPruner"), "epochs: [0, 1]") + \
        "  - pruner: {instance_name: p, args: {keep_mask: true}}\n    starting_epoch: 4\n    ending_epoch: 8\n" \
        "    frequency: 2\n"  # fmt: skip
    first, second = rules_of(text)
    assert (first.name, first.epochs, first.masking) == ("p", Epochs(listed=(0, 1)), Masking())
    assert (second.name, second.epochs, second.masking) == ("p#2", Epochs(4, 8, 2), Masking(keep_at_end=True))


# --- our fixture schedules pass compress check ---------------------------------------------------------------

FIXTURE_ARCHS = {
    "distiller_mlp_agp.yaml": "mlp", "distiller_resnet20_leader.yaml": "resnet20_cifar",
    "distiller_resnet20_apoz.yaml": "resnet20_cifar", "distiller_lenet5_sensitivity.yaml": "lenet5",
    "distiller_lenet5_splicing.yaml": "lenet5", "distiller_lenet5_hybrid.yaml": "lenet5",
    "native_mlp_agp.yaml": "mlp", "native_mlp_dsd.yaml": "mlp", "native_lenet5_filters.yaml": "lenet5",
}  # fmt: skip


def test_every_fixture_schedule_is_listed_here():
    assert sorted(p.name for p in FIXTURES.glob("*.yaml")) == sorted(FIXTURE_ARCHS)


@pytest.mark.parametrize("name", sorted(FIXTURE_ARCHS))
def test_each_fixture_schedule_passes_compress_check(name):
    result = invoke("check", "--schedule", FIXTURES / name, "--arch", FIXTURE_ARCHS[name])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output and result.output.splitlines()[-1].startswith("OK: "), result.output
    schedule = parse_schedule((FIXTURES / name).read_text(), name)
    assert schedule.pruning and all(f"rule {r.name}: prune {r.criterion}" in result.output for r in schedule.pruning)
