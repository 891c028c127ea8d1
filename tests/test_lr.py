"""Learning rates on both clocks: Distiller's (closed form at the absolute epoch + 1) and ours (the
scheduler counts its own active epochs), checked against tables written here from the formulas, in
unit tests and in the ``lr`` column of real runs; and every bad argument found by ``compress check``."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from compress.errors import CompressError
from compress.lr import check_lr_scheduler, describe_rates, simulate
from compress.schedule import Epochs, LRSchedulerSpec, parse_schedule
from compress.scheduler import bind
from tests.helpers import line_no, yaml_text

BASE = 0.1


# ----------------------------------------------------------------------------- the formulas, written out


def closed_form(cls: str, args: dict, epoch: int) -> float:
    """Each scheduler's rate at ``epoch`` from its definition (PyTorch's documentation, Distiller's
    learning_rate.py), times the base rate."""
    if cls == "StepLR":
        return BASE * args.get("gamma", 0.1) ** (epoch // args["step_size"])
    if cls == "MultiStepLR":
        return BASE * args.get("gamma", 0.1) ** len([m for m in args["milestones"] if m <= epoch])
    if cls == "ExponentialLR":
        return BASE * args["gamma"] ** epoch
    if cls == "MultiStepMultiGammaLR":
        rate = BASE
        for milestone, gamma in zip(args["milestones"], args["gammas"], strict=True):
            rate *= gamma if milestone <= epoch else 1.0
        return rate
    if cls == "PolynomialLR":  # Distiller's: base * (1 - epoch / T_max) ** power
        return BASE * (1 - epoch / args["T_max"]) ** args["power"]
    if cls == "CosineAnnealingLR":
        return BASE * (1 + math.cos(math.pi * epoch / args["T_max"])) / 2
    raise KeyError(cls)


def distiller_table(cls: str, args: dict, active: list[int], epochs: int) -> list[float]:
    """Distiller: after each active epoch e the rate is F(e + 1); before any, F(0)."""
    return [closed_form(cls, args, max([a + 1 for a in active if a < e], default=0)) for e in range(epochs)]


def own_table(cls: str, args: dict, active: list[int], epochs: int) -> list[float]:
    """Ours: the scheduler's n-th active epoch runs at F(n); before its first, the base rate."""
    return [BASE if e < active[0] else closed_form(cls, args, len([a for a in active if a < e])) for e in range(epochs)]


CASES = [
    ("StepLR", {"step_size": 3, "gamma": 0.5}),
    ("MultiStepLR", {"milestones": [2, 5, 7], "gamma": 0.1}),
    ("ExponentialLR", {"gamma": 0.8}),
    ("MultiStepMultiGammaLR", {"milestones": [3, 6], "gammas": [0.5, 0.2]}),
    ("PolynomialLR", {"T_max": 12, "power": 2}),
]
TIMINGS = {  # name -> (policy YAML, active epochs in a run of 10)
    "from-0": ("starting_epoch: 0\n    ending_epoch: 10\n    frequency: 1", list(range(10))),
    "from-4": ("starting_epoch: 4\n    ending_epoch: 10\n    frequency: 1", list(range(4, 10))),
    "every-2-from-1": ("starting_epoch: 1\n    ending_epoch: 9\n    frequency: 2", [1, 3, 5, 7]),
    "listed": ("epochs: [2, 3, 7]", [2, 3, 7]),
}


def distiller_schedule(cls: str, args: dict, timing: str) -> str:
    arguments = "".join(f"    {k}: {v}\n" for k, v in args.items())
    return (f"lr_schedulers:\n  lr:\n    class: {cls}\n{arguments}"
            f"policies:\n  - lr_scheduler: {{instance_name: lr}}\n    {TIMINGS[timing][0]}\n")  # fmt: skip


def spec_of(text: str) -> tuple[LRSchedulerSpec, ...]:
    return parse_schedule(text, "s.yaml").lr_schedulers


# ----------------------------------------------------------------------------- unit: simulate == table


@pytest.mark.parametrize(("cls", "args"), CASES)
@pytest.mark.parametrize("timing", TIMINGS)
def test_distiller_clock_gives_the_closed_form_at_the_next_absolute_epoch(cls, args, timing):
    rates = simulate(spec_of(distiller_schedule(cls, args, timing)), BASE, 10)
    expected = distiller_table(cls, args, TIMINGS[timing][1], 10)
    assert rates == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("cls", "args"), [c for c in CASES if c[0] != "PolynomialLR"])
