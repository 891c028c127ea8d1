"""``--pretrained PATH``: start from a local state_dict instead of random weights.

Read with ``torch.load(weights_only=True)``: a plain state_dict (torchvision's downloaded
``resnet18-f37072fd.pth``), or a checkpoint holding one under ``state_dict`` (ours, Distiller's) or
``model``. DataParallel's ``module.`` prefixes are dropped. Two mismatches are repaired and
reported, everything else is an error:

- the classifier head (the model's last linear or convolution layer) has another class count:
  the model keeps its freshly initialised head, built for the dataset's classes;
- the first convolution was trained on RGB and the images have one channel: its filters are
  summed over the three input channels.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.errors import CompressError

AUXILIARY_HEADS = ("AuxLogits.", "aux1.", "aux2.")  # inception_v3 / googlenet: built without them


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    from compress.files import path_kind

    kind = path_kind(path, "--pretrained")
    if kind != "file":
        what = {"dir": "is a directory", "other": "not a regular file"}.get(kind, "file not found")
        raise CompressError(f"--pretrained: {what}: {path}")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or truncated files
        raise CompressError(
            f"--pretrained: {path} is not a readable state_dict ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CompressError(f"--pretrained: {path} holds no state_dict (a mapping of parameter names to tensors)")
    return {re.sub(r"(^|\.)module\.", r"\1", k): v for k, v in obj.items()}


def _list(names: list[str]) -> str:
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def load_pretrained(model: nn.Module, path: Path | str) -> list[str]:
    """Loads ``path`` into ``model`` in place; returns one line per repair made, for the CLI to show."""
    path = Path(path).expanduser()
    state = read_state_dict(path)
    own = model.state_dict()
    notes: list[str] = []
    layers = _layers(model)
    if layers:
        head, head_module = layers[-1]
        stem, stem_module = layers[0]
        key = f"{head}.weight"
        if key in state and state[key].shape[0] != own[key].shape[0]:
            notes.append(
                f"--pretrained: classifier head {head} replaced: {path.name} has {state[key].shape[0]} classes, "
                f"the dataset {own[key].shape[0]}; it starts from random weights"
            )
            for name, _ in head_module.named_parameters(prefix=head):
                state.pop(name, None)
                own.pop(name)
        key = f"{stem}.weight"
        if key in state and state[key].dim() == 4 and state[key].shape[1] == 3 and own[key].shape[1] == 1:
            state[key] = state[key].sum(dim=1, keepdim=True)
            notes.append(f"--pretrained: {key}: summed the 3 RGB input channels into 1 for 1-channel images")
    if not any(name in own for name in AUXILIARY_HEADS):
        state = {k: v for k, v in state.items() if not k.startswith(AUXILIARY_HEADS)}
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if unexpected or missing or wrong:
        parts = [
            f"{len(missing)} of the model's tensors are missing ({_list(missing)})" if missing else "",
            f"{len(unexpected)} tensors the model lacks ({_list(unexpected)})" if unexpected else "",
            f"{len(wrong)} shapes differ, file vs model ({_list(wrong)})" if wrong else "",
        ]
        raise CompressError(
            f"--pretrained: {path} does not fit this model: " + "; ".join(p for p in parts if p)
            + ". Is it for another --arch?"
        )  # fmt: skip
    model.load_state_dict(state, strict=False)
    return notes
