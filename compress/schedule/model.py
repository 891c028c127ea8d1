"""What a schedule means, whichever YAML spelling it came from.

Lines and source file are kept for error messages but excluded from equality, so a Distiller file
and a native file that mean the same thing compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PENALTIES = ("l1", "l2", "group_lasso")
MODES = ("penalty", "proximal")
CRITERIA = ("norm", "mean_abs", "max")


@dataclass(frozen=True)
class Epochs:
    """When a rule is active: ``start <= epoch < end`` and ``(epoch - start) % frequency == 0``,
    or exactly the listed epochs. ``end=None`` means until the run ends."""

    start: int = 0
    end: int | None = None
    frequency: int = 1
    listed: tuple[int, ...] | None = None

    def active(self, epoch: int) -> bool:
        if self.listed is not None:
            return epoch in self.listed
        if epoch < self.start or (self.end is not None and epoch >= self.end):
            return False
        return (epoch - self.start) % self.frequency == 0

    def active_epochs(self, run_epochs: int) -> list[int]:
        return [e for e in range(run_epochs) if self.active(e)]

    def describe(self, run_epochs: int | None = None) -> str:
        if self.listed is not None:
            text = "epochs " + ", ".join(map(str, self.listed))
        else:
            text = f"epochs [{self.start}, {'end' if self.end is None else self.end})"
            if self.frequency != 1:
                text += f" every {self.frequency}"
        if run_epochs is None:
            return text
        active = self.active_epochs(run_epochs)
        if self.listed is None and self.frequency != 1 and 0 < len(active) <= 12:
            return f"{text}: active in {', '.join(map(str, active))} of {run_epochs}"
        return f"{text}: {len(active)} of {run_epochs}"


@dataclass(frozen=True)
class Target:
    """One parameter pattern of a rule with its own strength, groups and threshold."""

    pattern: str
    strength: float
    groups: tuple[str, ...]
    threshold: float | None = None
    line: int | None = field(default=None, compare=False)
    where: str | None = field(default=None, compare=False)  # the field errors about this target name


@dataclass(frozen=True)
class Rule:
    name: str
    penalty: str
    targets: tuple[Target, ...]
    epochs: Epochs = Epochs()
    mode: str = "proximal"
    threshold_criterion: str = "norm"
    keep_mask: bool = False
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, eq=False)
class LRSchedulerSpec:
    """Any ``torch.optim.lr_scheduler`` class by name, stepped at the end of each active epoch.
    ``args`` keep the order they were written in (for display); equality ignores it, as YAML does."""

    cls: str
    args: tuple[tuple[str, Any], ...] = ()
    epochs: Epochs = Epochs()
    line: int | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LRSchedulerSpec):
            return NotImplemented
        ordered = sorted(self.args, key=lambda kv: kv[0]), sorted(other.args, key=lambda kv: kv[0])
        return (self.cls, self.epochs, ordered[0]) == (other.cls, other.epochs, ordered[1])

    __hash__ = None  # args may hold lists


@dataclass(frozen=True)
class Thinning:
    """When zero filters and channels are physically removed during training: at the end of each
    epoch in ``epochs``, and/or after the run's last epoch (``at_end``). Training goes on with the
    smaller model."""

    epochs: Epochs | None = None
    at_end: bool = False
    line: int | None = field(default=None, compare=False)

    def fires(self, epoch: int, run_epochs: int) -> bool:
        return (self.at_end and epoch == run_epochs - 1) or (self.epochs is not None and self.epochs.active(epoch))


@dataclass(frozen=True)
class Schedule:
    rules: tuple[Rule, ...] = ()
    lr_schedulers: tuple[LRSchedulerSpec, ...] = ()
    config: str | None = None
    thinning: Thinning | None = None
    source: str = field(default="<schedule>", compare=False)
    text: str = field(default="", compare=False, repr=False)
    problems: tuple = field(default=(), compare=False, repr=False)  # Diagnostics: warnings, and errors if deferred

    @property
    def warnings(self) -> tuple:
        return tuple(d for d in self.problems if d.warning)

    @property
    def name(self) -> str:
        from pathlib import Path

        return Path(self.source).stem
