"""``compress train``: wires the experiment, the loop and the run directory together."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from compress.checkpoint import save_checkpoint
from compress.config import RunConfig
from compress.experiment import Experiment, build_experiment
from compress.runs import RunFiles, create_run_dir, default_run_name
from compress.schedule.model import Schedule
from compress.sparsity import format_table, measure_sparsity
from compress.training import EpochResult, fit


def tqdm_progress(iterable, total: int, description: str):
    from tqdm import tqdm

    return tqdm(
        iterable, total=total, desc=description, leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=0.5
    )


def format_epoch(result: EpochResult, sparsity: float) -> str:
    rules = "".join(f", {name} {value:.4g}" for name, value in result.rule_losses.items())
    return (
        f"epoch {result.epoch}  lr {result.lr:.4g}  loss {result.train_loss:.4f} (data {result.data_loss:.4f}{rules})  "
        f"val_loss {result.val_loss:.4f}  top1 {result.top1:.2f}  top5 {result.top5:.2f}  "
        f"sparsity {sparsity:.2f}%  {result.seconds:.1f}s"
    )


def checkpoint_state(exp: Experiment, epoch: int, top1: float, best_top1: float) -> dict[str, Any]:
    return {
        "arch": exp.config.arch,
        "state_dict": exp.model.state_dict(),
        "optimizer": exp.optimizer.state_dict(),
        "scheduler": exp.scheduler.state_dict(),
        "epoch": epoch,
        "top1": top1,
        "best_top1": best_top1,
        "config": exp.config.to_dict(),
        "schedule_text": exp.schedule.text,
        "schedule_source": exp.schedule.source,
    }


def run_training(
    schedule: Schedule, config: RunConfig, *, overwrite: bool, progress: bool, echo: Callable[..., None], warn: Callable
) -> list[EpochResult]:
    exp = build_experiment(schedule, config)
    warn(exp.warnings)
    name = config.name or default_run_name(schedule.source)
    run_dir = create_run_dir(config.out_dir, name, overwrite=overwrite)
    files = RunFiles(run_dir, exp.scheduler.rule_names)
    files.write_start({**config.to_dict(), "name": name}, schedule.text, schedule.name)
    touched = [t.param_name for r in exp.scheduler.rules for t in r.targets]
    best: dict[str, Any] = {"top1": float("-inf"), "epoch": None}

    def after_epoch(result: EpochResult) -> None:
        layers = measure_sparsity(exp.model, touched)
        totals = files.write_epoch(result, layers)
        line = format_epoch(result, totals["sparsity"])
        echo(line)
        echo(format_table(layers))
        files.log(line)
        is_best = result.top1 > best["top1"]
        if is_best:
            best.update(top1=result.top1, epoch=result.epoch, layers=layers, sparsity=totals["sparsity"])
        state = checkpoint_state(exp, result.epoch, result.top1, best["top1"])
        save_checkpoint(state, run_dir / "checkpoint.pt")
        if is_best:
            save_checkpoint(state, run_dir / "best.pt")
            echo(f"best.pt <- epoch {result.epoch} (highest validation top1 so far: {result.top1:.2f})")

    results = fit(
        exp.model,
        exp.data.train,
        exp.data.val,
        exp.optimizer,
        exp.scheduler,
        epochs=config.epochs,
        device=exp.device,
        limit_batches=config.limit_batches,
        progress=tqdm_progress if progress else None,
        on_epoch_end=after_epoch,
    )
    final_layers = measure_sparsity(exp.model, touched)
    from compress.sparsity import total_sparsity

    files.write_summary(
        {
            "run": str(run_dir),
            "final_top1": results[-1].top1,
            "best_top1": best["top1"],
            "best_epoch": best["epoch"],
            "final_sparsity": total_sparsity(final_layers),
            "layers": [layer.to_dict() for layer in final_layers],
        }
    )
    echo(
        f"final top1 {results[-1].top1:.2f}, best top1 {best['top1']:.2f} (epoch {best['epoch']}), "
        f"sparsity {total_sparsity(final_layers):.2f}%"
    )
    echo(f"run directory: {run_dir}")
    return results
