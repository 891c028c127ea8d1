"""The one shape every registry has: penalties, group types, pruners, models, datasets, optimizers.

A registry maps the lower-case names users type (in YAML or after a flag) to entries. ``get``
answers an unknown name with our error, the closest name and every valid one, so no registry ever
raises a bare ``KeyError``. A leaf module: it imports nothing of ours but the error type, so every
package can define its registry here and have its builder modules register into it (timm's
``_registry.py`` pattern), without import cycles.

    PENALTIES: Registry[Penalty] = Registry("penalty")
    PENALTIES.register("l1", L1(), "strength * sum |w|")
    PENALTIES.get("l1")        # the entry
    PENALTIES.get("lasso")     # CompressError: unknown penalty 'lasso' (did you mean ...?); valid: ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from compress.errors import CompressError, suggest

T = TypeVar("T")


class Registry(Generic[T]):
    """``what``: the noun in messages (``penalty``, ``model``); ``where``: what names the value in a
    message (``--arch``, a YAML field), when the caller does not give it."""

    def __init__(self, what: str, where: str | None = None):
        self.what, self.where = what, where
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, entry: T, description: str = "") -> T:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")  # our bug, never the user's
        self._entries[name] = entry
        self._descriptions[name] = description
        return entry

    def decorator(self, name: str, description: str = "") -> Callable[[T], T]:
        """``@REGISTRY.decorator("name", "what it is")`` registers the decorated object itself."""

        def wrap(entry: T) -> T:
            return self.register(name, entry, description)

        return wrap

    def get(self, name: str, where: str | None = None) -> T:
        if name in self._entries:
            return self._entries[name]
        raise CompressError(self.unknown(name, where))

    def unknown(self, name: object, where: str | None = None) -> str:
        """The message for a name that is not registered: ``--arch: unknown model 'x' (...); valid: ...``."""
        prefix = f"{where or self.where}: " if (where or self.where) else ""
        valid = ", ".join(self.names())
        return f"{prefix}unknown {self.what} {name!r}{suggest(str(name), self._entries)}; valid: {valid}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def descriptions(self) -> dict[str, str]:
        return {name: self._descriptions[name] for name in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name]) for name in self.names()]
