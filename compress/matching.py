"""Parameter names in schedules: fnmatch globs over ``model.named_parameters()``, DataParallel's
``module.`` prefix forgiven, and the error for a name that matches nothing. Shared by the penalty
and the pruning rules; a leaf module."""

from __future__ import annotations

import difflib
import re
from fnmatch import fnmatchcase

from compress.errors import Diagnostic

_DP_PREFIX = re.compile(r"(^|\.)module\.")


def strip_dataparallel(name: str) -> str:
    """``module.layer1.conv.weight`` and ``features.module.0.weight`` -> the plain names."""
    return _DP_PREFIX.sub(r"\1", name)


def match_parameters(pattern: str, names: list[str]) -> list[str]:
    found = [n for n in names if fnmatchcase(n, pattern)]
    return found or [n for n in names if fnmatchcase(n, strip_dataparallel(pattern))]


def no_match(target, names: list[str], source: str, field: str) -> Diagnostic:
    """``target`` has ``pattern`` and ``line``: the pattern matches no parameter of the model."""
    close = difflib.get_close_matches(strip_dataparallel(target.pattern), names, n=3, cutoff=0.4)
    hint = f"; closest: {', '.join(close)}" if close else "; `compress check --list-params` lists them"
    return Diagnostic(f"{target.pattern!r} matches no parameter of the model{hint}", source, target.line, field)
