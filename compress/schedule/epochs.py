"""Epoch ranges as both formats spell them, checked once."""

from __future__ import annotations

from compress.schedule.model import Epochs
from compress.yamlio import FieldChecker, YamlList, YamlMap


def read_range(check: FieldChecker, m: YamlMap, field: str) -> Epochs:
    """Native ``epochs: [start, end]`` / ``[start]`` / omitted, plus optional ``frequency``."""
    frequency = check.number(m, "frequency", field, 1, integer=True, minimum=1)
    if "epochs" not in m or m["epochs"] is None:
        return Epochs(frequency=frequency)
    value, line, path = m["epochs"], m.line_of("epochs"), f"{field}.epochs"
    if not isinstance(value, YamlList) or not 1 <= len(value) <= 2 or not all(_is_int(v) for v in value):
        check.error(line, path, "expected [start, end] or [start] with integer epochs (0-based, end exclusive)")
        return Epochs(frequency=frequency)
    start, end = value[0], (value[1] if len(value) == 2 else None)
    return checked_range(check, line, path, start, end, frequency)


def checked_range(check: FieldChecker, line: int, path: str, start: int, end: int | None, frequency: int) -> Epochs:
    if start < 0 or (end is not None and end < 0):
        shown = f"[{start}, {end}]" if end is not None else f"[{start}]"
        check.error(line, path, f"epochs must be >= 0, got {shown}")
    elif end is not None and end <= start:
        kind = "empty" if end == start else "inverted"
        check.error(line, path, f"{kind} epoch range [{start}, {end}): the end is exclusive and must exceed the start")
    return Epochs(start=start, end=end, frequency=frequency)


def read_listed(check: FieldChecker, m: YamlMap, field: str) -> Epochs:
    """Distiller's explicit ``epochs: [0, 2, 4]``."""
    value, line, path = m["epochs"], m.line_of("epochs"), f"{field}.epochs"
    if not isinstance(value, YamlList) or not value or not all(_is_int(v) for v in value):
        check.error(line, path, "expected a non-empty list of integer epochs")
        return Epochs()
    if any(v < 0 for v in value):
        check.error(line, path, f"epochs must be >= 0, got {list(value)}")
    return Epochs(listed=tuple(sorted(set(value))))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
