"""The ``compress`` command. The only module that prints and the only one that chooses exit codes:
the library raises ``CompressError`` (a user's mistake) or ``StoppedBySignal``, and this module turns
them into click exceptions whose ``exit_code`` and ``show()`` click uses (2 and one line per problem;
128 + the signal number and the command that resumes)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from compress.config import SETTINGS, Setting, Settings, layered_settings
from compress.errors import CompressError, Diagnostic

FILE = click.Path(path_type=Path, dir_okay=True)  # existence is checked by our readers, with our message
TABLES = ("end", "every", "none")


class UserError(click.ClickException):
    """A mistake in the user's input: one line per problem, sorted by file and line, exit code 2."""

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("\n".join(map(str, diagnostics)))
        self.diagnostics = diagnostics

    def show(self, file: Any = None) -> None:
        for d in sorted(self.diagnostics, key=lambda d: (d.file or "", d.line or 0)):
            click.echo(str(d) if d.file else f"error: {d}", err=True)


class BadUsage(click.ClickException):
    """click's usage errors (a bad flag or value) as one line naming the command, exit code 2."""

    exit_code = 2

    def __init__(self, error: click.UsageError):
        super().__init__(error.format_message())
        self.command = error.ctx.command_path if error.ctx else None

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.command + ': ' if self.command else ''}{self.format_message()}", err=True)


class Stopped(click.ClickException):
    """A run stopped by SIGINT / SIGTERM: its checkpoint is saved; exit code 128 + the signal's number."""

    def __init__(self, stopped: Any):
        super().__init__(str(stopped))
        self.exit_code, self.stopped = 128 + stopped.signum, stopped

    def show(self, file: Any = None) -> None:
        if self.stopped.run_dir is None:  # every torchrun process but the first stays silent
            return
        click.echo(f"{self.stopped}; saved {self.stopped.saved}")
        click.echo(f"resume with: compress train --resume {self.stopped.run_dir}")


