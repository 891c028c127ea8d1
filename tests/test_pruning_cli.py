"""Pruning end to end through the real CLI on the embedded mnist5k (and a tiny image folder for
resnet20): AGP reaches its final sparsity to the weight, metrics.csv and the epoch line report each
rule, DSD's dense phase revives the pruned weights, a run stopped after 2 epochs and resumed ends
with the very same checkpoint as one never stopped (AGP, gradient, APoZ, random, splicing and a
Distiller schedule with forward-only masks), pruned filters thin away (afterwards and during
training), and ``compress check`` prints the plan. Expected numbers are computed here."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers import invoke, normalized, yaml_text
from tests.tiny_data import write_image_folder

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "schedules" / "pruning"
FAST = ("--limit-batches", "2", "--batch-size", "32", "--seed", "3", "--no-plots", "--table", "none")


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread is faster, and far faster on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(tmp_path: Path, name: str, schedule: Path, *flags: object) -> str:
    result = invoke("train", "--schedule", schedule, "--out-dir", tmp_path, "--name", name, *FAST, *flags)
    assert result.exit_code == 0, result.output
    return result.output


def state(run: Path, name: str = "checkpoint.pt") -> dict[str, Any]:
    """A run directory's checkpoint (or a checkpoint file itself)."""
    return torch.load(run if run.is_file() else run / name, weights_only=True)


def metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def agp(initial: float, final: float, epoch: int, start: int, end: int, freq: int = 1) -> float:
    """Zhu & Gupta's level over Distiller's span ((end - start - 1) // freq) x freq."""
    span = ((end - start - 1) // freq) * freq
    return final + (initial - final) * (1.0 - (epoch - start) / span) ** 3


def written(path: Path, text: str) -> Path:
    path.write_text(yaml_text(text))
    return path


# --- AGP to the weight, metrics and the epoch line ------------------------------------------------------


def test_agp_reaches_its_final_sparsity_exactly_and_reports_each_epoch(tmp_path):
    output = train(tmp_path, "agp", FIXTURES / "native_mlp_agp.yaml", "--arch", "mlp", "--epochs", "3")
    weights = state(tmp_path / "agp")["state_dict"]
    assert int((weights["fc1.weight"] == 0).sum()) == math.floor(0.8 * 300 * 784)
    assert int((weights["fc2.weight"] == 0).sum()) == math.floor(0.8 * 100 * 300)
    assert int((weights["fc3.weight"] == 0).sum()) == 0
    rows = metrics(tmp_path / "agp")
    for e, row in enumerate(rows):
        level = agp(0.1, 0.8, e, 0, 3)
        zeros = math.floor(level * 235200 + 1e-6) + math.floor(level * 30000 + 1e-6)
        assert row["target/hidden"] == f"{100 * level:.4f}", row
        assert row["pruned/hidden"] == f"{100 * zeros / 265200:.4f}", row
        line = next(ln for ln in normalized(output) if ln.startswith(f"epoch {e} "))
        assert f" hidden {zeros / 265200:.1%} " in line, line
    assert [r["target/hidden"] for r in rows] == ["10.0000", "71.2500", "80.0000"]


def test_dsd_releases_the_masks_and_the_pruned_weights_train_again(tmp_path):
    train(tmp_path, "dsd", FIXTURES / "native_mlp_dsd.yaml", "--arch", "mlp", "--epochs", "3")
    run = tmp_path / "dsd"
    masks = state(run)["scheduler"]["pruning"]["masks"]["dsd"]
    assert float((masks["fc1.weight"] == 0).float().mean()) == 0.5
    assert (state(run)["state_dict"]["fc1.weight"][masks["fc1.weight"] == 0] == 0).all()
    result = invoke("train", "--resume", run, "--epochs", "5", "--table", "none", "--no-plots")
    assert result.exit_code == 0, result.output
    after = state(run)
    assert "dsd" not in after["scheduler"]["pruning"]["masks"]
    revived = after["state_dict"]["fc1.weight"][masks["fc1.weight"] == 0]
    assert float((revived != 0).float().mean()) > 0.9, "the weights the masks held at zero moved again"
    rows = metrics(run)
    assert [(r["pruned/dsd"], r["target/dsd"]) for r in rows] == [
        ("0.0000", ""), ("50.0000", "50.0000"), ("50.0000", "50.0000"), ("0.0000", ""), ("0.0000", "")]  # fmt: skip


# --- exact resume -----------------------------------------------------------------------------------------


def same(a: Any, b: Any, where: str = "") -> None:
    """Every tensor equal bit for bit, every other value equal, recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, set(a) ^ set(b))
        for key in a:
            same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), (where, a, b)


RESUMED = {
    "agp": ("native_mlp_agp.yaml", ("--arch", "mlp")),
    "gradient": ("""
        version: 1
        rules:
          - {name: taylor, prune: gradient, groups: filters, sparsity: {from: 0.2, to: 0.5}, layers: [fc1.weight],
             epochs: [1, 4]}
        """, ("--arch", "mlp")),
    "random": ("""
        version: 1
        rules:
          - {name: dice, prune: random, groups: filters, sparsity: {from: 0.1, to: 0.5},
             layers: [fc1.weight, fc2.weight], epochs: [0, 4]}
        """, ("--arch", "mlp")),
    "splicing": ("""
        version: 1
        rules:
          - {name: surgery, prune: l1, splicing: {sensitivity: 0.3, low: 0.95, high: 1.0, growth: 0.1},
             layers: [fc1.weight], epochs: [0, 4], recompute_every: 3}
        """, ("--arch", "mlp", "--lr", "0.1")),
    "distiller-forward-only": ("""
        pruners:
          fc: {class: AutomatedGradualPruner, initial_sparsity: 0.2, final_sparsity: 0.6,
               weights: [fc1.weight, fc2.weight]}
        policies:
          - pruner:
              instance_name: fc
              args: {mask_on_forward_only: true, use_double_copies: true, mini_batch_pruning_frequency: 3,
                     keep_mask: true}
            starting_epoch: 0
            ending_epoch: 2
            frequency: 1
        """, ("--arch", "mlp")),
    "apoz-resnet20": ("""
        version: 1
        rules:
          - {name: apoz, prune: apoz, groups: filters, sparsity: {from: 0.2, to: 0.5},
             layers: [conv1.weight, "layer1.*.conv1.weight"], epochs: [1, 4]}
        """, ("--arch", "resnet20_cifar", "--dataset", "imagefolder", "--input-size", "8", "--workers", "0")),
}  # fmt: skip


@pytest.mark.parametrize("variant", RESUMED)
def test_a_resumed_pruning_run_ends_with_the_same_checkpoint(tmp_path, variant):
    text, flags = RESUMED[variant]
    schedule = FIXTURES / text if text.endswith(".yaml") else written(tmp_path / "s.yaml", text)
    if "imagefolder" in flags:
        flags = (*flags, "--data-dir", write_image_folder(tmp_path / "images", classes=3, per_class=8, size=8))
    train(tmp_path, "straight", schedule, *flags, "--epochs", "4")
    train(tmp_path, "split", schedule, *flags, "--epochs", "2")
    rest = invoke("train", "--resume", tmp_path / "split", "--epochs", "4", "--table", "none", "--no-plots")
    assert rest.exit_code == 0, rest.output
    a, b = state(tmp_path / "straight"), state(tmp_path / "split")
    for run in (a, b):
        for free in ("name", "out_dir", "epochs"):  # where the files go; epochs grew on resume
            run["config"].pop(free)
    same(a, b, "checkpoint.pt")
    assert a["scheduler"]["pruning"]["masks"], "the run pruned something"
    assert metrics(tmp_path / "straight") == [
        {k: v for k, v in row.items() if k != "seconds"} | {"seconds": s["seconds"]}
        for row, s in zip(metrics(tmp_path / "split"), metrics(tmp_path / "straight"), strict=True)]  # fmt: skip


# --- thinning pruned filters ----------------------------------------------------------------------------------


def test_pruned_filters_thin_away_afterwards_with_a_small_output_difference(tmp_path):
    schedule = written(tmp_path / "s.yaml", """
        version: 1
        rules:
          - {name: filters, prune: l1, groups: filters, sparsity: 0.4, layers: [conv1.weight, conv2.weight]}
        """)  # fmt: skip
    train(tmp_path, "f", schedule, "--arch", "lenet5", "--epochs", "2")
    weights = state(tmp_path / "f", "best.pt")["state_dict"]
    assert [int((weights[n].flatten(1).abs().amax(1) == 0).sum()) for n in ("conv1.weight", "conv2.weight")] == [8, 20]
    result = invoke("thin", tmp_path / "f", "-o", tmp_path / "thin.pt")
    assert result.exit_code == 0, result.output
    assert "conv1: out_channels 20 -> 12" in result.output and "conv2: out_channels 50 -> 30" in result.output
    difference = next(ln for ln in result.output.splitlines() if "largest output difference" in ln)
    assert float(difference.rsplit(": ", 1)[1]) < 1e-4, difference  # the pruned filters' biases fold away exactly
    assert state(tmp_path / "thin.pt")["state_dict"]["conv2.weight"].shape == (30, 12, 5, 5)


def test_thin_during_training_shrinks_the_model_and_the_pruning_masks(tmp_path):
    output = train(tmp_path, "t", FIXTURES / "native_lenet5_filters.yaml", "--arch", "lenet5", "--epochs", "3")
    # AGP 20% -> 40% in epochs 0, 1: 8 of conv1's 20 filters and 20 of conv2's 50, thinned after epoch 1
    assert "thinned after epoch 1: conv1: out_channels 20 -> 12" in output, output
    final = state(tmp_path / "t")
    assert final["state_dict"]["conv1.weight"].shape == (12, 1, 5, 5)
    assert final["state_dict"]["conv2.weight"].shape == (30, 12, 5, 5)
    masks = final["scheduler"]["pruning"]["masks"]["filters"]
    assert masks["conv1.weight"].shape == (12, 1, 5, 5) and masks["conv2.weight"].shape == (30, 12, 5, 5)
    assert all(bool((m != 0).all()) for m in masks.values()), "what the masks zeroed is gone"
    rows = metrics(tmp_path / "t")
    shares = [f"{100 * zero / 70:.4f}" for zero in (4 + 10, 8 + 20, 8 + 20)]  # thinned-away filters count as pruned
    targets = ["20.0000", "40.0000", "40.0000"]
    assert [(r["pruned/filters"], r["target/filters"]) for r in rows] == list(zip(shares, targets, strict=True))


# --- compress check prints the plan ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "arch", "epochs"), [
    ("native_mlp_agp.yaml", "mlp", (0.1, 0.8, 0, 3, 1)), ("distiller_mlp_agp.yaml", "mlp", (0.1, 0.8, 0, 4, 1)),
    ("distiller_resnet20_leader.yaml", "resnet20_cifar", (0.1, 0.4, 0, 5, 2)),
    ("distiller_lenet5_hybrid.yaml", "lenet5", (0.05, 0.7, 1, 7, 2)),
])  # fmt: skip
def test_check_prints_agps_sparsity_at_each_pruning_epoch(name, arch, epochs):
    initial, final, start, end, freq = epochs
    result = invoke("check", "--schedule", FIXTURES / name, "--arch", arch)
    assert result.exit_code == 0, result.output
    steps = ", ".join(f"{agp(initial, final, e, start, end, freq):.1%} ({e})" for e in range(start, end, freq))
    assert f"  sparsity by epoch: {steps}" in result.output.splitlines(), result.output
    assert f"AGP sparsity {100 * initial:g}% -> {100 * final:g}%," in result.output


# --- a stop in the middle of an epoch ----------------------------------------------------------------------------

MID_EPOCH = {
    "gradient": RESUMED["gradient"][0],
    "apoz": """
        version: 1
        rules:
          - {name: apoz, prune: apoz, groups: filters, sparsity: {from: 0.2, to: 0.5}, layers: [fc1.weight, fc2.weight],
             epochs: [1, 4]}
        """,
    "distiller-forward-only": RESUMED["distiller-forward-only"][0].replace("mini_batch_pruning_frequency: 3",
                                                                          "mini_batch_pruning_frequency: 2"),
}  # fmt: skip


@pytest.mark.parametrize("variant", MID_EPOCH)
def test_a_run_stopped_mid_epoch_resumes_to_the_same_checkpoint(tmp_path, variant, monkeypatch):
    import signal

    from compress.commands.train import StopOnSignal

    schedule = written(tmp_path / "s.yaml", MID_EPOCH[variant])
    flags = ("--arch", "mlp", "--limit-batches", "3", "--epochs", "3")
    train(tmp_path, "straight", schedule, *flags)
    asked = []

    def requested(self) -> bool:  # a SIGTERM arriving before the 5th step: epoch 1, after its first step
        asked.append(1)
        if len(asked) == 5:
            self.signum = signal.SIGTERM
        return self.signum is not None

    monkeypatch.setattr(StopOnSignal, "requested", requested)
    stopped = invoke("train", "--schedule", schedule, "--out-dir", tmp_path, "--name", "cut", *FAST, *flags)
    assert stopped.exit_code == 128 + signal.SIGTERM, stopped.output
    cut = state(tmp_path / "cut")
    assert cut["interrupted"] is True and (cut["next_epoch"], cut["next_step"]) == (1, 1), {
        k: cut.get(k) for k in ("next_epoch", "next_step")}  # fmt: skip
    monkeypatch.undo()
    rest = invoke("train", "--resume", tmp_path / "cut", "--table", "none", "--no-plots")
    assert rest.exit_code == 0, rest.output
    a, b = state(tmp_path / "straight"), state(tmp_path / "cut")
    for run in (a, b):
        for free in ("name", "out_dir"):  # where the files go
            run["config"].pop(free)
    same(a, b, "checkpoint.pt")


@pytest.mark.parametrize(("name", "values"), [
    ("distiller_lenet5_sensitivity.yaml", {"conv1.weight": "sensitivity 0.3", "fc1.weight": "sensitivity 0.9",
                                           "fc2.bias": "sensitivity 0.2"}),
    ("distiller_lenet5_splicing.yaml", {"conv2.weight": "splicing sensitivity 0.4",
                                        "fc1.weight": "splicing sensitivity 0.6"}),
])  # fmt: skip
def test_check_shows_each_parameters_own_value_and_no_placeholder_for_the_rule(name, values):
    """Distiller's per-parameter pruners have no rule-wide value: the plan must not show one of 0."""
    result = invoke("check", "--schedule", FIXTURES / name, "--arch", "lenet5")
    assert result.exit_code == 0, result.output
    lines = normalized(result.output)
    for param, value in values.items():
        assert any(ln.startswith(f"{param} ") and value in ln for ln in lines), (param, result.output)
    header = next(ln for ln in lines if ln.startswith("rule "))
    assert "sensitivity 0," not in header and "sensitivity 0 " not in header, header
