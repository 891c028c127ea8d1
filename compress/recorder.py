"""What happens after each epoch of a run, in one place: the run directory's files, the console
line (and table), TensorBoard, which epoch becomes ``best.pt``, and the checkpoints; then the end of
the run (summary, plots) or its interruption. The training loop only hands it results.

Under torchrun only the first process records; the others keep the position (for a checkpoint they
do not write) and stay silent.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress import groups as G
from compress.checkpoint import RunState, save_checkpoint
from compress.errors import CompressError, RunIOError
from compress.experiment import Experiment, example_input
from compress.report import sparsity_table
from compress.resume import Resume, rng_state
from compress.runs import BestRule, RunFiles, create_run_dir, default_run_name
from compress.sparsity import LayerSparsity, measure_sparsity, total_sparsity
from compress.training import EpochResult, Position

Echo = Callable[..., None]
TABLES = ("end", "every", "none")


@dataclass
class Best:
    top1: float = float("-inf")
    epoch: int | None = None
    key: list | None = None  # BestRule.key of best.pt, compared with each new epoch's


def terminal_width() -> int:
    return max(60, shutil.get_terminal_size((100, 24)).columns)


class Recorder:
    def __init__(self, exp: Experiment, files: RunFiles | None, echo: Echo, *, best: Best | None = None,
                 table: str = "end", board: Any = None):  # fmt: skip
        self.exp, self.files, self.echo, self.table, self.board = exp, files, echo, table, board
        self.best, self.rule = best or Best(), BestRule(exp.config.best)
        self.position = Position()
        self.touched = exp.scheduler.touched

    @property
    def run_dir(self) -> Path | None:
        return self.files.path if self.files else None

    @classmethod
    def open(cls, exp: Experiment, resume: Resume | None, *, overwrite: bool, echo: Echo, table: str) -> Recorder:
        """The run directory: the resumed run's own (epochs from the resume point on are dropped), or a
        new one. Only the first process opens one; the others get a silent recorder."""
        best = Best(resume.state.best_top1, resume.state.best_epoch, resume.state.best_key) if resume and resume.exact \
            else Best()  # fmt: skip
        if not exp.world.is_main:
            return cls(exp, None, _silent, best=best, table="none")
        try:
            files = _run_files(exp, resume, overwrite)
        except OSError as exc:
            raise CompressError(f"--out-dir: cannot write the run directory: {_cause(exc)}") from None
        board = None
        if exp.config.tensorboard:
            from compress.tensorboard import TensorBoardLogger

            board = TensorBoardLogger(files.path / "tensorboard", _layer_groups(exp))
        return cls(exp, files, echo, best=best, table=table, board=board)

    def state(self, *, top1: float | None, interrupted: bool = False) -> RunState:
        exp, at = self.exp, self.position
        return RunState(
            arch=exp.config.arch, state_dict=exp.model.state_dict(), config=exp.config.to_dict(),
            schedule_text=exp.schedule.text, schedule_source=exp.schedule.source,
            optimizer=exp.optimizer.state_dict(), scheduler=exp.scheduler.state_dict(), epoch=at.epoch - 1,
            next_epoch=at.epoch, next_step=at.step, epoch_totals=at.totals.state_dict() if at.totals else None,
            interrupted=interrupted, top1=top1, best_top1=self.best.top1, best_epoch=self.best.epoch,
            best_key=self.best.key, rng=rng_state(), thinned_spec=exp.thinned_spec,
            thinner=exp.thinner.state_dict() if exp.thinner else None,
            scaler=exp.scaler.state_dict() if exp.scaler else None,
        )  # fmt: skip

    def epoch_done(self, result: EpochResult) -> None:
        self.position = Position(result.epoch + 1)
        if self.files is None:
            return
        with self._writing(f"stopped after epoch {result.epoch}"):
            self._record(result)

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """An I/O failure in the middle of a run: one line with the path and the cause, the last
        complete checkpoint (files are written whole or not at all), and how to go on."""
        try:
            yield
        except OSError as exc:
            latest = self.files.path / "checkpoint.pt"
            kept = f"the last complete checkpoint is {latest}" if latest.exists() else "no checkpoint was written"
            raise RunIOError(f"cannot write {_cause(exc)}; {what}; {kept}; make room (or fix the directory), then "
                             f"compress train --resume {self.files.path}") from None  # fmt: skip

    def _record(self, result: EpochResult) -> None:
        self._report_thinning(result.epoch)
        result.extra["pruning"] = self.exp.scheduler.pruning_report()
        layers = measure_sparsity(self.exp.model, self.touched)
        totals = self.files.write_epoch(result, layers)
        line = format_epoch(result, totals["sparsity"], zero_filters(layers), terminal_width())
        self.echo(line)
        self.files.log(line)
        if self.table == "every":
            self.echo(sparsity_table(layers, terminal_width()))
        if self.board is not None:
            self.board.log_epoch(result, layers, totals["sparsity"], self.exp.model)
        self._checkpoints(result, totals["sparsity"])

    def _checkpoints(self, result: EpochResult, sparsity: float) -> None:
        key = self.rule.key(result.top1, sparsity)
        is_best = self.best.key is None or key > tuple(self.best.key)
        if is_best:
            self.best = Best(result.top1, result.epoch, list(key))
        state = self.state(top1=result.top1)
        save_checkpoint(state, self.files.path / "checkpoint.pt")
        if is_best:
            save_checkpoint(state, self.files.path / "best.pt")
            why = f"top1 {result.top1:.2f}, sparsity {sparsity:.2f}%; rule: {self.rule.describe()}"
            self.echo(f"best.pt <- epoch {result.epoch} ({why})")

    def _report_thinning(self, epoch: int) -> None:
        for event in self.exp.thinner.events if self.exp.thinner is not None else []:
            if event.epoch == epoch:
                changes = "; ".join(event.result.plan.describe()) or "nothing was exactly zero"
                when = "at the start of" if event.timing == "begin" else "after"
                diff = event.result.max_abs_diff
                self.echo(f"thinned {when} epoch {epoch}: {changes} (max abs output difference {diff:.2g})")

    def interrupted(self, position: Position) -> Path | None:
        """Save where the run stands (the sums of the started epoch are every process's together)."""
        self.position = Position(position.epoch, position.step, position.totals.summed(self.exp.world))
        if self.files is None:
            return None
        with self._writing(f"stopped in epoch {position.epoch}"):
            save_checkpoint(self.state(top1=None, interrupted=True), self.files.path / "checkpoint.pt")
        return self.files.path / "checkpoint.pt"

    def finish(self, results: list[EpochResult], test: dict[str, float] | None, *, plots: bool) -> None:
        """The end of the run: best.pt's table and summary (what the next commands use), summary.json."""
        if self.files is None:
            return
        from compress.artifacts import load_artifacts, model_from
        from compress.thinning.savings import macs_dense_and_thinned

        best = model_from(load_artifacts(self.files.path, arch=self.exp.config.arch)).to(self.exp.device)
        layers = measure_sparsity(best, self.touched)
        if self.table != "none":
            self.echo(f"best.pt (epoch {self.best.epoch}):")
            self.echo(sparsity_table(layers, terminal_width()))
        macs = macs_dense_and_thinned(best, example_input(self.exp.config).to(self.exp.device))
        final = results[-1].top1 if results else None
        with self._writing("the run finished, but its summary is incomplete"):
            self._summarize(final, test, layers, macs)
        if plots:
            self._plots()

    def _summarize(self, final: float | None, test: dict[str, float] | None, layers: list[LayerSparsity],
                   macs: dict[str, int]) -> None:  # fmt: skip
        self.files.write_summary({"run": str(self.files.path), "final_top1": final, "best_top1": self.best.top1,
                                  "best_epoch": self.best.epoch, "best_rule": self.rule.describe(),
                                  "best_sparsity": total_sparsity(layers), "macs": macs,
                                  "layers": [layer.to_dict() for layer in layers], "test": test})  # fmt: skip
        for line in summary_lines(self.files.path, final, self.best, self.rule, test, layers, macs):
            self.echo(line)
            self.files.log(line)

    def _plots(self) -> None:
        """Plots when matplotlib is there; else one line on how to get them, and the run goes on."""
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            from compress.plots import INSTALL_HINT

            self.echo(f"no plots: {INSTALL_HINT}")
            return
        from compress.plots import plot_run

        try:
            written = plot_run(self.files.path, arch=self.exp.config.arch)
        except (ValueError, OSError, RuntimeError) as exc:  # a plot is a view: the run and its files are complete
            self.echo(f"warning: no plots: {type(exc).__name__}: {exc}")
            return
        self.echo("plots: " + ", ".join(p.name for p in written))

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def _run_files(exp: Experiment, resume: Resume | None, overwrite: bool) -> RunFiles:
    if resume is not None and resume.exact and resume.in_run_dir:
        files = RunFiles(resume.run_dir, exp.scheduler.rule_names, exp.scheduler.prune_names)
        files.reopen(resume.state.next_epoch)
        return files
    config, schedule = exp.config, exp.schedule
    name = config.name or default_run_name(schedule.source)
    files = RunFiles(create_run_dir(config.out_dir, name, overwrite=overwrite), exp.scheduler.rule_names,
                     exp.scheduler.prune_names)  # fmt: skip
    files.write_start({**config.to_dict(), "name": name}, schedule.text, schedule.name)
    return files


def _layer_groups(exp: Experiment) -> dict[str, str]:
    """The group whose norms TensorBoard histograms, per regularized weight."""
    out: dict[str, str] = {}
    for bound in exp.scheduler.rules:
        for t in bound.targets:
            out.setdefault(t.param_name, next((g for g in t.groups if g != "elements"), "elements"))
    return out


def _cause(exc: OSError) -> str:
    return f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)