class CompressGroup(click.Group):
    """Turns the library's exceptions into the click exceptions above (click prints them and exits)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, join_best(args))

    def invoke(self, ctx: click.Context) -> Any:
        from compress.commands.train import StoppedBySignal

        try:
            return super().invoke(ctx)
        except CompressError as exc:
            error = UserError(exc.diagnostics)
            error.exit_code = getattr(exc, "exit_code", 2)
            raise error from None
        except StoppedBySignal as exc:
            raise Stopped(exc) from None
        except click.UsageError as exc:
            raise BadUsage(exc) from None


def join_best(args: list[str]) -> list[str]:
    """``--best sparsity-at-top1 97.5`` (two words, as users write it) -> one option value."""
    out = list(args)
    for i in range(len(out) - 2):
        if out[i] == "--best" and out[i + 1] == "sparsity-at-top1" and not out[i + 2].startswith("-"):
            out[i + 1 : i + 3] = [f"sparsity-at-top1:{out[i + 2]}"]
            break
    return out


class SettingType(click.ParamType):
    """A flag checked by the same rules as the setting in a config file (finite numbers, bounds)."""

    def __init__(self, setting: Setting):
        self.setting = setting
        self.name = setting.kind.__name__

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and self.setting.kind in (int, float):
            try:
                value = self.setting.kind(value)
            except ValueError:
                self.fail(f"expected {'an integer' if self.setting.kind is int else 'a number'}, got {value!r}",
                          param, ctx)  # fmt: skip
        problem = self.setting.check(value)
        if problem:
            self.fail(problem, param, ctx)
        return value


def setting_options(command: str):
    """The run-setting flags of ``command`` (``run``: train and check; ``train``: train alone), each
    derived from its definition in ``compress.config``; ``--config`` first."""

    def decorate(f):
        for name, s in reversed(SETTINGS.items()):
            if s.flag == "run" or s.flag == command:
                f = _option(name, s)(f)
        return click.option("--config", "config_path", type=FILE, help="Run settings YAML (configs/*.yaml).")(f)

    return decorate


def _option(name: str, s: Setting):
    flag = "--" + name.replace("_", "-")
    if s.kind is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=s.help)
    if s.choices is not None:
        return click.option(flag, name, type=click.Choice(s.choices()), help=s.help)
    return click.option(flag, name, type=SettingType(s), help=s.help)


@click.group(name="compress", cls=CompressGroup)
@click.version_option(package_name="compress")
def main() -> None:
    """Train image classifiers under scheduled L1 / L2 / group-lasso regularization and report sparsity."""


def _print_warnings(warnings: list[Diagnostic]) -> None:
    for w in warnings:
        click.echo(str(w), err=True)


def _load_schedule(path: Path):
    """Errors are deferred to binding, which reports them together with the model-dependent ones."""
    from compress.schedule import load_schedule

    return load_schedule(path, defer_errors=True)


def _settings(schedule, config_path: Path | None, flags: dict[str, Any]) -> Settings:
    """The run settings; a config file that cannot be read is reported together with the schedule's
    own errors (one round shows every mistake)."""
    settings = layered_settings(schedule, config_path, flags)
    if settings.problems:
        from compress.experiment import plan

        errors = list(settings.problems)
        if schedule is not None:
            try:
                plan(schedule, settings.config)
            except CompressError as exc:
                errors += exc.diagnostics
        raise CompressError(errors)
    return settings


@main.command()
@click.option("--schedule", "schedule_path", type=FILE, help="Schedule YAML (ours or Distiller's).")
@click.option("--resume", type=FILE, help="Continue a run exactly: its directory or a checkpoint.")
@click.option("--reset-optimizer", is_flag=True,
              help="With --resume: a new run at epoch 0 from the checkpoint's weights (fine-tuning).")  # fmt: skip
@setting_options("train")
@click.option("--overwrite", is_flag=True, help="Reuse an existing run directory of the same name.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@click.option("--table", type=click.Choice(TABLES), default="end",
              help="The per-layer sparsity table: at the end (default), after every epoch, or none.")  # fmt: skip
@click.option("--plots/--no-plots", default=True, help="PNG plots at the end of the run (needs matplotlib).")
def train(schedule_path: Path | None, resume: Path | None, reset_optimizer: bool, config_path: Path | None,
          overwrite: bool, progress: bool | None, table: str, plots: bool, **flags: Any) -> None:  # fmt: skip
    """Train a model under a schedule; writes runs/<name>/ and prints one line per epoch."""
    from compress.commands.train import run_training
    from compress.resume import resumed_run

    if schedule_path is None and resume is None:
        raise click.UsageError("Missing option '--schedule' (or --resume RUN to continue a run).")
    if reset_optimizer and resume is None:
        raise click.UsageError("--reset-optimizer only makes sense with --resume.")
    schedule = _load_schedule(schedule_path) if schedule_path is not None else None
    run = None
    if resume is not None:
        schedule, config, run = resumed_run(resume, reset=reset_optimizer, schedule=schedule, config_path=config_path,
                                            flags=flags)  # fmt: skip
        if run.exact and run.state.next_epoch >= config.epochs:
            click.echo(f"{run.path}: the run is finished ({run.state.next_epoch} of {config.epochs} epochs); to train "
                       f"longer: compress train --resume {resume} --epochs N (N > {run.state.next_epoch})")  # fmt: skip
            return
    else:
        config = _settings(schedule, config_path, flags).config
    show_progress = sys.stderr.isatty() if progress is None else progress
    from contextlib import nullcontext

    from compress.artifacts import blaming

    with blaming(run.path, flags) if run is not None else nullcontext():  # what the checkpoint stores is its own
        run_training(schedule, config, overwrite=overwrite, progress=show_progress, echo=click.echo,
                     warn=_print_warnings, resume=run, plots=plots, table=table)  # fmt: skip


@main.command()
@click.option("--schedule", "schedule_path", type=FILE, help="Schedule YAML to validate against the model.")
@setting_options("run")
@click.option("--list-params", is_flag=True, help="Print the model's parameter names and shapes.")
def check(schedule_path: Path | None, config_path: Path | None, list_params: bool, **flags: Any) -> None:
    """Validate a schedule against a model and print the plan, or list the model's parameters."""
    from compress.commands.check import format_params, format_plan
    from compress.experiment import build_model_for, plan

    if schedule_path is None and not list_params:
        raise click.UsageError("give --schedule to check, or --list-params to list the model's parameters")
    schedule = _load_schedule(schedule_path) if schedule_path else None
    settings = _settings(schedule, config_path, flags)
    config = settings.config
    if list_params:
        click.echo(format_params(build_model_for(config), config.arch))
    if schedule is not None:
        model, rules, warnings = plan(schedule, config)
        _print_warnings(warnings)
        click.echo(format_plan(schedule, config, rules, model, arch_given=settings.arch_given))


