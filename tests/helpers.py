"""Small helpers shared by the test modules."""

from __future__ import annotations

import itertools
from textwrap import dedent

import pytest
import torch

from compress.errors import CompressError, Diagnostic
from compress.schedule import parse_schedule
from compress.scheduler import bind


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """``torch.testing.assert_close``'s default tolerances without its slow first import."""
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    tol = {torch.float64: (1e-7, 1e-7)}.get(actual.dtype, (1.3e-6, 1e-5))
    expected = expected.to(actual.dtype)
    assert torch.allclose(actual, expected, rtol=tol[0], atol=tol[1]), (
        f"max abs difference {float((actual - expected).abs().max())}\nactual:   {actual}\nexpected: {expected}"
    )


def located_bind_errors(text: str, model, source: str, epochs: int = 10) -> list[Diagnostic]:
    """The errors of binding ``text`` to ``model``; each must name the file, a line and a field."""
    schedule = parse_schedule(text, source)
    with pytest.raises(CompressError) as info:
        bind(schedule, model, epochs=epochs)
    for d in info.value.diagnostics:
        assert d.file == source and isinstance(d.line, int) and d.field, d
    return info.value.diagnostics


def reference_groups(name: str, shape: tuple[int, ...]) -> list[tuple] | None:
    """Index tuples, one per group (``w[idx]`` is the group), as DESIGN.md defines them; None where
    the group does not apply to a weight of this many dims. Raises KeyError for unknown names."""
    n = len(shape)
    every = slice(None)
    if name == "elements":
        return list(itertools.product(*(range(s) for s in shape)))
    if name == "filters":
        return [(f,) for f in range(shape[0])] if n >= 2 else None
    if name == "channels":
        return [(every, c) for c in range(shape[1])] if n >= 2 else None
    if name == "kernels":
        return [(f, c) for f in range(shape[0]) for c in range(shape[1])] if n >= 3 else None
    if name == "rows":
        return [(i,) for i in range(shape[0])] if n == 2 else None
    if name == "cols":
        return [(every, j) for j in range(shape[1])] if n == 2 else None
    if name == "layer":
        return [(Ellipsis,)]
    raise KeyError(name)


# weight shapes every group test covers (a conv2d, a linear, conv1d / conv3d weights, a BatchNorm scale)
SHAPES = {
    "conv2d": (4, 3, 2, 2),
    "linear": (5, 3),
    "conv1d": (4, 3, 5),
    "conv3d": (2, 3, 2, 2, 2),
    "bn": (6,),
}


def normalized(text: str) -> list[str]:
    """CLI output lines with runs of spaces collapsed, so tests do not pin column widths."""
    return [" ".join(line.split()) for line in text.splitlines()]


def invoke(*args: object):
    """The one way tests run the real ``compress`` command: in-process, every argument as a string,
    exceptions not swallowed (a traceback fails the test instead of hiding in exit code 1)."""
    from click.testing import CliRunner

    from compress.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def yaml_text(text: str) -> str:
    return dedent(text).lstrip("\n")


def line_no(text: str, snippet: str) -> int:
    """1-based line of the one line of ``text`` that contains ``snippet``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if snippet in line]
    assert len(hits) == 1, f"{snippet!r} occurs on lines {hits}"
    return hits[0]


def located_parse_errors(text: str, match: str, source: str) -> list[Diagnostic]:
    """Parse, expect a CompressError whose text matches ``match``; every entry must be located."""
    with pytest.raises(CompressError, match=match) as info:
        parse_schedule(text, source)
    for d in info.value.diagnostics:
        assert d.file == source, d
        assert isinstance(d.line, int) and d.line >= 1, d
        assert d.field, d
        assert not d.warning, d
    return info.value.diagnostics


def only(diagnostics: list[Diagnostic], field: str) -> Diagnostic:
    found = [d for d in diagnostics if d.field == field]
    assert len(found) == 1, f"{field}: {diagnostics}"
    return found[0]
