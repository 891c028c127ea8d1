"""compress: train image classifiers under scheduled regularization and pruning, and report the
sparsity it induces. ``compress.build_scheduler`` puts a schedule into your own training loop."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["build_scheduler"]


def build_scheduler(*args: Any, **kwargs: Any) -> Any:
    """See ``compress.api.build_scheduler`` (imported on first use: it imports torch)."""
    from compress.api import build_scheduler as build

    return build(*args, **kwargs)
