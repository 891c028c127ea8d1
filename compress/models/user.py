"""A user's own model: ``--arch package.module:function`` names an importable callable (a function
or an ``nn.Module`` class) that returns an ``nn.Module``, so that nobody has to edit our code.

    # my_models.py, in the current directory or on PYTHONPATH
    def build_net(num_classes: int, in_channels: int = 3) -> torch.nn.Module: ...

    compress train --schedule s.yaml --arch my_models:build_net --dataset cifar10 --data-dir data

It is called with whichever of ``num_classes``, ``in_channels`` and ``input_size`` it accepts.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from torch import nn

from compress.errors import CompressError, suggest

ARGUMENTS = ("num_classes", "in_channels", "input_size")


def is_user_model(name: str) -> bool:
    return ":" in name


def confirm_named(stored: str, named: str | None, where: str) -> None:
    """A checkpoint stores the model it was trained with; a model of the user's own is code, and a
    checkpoint is data (anyone may hand one over). So that loading a checkpoint never imports a
    module nobody asked for, such a model is built only when the command line names it again."""
    if is_user_model(stored) and named != stored:
        given = f" (--arch {named} was given)" if named else ""
        raise CompressError(f"{where} was trained with your own model {stored!r}: compress imports your code only "
                            f"when you name it{given}; add --arch {stored} to confirm")  # fmt: skip


def _accepted(fn: Any, values: dict[str, int]) -> dict[str, int]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return values
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return values
    return {k: v for k, v in values.items() if k in params}


def import_callable(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CompressError(f"--arch: {spec!r}: a model of your own is written package.module:function")
    if os.getcwd() not in sys.path:  # the console script does not put it there; python -m does
        sys.path.append(os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except (ImportError, TypeError, ValueError) as exc:  # TypeError: a relative name such as '.models'
        raise CompressError(
            f"--arch: cannot import {module_name!r} ({type(exc).__name__}: {exc}); "
            "it must be importable from the current directory or PYTHONPATH"
        ) from None
    for part in attr.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_")]
            raise CompressError(f"--arch: {module_name} has no attribute {part!r}{suggest(part, names)}")
        target = getattr(target, part)
    if not callable(target):
        raise CompressError(f"--arch: {spec} is a {type(target).__name__}, not a function or class")
    return target


def build_user_model(spec: str, *, num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    fn = import_callable(spec)
    kwargs = _accepted(fn, {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size})
    model = fn(**kwargs)  # an exception here is a bug in the user's code: its traceback helps most
    if not isinstance(model, nn.Module):
        raise CompressError(f"--arch: {spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return model
