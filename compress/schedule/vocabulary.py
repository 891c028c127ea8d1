"""The names a schedule may use, handed in by the registries so this package needs no torch."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Vocabulary:
    """``penalties``: name -> whether it takes groups; ``groups``: every spelling -> canonical name;
    ``traits``: penalty name -> (has a proximal operator, the only groups it takes or None)."""

    penalties: dict[str, bool] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    traits: dict[str, tuple[bool, tuple[str, ...] | None]] = field(default_factory=dict)

    def canonical_group(self, name: str) -> str | None:
        if not self.groups:
            return name
        return self.groups.get(name) or self.groups.get(name.lower())


def default_vocabulary() -> Vocabulary:
    """The registries' names (imports torch through them; readers only use the result)."""
    from compress import groups, regularizers

    return Vocabulary(
        penalties=regularizers.penalty_kinds(), groups=groups.spellings(), traits=regularizers.penalty_traits()
    )