@pytest.mark.parametrize("timing", ["from-0", "from-4", "every-2-from-1"])
def test_own_clock_counts_the_schedulers_own_active_epochs(cls, args, timing):
    start, end, frequency = {"from-0": (0, 10, 1), "from-4": (4, 10, 1), "every-2-from-1": (1, 9, 2)}[timing]
    spec = LRSchedulerSpec(cls, tuple(args.items()), Epochs(start, end, frequency))
    expected = own_table(cls, args, TIMINGS[timing][1], 10)
    assert simulate((spec,), BASE, 10) == pytest.approx(expected, rel=1e-12)


def test_the_issues_ssl_recipe_decays_at_46_90_135_on_distillers_clock():
    """StepLR(45, 0.1) from epoch 45 of 180: Distiller stepped it with epoch + 1, so it decays right
    after its first epoch; counting its own epochs would decay at 90 and 135 only."""
    text = distiller_schedule("StepLR", {"step_size": 45, "gamma": 0.1}, "from-0").replace(
        "starting_epoch: 0\n    ending_epoch: 10", "starting_epoch: 45\n    ending_epoch: 180"
    )
    assert describe_rates(simulate(spec_of(text), 0.1, 180)) == (
        "0.1 (epochs 0-45), 0.01 (46-89), 0.001 (90-134), 0.0001 (135-179)"
    )
    own = LRSchedulerSpec("StepLR", (("step_size", 45), ("gamma", 0.1)), Epochs(45, 180))
    assert describe_rates(simulate((own,), 0.1, 180)) == "0.1 (epochs 0-89), 0.01 (90-134), 0.001 (135-179)"


def test_own_clock_sets_a_later_schedulers_first_rate_only_when_its_first_epoch_begins():
    """A warm-up then a cosine: each phase sets the rate from its own first epoch on."""
    text = yaml_text(
        """
        lr_scheduler:
          - {class: LinearLR, start_factor: 0.25, total_iters: 2, epochs: [0, 3]}
          - {class: CosineAnnealingLR, T_max: 4, epochs: [3]}
        """
    )
    rates = simulate(parse_schedule(text, "s.yaml").lr_schedulers, BASE, 7)
    warmup = [BASE * 0.25, BASE * 0.625, BASE]  # start_factor -> 1 over 2 steps
    cosine = [BASE * (1 + math.cos(math.pi * n / 4)) / 2 for n in range(4)]
    assert rates == pytest.approx(warmup + cosine, rel=1e-9)
    later = yaml_text("lr_scheduler: {class: LinearLR, start_factor: 0.5, total_iters: 2, epochs: [3]}\n")
    assert simulate(parse_schedule(later, "s.yaml").lr_schedulers, BASE, 6)[:4] == pytest.approx(
        [BASE, BASE, BASE, BASE * 0.5]
    ), "the base rate until the scheduler's first epoch"


def test_plateau_rates_are_unknown_from_its_first_epoch():
    spec = LRSchedulerSpec("ReduceLROnPlateau", (("patience", 1),), Epochs(3, None), clock="absolute")
    assert describe_rates(simulate((spec,), BASE, 8)) == "0.1 (epochs 0-3), on plateau of validation (4-7)"


# ----------------------------------------------------------------------------- bad arguments, at check time


@pytest.mark.parametrize(
    ("definition", "field", "message"),
    [
        ("{class: StepLR, step_size: 0}", "step_size", "must be a positive integer, got 0"),
        ("{class: StepLR, step_size: 2, gamma: .nan}", "gamma", "must be a positive number, got nan"),
        ("{class: StepLR, step_size: 2, gamma: -0.5}", "gamma", "must be a positive number, got -0.5"),
        ("{class: ExponentialLR, gamma: 1.0e+300}", None, "gives a learning rate of 1e+300"),
        ("{class: MultiStepLR, milestones: [3, x]}", "milestones", "must be a non-empty list of epochs"),
        ("{class: MultiStepMultiGammaLR, milestones: [3, 6], gammas: [0.1]}", None, "same length"),
        ("{class: PolynomialLR, T_max: 4, power: 0.5}", None, "must be finite and not negative"),
        ("{class: CosineAnnealingLR, T_max: 0}", "T_max", "must be a positive number, got 0"),
        ("{class: LambdaLR, lr_lambda: x}", None, "Distiller stepped its lr schedulers with step(epoch=e + 1)"),
        ("{class: StepLR, step_size: 1, last_epoch: 4}", "last_epoch", "set by compress"),
    ],
)
def test_bad_distiller_lr_arguments_are_located_errors_before_training(lenet5, definition, field, message):
    policy = "policies:\n  - lr_scheduler: {instance_name: lr}\n    epochs: [0, 5]\n"
    text = f"lr_schedulers:\n  lr: {definition}\n{policy}"
    with pytest.raises(CompressError) as info:
        bind(parse_schedule(text, "s.yaml"), lenet5, epochs=10)
    (d,) = info.value.diagnostics
    assert message in d.message, d
    assert (d.file, d.line) == ("s.yaml", line_no(text, "lr:"))
    cls = definition.split("class: ")[1].split(",")[0].rstrip("}")
    assert d.field == f"lr_scheduler {cls}" + (f".{field}" if field else "")


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ("{class: StepLR, step_size: 0}", "step_size: must be a positive integer, got 0"),
        ("{class: StepLR, step_size: 1, gamma: .nan}", "gamma: must be a positive number, got nan"),
        ("{class: MultiStepLR, milestones: [2, 3], gamma: 1.0e+300}", "gives a learning rate of 1e+300"),
    ],
)
def test_bad_native_lr_arguments_are_errors_too(definition, message):
    spec = parse_schedule(f"lr_scheduler: {definition}\n", "s.yaml").lr_schedulers[0]
    problems = check_lr_scheduler(spec, "s.yaml", 10)
    assert len(problems) == 1 and message in str(problems[0]), problems


