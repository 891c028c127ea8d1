"""Checkpoints: what one holds (``RunState``, every key named once), written atomically, read without
running pickled code, and checked field by field before anything uses them."""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from compress.errors import CompressError
from compress.files import path_kind

FORMAT = "compress-checkpoint"
VERSION = 1


@dataclass
class RunState:
    """Everything a run saves: the tensors, where it stands, and how it was made (settings and the
    schedule's text), so that a checkpoint alone can be evaluated, reported, thinned or resumed."""

    arch: str
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]
    schedule_text: str
    schedule_source: str
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    epoch: int = -1  # the last completed epoch
    next_epoch: int = 0
    next_step: int = 0
    epoch_totals: dict[str, Any] | None = None  # sums of an interrupted epoch (training.EpochTotals)
    interrupted: bool = False
    top1: float | None = None
    best_top1: float = float("-inf")
    best_epoch: int | None = None
    best_key: list | None = None  # BestRule.key of best.pt, compared with each new epoch's
    rng: dict[str, Any] | None = None
    thinned_spec: dict[str, dict[str, int]] | None = None
    thinned_from: str | None = None  # compress thin's input
    thinner: dict[str, Any] | None = None  # the thinner's state (which thinnings are done)
    scaler: dict[str, Any] | None = None  # --amp fp16: the gradient scaler's state

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_dict(cls, raw: Any, path: Path, what: str) -> RunState:
        """The checkpoint's fields, each of the type it must have; else one error naming the field."""
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise CompressError(f"{what}: {path} is not a compress checkpoint")
        problems = [f"{name} {why}" for name, why in _problems(raw)]
        if problems:
            raise CompressError(f"{what}: {path} is a damaged compress checkpoint: {'; '.join(problems[:3])}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


# field -> (accepted types, required)
_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "arch": ((str,), True),
    "state_dict": ((dict,), True),
    "config": ((dict,), True),
    "schedule_text": ((str,), True),
    "schedule_source": ((str,), True),
    "optimizer": ((dict, type(None)), False),
    "scheduler": ((dict, type(None)), False),
    "epoch": ((int,), False),
    "next_epoch": ((int,), False),
    "next_step": ((int,), False),
    "epoch_totals": ((dict, type(None)), False),
    "interrupted": ((bool,), False),
    "top1": ((float, int, type(None)), False),
    "best_top1": ((float, int), False),
    "best_epoch": ((int, type(None)), False),
    "best_key": ((list, type(None)), False),
    "rng": ((dict, type(None)), False),
    "thinned_spec": ((dict, type(None)), False),
    "thinned_from": ((str, type(None)), False),
    "thinner": ((dict, type(None)), False),
    "scaler": ((dict, type(None)), False),
}


def _problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for name, (types, required) in _TYPES.items():
        if name not in raw:
            if required:
                out.append((name, "is missing"))
            continue
        value = raw[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            out.append((name, f"is a {type(value).__name__}, not a {' or '.join(t.__name__ for t in types)}"))
    tensors = raw.get("state_dict")
    if isinstance(tensors, dict) and not _tensor_map(tensors):
        out.append(("state_dict", "holds something that is not a parameter name and its tensor"))
    for name in ("next_epoch", "next_step"):
        value = raw.get(name, 0)
        if isinstance(value, int) and value < 0:
            out.append((name, f"is negative ({value})"))
    return out + _nested_problems(raw)


def _tensor_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _nested_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Inside the fields: what restoring reads, so that damage is this one error, not a traceback."""
    out = []
    optimizer = raw.get("optimizer")
    if isinstance(optimizer, dict) and not (isinstance(optimizer.get("state"), dict) and isinstance(
            optimizer.get("param_groups"), list) and all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                                         for g in optimizer["param_groups"])):  # fmt: skip
        out.append(("optimizer", "is not an optimizer's state_dict (state, param_groups)"))
    scheduler = raw.get("scheduler")
    if isinstance(scheduler, dict):
        pruning = scheduler.get("pruning", {})
        ok = _tensor_map(scheduler.get("masks", {})) and isinstance(scheduler.get("lr_schedulers", []), list)
        ok = ok and isinstance(pruning, dict) and all(_tensor_map(v) for v in pruning.get("masks", {}).values())
        position = scheduler.get("position", [-1, 0])
        if not ok or not (isinstance(position, (list, tuple)) and len(position) == 2):
            out.append(("scheduler", "is not the compression scheduler's state"))
    rng = raw.get("rng")
    if isinstance(rng, dict) and not (isinstance(rng.get("torch"), torch.Tensor) and isinstance(
            rng.get("python"), (list, tuple)) and len(rng["python"]) == 3):  # fmt: skip
        out.append(("rng", "is not a random-number-generator state"))
    totals = raw.get("epoch_totals")
    rules = totals.get("rules", {}) if isinstance(totals, dict) else {}
    if isinstance(totals, dict) and not (isinstance(totals.get("seen", 0), int) and _number(totals.get("data", 0.0))
                                         and isinstance(rules, dict) and all(_number(v) for v in rules.values())):
        out.append(("epoch_totals", "is not an epoch's running sums"))  # fmt: skip
    key = raw.get("best_key")
    if isinstance(key, list) and not all(_number(v) for v in key):
        out.append(("best_key", f"holds something that is not a finite number: {key!r}"[:120]))
    return out


def file_mode() -> int:
    """What ``open()`` would give a new file: 0666 less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def save_checkpoint(state: RunState | dict[str, Any], path: Path) -> None:
    """Temporary file in the same directory, fsync, rename: a kill mid-write leaves the old file intact."""
    path = Path(path)
    data = state.to_dict() if isinstance(state, RunState) else {"format": FORMAT, "version": VERSION, **state}
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())  # mkstemp makes it 0600; the run's other files follow the umask
        os.replace(tmp, path)
    except OSError as exc:  # named by the checkpoint it was for, not the temporary file
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path | str, what: str = "checkpoint") -> RunState:
    path = Path(path)
    kind = path_kind(path, what)
    if kind != "file":
        raise CompressError(f"{what}: {'is a directory' if kind == 'dir' else 'file not found'}: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or truncated files
        raise CompressError(
            f"{what}: {path} is not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    return RunState.from_dict(raw, path, what)
