"""``compress sense RUN_OR_CKPT``: prune each weight layer alone at each level, evaluate on the
validation split, put the layer back; write ``sensitivity.csv`` (and ``sensitivity.png``), print
top1 per layer and level, and with ``--suggest DROP`` the pruning schedule the curves suggest."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from compress import sensitivity as S
from compress.artifacts import RunArtifacts, load_artifacts, model_from
from compress.config import RunConfig
from compress.errors import CompressError

CSV_NAME, PLOT_NAME, SCHEDULE_NAME = "sensitivity.csv", "sensitivity.png", "sensitivity-schedule.yaml"


@dataclass
class SenseResult:
    points: list[S.Point]
    written: list[Path] = field(default_factory=list)
    suggested: dict[str, float] | None = None


def output_dir(artifacts: RunArtifacts, output: Path | None) -> Path:
    """``-o DIR`` (made when missing), else the run directory or the checkpoint's folder; refused
    before any work when it cannot be written."""
    out = Path(output) if output is not None else artifacts.checkpoint.parent
    if out.exists() and not out.is_dir():
        raise CompressError(f"-o: {out} is a file; give a directory (sensitivity.csv and the others go into it)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CompressError(f"-o: cannot make directory {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK):
        raise CompressError(f"-o: directory {out} is not writable")
    return out


def _evaluator(artifacts: RunArtifacts, model, limit_batches: int | None, device: str | None):
    """The model on its device, and ``evaluate()`` on the run's validation split as ``compress eval``
    reads it (the run's batch size, seed and --limit-batches, unless given here)."""
    from compress.datasets import build_dataset
    from compress.experiment import data_options, resolve_device
    from compress.training import evaluate

    overrides = {k: v for k, v in {"limit_batches": limit_batches, "device": device}.items() if v is not None}
    config = RunConfig(**{**artifacts.config.to_dict(), **overrides})
    where = resolve_device(config.device)
    model.to(where)
    data = build_dataset(config.dataset, batch_size=config.batch_size, seed=config.seed, device=str(where),
                         options=data_options(config, where))  # fmt: skip
    batches = len(data.val) if config.limit_batches is None else min(config.limit_batches, len(data.val))
    described = f"{batches} batch{'es' if batches != 1 else ''} of the validation split of {config.dataset}"
    return (lambda: evaluate(model, data.val, device=where, limit_batches=config.limit_batches)), described


def run_sense(path: Path, *, group: str = "elements", levels: str | None = None, patterns: Sequence[str] = (),
              limit_batches: int | None = None, device: str | None = None, output: Path | None = None,
              drop: float | None = None, progress: S.Progress | None = None, echo: Callable[[str], None] = print,
              width: int | None = 100, arch: str | None = None) -> SenseResult:  # fmt: skip
    tested = S.parse_levels(levels)
    S.check_drop(drop)
    artifacts = load_artifacts(path, arch=arch)
    out = output_dir(artifacts, output)
    model = model_from(artifacts)
    layers, skipped = S.select_layers(model, patterns, group)
    evaluate, described = _evaluator(artifacts, model, limit_batches, device)
    echo(f"{artifacts.checkpoint}: {len(layers)} layer(s) x {len(tested)} level(s) of {S.CRITERION} {group} pruning, "
         f"each layer alone; on {described}")  # fmt: skip
    if skipped:
        echo(f"skipped (no {group}): {', '.join(skipped)}")
    result = SenseResult(S.analyze(layers, group, tested, evaluate, progress))
    result.written += _write(result.points, out, group, echo)
    base = result.points[0]
    echo(f"unpruned: top1 {base.top1:.2f}  top5 {base.top5:.2f}  loss {base.loss:.4f}")
    echo(S.sensitivity_table(result.points, width))
    if drop is not None:
        result.suggested = S.suggest_levels(result.points, drop)
        result.written.append(_write_schedule(result, artifacts, out / SCHEDULE_NAME, group, drop, echo))
    echo("wrote " + ", ".join(str(p) for p in result.written))
    return result


def _write(points: list[S.Point], out: Path, group: str, echo: Callable[[str], None]) -> list[Path]:
    """The CSV, and the plot when matplotlib is there (else one line on how to get it)."""
    csv_path = out / CSV_NAME
    _write_text(csv_path, S.sensitivity_csv(points))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        from compress.plots import INSTALL_HINT

        echo(f"no {PLOT_NAME}: {INSTALL_HINT}")
        return [csv_path]
    from compress.plots import plot_sensitivity

    curves = {name: [(p.level, p.top1) for p in curve] for name, curve in S.by_layer(points).items()}
    title = f"pruning sensitivity: {S.CRITERION} {group}, one layer at a time"
    return [csv_path, plot_sensitivity(curves, out / PLOT_NAME, baseline=points[0].top1, title=title)]


def _write_schedule(result: SenseResult, artifacts: RunArtifacts, path: Path, group: str, drop: float,
                    echo: Callable[[str], None]) -> Path:  # fmt: skip
    suggested = result.suggested or {}
    baseline = result.points[0].top1
    config = artifacts.config
    text = S.schedule_text(suggested, group, drop=drop, baseline=baseline, checkpoint=str(artifacts.checkpoint),
                           arch=config.arch, dataset=config.dataset, file=str(path))  # fmt: skip
    _write_text(path, text)
    echo(f"suggested levels (top1 within {_points(drop)} of the unpruned {baseline:.2f} up to the level):")
    width = max(len(name) for name in suggested)
    echo("\n".join(f"  {name:{width}}  {level:g}" for name, level in suggested.items()))
    return path


def _points(drop: float) -> str:
    return f"{drop:g} point{'' if drop == 1 else 's'}"


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CompressError(f"-o: cannot write {path}: {exc.strerror or exc}") from None