# ----------------------------------------------------------------------------- real runs


def _rates_of(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        return [float(row["lr"]) for row in csv.DictReader(f)]


def _train(cli, tmp_path: Path, text: str, epochs: int = 10) -> Path:
    schedule = tmp_path / "s.yaml"
    schedule.write_text(text)
    result = cli("train", "--schedule", schedule, "--epochs", epochs, "--limit-batches", "1", "--lr", BASE,
                 "--no-plots", "--out-dir", tmp_path, "--name", "run")  # fmt: skip
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


@pytest.mark.slow
@pytest.mark.parametrize(("cls", "args"), CASES)
@pytest.mark.parametrize("timing", ["from-0", "every-2-from-1"])
def test_a_distiller_runs_rates_equal_the_closed_form_table(cli, tmp_path, cls, args, timing):
    run = _train(cli, tmp_path, distiller_schedule(cls, args, timing))
    expected = distiller_table(cls, args, TIMINGS[timing][1], 10)
    assert _rates_of(run) == pytest.approx(expected, rel=1e-5)  # metrics.csv keeps 6 significant digits


@pytest.mark.slow
def test_a_native_runs_rates_count_the_schedulers_own_epochs(cli, tmp_path):
    args = {"milestones": [2, 4], "gamma": 0.5}
    text = "lr_scheduler: {class: MultiStepLR, milestones: [2, 4], gamma: 0.5, epochs: [3, 10], frequency: 2}\n"
    run = _train(cli, tmp_path, "version: 1\n" + text)
    assert _rates_of(run) == pytest.approx(own_table("MultiStepLR", args, [3, 5, 7, 9], 10), rel=1e-5)


def plateau_table(metric: list[float], mode: str, factor: float, patience: int, threshold: float,
                  active: list[int]) -> list[float]:  # fmt: skip
    """ReduceLROnPlateau from its documentation (threshold_mode rel, cooldown 0, min_lr 0)."""
    rate, best, bad, out = BASE, None, 0, []
    for epoch, value in enumerate(metric):
        out.append(rate)
        if epoch not in active:
            continue
        better = best is None or (value < best * (1 - threshold) if mode == "min" else value > best * (1 + threshold))
        best, bad = (value, 0) if better else (best, bad + 1)
        if bad > patience:
            rate, bad = rate * factor, 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "column", "threshold"), [("max", "top1", 0.01), ("min", "val_loss", 0.2)])
@pytest.mark.parametrize("timing", ["from-0", "every-2-from-1"])
def test_plateau_steps_on_the_metric_its_mode_names_as_in_distiller(cli, tmp_path, mode, column, threshold, timing):
    args = {"mode": mode, "factor": 0.5, "patience": 0, "threshold": threshold}
    run = _train(cli, tmp_path, distiller_schedule("ReduceLROnPlateau", args, timing), epochs=12)
    with open(run / "metrics.csv", newline="") as f:
        metric = [float(row[column]) for row in csv.DictReader(f)]
    expected = plateau_table(metric, mode, 0.5, 0, threshold, TIMINGS[timing][1])
    assert _rates_of(run) == pytest.approx(expected, rel=1e-5)
    assert min(expected) < BASE, "the run should have reduced the rate at least once"
