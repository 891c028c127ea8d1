"""torchrun with 2 CPU processes (gloo) on the embedded data: same result as one process."""

from __future__ import annotations

import socket
import subprocess
import sys
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), "-m", "compress", *map(str, args)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["state_dict"]


def _zero_filters(w: torch.Tensor) -> set[int]:
    return set(torch.nonzero(w.flatten(1).abs().amax(1) == 0).flatten().tolist())


def test_two_processes_match_one_with_the_same_global_batch(cli, tmp_path):
    schedule = tmp_path / "s.yaml"
    schedule.write_text(SCHEDULE)
    done = _torchrun("train", "--schedule", schedule, *RUN, "--out-dir", tmp_path / "ddp", "--name", "r")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
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
    # the same epochs, and a resume under torchrun continues the run
    more = _torchrun("train", "--resume", tmp_path / "ddp" / "r", "--epochs", "3")
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]
    assert torch.load(tmp_path / "ddp" / "r" / "checkpoint.pt", weights_only=True)["next_epoch"] == 3