@main.command()
def models() -> None:
    """List the models --arch takes, one line each (ours, then torchvision's)."""
    from compress.commands.listing import format_models

    click.echo(format_models())


@main.command()
def datasets() -> None:
    """List the datasets --dataset takes, one line each."""
    from compress.commands.listing import format_datasets

    click.echo(format_datasets())


STRUCTURES = ["filters", "channels", "kernels", "rows", "cols"]


CONFIRM_ARCH = click.option(
    "--arch", metavar="MODULE:FUNCTION",
    help="A checkpoint of your own model is loaded only when you name that model again (it imports your code).",
)  # fmt: skip


@main.command()
@click.argument("path", metavar="RUN_OR_CKPT", type=FILE)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "markdown"]), default="table")
@click.option("--group", type=click.Choice(STRUCTURES),
              help="Show one structured column (plus Std, Mean, Abs-Mean) instead of all five.")  # fmt: skip
@click.option("--width", type=click.IntRange(min=40), help="Width the table must fit (default: the terminal's).")
@click.option("--what", type=click.Choice(["layers", "history"]), default="layers",
              help="With --format csv: the per-layer table (default) or the run's history, one CSV each.")  # fmt: skip
@CONFIRM_ARCH
def report(path: Path, fmt: str, group: str | None, width: int | None, what: str, arch: str | None) -> None:
    """Sparsity per layer, MACs dense and after thinning, and a run's history per epoch (a run
    directory means its best.pt)."""
    from compress.commands.report import report_text
    from compress.recorder import terminal_width

    click.echo(report_text(path, fmt=fmt, group=group, width=width or terminal_width(), what=what, arch=arch))


@main.command("eval")
@click.argument("path", metavar="CKPT", type=FILE)
@click.option("--dataset", help="Evaluate on another dataset than the run's.")
@click.option("--data-dir", help="Where that dataset lives.")
@click.option("--test/--no-test", default=None, help="The test split instead of the validation split.")
@click.option("--batch-size", type=SettingType(SETTINGS["batch_size"]))
@click.option("--device", help="cpu (default), cuda or cuda:N.")
@click.option("--limit-batches", type=SettingType(SETTINGS["limit_batches"]))
@CONFIRM_ARCH
def evaluate(path: Path, **overrides: Any) -> None:
    """top1 / top5 / loss of a checkpoint (a run directory means its best.pt)."""
    from compress.commands.report import evaluate_checkpoint

    m = evaluate_checkpoint(path, overrides)
    click.echo(f"{m['checkpoint']}: {m['split']}  top1 {m['top1']:.2f}  top5 {m['top5']:.2f}  loss {m['val_loss']:.4f}")


@main.command()
@click.argument("path", metavar="RUN", type=FILE)
@click.option("--group", type=click.Choice(STRUCTURES), default="filters",
              help="Structure shown in the per-layer heatmap.")  # fmt: skip
