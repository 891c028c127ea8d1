"""compress sense: each layer pruned alone at each level (the library, checked against an independent
count of what went), and the command's files, table, suggested schedule and one-line errors."""

from __future__ import annotations

import csv
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from compress import sensitivity as S
from compress.errors import CompressError
from compress.models import build_model
from compress.schedule import parse_schedule
from tests.helpers import invoke

LAYERS = ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]


def _lenet5():
    torch.manual_seed(0)
    return build_model("lenet5", num_classes=10, in_channels=1, input_size=28)


def _snapshots(model):
    """An ``evaluate`` that records the model's weights at every call, and the records."""
    seen = []

    def evaluate():
        seen.append({name: p.detach().clone() for name, p in model.named_parameters()})
        return {"top1": 90.0 - len(seen), "top5": 99.0, "val_loss": 0.1 * len(seen)}

    return evaluate, seen


def test_each_layer_is_pruned_alone_by_lowest_magnitude_and_put_back_bit_for_bit():
    model = _lenet5()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    evaluate, seen = _snapshots(model)
    layers, skipped = S.select_layers(model, [], "elements")
    points = S.analyze(layers, "elements", [0.0, 0.5, 0.9], evaluate)
    assert [n for n, _ in layers] == LAYERS and skipped == []
    assert len(points) == 4 * 3 and len(seen) == 1 + 4 * 2  # level 0 is the one unpruned evaluation
    assert {p.top1 for p in points if p.level == 0} == {89.0}
    for i, name in enumerate(LAYERS):
        state = seen[1 + 2 * i + 1]  # this layer at 0.9
        weight, original = state[name], before[name]
        expected = int(Fraction("0.9") * original.numel())
        zero = weight == 0
        assert int(zero.sum()) == expected
        assert original.abs()[zero].max() <= original.abs()[~zero].min()  # the smallest magnitudes went
        assert torch.equal(weight[~zero], original[~zero])
        assert all(torch.equal(state[other], before[other]) for other in before if other != name)
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())


def test_filters_go_whole_lowest_mean_magnitude_first():
    model = _lenet5()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    evaluate, seen = _snapshots(model)
    layers, _ = S.select_layers(model, ["conv*"], "filters")
    S.analyze(layers, "filters", [0.0, 0.5], evaluate)
    for state, name in zip(seen[1:], ["conv1.weight", "conv2.weight"], strict=True):
        weight = state[name]
        dead = weight.flatten(1).eq(0).all(dim=1)
        assert int(dead.sum()) == weight.shape[0] // 2
        scores = before[name].abs().flatten(1).mean(dim=1)
        assert scores[dead].max() <= scores[~dead].min()


def test_a_level_that_removes_no_group_reuses_the_unpruned_evaluation():
    model = _lenet5()
    evaluate, seen = _snapshots(model)
    layers, _ = S.select_layers(model, ["fc2.weight"], "filters")  # 10 filters: 0.05 removes none
    points = S.analyze(layers, "filters", [0.0, 0.05, 0.1], evaluate)
    assert len(seen) == 2 and [p.top1 for p in points] == [89.0, 89.0, 88.0]


def test_levels_are_parsed_sorted_with_the_baseline_and_bad_ones_named():
    assert S.parse_levels(None) == pytest.approx([i / 10 for i in range(10)])
    assert S.parse_levels("0.5, 0.25,0.5,1") == [0.0, 0.25, 0.5, 1.0]
    for text, message in [("0.5,x", "'x' is not a number"), ("1.5", "1.5 is not a fraction"),
                          ("0.1,,0.2", "an empty entry"), ("nan", "nan is not a fraction"),
                          ("-0.1", "-0.1 is not a fraction")]:  # fmt: skip
        with pytest.raises(CompressError, match=message):
            S.parse_levels(text)


def test_suggestion_stops_at_the_first_level_that_drops_too_far():
    points = [S.Point("a", lv, t, 0, 0) for lv, t in [(0, 90), (0.5, 89.5), (0.7, 85), (0.9, 89.9)]]
    points += [S.Point("b", lv, t, 0, 0) for lv, t in [(0, 90), (0.5, 70), (0.7, 90), (0.9, 90)]]
    assert S.suggest_levels(points, 1.0) == {"a": 0.5, "b": 0.0}
    assert S.suggest_levels(points, 100) == {"a": 0.9, "b": 0.9}


def test_suggested_schedules_are_schedules_the_readers_accept():
    common = dict(drop=1, baseline=98.0, checkpoint="runs/r/best.pt", arch="lenet5", dataset="mnist5k", file="s.yaml")
    text = S.schedule_text({"conv1.weight": 0.3, "fc1.weight": 0.8, "fc2.weight": 0.0}, "filters", **common)
    (rule,) = parse_schedule(text, "s.yaml").pruning
    assert (rule.criterion, rule.groups, rule.level.kind, rule.level.value) == ("l1", "filters", "sparsity", 0.8)
    assert {t.pattern: t.value for t in rule.targets} == {"conv1.weight": 0.3, "fc1.weight": 0.8}
    assert "adjust the epochs" in text.lower()
    nothing = parse_schedule(S.schedule_text({"conv1.weight": 0.0}, "elements", **common), "s.yaml")
    assert not nothing.rules and not nothing.pruning


