"""The ``compress`` command. The only module that prints; ``CompressError`` becomes exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from compress.config import OPTIMIZERS, RunConfig, load_config_file, resolve_config
from compress.errors import CompressError, Diagnostic

FILE = click.Path(path_type=Path, dir_okay=True)  # existence is checked by our readers, with our message


class CompressGroup(click.Group):
    """Turns our errors and click's usage errors into one line each and exit code 2, no traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
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
            for diagnostic in exc.diagnostics:
                click.echo(f"error: {diagnostic}" if not diagnostic.file else str(diagnostic), err=True)
            sys.exit(2)


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


def _config_layers(schedule, config_path: Path | None, flags: dict[str, Any], base: dict | None = None) -> RunConfig:
    layers: list[dict[str, Any]] = [base] if base else []
    if schedule is not None and schedule.config:
        layers.append(load_config_file(schedule.config, f"{schedule.source}: config"))
    if config_path is not None:
        layers.append(load_config_file(config_path))
    layers.append(flags)
    return resolve_config(layers)


def run_options(f):
    """The run-setting flags shared by train and check; each overrides the config files."""
    options = [
        click.option("--config", "config_path", type=FILE, help="Run settings YAML (configs/*.yaml)."),
        click.option("--arch", help="Model name (see the registry; default lenet5)."),
        click.option("--dataset", help="Dataset name (default mnist5k, embedded)."),
        click.option("--epochs", type=click.IntRange(min=1), help="Number of epochs."),
        click.option("--batch-size", type=click.IntRange(min=1), help="Training batch size."),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), help="Optimizer."),
        click.option("--lr", type=click.FloatRange(min=0), help="Learning rate."),
        click.option("--momentum", type=click.FloatRange(min=0), help="SGD momentum."),
        click.option("--nesterov/--no-nesterov", default=None, help="Nesterov momentum (SGD)."),
        click.option("--weight-decay", type=click.FloatRange(min=0), help="Optimizer weight decay on every parameter."),
        click.option("--seed", type=click.IntRange(min=0), help="Seed: same seed, same result on the CPU."),
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
@click.option("--out-dir", help="Where run directories go (default runs).")
@click.option("--name", help="Run directory name (default: schedule name and a timestamp).")
@click.option("--limit-batches", type=click.IntRange(min=1), help="Train and validate on at most N batches per epoch.")
@click.option("--overwrite", is_flag=True, help="Reuse an existing run directory of the same name.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def train(
    schedule_path: Path | None,
    resume: Path | None,
    reset_optimizer: bool,
    config_path: Path | None,
    overwrite: bool,
    progress: bool | None,
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
        config = _config_layers(schedule, config_path, flags)
    show_progress = sys.stderr.isatty() if progress is None else progress
    run_training(
        schedule, config, overwrite=overwrite, progress=show_progress, echo=click.echo, warn=_print_warnings, resume=run
    )


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
        return schedule, _config_layers(schedule, config_path, flags, base=base), run
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
    config = _config_layers(schedule, config_path, flags)
    if list_params:
        click.echo(format_params(build_model_for(config), config.arch))
    if schedule is not None:
        model, rules, warnings = plan(schedule, config)
        _print_warnings(warnings)
        click.echo(format_plan(schedule, config, rules, model))
