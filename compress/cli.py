"""The ``compress`` command. The only module that prints; ``CompressError`` becomes exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from compress.config import MAXIMA, OPTIMIZERS, Settings, layered_settings, load_config_file
from compress.errors import CompressError, Diagnostic

FILE = click.Path(path_type=Path, dir_okay=True)  # existence is checked by our readers, with our message


class CompressGroup(click.Group):
    """Turns our errors and click's usage errors into one line each and exit code 2, no traceback."""

    def main(self, args: list[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        args = join_best(list(sys.argv[1:] if args is None else args))
        try:
            return super().main(args, *rest, **kwargs)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            command = f"{exc.ctx.command_path}: " if getattr(exc, "ctx", None) else ""
            click.echo(f"error: {command}{exc.format_message()}", err=True)
            sys.exit(exc.exit_code)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CompressError as exc:
            for diagnostic in sorted(exc.diagnostics, key=_where):
                click.echo(f"error: {diagnostic}" if not diagnostic.file else str(diagnostic), err=True)
            sys.exit(2)


def _where(d: Diagnostic) -> tuple[str, int]:
    """Errors sorted by file and line (those without a file first, as given)."""
    return (d.file or "", d.line or 0)


def join_best(args: list[str]) -> list[str]:
    """``--best sparsity-at-top1 97.5`` (two words, as users write it) -> one option value."""
    out = list(args)
    for i in range(len(out) - 2):
        if out[i] == "--best" and out[i + 1] == "sparsity-at-top1" and not out[i + 2].startswith("-"):
            out[i + 1 : i + 3] = [f"sparsity-at-top1:{out[i + 2]}"]
            break
    return out


@click.group(cls=CompressGroup)
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


def _settings(schedule, config_path: Path | None, flags: dict[str, Any], base: dict | None = None) -> Settings:
    """The run settings; a config file that cannot be read is reported together with the schedule's
    own errors (one round shows every mistake)."""
    settings = layered_settings(schedule, config_path, flags, base)
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


def run_options(f):
    """The run-setting flags shared by train and check; each overrides the config files."""
    options = [
        click.option("--config", "config_path", type=FILE, help="Run settings YAML (configs/*.yaml)."),
        click.option(
            "--arch",
            help="Model: a name `compress models` lists (default lenet5), or package.module:function of your own.",
        ),
        click.option("--dataset", help="Dataset: a name `compress datasets` lists (default mnist5k, embedded)."),
        click.option("--data-dir", help="Where the dataset lives (all but mnist5k); imagefolder: DIR/train, DIR/val."),
        click.option("--input-size", type=click.IntRange(min=1), help="Image side for imagenet / imagefolder (224)."),
        click.option("--pretrained", help="Start from this local state_dict (the head is replaced if classes differ)."),
        click.option("--epochs", type=click.IntRange(1, MAXIMA["epochs"]), help="Number of epochs."),
        click.option("--batch-size", type=click.IntRange(min=1), help="Training batch size."),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), help="Optimizer."),
        click.option("--lr", type=click.FloatRange(min=0), help="Learning rate."),
        click.option("--momentum", type=click.FloatRange(min=0), help="SGD momentum."),
        click.option("--nesterov/--no-nesterov", default=None, help="Nesterov momentum (SGD)."),
        click.option("--weight-decay", type=click.FloatRange(min=0), help="Optimizer weight decay on every parameter."),
        click.option("--seed", type=click.IntRange(0, 2**63 - 1), help="Seed: same seed, same result on the CPU."),
        click.option("--device", help="cpu (default), cuda or cuda:N."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@main.command()
@click.option("--schedule", "schedule_path", type=FILE, help="Schedule YAML (ours or Distiller's).")
@click.option("--resume", type=FILE, help="Continue a run exactly: its directory or a checkpoint.")
@click.option(
    "--reset-optimizer",
    is_flag=True,
    help="With --resume: start a new run at epoch 0 from the checkpoint's weights (fine-tuning).",
)
@run_options
@click.option("--download/--no-download", default=None, help="Let torchvision fetch a missing dataset into --data-dir.")
@click.option(
    "--val-split",
    type=click.FloatRange(min=0, max=1, max_open=True),
    help="Validate on this stratified share of the training images (default 0.1 where a dataset has no "
    "validation split; 0: its test split, as Distiller's --vs 0).",
)
@click.option("--test/--no-test", default=None, help="Evaluate the final weights on the test split at the end.")
@click.option("--workers", type=click.IntRange(min=0), help="DataLoader worker processes (default: cores - 1, max 8).")
@click.option("--out-dir", help="Where run directories go (default runs).")
@click.option("--name", help="Run directory name (default: schedule name and a timestamp).")
@click.option("--limit-batches", type=click.IntRange(min=1), help="Train and validate on at most N batches per epoch.")
@click.option("--overwrite", is_flag=True, help="Reuse an existing run directory of the same name.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@click.option("--best", help="How best.pt is chosen: top1 (default), or sparsity-at-top1 B (sparsest with top1 >= B).")
@click.option("--tensorboard/--no-tensorboard", default=None, help="Write TensorBoard events to RUN/tensorboard.")
@click.option("--plots/--no-plots", default=True, help="PNG plots at the end of the run (needs matplotlib).")
def train(
    schedule_path: Path | None,
    resume: Path | None,
    reset_optimizer: bool,
    config_path: Path | None,
    overwrite: bool,
    progress: bool | None,
    plots: bool,
    **flags: Any,
) -> None:
    """Train a model under a schedule; writes runs/<name>/ and prints sparsity every epoch."""
    from compress.commands.train import run_training

    if schedule_path is None and resume is None:
        raise click.UsageError("Missing option '--schedule' (or --resume RUN to continue a run).")
    if reset_optimizer and resume is None:
        raise click.UsageError("--reset-optimizer only makes sense with --resume.")
    run = None
    if resume is not None:
        schedule, config, run = _resume_setup(resume, reset_optimizer, schedule_path, config_path, flags)
    else:
        schedule = _load_schedule(schedule_path)
        config = _settings(schedule, config_path, flags).config
    show_progress = sys.stderr.isatty() if progress is None else progress
    run_training(schedule, config, overwrite=overwrite, progress=show_progress, echo=click.echo,
                 warn=_print_warnings, resume=run, plots=plots)  # fmt: skip


def _resume_setup(path: Path, reset: bool, schedule_path: Path | None, config_path: Path | None, flags: dict):
    from compress.resume import check_same_schedule, exact_config, load_resume
    from compress.schedule import parse_schedule

    run = load_resume(path, exact=not reset)
    if schedule_path is not None:
        schedule = _load_schedule(schedule_path)
    else:
        schedule = parse_schedule(run.state["schedule_text"], run.state["schedule_source"], defer_errors=True)
    if reset:
        base = {k: v for k, v in run.state["config"].items() if k != "name"}
        return schedule, _settings(schedule, config_path, flags, base=base).config, run
    check_same_schedule(run, schedule.text if schedule_path else None, str(schedule_path))
    layers = [load_config_file(config_path)] if config_path else []
    return schedule, exact_config(run, [*layers, flags]), run


@main.command()
@click.option("--schedule", "schedule_path", type=FILE, help="Schedule YAML to validate against the model.")
@run_options
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


@main.command()
@click.argument("path", metavar="RUN_OR_CKPT", type=FILE)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "markdown"]), default="table")
@click.option("--group", type=click.Choice(["filters", "channels", "kernels", "rows", "cols"]),
              help="Show one structured column (plus Std, Mean, Abs-Mean) instead of all five.")  # fmt: skip
