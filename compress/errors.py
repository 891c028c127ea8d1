"""The one error type users see: the CLI turns it into exit code 2 and one line per problem."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a user's file, located as precisely as we know it."""

    message: str
    file: str | None = None
    line: int | None = None
    field: str | None = None
    warning: bool = False

    def __str__(self) -> str:
        where = ":".join(str(part) for part in (self.file, self.line) if part is not None)
        parts = [p for p in (where, self.field) if p]
        prefix = ": ".join(parts)
        kind = "warning: " if self.warning else ""
        return f"{prefix}: {kind}{self.message}" if prefix else f"{kind}{self.message}"


class CompressError(Exception):
    """A mistake in the user's input: files, flags, schedules. Never a bug of ours."""

    def __init__(self, diagnostics: str | Diagnostic | Iterable[Diagnostic]):
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(diagnostics)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class RunIOError(CompressError):
    """A run could not write its files in the middle (disk full, directory removed): not the user's
    input, so exit code 1; the message names the path, the cause and the last complete checkpoint."""

    exit_code = 1


def suggest(word: str, choices: Iterable[str], n: int = 1) -> str:
    """' (did you mean X?)' when a close match exists, else ''. Used by every 'unknown name' message."""
    matches = difflib.get_close_matches(str(word), list(choices), n=n, cutoff=0.5)
    if not matches:
        return ""
    return " (did you mean " + " or ".join(repr(m) for m in matches) + "?)"


def one_of(choices: Iterable[str]) -> str:
    return "valid: " + ", ".join(sorted(choices))
