"""What a schedule means, whichever YAML spelling it came from.

Lines and source file are kept for error messages but excluded from equality, so a Distiller file
and a native file that mean the same thing compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

PENALTIES = ("l1", "l2", "group_lasso")
MODES = ("penalty", "proximal")
CRITERIA = ("norm", "mean_abs", "max")  # and distiller_mean_abs, which only Distiller files name


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

    def last_active(self) -> int | None:
        """The last active epoch (None when the range runs to the end of the run). Found by walking
        the range, so a frequency that skips the range's last epoch still finds one."""
        if self.listed is not None:
            return max(self.listed)
        if self.end is None:
            return None
        return self.start + (self.end - 1 - self.start) // self.frequency * self.frequency

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
    """One penalty on some parameters in some epochs. The last three fields are numerics the two
    formats set differently (our defaults vs Distiller's), so that one scheduler runs both:

    - ``keep_mask_at``: the epoch after which zero structures become permanent (None: never). Ours:
      the rule's last active epoch. Distiller's: ``ending_epoch - 1`` if the policy is active then and
      has a threshold (or is proximal), else never, exactly as Distiller's ``RegularizationPolicy`` did.
    - ``clear_momentum``: what a proximal step or threshold zeroes also loses its optimizer momentum
      (ours); Distiller never touched the optimizer's state.
    - ``channel_epsilon``: added to the squared norm of each ``channels`` group before the square root
      (Distiller's ``GroupLassoRegularizer`` and ``GroupVarianceRegularizer`` add 1e-8 there).
    """

    name: str
    penalty: str
    targets: tuple[Target, ...]
    epochs: Epochs = Epochs()
    mode: str = "proximal"
    threshold_criterion: str = "norm"
    keep_mask: bool = False
    line: int | None = field(default=None, compare=False)
    keep_mask_at: int | None = None
    clear_momentum: bool = True
    channel_epsilon: float = 0.0


LEVEL_KINDS = ("sparsity", "agp", "threshold", "sensitivity", "splicing", "uniform")


@dataclass(frozen=True)
class Level:
    """How much a pruning rule prunes at each of its active epochs, one of:

    - ``sparsity``: a constant fraction of the groups (``value``), the lowest-scored ones;
    - ``agp``: Zhu & Gupta's gradual schedule from ``initial`` to ``value`` (the final sparsity),
      ``s = final + (initial - final) (1 - t / span)^3`` over the rule's active epochs;
    - ``threshold``: every group whose score is at or below ``value``;
    - ``sensitivity``: Han et al.'s ``|w| <= value x std(W)``, the std taken once, at the first
      pruning step (as Distiller did);
    - ``splicing``: Guo et al.'s dynamic surgery: below ``low x (mean|W| + value x std|W|)`` a weight
      is pruned, at or above ``high x`` that it is spliced back; ``value`` grows by
      ``1 + growth x (epoch - start)``;
    - ``uniform``: a sparsity drawn uniformly from ``[initial, value]`` at each pruning step
      (Distiller's ``RandomLevelStructureParameterPruner``).

    A target's own number (``layers: {name: number}``) replaces ``value`` for that parameter."""

    kind: str
    value: float
    initial: float = 0.0
    low: float = 1.0
    high: float = 1.0
    growth: float = 0.0

    def describe(self, value: float | None = None) -> str:
        v = self.value if value is None else value
        if self.kind == "sparsity":
            return f"sparsity {_pct(v)}"
        if self.kind == "agp":
            return f"AGP sparsity {_pct(self.initial)} -> {_pct(v)}"
        if self.kind == "uniform":
            return f"sparsity drawn from [{_pct(self.initial)}, {_pct(v)}]"
        if self.kind == "splicing":
            return f"splicing sensitivity {v:g} (prune below x{self.low:g}, splice at x{self.high:g})"
        return f"{self.kind} {v:g}"


def _pct(fraction: float) -> str:
    return f"{round(fraction * 100, 4):g}%"


@dataclass(frozen=True)
class PruneTarget:
    """One parameter pattern of a pruning rule; ``value`` replaces the rule's level value. A
    ``fallback`` target (Distiller's ``'*'``) takes every parameter no other target of the rule names."""

    pattern: str
    value: float | None = None
    line: int | None = field(default=None, compare=False)
    where: str | None = field(default=None, compare=False)
    fallback: bool = False


