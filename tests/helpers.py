"""Small helpers shared by the test modules."""

from __future__ import annotations

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
