"""``--search PATH=LOW:HIGH[:log|:int]`` and ``--search PATH=A,B,C``: one dimension of the search,
checked before any trial runs (a bad range would otherwise fail every trial, or none, silently).

A range on a value the schedule writes as an integer (an epoch, a frequency) must say ``:int``:
searching real numbers there would make every trial an invalid schedule, and guessing would turn
``strength: 1`` into a search over 0, 1, 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from compress.errors import CompressError
from compress.tuning.document import ScheduleDocument, scalar

KINDS = ("float", "int", "choice")


@dataclass(frozen=True)
class Dimension:
    """One searched value: a float or int range (optionally log-scaled) or a list of choices."""

    path: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    current: Any = None  # what the schedule writes there

    def suggest(self, trial: Any) -> Any:
        """The trial's value (Optuna's suggest_* under the path's name)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.path, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.path, float(self.low), float(self.high), log=self.log)

    def start(self) -> Any:
        """The schedule's own value, brought into the range: the first trial runs the schedule as
        written wherever the ranges allow, so the front is compared with where the user started."""
        if self.kind == "choice":
            return self.current if self.current in self.choices else self.choices[0]
        value = self.current if isinstance(self.current, (int, float)) and not isinstance(self.current, bool) \
            else self.low  # fmt: skip
        value = min(max(value, self.low), self.high)
        return int(round(value)) if self.kind == "int" else float(value)

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.path} in {{{', '.join(map(str, self.choices))}}}"
        scale = (" log" if self.log else "") + (" int" if self.kind == "int" else "")
        return f"{self.path} in [{self.low:g}, {self.high:g}]{scale}"


def format_value(value: Any) -> str:
    """A value in a line of output: four significant digits for floats."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def parse_search(spec: str, document: ScheduleDocument) -> Dimension:
    """``PATH=LOW:HIGH[:log|:int]`` or ``PATH=A,B,C``, checked against the schedule; one-line errors."""
    path, sep, body = spec.partition("=")
    path, body = path.strip(), body.strip()
    if not sep or not path or not body:
        raise CompressError(f"--search {spec}: expected PATH=LOW:HIGH[:log|:int] or PATH=A,B,C")
    leaf = document.leaf(path)
    if "," in body:
        return _choices(spec, path, body, leaf.value)
    if not leaf.is_number:
        raise CompressError(f"--search {spec}: {path} holds {leaf.value!r}, not a number; give choices: {path}=A,B,C")
    return _range(spec, path, body, leaf.value)


def _choices(spec: str, path: str, body: str, current: Any) -> Dimension:
    choices = tuple(scalar(part.strip()) for part in body.split(","))
    if any(c is None or c == "" for c in choices):
        raise CompressError(f"--search {spec}: an empty choice")
    if len(set(map(repr, choices))) != len(choices):
        raise CompressError(f"--search {spec}: a choice is given twice")
    if any(isinstance(c, float) and not math.isfinite(c) for c in choices):
        raise CompressError(f"--search {spec}: choices must be finite numbers")
    return Dimension(path, "choice", choices=choices, current=current)


def _range(spec: str, path: str, body: str, current: Any) -> Dimension:
    low_text, _, rest = body.partition(":")
    high_text, _, flags_text = rest.partition(":")
    flags = {f.strip() for f in flags_text.split(":") if f.strip()}
    if not rest or flags - {"log", "int"}:
        raise CompressError(f"--search {spec}: expected LOW:HIGH, LOW:HIGH:log, LOW:HIGH:int or LOW:HIGH:int:log")
    integer, log = "int" in flags, "log" in flags
    low, high = _bound(spec, low_text, integer), _bound(spec, high_text, integer)
    if not low < high:
        raise CompressError(f"--search {spec}: the low end must be below the high end ({low:g} >= {high:g})")
    if log and low <= 0:
        raise CompressError(f"--search {spec}: a log range needs a low end above 0, got {low:g}")
    if isinstance(current, int) and not integer:
        raise CompressError(
            f"--search {spec}: {path} is an integer in the schedule ({current}); add :int "
            f"({path}={body}:int), or write it there as {float(current)} to search real numbers"
        )
    return Dimension(path, "int" if integer else "float", low, high, log, current=current)


def _bound(spec: str, text: str, integer: bool) -> float | int:
    value = scalar(text.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CompressError(f"--search {spec}: {text.strip()!r} is not a finite number")
    if integer and not isinstance(value, int):
        raise CompressError(f"--search {spec}: an :int range needs integer ends, got {text.strip()}")
    return value


def parse_searches(specs: tuple[str, ...] | list[str], document: ScheduleDocument) -> tuple[Dimension, ...]:
    """Every ``--search``; at least one, and no path twice."""
    if not specs:
        raise CompressError("--search: give at least one PATH=LOW:HIGH (the numbers to search)")
    dims = tuple(parse_search(spec, document) for spec in specs)
    paths = [d.path for d in dims]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice:
        raise CompressError(f"--search: {', '.join(twice)} searched twice")
    return dims


def short_names(paths: list[str]) -> dict[str, str]:
    """The shortest dotted tail of each path that still tells it from the others (for tables)."""
    out = {}
    for path in paths:
        parts = path.split(".")
        first = 2 if len(parts) > 2 else 1  # "conv1.weight", "epochs.1": never a bare "weight" or "1"
        for k in range(first, len(parts) + 1):
            tail = ".".join(parts[-k:])
            if sum(1 for other in paths if other == tail or other.endswith("." + tail)) == 1:
                out[path] = tail
                break
        else:
            out[path] = path
    return out
