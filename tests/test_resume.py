"""Runs that survive: kill -9, Ctrl-C / SIGTERM, a diverging loss, and resume that is bit-identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

SCHEDULE = Path(__file__).resolve().parent.parent / "schedules" / "lenet5-filters.yaml"
RUN = ("--epochs", "3", "--limit-batches", "25", "--seed", "1")


def _compress(*args, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "compress", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _train(out: Path, name: str, *extra) -> subprocess.Popen:
    return _compress("train", "--schedule", SCHEDULE, "--out-dir", out, "--name", name, *RUN, *extra)


def _wait_for_epoch_rows(run: Path, rows: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    metrics = run / "metrics.csv"
    while time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().strip().splitlines()) > rows:
            return
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.05)
    raise AssertionError("the run did not get that far in time")


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = _state(a), _state(b)
    assert sa["next_epoch"] == sb["next_epoch"] == 3
    for key in sa["state_dict"]:
        assert torch.equal(sa["state_dict"][key], sb["state_dict"][key]), key
    for key, value in sa["optimizer"]["state"].items():
        assert torch.equal(value["momentum_buffer"], sb["optimizer"]["state"][key]["momentum_buffer"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref")
    done = _train(out, "ref")
    assert done.wait(timeout=300) == 0, done.stdout.read()
    return out / "ref" / "checkpoint.pt"


def _resume(run: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "compress", "train", "--resume", str(run)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_kill_9_mid_epoch_then_resume_is_bit_identical(reference, tmp_path):
    process = _train(tmp_path, "cut")
    _wait_for_epoch_rows(tmp_path / "cut", 1, process)
    time.sleep(0.3)  # into epoch 1
    process.kill()
    process.wait()
    assert _state(tmp_path / "cut" / "checkpoint.pt")["next_epoch"] in (1, 2)
    resumed = _resume(tmp_path / "cut")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _assert_same_weights(reference, tmp_path / "cut" / "checkpoint.pt")
    rows = (tmp_path / "cut" / "metrics.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_an_interrupted_checkpoint_and_resume_is_bit_identical(reference, tmp_path, sig, code):
    process = _train(tmp_path, "stopped")
    _wait_for_epoch_rows(tmp_path / "stopped", 1, process)
    time.sleep(0.2)
    process.send_signal(sig)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == code, output
    assert f"resume with: compress train --resume {tmp_path / 'stopped'}" in output
    state = _state(tmp_path / "stopped" / "checkpoint.pt")
    assert state["interrupted"] is True
    resumed = _resume(tmp_path / "stopped")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _assert_same_weights(reference, tmp_path / "stopped" / "checkpoint.pt")


def test_kill_during_a_checkpoint_write_leaves_the_previous_one(tmp_path):
    target = tmp_path / "checkpoint.pt"
    from compress.checkpoint import RunState, load_checkpoint, save_checkpoint

    def state(marker: str, size: int) -> str:
        return (
            f"RunState(arch='lenet5', state_dict={{'w': torch.ones({size})}}, config={{}}, "
            f"schedule_text={marker!r}, schedule_source='s.yaml')"
        )

    old = RunState(arch="lenet5", state_dict={"w": torch.ones(3)}, config={}, schedule_text="old", schedule_source="s")
    save_checkpoint(old, target)
    script = (
        "import sys, torch\n"
        "from compress.checkpoint import RunState, save_checkpoint\n"
        "print('writing', flush=True)\n"
        "from pathlib import Path\n"
        f"save_checkpoint({state('new', 150_000_000)}, Path({str(target)!r}))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the write finished before the kill; make it bigger"
    assert load_checkpoint(target).schedule_text == "old"
    leftovers = [p for p in os.listdir(tmp_path) if p != "checkpoint.pt"]
    assert all(p.startswith(".checkpoint.pt.") and p.endswith(".tmp") for p in leftovers)


def test_diverging_loss_stops_with_epoch_step_and_rule_losses(cli, tmp_path):
    schedule = tmp_path / "explode.yaml"
    schedule.write_text(
        "rules:\n  - {name: boom, penalty: l1, strength: 1.0e+30, layers: ['fc1.weight'], epochs: [1], mode: penalty}\n"
    )
    result = cli("train", "--schedule", schedule, "--out-dir", tmp_path, "--name", "r", "--epochs", "3",
                 "--limit-batches", "3")  # fmt: skip
    assert result.exit_code == 2
    assert "loss is not finite in epoch 1, step" in result.output and "rule losses: boom" in result.output
    assert f"the last good checkpoint is {tmp_path / 'r' / 'checkpoint.pt'} (after epoch 0)" in result.output
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert state["next_epoch"] == 1 and all(torch.isfinite(v).all() for v in state["state_dict"].values())


def _quick(cli, tmp_path, name, *extra):
    return cli("train", "--schedule", SCHEDULE, "--out-dir", tmp_path, "--name", name, "--epochs", "1",
               "--limit-batches", "2", *extra)  # fmt: skip


def test_resume_refuses_other_settings_or_schedule_unless_reset(cli, repo, tmp_path):
    assert _quick(cli, tmp_path, "a").exit_code == 0
    changed = cli("train", "--resume", tmp_path / "a", "--lr", "0.5")
    assert changed.exit_code == 2 and "lr=0.01 -> 0.5" in changed.output and "--reset-optimizer" in changed.output
    other = cli("train", "--resume", tmp_path / "a", "--schedule", repo / "schedules/lenet5-baseline.yaml")
    assert other.exit_code == 2 and "differs from the schedule the run was trained with" in other.output
    longer = cli("train", "--resume", tmp_path / "a", "--epochs", "2")
    assert longer.exit_code == 0 and "continuing" in longer.output
    assert _state(tmp_path / "a" / "checkpoint.pt")["next_epoch"] == 2
    baseline = repo / "schedules/lenet5-baseline.yaml"
    tuned = cli("train", "--resume", tmp_path / "a", "--reset-optimizer", "--schedule", baseline, "--epochs", "1",
                "--limit-batches", "2", "--lr", "0.001", "--out-dir", tmp_path, "--name", "tuned")  # fmt: skip
    assert tuned.exit_code == 0, tuned.output
    state = _state(tmp_path / "tuned" / "checkpoint.pt")
    assert state["next_epoch"] == 1 and state["config"]["lr"] == 0.001
    assert state["schedule_text"] == (repo / "schedules/lenet5-baseline.yaml").read_text()


def test_resume_from_an_older_checkpoint_would_lose_epochs_and_is_refused(cli, tmp_path):
    assert _quick(cli, tmp_path, "a").exit_code == 0
    (tmp_path / "a" / "after-epoch-0.pt").write_bytes((tmp_path / "a" / "checkpoint.pt").read_bytes())
    assert cli("train", "--resume", tmp_path / "a", "--epochs", "3").exit_code == 0
    result = cli("train", "--resume", tmp_path / "a" / "after-epoch-0.pt")
    assert result.exit_code == 2 and "is older than" in result.output, result.output
    assert _state(tmp_path / "a" / "checkpoint.pt")["next_epoch"] == 3, "nothing was overwritten"
    branched = cli("train", "--resume", tmp_path / "a" / "after-epoch-0.pt", "--reset-optimizer", "--out-dir",
                   tmp_path, "--name", "b", "--limit-batches", "1")  # fmt: skip
    assert branched.exit_code == 0, branched.output


def test_bad_checkpoints_are_clear_errors(cli, repo, tmp_path):
    assert _quick(cli, tmp_path, "a").exit_code == 0
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    truncated = tmp_path / "a" / "truncated.pt"
    truncated.write_bytes((tmp_path / "a" / "checkpoint.pt").read_bytes()[:5000])
    cases = {
        foreign: "is not a compress checkpoint",
        truncated: "is not a readable checkpoint",
        tmp_path / "nothing.pt": "--resume: file not found",
    }
    for path, message in cases.items():
        result = cli("train", "--resume", path, "--reset-optimizer")
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output
    baseline = repo / "schedules/lenet5-baseline.yaml"  # no rules: the weights are what does not fit
    other_arch = cli("train", "--resume", tmp_path / "a", "--reset-optimizer", "--schedule", baseline, "--arch", "mlp",
                     "--out-dir", tmp_path)  # fmt: skip
    assert other_arch.exit_code == 2 and "(trained as 'lenet5') does not fit model 'mlp'" in other_arch.output
