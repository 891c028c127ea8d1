"""torchrun with 2 CPU processes (gloo) on the embedded data: same result as one process, and every
process leaves cleanly (exit 0, no abort at interpreter exit, plots written) also when stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

SCHEDULE = """\
version: 1
rules:
  - name: filters
    penalty: group_lasso
    groups: filters
    layers: {conv1.weight: 3.0, conv2.weight: 1.0}
    epochs: [0, 2]
"""
RUN = ("--epochs", "2", "--limit-batches", "12", "--batch-size", "64", "--seed", "5", "--no-plots")
ABORTS = ("terminate called", "Fatal Python error", "SIGABRT", "exitcode: -6", "Traceback")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_command(*args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(_free_port()), "-m", "compress", *map(str, args)]  # fmt: skip


def _torchrun(*args) -> subprocess.CompletedProcess:
    return subprocess.run(_torchrun_command(*args), capture_output=True, text=True, timeout=600)


def _clean(done: subprocess.CompletedProcess) -> None:
    """Exit 0 and no process aborted or raised on its way out."""
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-4000:]
    assert not [a for a in ABORTS if a in text], text[-4000:]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["state_dict"]


def _zero_filters(w: torch.Tensor) -> set[int]:
    return set(torch.nonzero(w.flatten(1).abs().amax(1) == 0).flatten().tolist())


@pytest.fixture
def schedule(tmp_path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SCHEDULE)
    return path


def test_two_processes_match_one_with_the_same_global_batch(cli, tmp_path, schedule):
    done = _torchrun("train", "--schedule", schedule, *RUN, "--out-dir", tmp_path / "ddp", "--name", "r")
    _clean(done)
    assert done.stdout.count("epoch 1  lr") == 1, "only the first process prints"
    assert [p.name for p in (tmp_path / "ddp").iterdir()] == ["r"]
    single = cli("train", "--schedule", schedule, *RUN, "--out-dir", tmp_path / "one", "--name", "r")
    assert single.exit_code == 0, single.output
    ddp, one = _weights(tmp_path / "ddp" / "r"), _weights(tmp_path / "one" / "r")
    assert ddp.keys() == one.keys() and not any(k.startswith("module.") for k in ddp)
    for name in ddp:
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-4, atol=2e-4)
    for conv in ("conv1.weight", "conv2.weight"):
        assert _zero_filters(ddp[conv]) == _zero_filters(one[conv])
    assert _zero_filters(one["conv1.weight"]), "the schedule should zero some filters"
    # the same epochs, and a resume under torchrun continues the run and ends cleanly
    more = _torchrun("train", "--resume", tmp_path / "ddp" / "r", "--epochs", "3")
    _clean(more)
    assert torch.load(tmp_path / "ddp" / "r" / "checkpoint.pt", weights_only=True)["next_epoch"] == 3


def test_every_two_process_run_exits_zero_with_its_plots(tmp_path, schedule):
    """Before the fix, 1 run in 4 (5 of 12 here) had a process abort at exit while the first one was
    still writing its plots: 10 runs catch that with probability > 0.94."""
    pytest.importorskip("matplotlib")
    for i in range(10):
        run = tmp_path / f"r{i}"
        done = _torchrun("train", "--schedule", schedule, "--epochs", "1", "--limit-batches", "2", "--seed", str(i),
                         "--out-dir", tmp_path, "--name", run.name)  # fmt: skip
        _clean(done)
        assert sorted(p.name for p in run.glob("*.png")) == [
            "accuracy_sparsity.png",
            "group_norms.png",
            "layer_sparsity.png",
        ], f"run {i}: {sorted(p.name for p in run.iterdir())}"


def _wait_for(process: subprocess.Popen, text: str, timeout: float = 120) -> str:
    """Read the process's stdout until a line holds ``text``; returns what was read."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    process.kill()
    raise AssertionError(f"never printed {text!r}:\n{''.join(seen)[-3000:]}")


LONG = ("--epochs", "40", "--limit-batches", "30", "--batch-size", "32", "--seed", "1", "--no-plots")


def test_sigterm_to_the_launcher_stops_every_process_cleanly_and_the_run_resumes(tmp_path, schedule):
    """torchrun forwards the signal to its processes: they stop at the same step, the first saves the
    checkpoint, and none aborts or raises. torchrun's own exit status after a signal is 1, whatever
    its processes did (its SignalException): the processes' own codes are checked in the next test."""
    run = tmp_path / "r"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = _torchrun_command("train", "--schedule", schedule, *LONG, "--out-dir", tmp_path, "--name", "r")
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    before = _wait_for(launcher, "epoch 1  lr")
    launcher.send_signal(signal.SIGTERM)
    out, err = launcher.communicate(timeout=120)
    text = before + out + err
    assert "SIGTERM: stopped in epoch" in text, text[-3000:]
    assert "terminate called" not in text and "[rank1]: Traceback" not in text and "[rank0]: Traceback" not in text
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["interrupted"] and state["next_epoch"] >= 2
    done = _torchrun("train", "--resume", run, "--epochs", str(state["next_epoch"] + 1))
    _clean(done)
    assert f"continuing {run / 'checkpoint.pt'}" in done.stdout
    assert torch.load(run / "checkpoint.pt", weights_only=True)["next_epoch"] == state["next_epoch"] + 1


def test_each_process_exits_143_on_sigterm(tmp_path, schedule):
    """The two processes started as torchrun starts them (env://), each sent SIGTERM, as a cluster's
    scheduler does: both stop at the same step and exit 143; only the first writes."""
    port = str(_free_port())
    processes = []
    for rank in (0, 1):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}  # fmt: skip
        command = [sys.executable, "-m", "compress", "train", "--schedule", str(schedule), *LONG,
                   "--out-dir", str(tmp_path), "--name", "r"]  # fmt: skip
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    before = _wait_for(processes[0], "epoch 1  lr")
    for p in processes:
        p.send_signal(signal.SIGTERM)
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    for rank, (code, out, err) in enumerate(results):
        assert code == 143, f"rank {rank} exited {code}:\n{out[-2000:]}\n{err[-2000:]}"
        assert not [a for a in ABORTS if a in out + err], f"rank {rank}:\n{err[-3000:]}"
    assert "SIGTERM: stopped in epoch" in before + results[0][1]
    assert results[1][1] == "", "only the first process prints"
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["interrupted"]