def test_the_table_fits_the_width_by_dropping_middle_levels():
    points = [S.Point(f"layer{i}.conv.weight", lv / 10, 90 - lv, 0, 0) for i in range(3) for lv in range(10)]
    wide = S.sensitivity_table(points, 200).splitlines()
    assert wide[0].split()[-10:] == ["0", *[f"{lv / 10:g}" for lv in range(1, 10)]]
    narrow = S.sensitivity_table(points, 60).splitlines()
    assert max(map(len, narrow)) <= 60
    assert narrow[0].split()[3] == "0" and narrow[0].split()[-1] == "0.9"


# --- the command -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sense")
    result = invoke("train", "--schedule", Path(__file__).parent.parent / "schedules/lenet5-baseline.yaml",
                    "--epochs", "1", "--limit-batches", "3", "--out-dir", out, "--name", "r", "--no-plots")  # fmt: skip
    assert result.exit_code == 0, result.output
    return out / "r"


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_sense_writes_one_row_per_layer_and_level_and_level_0_is_what_eval_says(run, tmp_path):
    best = (run / "best.pt").read_bytes()
    result = invoke("sense", run, "--levels", "0.9,0.5", "--limit-batches", "1", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    rows = _csv(tmp_path / "out" / "sensitivity.csv")
    assert list(rows[0]) == ["layer", "level", "top1", "top5", "loss"]
    assert [(r["layer"], float(r["level"])) for r in rows] == [(n, lv) for n in LAYERS for lv in (0.0, 0.5, 0.9)]
    evaluated = invoke("eval", run, "--limit-batches", "1").output.split()
    top1 = evaluated[evaluated.index("top1") + 1]
    assert {f"{float(r['top1']):.2f}" for r in rows if r["level"] == "0.0"} == {top1}
    assert f"unpruned: top1 {top1}" in result.output
    assert (tmp_path / "out" / "sensitivity.png").stat().st_size > 0
    table = result.output.split("unpruned:")[1].splitlines()[1 : 3 + len(LAYERS)]
    assert table[0].split() == ["top1", "at", "level", "0", "0.5", "0.9"]
    assert [line.split()[0] for line in table[2:]] == LAYERS
    assert (run / "best.pt").read_bytes() == best and not (run / "sensitivity.csv").exists()


@pytest.mark.slow
def test_filters_of_some_layers_and_the_suggested_schedule_passes_check(run, tmp_path):
    result = invoke("sense", run, "--groups", "filters", "--layers", "conv*", "--layers", "fc1.weight",
                    "--levels", "0.5", "--limit-batches", "1", "-o", tmp_path, "--suggest", "100")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = _csv(tmp_path / "sensitivity.csv")
    assert [r["layer"] for r in rows] == ["conv1.weight"] * 2 + ["conv2.weight"] * 2 + ["fc1.weight"] * 2
    schedule = tmp_path / "sensitivity-schedule.yaml"
    text = schedule.read_text(encoding="utf-8")
    assert "groups: filters" in text and "conv1.weight: 0.5" in text and "fc2" not in text
    assert "suggested levels" in result.output and "fc1.weight 0.5" in " ".join(result.output.split())
    checked = invoke("check", "--schedule", schedule, "--arch", "lenet5")
    assert checked.exit_code == 0, checked.output
    assert "conv2.weight" in checked.output and "sparsity 50%" in checked.output


@pytest.mark.slow
def test_without_matplotlib_the_csv_is_written_and_the_plot_said_once(run, tmp_path, monkeypatch):
    from compress.commands.sense import run_sense

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    lines = []
    run_sense(run, levels="0.5", patterns=["fc2.weight"], limit_batches=1, output=tmp_path, echo=lines.append)
    assert sum("plots need matplotlib" in line for line in lines) == 1
    assert any(line.startswith("no sensitivity.png: plots need matplotlib") for line in lines)
    assert (tmp_path / "sensitivity.csv").exists() and not (tmp_path / "sensitivity.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--levels", "0.5,x"], "--levels: 'x' is not a number"),
        (["--levels", "1.5"], "--levels: 1.5 is not a fraction of the groups"),
        (["--layers", "conv9*"], "--layers: 'conv9*' matches no conv or linear weight"),
        (["--groups", "kernels", "--layers", "fc*"], "--groups kernels: none of the layers asked for has kernels"),
        (["--groups", "planes"], "Invalid value for '--groups'"),
        (["--suggest", "-1"], "--suggest: expected a top1 drop in points >= 0"),
        (["--suggest", "x"], "Invalid value for '--suggest'"),
        (["--limit-batches", "0"], "Invalid value for '--limit-batches'"),
        (["--device", "tpu"], "--device: unknown device 'tpu'"),
        (["-o", "FILE"], "-o: "),
    ],
)
def test_bad_flags_are_one_line_errors(run, args, message):
    args = [str(run / "best.pt") if a == "FILE" else a for a in args]
    result = invoke("sense", run, *args)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("error: ")
    assert message in result.output


@pytest.mark.slow
def test_a_missing_run_is_a_one_line_error(tmp_path):
    result = invoke("sense", tmp_path)
    assert result.exit_code == 2 and "holds no best.pt" in result.output and len(result.output.splitlines()) == 1