@click.option("--width", type=click.IntRange(min=40), default=100, help="Terminal width the table must fit.")
def report(path: Path, fmt: str, group: str | None, width: int) -> None:
    """Sparsity per layer, MACs dense and after thinning, and a run's history per epoch."""
    from compress.commands.report import report_text

    click.echo(report_text(path, fmt=fmt, group=group, width=width))


@main.command("eval")
@click.argument("path", metavar="CKPT", type=FILE)
@click.option("--dataset", help="Evaluate on another dataset than the run's.")
@click.option("--data-dir", help="Where that dataset lives.")
@click.option("--test/--no-test", default=None, help="The test split instead of the validation split.")
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--device", help="cpu (default), cuda or cuda:N.")
@click.option("--limit-batches", type=click.IntRange(min=1))
def evaluate(path: Path, **overrides: Any) -> None:
    """top1 / top5 / loss of a checkpoint (a run directory means its best.pt)."""
    from compress.commands.report import evaluate_checkpoint

    m = evaluate_checkpoint(path, overrides)
    click.echo(f"{path}: {m['split']}  top1 {m['top1']:.2f}  top5 {m['top5']:.2f}  loss {m['val_loss']:.4f}")


@main.command()
@click.argument("path", metavar="RUN", type=FILE)
@click.option("--group", type=click.Choice(["filters", "channels", "kernels", "rows", "cols"]), default="filters",
              help="Structure shown in the per-layer heatmap.")  # fmt: skip
def plot(path: Path, group: str) -> None:
    """Write PNG plots into a run directory (needs the plots extra: matplotlib)."""
    from compress.commands.plot import plot_run

    for written in plot_run(path, group):
        click.echo(f"wrote {written}")


@main.command()
@click.argument("path", metavar="CKPT", type=FILE)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The thinned checkpoint.")
@click.option("--batch", type=click.IntRange(min=2), default=64, help="Inputs compared; the larger latency batch.")
def thin(path: Path, output: Path, batch: int) -> None:
    """Remove exactly-zero filters and channels (a run directory means its best.pt); verified, measured."""
    from compress.commands.thin import thin_checkpoint

    for line in thin_checkpoint(path, output, batch=batch):
        click.echo(line)
