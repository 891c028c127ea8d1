"""Run settings. Precedence, lowest first: defaults < the schedule's ``config:`` < ``--config`` < flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from compress.errors import CompressError, Diagnostic
from compress.yamlio import FieldChecker, YamlMap, parse_yaml, read_text

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class RunConfig:
    arch: str = "lenet5"
    dataset: str = "mnist5k"
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "cpu"
    out_dir: str = "runs"
    name: str | None = None
    limit_batches: int | None = None
    # data and model sources (compress.datasets, compress.models); None means "the dataset's default"
    data_dir: str | None = None
    download: bool = False
    val_split: float | None = None
    test: bool = False
    workers: int | None = None
    input_size: int | None = None
    pretrained: str | None = None
    # what a run writes, not what it computes
    best: str = "top1"
    tensorboard: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# key -> (type, minimum); None minimum means any value of the type
_RULES: dict[str, tuple[type, float | None]] = {
    "arch": (str, None),
    "dataset": (str, None),
    "epochs": (int, 1),
    "batch_size": (int, 1),
    "optimizer": (str, None),
    "lr": (float, 0),
    "momentum": (float, 0),
    "nesterov": (bool, None),
    "weight_decay": (float, 0),
    "seed": (int, 0),
    "device": (str, None),
    "out_dir": (str, None),
    "name": (str, None),
    "limit_batches": (int, 1),
    "data_dir": (str, None),
    "download": (bool, None),
    "val_split": (float, 0),
    "test": (bool, None),
    "workers": (int, 0),
    "input_size": (int, 1),
    "pretrained": (str, None),
    "best": (str, None),
    "tensorboard": (bool, None),
}


def load_config_file(path: Path | str, what: str = "--config") -> dict[str, Any]:
    """The settings a config file gives, checked key by key; every problem at once."""
    path = Path(path)
    data, duplicates = parse_yaml(read_text(path, what), str(path))
    check = FieldChecker(str(path))
    if data is None:
        return {}
    if not isinstance(data, YamlMap):
        check.error(1, "", "a config must be a YAML mapping of setting: value")
        check.raise_if_errors()
    for dup in duplicates:
        check.error(dup.second_line, dup.key, f"duplicate key (first at line {dup.first_line})")
    check.keys(data, "", set(_RULES))
    out = {}
    for key in data:
        if key in _RULES and (value := _read(check, data, key)) is not None:
            out[key] = value
    check.raise_if_errors()
    return out


# upper bounds, shared with the CLI flags: beyond them a value is a typo (and 1e9 epochs would hang)
MAXIMA = {"epochs": 100_000}


def _read(check: FieldChecker, data: YamlMap, key: str) -> Any:
    kind, minimum = _RULES[key]
    if kind is str:
        return check.string(data, key, "", None, set(OPTIMIZERS) if key == "optimizer" else None)
    if kind is bool:
        return check.boolean(data, key, "")
    value = check.number(data, key, "", None, integer=kind is int, minimum=minimum)
    if value is not None and key in MAXIMA and value > MAXIMA[key]:
        check.error(data.line_of(key), key, f"must be <= {MAXIMA[key]}, got {value}")
        return None
    if key == "val_split" and value is not None and value >= 1:
        check.error(data.line_of(key), key, f"must be < 1 (a share of the training images), got {value}")
        return None
    return value


@dataclass(frozen=True)
class Settings:
    """The run settings from every layer, and the problems of the config files that could not be read
    (located; reported together with the schedule's own, so one round shows every mistake)."""

    config: RunConfig
    problems: tuple[Diagnostic, ...] = ()
    arch_given: bool = True  # False: the built-in default model, which no layer named


def layered_settings(schedule: Any, config_path: Path | None, flags: dict[str, Any],
                     base: dict[str, Any] | None = None) -> Settings:  # fmt: skip
    """Defaults < ``base`` < the schedule's ``config:`` < ``--config`` < flags."""
    layers: list[dict[str, Any]] = [base] if base else []
    problems: list[Diagnostic] = []
    files = []
    if schedule is not None and schedule.config:
        files.append((schedule.config, f"{schedule.source}: config", (schedule.source, schedule.config_line)))
    if config_path is not None:
        files.append((config_path, "--config", None))
    for path, what, named_at in files:
        try:
            layers.append(load_config_file(path, what))
        except CompressError as exc:
            problems += [_located(d, what, named_at) for d in exc.diagnostics]
    layers.append(flags)
    arch_given = any(layer.get("arch") is not None for layer in layers)
    return Settings(resolve_config(layers), tuple(problems), arch_given)


def _located(d: Diagnostic, what: str, named_at: tuple[str, int | None] | None) -> Diagnostic:
    """A config file the schedule names that cannot be read: an error at the schedule's config: line."""
    if d.file is not None or named_at is None:
        return d
    return Diagnostic(d.message.removeprefix(f"{what}: "), named_at[0], named_at[1], "config")


def resolve_config(layers: list[dict[str, Any]]) -> RunConfig:
    """Later layers win; ``None`` in a layer means 'not given'."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    names = {f.name for f in fields(RunConfig)}
    values = {k: v for k, v in merged.items() if k in names}
    for key in ("lr", "momentum", "weight_decay", "val_split"):
        if key in values:
            values[key] = float(values[key])
    return RunConfig(**values)
