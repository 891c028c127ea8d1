"""What a run leaves behind, read back: a checkpoint as a model, and a run directory's history.

``compress report``, ``eval`` and ``plot`` all start here, so a run directory and a checkpoint
path are accepted alike everywhere.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from compress.checkpoint import RunState, load_checkpoint
from compress.config import SETTINGS, RunConfig, checked, resolve_config
from compress.errors import CompressError, Diagnostic
from compress.models.user import confirm_named


@dataclass
class RunArtifacts:
    checkpoint: Path
    state: RunState
    run_dir: Path | None  # None for a checkpoint outside a run directory
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.csv rows, numbers parsed

    @property
    def config(self) -> RunConfig:
        return resolve_config([self.state.config])

    def rule_names(self) -> list[str]:
        if self.history:
            return [k[len("loss/") :] for k in self.history[0] if k.startswith("loss/")]
        return []


RUN_CHECKPOINT = "best.pt"  # what a run directory means to report, eval, thin and plot


def load_artifacts(path: Path, what: str = "RUN_OR_CKPT", *, prefer: str = RUN_CHECKPOINT,
                   arch: str | None = None) -> RunArtifacts:  # fmt: skip
    """A run directory (its ``best.pt``: the one checkpoint every command that reads a run uses, and
    the one the end-of-run summary describes) or a checkpoint file. ``arch``: what the command line
    named with ``--arch``; a checkpoint of a user's own model needs it (``confirm_named``)."""
    from compress.files import path_kind

    path = Path(path)
    if path_kind(path, what) == "dir":
        file = path / prefer
        if not file.exists():
            raise CompressError(f"{what}: {path} holds no {prefer}; is it a run directory?")
    else:
        file = path
    state = load_checkpoint(file, what)
    for stored in dict.fromkeys((state.arch, str(state.config.get("arch", "")))):
        confirm_named(stored, arch, f"{what}: {file}")
    checked(state.config, lambda key: f"{what}: {file}: config.{key}")
    run_dir = file.parent if (file.parent / "metrics.csv").exists() else None
    history = read_history(run_dir / "metrics.csv") if run_dir else []
    return RunArtifacts(file, state, run_dir, history)


def read_history(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def read_sparsity_history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "sparsity.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def model_from(artifacts: RunArtifacts) -> nn.Module:
    """The checkpoint's model with its weights, built as the run built it. A problem with what the
    checkpoint stores (its model name, dataset, thinned architecture) names the checkpoint, not a
    flag the user never gave."""
    from compress.experiment import build_model_for
    from compress.resume import load_weights

    with blaming(artifacts.checkpoint):
        model = build_model_for(artifacts.config)
        if artifacts.state.thinned_spec:
            from compress.thinning import rebuild

            rebuild(model, artifacts.state.thinned_spec)
    load_weights(model, artifacts.state, artifacts.checkpoint, artifacts.config.arch, "checkpoint")
    return model.eval()


@contextmanager
def blaming(checkpoint: Path, flags: dict[str, Any] | None = None) -> Iterator[None]:
    """Errors about settings read from ``checkpoint`` (``--arch: unknown model ...``) name the
    checkpoint and its config key instead; a setting given as a flag (``flags``) keeps its flag."""
    try:
        yield
    except CompressError as exc:
        raise CompressError([_blamed(d, checkpoint, flags or {}) for d in exc.diagnostics]) from None


def _blamed(d: Diagnostic, checkpoint: Path, flags: dict[str, Any]) -> Diagnostic:
    if d.file is not None:
        return d
    head, sep, rest = d.message.partition(": ")
    key = head[2:].replace("-", "_") if head.startswith("--") else None
    if sep and key in SETTINGS and flags.get(key) is None:
        return Diagnostic(f"{checkpoint}: config.{key}: {rest}")
    if sep and head == "thinned spec":
        return Diagnostic(f"{checkpoint}: thinned_spec: {rest}")
    return d


def touched_parameters(artifacts: RunArtifacts) -> list[str]:
    """Parameters the run's schedule acts on (so 1-D ones such as BatchNorm scales are reported)."""
    from compress.schedule import parse_schedule

    try:
        schedule = parse_schedule(artifacts.state.schedule_text, artifacts.state.schedule_source)
    except CompressError:
        return []
    from compress.matching import match_parameters

    names = list(artifacts.state.state_dict)
    penalties = [n for rule in schedule.rules for t in rule.targets for n in match_parameters(t.pattern, names)]
    masks = (artifacts.state.scheduler or {}).get("pruning", {}).get("masks", {})
    return list(dict.fromkeys([*penalties, *(name for per in masks.values() for name in per)]))