@CONFIRM_ARCH
def plot(path: Path, group: str, arch: str | None) -> None:
    """Write PNG plots into a run directory (needs the plots extra: matplotlib)."""
    from compress.plots import plot_run

    for written in plot_run(path, group, arch):
        click.echo(f"wrote {written}")


@main.command()
@click.argument("path", metavar="CKPT", type=FILE)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="The thinned checkpoint [default: RUN/thin.pt, or NAME-thin.pt beside a checkpoint file].")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file (never the input).")
@click.option("--batch", type=click.IntRange(min=2), default=64, help="Inputs compared; the larger latency batch.")
@CONFIRM_ARCH
def thin(path: Path, output: Path | None, overwrite: bool, batch: int, arch: str | None) -> None:
    """Remove exactly-zero filters and channels (a run directory means its best.pt); verified, measured."""
    from compress.commands.thin import thin_checkpoint

    for line in thin_checkpoint(path, output, batch=batch, overwrite=overwrite, arch=arch):
        click.echo(line)


@main.command()
@click.argument("path", metavar="RUN_OR_CKPT", type=FILE)
@click.option("--groups", "group", type=click.Choice(["elements", *STRUCTURES]), default="elements",
              show_default=True, help="What goes: single weights, or whole filters (channels, ...).")  # fmt: skip
@click.option("--levels", metavar="LIST", help="Fractions of each layer's groups to prune, comma-separated "
              "[default: 0,0.1,...,0.9]; 0 (the unpruned model) is always included.")  # fmt: skip
@click.option("--layers", "patterns", metavar="GLOB", multiple=True,
              help="Only these weights (a name or glob, repeatable) [default: every conv and linear weight].")
@click.option("--limit-batches", type=SettingType(SETTINGS["limit_batches"]),
              help="Evaluate on at most N validation batches [default: the run's].")  # fmt: skip
@click.option("--device", help="cpu, cuda or cuda:N [default: the run's].")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Directory for sensitivity.csv / .png [default: the run directory, or the checkpoint's].")
@click.option("--suggest", "drop", type=float, metavar="DROP",
              help="Also write sensitivity-schedule.yaml: per layer, the highest level keeping top1 within DROP "
              "points of the unpruned model.")  # fmt: skip
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@CONFIRM_ARCH
def sense(path: Path, group: str, levels: str | None, patterns: tuple[str, ...], limit_batches: int | None,
          device: str | None, output: Path | None, drop: float | None, progress: bool | None,
          arch: str | None) -> None:  # fmt: skip
    """Pruning sensitivity: prune each layer alone at each level (lowest L1 first), evaluate, put it
    back; writes sensitivity.csv and .png (a run directory means its best.pt)."""
    from compress.commands.sense import run_sense
    from compress.commands.train import tqdm_progress
    from compress.recorder import terminal_width

    show_progress = sys.stderr.isatty() if progress is None else progress
    run_sense(path, group=group, levels=levels, patterns=patterns, limit_batches=limit_batches, device=device,
              output=output, drop=drop, progress=tqdm_progress if show_progress else None, echo=click.echo,
              width=terminal_width(), arch=arch)  # fmt: skip


@main.command()
@click.argument("path", metavar="RUN_OR_CKPT", type=FILE)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="The ONNX file [default: RUN/model.onnx, or NAME.onnx beside a checkpoint file].")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Fix the batch dimension to N [default: dynamic].")  # fmt: skip
@click.option("--opset", type=click.IntRange(min=7), default=None,
              help="ONNX opset version [default: the exporter's].")  # fmt: skip
@CONFIRM_ARCH
def export(path: Path, output: Path | None, overwrite: bool, batch: int | None, opset: int | None,
           arch: str | None) -> None:  # fmt: skip
    """Write an ONNX model of a checkpoint (a run directory means its best.pt), checked in ONNX
    Runtime on validation images (needs the export extra: onnx, onnxscript, onnxruntime)."""
    from compress.commands.export import export_checkpoint

    for line in export_checkpoint(path, output, batch=batch, overwrite=overwrite, arch=arch, opset=opset):
        click.echo(line)


