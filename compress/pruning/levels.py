"""How much a pruning rule prunes at an epoch: the level kinds of ``schedule.model.Level``.

``target_sparsity`` answers for the count-based kinds (``sparsity``, ``agp``); the others are
thresholds that ``runtime.py`` applies to magnitudes. Pure functions of the epoch: nothing here
needs saving for an exact resume.
"""

from __future__ import annotations

from compress.schedule.model import Epochs, Level

COUNTED = ("sparsity", "agp", "uniform")


def agp_sparsity(initial: float, final: float, epoch: int, start: int, last: int) -> float:
    """Zhu & Gupta 2017: ``final + (initial - final) (1 - (epoch - start) / span)^3``, span from the
    first to the last pruning epoch (Distiller's ``((end - start - 1) // frequency) * frequency``).
    A single pruning epoch prunes to ``final`` at once."""
    span = last - start
    if span <= 0:
        return final
    progress = min(max((epoch - start) / span, 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def target_sparsity(level: Level, value: float, epoch: int, epochs: Epochs) -> float | None:
    """The fraction of groups a counted level prunes at ``epoch`` (None for threshold kinds, and for
    ``uniform``, which the runtime draws); ``value`` is the target's own final sparsity (or the rule's)."""
    if level.kind == "sparsity":
        return value
    if level.kind == "agp":
        start = epochs.listed[0] if epochs.listed else epochs.start
        last = epochs.last_active()
        return agp_sparsity(level.initial, value, epoch, start, start if last is None else last)
    return None


def splicing_sensitivity(level: Level, value: float, epoch: int, start: int) -> float:
    """Guo et al.'s threshold grows as pruning goes on: ``value x (1 + growth x (epoch - start))``
    (Distiller's ``sensitivity_multiplier``)."""
    if level.growth > 0:
        return value * ((epoch - start) * level.growth + 1)
    return value
