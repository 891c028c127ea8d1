"""compress thin, and thinning during training (native ``thin:``, Distiller's FilterRemover)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from compress.schedule import parse_schedule

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

THIN_SCHEDULE = """\
version: 1
rules:
  - name: filters
    penalty: group_lasso
    groups: filters
    layers: {conv1.weight: 4.0, conv2.weight: 1.5}
    epochs: [0, 2]
    keep_mask: true
thin: 1
"""


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_thin_command_removes_zero_filters_and_the_result_loads_everywhere(cli, repo, tmp_path):
    assert cli("train", "--schedule", repo / "schedules/lenet5-baseline.yaml", "--epochs", "1", "--limit-batches", "3",
               "--out-dir", tmp_path, "--name", "r").exit_code == 0  # fmt: skip
    best = tmp_path / "r" / "best.pt"
    state = _state(best)
    state["state_dict"]["conv2.weight"][:20] = 0  # 20 of 50 filters, biases too: exactly zero channels
    state["state_dict"]["conv2.bias"][:20] = 0
    torch.save(state, best)
    result = cli("thin", tmp_path / "r", "-o", tmp_path / "small.pt")
    assert result.exit_code == 0, result.output
    assert "conv2: out_channels 50 -> 30" in result.output and "fc1: in_features 800 -> 480" in result.output
    assert "largest output difference on 64 validation images of mnist5k" in result.output
    small = _state(tmp_path / "small.pt")
    assert small["state_dict"]["conv2.weight"].shape == (30, 20, 5, 5)
    assert small["thinned_spec"]["conv2"]["out_channels"] == 30
    momentum = small["optimizer"]["state"][2]["momentum_buffer"]  # conv2.weight is the third parameter
    assert momentum.shape == (30, 20, 5, 5)
    dense_eval = cli("eval", best).output.split(": ", 1)[1]
    thin_eval = cli("eval", tmp_path / "small.pt").output.split(": ", 1)[1]
    assert dense_eval == thin_eval
    report = cli("report", tmp_path / "small.pt", "--format", "json")
    assert report.exit_code == 0 and '"30x20x5x5"' not in report.output and "30," in report.output
    tuned = cli("train", "--resume", tmp_path / "small.pt", "--reset-optimizer", "--schedule",
                repo / "schedules/lenet5-baseline.yaml", "--epochs", "1", "--limit-batches", "2",
                "--out-dir", tmp_path, "--name", "tuned")  # fmt: skip
    assert tuned.exit_code == 0, tuned.output
    assert _state(tmp_path / "tuned" / "checkpoint.pt")["state_dict"]["conv2.weight"].shape == (30, 20, 5, 5)
    going_on = cli("train", "--resume", tmp_path / "small.pt", "--epochs", "2", "--out-dir", tmp_path, "--name", "on")
    assert going_on.exit_code == 0, going_on.output
    assert _state(tmp_path / "on" / "checkpoint.pt")["next_epoch"] == 2


@pytest.fixture
def run_dir(cli, repo, tmp_path) -> Path:
    assert cli("train", "--schedule", repo / "schedules/lenet5-baseline.yaml", "--epochs", "1", "--limit-batches", "1",
               "--out-dir", tmp_path, "--name", "r").exit_code == 0  # fmt: skip
    return tmp_path / "r"


def test_thin_refuses_a_directory_as_output(cli, run_dir):
    result = cli("thin", run_dir, "-o", run_dir.parent)
    assert result.exit_code == 2 and "-o: " in result.output and "is a directory" in result.output


def test_thin_writes_beside_its_input_by_default_and_never_over_a_file_unasked(cli, run_dir):
    assert cli("thin", run_dir).exit_code == 0 and (run_dir / "thin.pt").is_file()
    before = (run_dir / "thin.pt").read_bytes()
    again = cli("thin", run_dir)
    assert again.exit_code == 2 and again.output.count("\n") == 1
    assert "thin.pt exists; pass --overwrite" in again.output and (run_dir / "thin.pt").read_bytes() == before
    assert cli("thin", run_dir, "--overwrite").exit_code == 0
    assert cli("thin", run_dir / "checkpoint.pt").exit_code == 0 and (run_dir / "checkpoint-thin.pt").is_file()


def test_thin_never_writes_over_its_input_even_with_overwrite(cli, run_dir):
    best = run_dir / "best.pt"
    before = best.read_bytes()
    for target in (best, run_dir / ".." / run_dir.name / "best.pt"):
        result = cli("thin", best, "-o", target, "--overwrite")
        assert result.exit_code == 2 and "is the checkpoint being thinned" in result.output
    assert best.read_bytes() == before


def test_thin_into_a_missing_read_only_or_full_directory_is_one_line(cli, run_dir, tmp_path, monkeypatch):
    """Tests run as root here, which writes anywhere: the OS's answers are simulated."""
    import errno

    import compress.commands.thin as thin
    import compress.files

    missing = cli("thin", run_dir, "-o", tmp_path / "nowhere" / "small.pt")
    assert missing.exit_code == 2
    assert missing.output.strip() == f"error: -o: directory {tmp_path / 'nowhere'} does not exist"
    real_access = os.access
    monkeypatch.setattr(compress.files.os, "access",  # where the -o check lives
                        lambda path, mode: Path(path) != tmp_path and real_access(path, mode))
    locked = cli("thin", run_dir, "-o", tmp_path / "small.pt")
    assert locked.exit_code == 2 and locked.output.strip() == f"error: -o: directory {tmp_path} is not writable"
    monkeypatch.undo()

    def full(state, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(thin, "save_checkpoint", full)
    result = cli("thin", run_dir, "-o", tmp_path / "small.pt")
    assert result.exit_code == 2
    assert result.output.strip() == f"error: -o: cannot write {tmp_path / 'small.pt'}: No space left on device"
    assert not (tmp_path / "small.pt").exists()


def test_thin_during_training_then_exact_resume_matches_an_unbroken_run(cli, tmp_path):
    schedule = tmp_path / "thin.yaml"
    schedule.write_text(THIN_SCHEDULE)
    common = ("--limit-batches", "6", "--seed", "2", "--out-dir", tmp_path)
    whole = cli("train", "--schedule", schedule, "--epochs", "3", *common, "--name", "whole")
    assert whole.exit_code == 0, whole.output
    assert "thinned after epoch 1: conv1: out_channels 20 ->" in whole.output
    end = _state(tmp_path / "whole" / "checkpoint.pt")
    conv1 = end["state_dict"]["conv1.weight"]
    assert conv1.shape[0] < 20 and end["thinned_spec"]["conv1"]["out_channels"] == conv1.shape[0]
    for index, (name, p) in enumerate(end["state_dict"].items()):
        if name.endswith("weight") and index in end["optimizer"]["state"]:
            assert end["optimizer"]["state"][index]["momentum_buffer"].shape == p.shape
    first = cli("train", "--schedule", schedule, "--epochs", "2", *common, "--name", "split")
    assert first.exit_code == 0, first.output
    rest = cli("train", "--resume", tmp_path / "split", "--epochs", "3")
    assert rest.exit_code == 0, rest.output
    resumed = _state(tmp_path / "split" / "checkpoint.pt")["state_dict"]
    assert all(torch.equal(resumed[k], end["state_dict"][k]) for k in end["state_dict"])


def test_distillers_filter_remover_thins_filters_at_the_start_of_its_epochs_native_thin_after():
    distiller = parse_schedule(
        "version: 1\nextensions:\n  net_thinner:\n    class: FilterRemover\n    thinning_func_str: remove_filters\n"
        "    arch: lenet5\n    dataset: mnist\npolicies:\n  - extension: {instance_name: net_thinner}\n"
        "    epochs: [1]\n",
        "d.yaml",
    )
    native = parse_schedule("version: 1\nrules: []\nthin: 1\n", "n.yaml")
    ((theirs,), (ours,)) = distiller.thinning, native.thinning
    assert (theirs.timing, theirs.structures, ours.timing, ours.structures) == ("begin", "filters", "end", "both")
    assert theirs.fires_at_begin(1) and not theirs.fires_at_end(1, 5) and not theirs.fires_at_begin(2)
    assert ours.fires_at_end(1, 5) and not ours.fires_at_begin(1)
    (at_end,) = parse_schedule("rules: []\nthin: true\n", "e.yaml").thinning
    assert at_end.fires_at_end(4, 5) and not at_end.fires_at_end(3, 5)


def test_bad_thin_values_are_located_errors():
    from compress.errors import CompressError

    with pytest.raises(CompressError, match=r"t.yaml:2: thin: expected true"):
        parse_schedule("rules: []\nthin: [-1]\n", "t.yaml")
    with pytest.raises(CompressError, match=r"extensions.x.class: unknown class 'Pruner'"):
        parse_schedule("extensions:\n  x: {class: Pruner}\npolicies:\n  - extension: {instance_name: x}\n"
                       "    epochs: [1]\n", "t.yaml")  # fmt: skip


DISTILLER_THIN = """\
version: 1
regularizers:
  filters:
    class: GroupLassoRegularizer
    reg_regims:
      conv1.weight: [0.1, 3D]       # about the median mean |w| of conv1's filters: about half go
    threshold_criteria: Mean_Abs
policies:
  - regularizer: {instance_name: filters, args: {keep_mask: true}}
    starting_epoch: 0
    ending_epoch: 2
    frequency: 1
  - extension: {instance_name: thinner}
    epochs: [2]
extensions:
  thinner: {class: StructureRemover, thinning_func_str: remove_filters, arch: lenet5, dataset: mnist}
"""


def test_distillers_structure_remover_thins_at_the_start_of_its_epoch(cli, tmp_path):
    schedule = tmp_path / "d.yaml"
    schedule.write_text(DISTILLER_THIN)
    common = ("--limit-batches", "3", "--seed", "1", "--out-dir", tmp_path, "--no-plots")
    before = cli("train", "--schedule", schedule, "--epochs", "2", *common, "--name", "two")
    assert before.exit_code == 0, before.output
    dense = _state(tmp_path / "two" / "checkpoint.pt")
    assert dense["state_dict"]["conv1.weight"].shape[0] == 20 and not dense["thinned_spec"], "not yet after epoch 1"
    zero = int((dense["state_dict"]["conv1.weight"].flatten(1).abs().amax(1) == 0).sum())
    assert 0 < zero < 20
    after = cli("train", "--schedule", schedule, "--epochs", "3", *common, "--name", "three")
    assert after.exit_code == 0, after.output
    assert f"thinned at the start of epoch 2: conv1: out_channels 20 -> {20 - zero}" in after.output
    lines = after.output.splitlines()
    assert lines.index(next(x for x in lines if x.startswith("thinned at the start of epoch 2"))) < lines.index(
        next(x for x in lines if x.startswith("epoch 2 "))
    ), "reported before the epoch it starts"
    thin = _state(tmp_path / "three" / "checkpoint.pt")
    assert thin["thinned_spec"] == {"conv1": {"out_channels": 20 - zero}, "conv2": {"in_channels": 20 - zero}}
    resumed = cli("train", "--resume", tmp_path / "two", "--epochs", "3")
    assert resumed.exit_code == 0, resumed.output
    again = _state(tmp_path / "two" / "checkpoint.pt")["state_dict"]
    assert all(torch.equal(again[k], thin["state_dict"][k]) for k in thin["state_dict"])
