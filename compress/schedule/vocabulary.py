"""The names a schedule may use, handed in by the registries so this package needs no torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Vocabulary:
    """``penalties``: name -> whether it takes groups; ``groups``: every spelling -> canonical name;
    ``traits``: penalty name -> (has a proximal operator, the only groups it takes or None).

    ``parametrized`` reads the spellings of the parametrized group families (``blocks(1x4x1x1)``,
    ``Strided(2)``): their canonical name, None for a name of no family, ValueError saying what is
    expected for malformed parameters. ``groups`` also maps each family's template
    (``blocks(RxDxHxW)``) to itself, so that every message listing the valid groups shows it; the
    templates are never a canonical name, since ``parametrized`` reads them first (and rejects them)."""

    penalties: dict[str, bool] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    traits: dict[str, tuple[bool, tuple[str, ...] | None]] = field(default_factory=dict)
    # pruning criterion -> (the only groups it scores or None, the level kinds it serves)
    criteria: dict[str, tuple[tuple[str, ...] | None, tuple[str, ...]]] = field(default_factory=dict)
    parametrized: Callable[[str], str | None] | None = None

    def canonical_group(self, name: str) -> str | None:
        if not self.groups:
            return name
        if self.parametrized is not None:
            try:
                canonical = self.parametrized(name)
            except ValueError:
                return None
            if canonical is not None:
                return canonical
        return self.groups.get(name) or self.groups.get(name.lower())

    def group_problem(self, name: str) -> str | None:
        """What is wrong with a group name that names a parametrized family with malformed
        parameters (``blocks(1x0)``), saying what is expected; None for any other name."""
        if self.parametrized is None:
            return None
        try:
            self.parametrized(name)
        except ValueError as error:
            return f"malformed group {name!r}: {error}"
        return None


def default_vocabulary() -> Vocabulary:
    """The registries' names (imports torch through them; readers only use the result)."""
    from compress import groups, regularizers
    from compress.pruning import criteria

    return Vocabulary(
        penalties=regularizers.penalty_kinds(),
        groups={**groups.spellings(), **{pattern: pattern for pattern in groups.PATTERNS}},
        traits=regularizers.penalty_traits(),
        parametrized=groups.parametrized_name,
        criteria=criteria.criterion_traits(),
    )
