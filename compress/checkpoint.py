"""Checkpoints: written atomically, read without running pickled code."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from compress.errors import CompressError

FORMAT = "compress-checkpoint"
VERSION = 1


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Temporary file in the same directory, fsync, rename: a kill mid-write leaves the old file intact."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path | str, what: str = "checkpoint") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CompressError(f"{what}: {'is a directory' if path.is_dir() else 'file not found'}: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or truncated files
        raise CompressError(
            f"{what}: {path} is not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CompressError(f"{what}: {path} is not a compress checkpoint")
    return state