@dataclass(frozen=True)
class Masking:
    """When a pruning rule's masks act on the weights. Our format: after every optimizer step from the
    first pruning step until ``release_at`` (the first epoch without them), and at each pruning step.
    Distiller's ``PruningPolicy`` arguments set the rest:

    - ``forward_only``: masks zero the weights before each training forward pass instead of after
      each step, and only in the rule's active epochs (``mask_on_forward_only``);
    - ``dense_copy``: the weights the forward pass did not see are put back before the optimizer
      step, so the dense weights keep learning (``use_double_copies``; our splicing);
    - ``gradients``: the gradients of masked weights are zeroed too (``mask_gradients``);
    - ``recompute_every``: also recompute the masks every N mini-batches (``mini_batch_pruning_frequency``);
    - ``discard_each_step``: masks are dropped after each step (``discard_masks_at_minibatch_end``);
    - ``keep_at_end``: after the rule's last epoch, forward-only and dense-copy masks become ordinary
      masks (``keep_mask``)."""

    release_at: int | None = None
    forward_only: bool = False
    dense_copy: bool = False
    gradients: bool = False
    recompute_every: int = 0
    discard_each_step: bool = False
    keep_at_end: bool = False

    @property
    def per_step(self) -> bool:
        """Whether the masks need the forward pass (a model hook) rather than only the loop's hooks. Our
        dense copy does not: the weights stay masked between steps, the dense ones wait aside."""
        return self.forward_only or self.recompute_every > 0 or self.discard_each_step


@dataclass(frozen=True)
class PruneRule:
    """One pruner on some parameters in some epochs: a ``criterion`` scores each group (the pruning
    registry's names: l1, l2, random, bernoulli, apoz, mean_activation, gradient), a ``level`` says
    how many go, ``masking`` when the masks act. The last fields are numerics the formats set
    differently: ``ties`` (``exact``: exactly the counted groups go; ``distiller``: every group
    scored at or below the last of them, as Distiller's ``score > threshold`` kept), ``structures_keep_one``
    (Distiller never pruned every structure of a layer short of a level of 1.0), ``clear_momentum``
    (ours: masked weights lose their momentum), ``rescale`` (Distiller's Bernoulli pruner divides its
    mask by the kept fraction), ``stats`` (where activation criteria gather: ``train`` forwards, or
    ``eval`` forwards as Distiller's ``--act-stats valid`` did), ``signed_gradient`` (Distiller ranked
    filters by the signed sum of weight x gradient of the last step; ours: the magnitude, averaged
    over the steps since the last pruning), ``threshold_statistic`` (Distiller's
    ``StructureParameterPruner``: ``max``, ``mean_abs`` or ``distiller_mean_abs`` as ``groups.py``
    computes them, instead of the criterion's own statistic), ``fold_batchnorm`` (rank a conv's
    filters by its weights times the following BatchNorm's ``gamma / sqrt(var + eps)``), ``highest_go``
    (Distiller's ``ActivationMeanRankedFilterPruner`` cut the filters of the highest mean activation)."""

    name: str
    criterion: str
    groups: str
    level: Level
    targets: tuple[PruneTarget, ...]
    epochs: Epochs = Epochs()
    masking: Masking = Masking()
    dependency: str | None = None  # "leader": every layer takes the first layer's choice of structures
    line: int | None = field(default=None, compare=False)
    ties: str = "exact"
    structures_keep_one: bool = False
    clear_momentum: bool = True
    rescale: bool = False
    stats: str = "train"
    signed_gradient: bool = False
    threshold_statistic: str | None = None
    fold_batchnorm: bool = False
    highest_go: bool = False


CLOCKS = ("own", "absolute")