@main.command()
@click.option("--schedule", "schedule_path", type=FILE, required=True, help="The schedule whose numbers are searched.")
@click.option("--search", "searches", multiple=True, metavar="PATH=LOW:HIGH[:log|:int] | PATH=A,B,C",
              help="A number of the schedule and its range or choices (repeatable): "
              "conv-filters.layers.conv1.weight=1e-3:1:log, conv-filters.epochs.1=5:20:int.")  # fmt: skip
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="Finished trials the study should hold (a resumed study runs the rest).")  # fmt: skip
@click.option("--objective", default="top1,filters", show_default=True,
              help="top1 and the sparsity to maximize: top1,filters | top1,macs | top1,params.")  # fmt: skip
@click.option("--min-top1", type=float, help="Accept only trials with at least this validation top1 (a constraint).")
@click.option("--stop-margin", type=float, default=2.0, show_default=True,
              help="With --min-top1: stop a trial whose best top1 is this many points under it after half its epochs.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@click.option("--study-dir", type=FILE, help="Where the study lives [default: tune/<schedule name>].")
@click.option("--study-name", help="The study's name in its storage [default: the study directory's name].")
@click.option("--storage", metavar="URL", help="A database shared by several machines (postgresql://...) "
              "[default: sqlite in STUDY_DIR/study.db].")  # fmt: skip
@click.option("--resume", is_flag=True, help="Continue the study in --study-dir (finished trials are kept).")
@click.option("--baseline", "baseline_run", type=FILE, help="A run to mark in the table and plot (e.g. a dense one).")
@setting_options("train")
@click.option("--plots/--no-plots", default=True, help="pareto.png (needs matplotlib).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def tune(schedule_path: Path, searches: tuple[str, ...], trials: int, objective: str, min_top1: float | None,
         stop_margin: float, jobs: int, study_dir: Path | None, study_name: str | None, storage: str | None,
         resume: bool, baseline_run: Path | None, config_path: Path | None, plots: bool, progress: bool | None,
         **flags: Any) -> None:  # fmt: skip
    """Search the schedule's numbers (strengths, levels, epochs) for the most sparsity at the
    accuracy you accept: every trial a compress train run in STUDY_DIR/trials/NNN (needs optuna)."""
    from compress.commands.tune import prepare, rerun_command, run_tune
    from compress.tuning.engine import require_optuna

    require_optuna()
    for key in ("out_dir", "name"):
        if flags.get(key) is not None:
            raise click.UsageError(f"--{key.replace('_', '-')}: every trial runs in STUDY_DIR/trials/NNN")
    schedule = _load_schedule(schedule_path)
    config = _settings(schedule, config_path, flags).config
    setup = prepare(schedule, config, searches, objective=objective, min_top1=min_top1, stop_margin=stop_margin,
                    trials=trials, jobs=jobs, study_dir=study_dir, study_name=study_name, storage=storage,
                    arch=flags.get("arch"))  # fmt: skip
    full = _settings(schedule, config_path, {**flags, "epochs": None, "limit_batches": None}).config.epochs
    rerun = rerun_command(full if full > config.epochs else 2 * config.epochs, flags, config_path)
    show_progress = sys.stderr.isatty() if progress is None else progress
    try:
        run_tune(setup, resume=resume, baseline_run=baseline_run, plots=plots, progress=show_progress,
                 echo=click.echo, rerun=rerun)  # fmt: skip
    except KeyboardInterrupt:
        click.echo(f"stopped; the finished trials are in {setup.study_dir}; continue with the same command and "
                   "--resume", err=True)  # fmt: skip
        raise click.exceptions.Exit(130) from None