def _silent(*_args: Any, **_kwargs: Any) -> None:
    """What echo is on every torchrun process but the first."""


def zero_filters(layers: list[LayerSparsity]) -> tuple[int, int]:
    """Zero filters (rows of linear layers) over all reported weights, and how many there are."""
    zero = total = 0
    for layer in layers:
        pct = layer.structured.get("filters")
        if pct is not None:
            count = G.get("filters").count(tuple(layer.shape))
            zero, total = zero + round(pct * count / 100), total + count
    return zero, total


def format_epoch(result: EpochResult, sparsity: float, filters: tuple[int, int], width: int = 100) -> str:
    """One line that fits ``width``: each penalty rule's loss and each pruning rule's masked share of
    its groups (``/`` the level it aimed for, where they differ) under the rule's name, the names
    shortened only as much as the line needs (never below 6 characters); when the rules do not fit
    even so, the penalties' sum and the pruning rules' shares without names."""
    zero, total = filters
    head = f"epoch {result.epoch}  lr {result.lr:.4g}  data {result.data_loss:.4f}"
    tail = f"top1 {result.top1:.2f}  sparse {sparsity:.2f}%  {zero}/{total} filters zero  {result.seconds:.1f}s"
    values = {name: f"{value:.3g}" for name, value in result.rule_losses.items()}
    pruned = {name: _pruned(target, achieved) for name, (target, achieved) in result.extra.get("pruning", {}).items()}
    values.update(pruned)
    longest = max((len(name) for name in values), default=0)
    for keep in range(longest, min(6, longest) - 1, -1):
        line = "  ".join([head, *(f"{name[:keep]} {v}" for name, v in values.items()), tail])
        if len(line) <= width:
            return line
    parts = [f"rules {sum(result.rule_losses.values()):.3g}"] if result.rule_losses else []
    parts += [f"pruned {' '.join(pruned.values())}"] if pruned else []
    return "  ".join([head, *parts, tail])