@dataclass(frozen=True, eq=False)
class LRSchedulerSpec:
    """An lr scheduler class by name (``compress.lr`` knows them), stepped at the end of each active
    epoch. ``clock`` says what epoch it is told (``compress.lr`` has the details):

    - ``own`` (our format): the scheduler counts its own active epochs, from 0 at its first one, as
      PyTorch's ``scheduler.step()`` once per epoch does; it sets the rate from its first epoch on.
    - ``absolute`` (Distiller's): after active epoch ``e`` the rate is the scheduler's closed form at
      ``e + 1`` (Distiller called ``step(epoch=e + 1)``), whatever epoch the policy started at.

    ``args`` keep the order they were written in (for display); equality ignores it, as YAML does."""

    cls: str
    args: tuple[tuple[str, Any], ...] = ()
    epochs: Epochs = Epochs()
    line: int | None = None
    clock: str = "own"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LRSchedulerSpec):
            return NotImplemented
        ordered = sorted(self.args, key=lambda kv: kv[0]), sorted(other.args, key=lambda kv: kv[0])
        return (self.cls, self.epochs, self.clock, ordered[0]) == (other.cls, other.epochs, other.clock, ordered[1])

    __hash__ = None  # args may hold lists


STRUCTURES = ("both", "filters", "channels")


@dataclass(frozen=True)
class Thinning:
    """When zero filters and channels are physically removed during training; training goes on with
    the smaller model. ``timing``: ``end`` thins after each epoch in ``epochs`` (and after the run's
    last epoch with ``at_end``), as our ``thin:`` says; ``begin`` thins at the first mini-batch of each
    epoch in ``epochs``, before the epoch trains, as Distiller's ``StructureRemover`` did.
    ``structures``: what may go: zero ``filters`` (with the next layers' matching input channels),
    zero input ``channels`` (with the filters that feed only them), or ``both``."""

    epochs: Epochs | None = None
    at_end: bool = False
    line: int | None = field(default=None, compare=False)
    timing: str = "end"
    structures: str = "both"
    name: str = "thin"

    def fires_at_end(self, epoch: int, run_epochs: int) -> bool:
        if self.timing != "end":
            return False
        return (self.at_end and epoch == run_epochs - 1) or (self.epochs is not None and self.epochs.active(epoch))

    def fires_at_begin(self, epoch: int) -> bool:
        return self.timing == "begin" and self.epochs is not None and self.epochs.active(epoch)

    def epochs_in(self, run_epochs: int) -> list[int]:
        """The epochs it fires in, in a run of ``run_epochs``."""
        listed = self.epochs.active_epochs(run_epochs) if self.epochs is not None else []
        return sorted(set(listed) | ({run_epochs - 1} if self.at_end else set()))

    def describe(self) -> str:
        what = {"both": "zero filters and channels", "filters": "zero filters", "channels": "zero channels"}
        if self.at_end and self.epochs is None:
            when = "after the last epoch"
        else:
            where = "at the start of" if self.timing == "begin" else "after"
            when = f"{where} {self.epochs.describe() if self.epochs else ''}".rstrip()
            when += " and after the last epoch" if self.at_end else ""
        return f"thin {what[self.structures]} {when}"


@dataclass(frozen=True)
class Schedule:
    rules: tuple[Rule, ...] = ()
    lr_schedulers: tuple[LRSchedulerSpec, ...] = ()
    config: str | None = None
    thinning: tuple[Thinning, ...] = ()
    source: str = field(default="<schedule>", compare=False)
    text: str = field(default="", compare=False, repr=False)
    problems: tuple = field(default=(), compare=False, repr=False)  # Diagnostics: warnings, and errors if deferred
    # targets of rules left out for errors of their own: binding still checks their parameter names,
    # so that one round of `compress check` reports every mistake
    orphans: tuple[Target, ...] = field(default=(), compare=False, repr=False)
    config_line: int | None = field(default=None, compare=False, repr=False)  # where config: names a file
    pruning: tuple[PruneRule, ...] = ()

    @property
    def warnings(self) -> tuple:
        return tuple(d for d in self.problems if d.warning)

    @property
    def name(self) -> str:
        from pathlib import Path

        return Path(self.source).stem


class Reading(NamedTuple):
    """What a format's reader hands back (the parts of a ``Schedule`` it owns)."""

    rules: tuple[Rule, ...]
    lr_schedulers: tuple[LRSchedulerSpec, ...]
    thinning: tuple[Thinning, ...]
    orphans: tuple[Target, ...] = ()
    pruning: tuple[PruneRule, ...] = ()