def _pruned(target: float | None, achieved: float) -> str:
    """A pruning rule in the epoch line: the share of its groups masked, and what it aimed for."""
    if target is None or abs(target - achieved) < 5e-4:
        return f"{achieved:.1%}"
    return f"{achieved:.1%}/{target:.1%}"


def summary_lines(run: Path, final: float | None, best: Best, rule: BestRule, test: dict[str, float] | None,
                  layers: list[LayerSparsity], macs: dict[str, int]) -> list[str]:  # fmt: skip
    """What the run made: best.pt, the checkpoint that thin, report, eval and plot use for a run
    directory, so that what the summary says is what they will find."""
    lines = [f"summary of best.pt (epoch {best.epoch}: {rule.describe()}):"]
    last = f"; the last epoch reached {final:.2f}" if final is not None else ""
    lines.append(f"  top1 {best.top1:.2f}{last}")
    if test is not None:
        lines.append(f"  test (the last epoch's weights): loss {test['val_loss']:.4f}  top1 {test['top1']:.2f}  "
                     f"top5 {test['top5']:.2f}")  # fmt: skip
    dense, thinned = macs["dense"], macs["thinned"]
    lines.append(f"  total sparsity {total_sparsity(layers):.2f}%; MACs per input {dense:,} dense, "
                 f"{thinned:,} after thinning ({thinned / max(dense, 1):.1%})")  # fmt: skip
    zeroed = [f"  {layer.name}: {removable(layer)} zero" for layer in layers if _has_zero_structure(layer)]
    lines += zeroed or ["  no filter or channel is exactly zero: thinning would remove nothing"]
    lines += ["next (each reads best.pt; thin writes thin.pt beside it):", f"  compress thin {run}"]
    lines += [f"  compress report {run}", f"  compress plot {run}"]
    return lines


def _has_zero_structure(layer: LayerSparsity) -> bool:
    return any(layer.structured.get(group) for group in ("filters", "channels"))


def removable(layer: LayerSparsity) -> str:
    """``5/20 filters, 3/20 channels`` zero in one layer (what thinning can remove there)."""
    parts = []
    for group in ("filters", "channels"):
        pct = layer.structured.get(group)
        if pct is not None:
            count = G.get(group).count(tuple(layer.shape))
            parts.append(f"{round(pct * count / 100)}/{count} {group}")
    return ", ".join(parts)
