"""Run settings, each defined once: its type, bounds, choices, whether an exact resume keeps it, and
the flag that sets it. Config files, flags, the resume check and ``config.yaml`` all derive from
these definitions. Precedence, lowest first: defaults < the schedule's ``config:`` < ``--config`` <
flags.

    epochs: int = setting(10, minimum=1, maximum=100_000, resume="free", flag="run", help="Number of epochs.")
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from compress.errors import CompressError, Diagnostic, suggest
from compress.yamlio import FieldChecker, YamlMap, kind_of, parse_yaml, read_text

RESUME = ("pinned", "free")  # pinned: it changes the numbers, an exact resume keeps it; free: may change
FLAGS = ("run", "train")  # run: train and check take the flag; train: train only


@dataclass(frozen=True)
class Setting:
    """One run setting; ``check`` is the one validation config files and flags share."""

    kind: type
    resume: str
    flag: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    below: float | None = None  # an exclusive upper bound (a share must stay below 1)
    choices: Callable[[], list[str]] | None = None
    rule: Callable[[str], str | None] | None = None  # a string setting's own check

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not valid for this setting, or None (``None`` itself means "not given")."""
        if value is None:
            return None
        if self.kind is bool:
            return None if isinstance(value, bool) else f"expected true or false, got {kind_of(value)}"
        if self.kind is str:
            if not isinstance(value, str):
                return f"expected a string, got {kind_of(value)}"
            valid = self.choices() if self.choices else None
            if valid is not None and value not in valid:
                return f"unknown value {value!r}{suggest(value, valid)}; valid: {', '.join(valid)}"
            return self.rule(value) if self.rule else None
        return self._check_number(value)

    def _check_number(self, value: Any) -> str | None:
        integer = self.kind is int
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            return f"expected {'an integer' if integer else 'a number'}, got {kind_of(value)}"
        if not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if self.minimum is not None and value < self.minimum:
            return f"must be >= {self.minimum:g}, got {value}"
        if self.maximum is not None and value > self.maximum:
            return f"must be <= {self.maximum:g}, got {value}"
        if self.below is not None and value >= self.below:
            return f"must be < {self.below:g}, got {value}"
        return None


FLOAT32_MAX = 3.4028234663852886e38  # an optimizer cannot apply a larger step to float32 weights


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes of another encoding, carried as surrogates from argv
        return True
    return False


def a_path(text: str) -> str | None:
    """A directory a run writes to: any path the file system can take."""
    if "\0" in text or _not_utf8(text):
        return f"not a usable path (a NUL byte or bytes that are not UTF-8): {text!r}"
    return None


def one_path_component(name: str) -> str | None:
    """A run name is a directory inside ``--out-dir``: one path component, never a way out of it."""
    if a_path(name):
        return a_path(name)
    if name in ("", ".", "..") or any(c in name for c in "/\\") or len(name.encode()) > 255:
        return f"a run name is one directory name inside --out-dir (no '/', '..' or '\\'), got {name!r}"
    return None


def setting(default: Any, kind: type, *, resume: str, flag: str, help: str, **bounds: Any) -> Any:
    assert resume in RESUME and flag in FLAGS, (resume, flag)
    return field(default=default, metadata={"setting": Setting(kind, resume, flag, help, **bounds)})


def _optimizers() -> list[str]:
    from compress.optim import OPTIMIZERS

    return OPTIMIZERS.names()


@dataclass(frozen=True)
class RunConfig:
    # what is trained, and how: an exact resume keeps these
    arch: str = setting(
        "lenet5",
        str,
        resume="pinned",
        flag="run",
        help="Model: a name `compress models` lists (default lenet5), or package.module:function.",
    )
    dataset: str = setting(
        "mnist5k",
        str,
        resume="pinned",
        flag="run",
        help="Dataset: a name `compress datasets` lists (default mnist5k, embedded).",
    )
    epochs: int = setting(10, int, resume="free", flag="run", minimum=1, maximum=100_000, help="Number of epochs.")
    batch_size: int = setting(64, int, resume="pinned", flag="run", minimum=1, help="Training batch size.")
    optimizer: str = setting("sgd", str, resume="pinned", flag="run", choices=_optimizers, help="Optimizer.")
    lr: float = setting(0.01, float, resume="pinned", flag="run", minimum=0, maximum=FLOAT32_MAX,
                        help="Learning rate.")  # fmt: skip
    momentum: float = setting(0.9, float, resume="pinned", flag="run", minimum=0, help="SGD momentum.")
    nesterov: bool = setting(False, bool, resume="pinned", flag="run", help="Nesterov momentum (SGD).")
    weight_decay: float = setting(
        0.0, float, resume="pinned", flag="run", minimum=0, help="Optimizer weight decay on every parameter."
    )
    seed: int = setting(
        0,
        int,
        resume="pinned",
        flag="run",
        minimum=0,
        maximum=2**63 - 1,
        help="Seed: same seed, same result on the CPU.",
    )
    device: str = setting("cpu", str, resume="free", flag="run", help="cpu (default), cuda or cuda:N.")
    limit_batches: int | None = setting(
        None, int, resume="pinned", flag="train", minimum=1, help="Train and validate on at most N batches per epoch."
    )
    # how each step is computed (pinned: they change the numbers)
    amp: str | None = setting(None, str, resume="pinned", flag="run", choices=lambda: ["bf16", "fp16"],
                              help="Mixed precision: bf16 (autocast; CPU and GPU) or fp16 (autocast with a "
                              "gradient scaler; GPU).")  # fmt: skip
    channels_last: bool = setting(False, bool, resume="pinned", flag="run",
                                  help="Model and inputs in channels_last memory format.")  # fmt: skip
    compile: bool = setting(False, bool, resume="pinned", flag="run",
                            help="torch.compile the model's forward and, apart, the hooks' arithmetic.")  # fmt: skip
    grad_clip: float | None = setting(None, float, resume="pinned", flag="run", minimum=0, below=FLOAT32_MAX,
                                      help="Clip the data loss's gradient to this total norm (before any "
                                      "penalty gradient is added).")  # fmt: skip
    # data and model sources (compress.datasets, compress.models); None means "the dataset's default"
    data_dir: str | None = setting(
        None,
        str,
        resume="free",
        flag="run",
        help="Where the dataset lives (all but mnist5k); imagefolder: DIR/train, DIR/val.",
    )
    download: bool = setting(
        False, bool, resume="free", flag="train", help="Let torchvision fetch a missing dataset into --data-dir."
    )
    val_split: float | None = setting(None, float, resume="pinned", flag="train", minimum=0, below=1,
                                      help="Validate on this stratified share of the training images (default 0.1 "
                                      "where a dataset has no validation split; 0: its test split, as Distiller's "
                                      "--vs 0).")  # fmt: skip
    test: bool = setting(
        False, bool, resume="free", flag="train", help="Evaluate the final weights on the test split at the end."
    )
    workers: int | None = setting(
        None,
        int,
        resume="free",
        flag="train",
        minimum=0,
        maximum=128,
        help="DataLoader worker processes (default: cores - 1, max 8).",
    )
    input_size: int | None = setting(
        None, int, resume="pinned", flag="run", minimum=1, help="Image side for imagenet / imagefolder (224)."
    )
    pretrained: str | None = setting(
        None,
        str,
        resume="pinned",
        flag="run",
        rule=lambda path: "an empty path names no file" if path == "" else a_path(path),
        help="Start from this local state_dict (the head is replaced if classes differ).",
    )
    # what a run writes, not what it computes
    out_dir: str = setting("runs", str, resume="free", flag="train", rule=a_path,
                           help="Where run directories go (default runs).")  # fmt: skip
    name: str | None = setting(
        None, str, resume="free", flag="train", rule=one_path_component,
        help="Run directory name inside --out-dir (default: schedule name and a timestamp).",
    )  # fmt: skip
    best: str = setting(
        "top1",
        str,
        resume="free",
        flag="train",
        help="How best.pt is chosen: top1 (default), or sparsity-at-top1 B (sparsest with top1 >= B).",
    )
    tensorboard: bool = setting(
        False, bool, resume="free", flag="train", help="Write TensorBoard events to RUN/tensorboard."
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in fields(RunConfig)}
PINNED = tuple(name for name, s in SETTINGS.items() if s.resume == "pinned")


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
    check.keys(data, "", set(SETTINGS))
    out = {}
    for key, value in data.items():
        if key in SETTINGS:
            problem = SETTINGS[key].check(value)
            if problem:
                check.error(data.line_of(key), key, problem)
            elif value is not None:
                out[key] = value
    check.raise_if_errors()
    return out


def checked(values: dict[str, Any], where: Callable[[str], str]) -> dict[str, Any]:
    """``values`` (a stored config, flags) through the same checks as a config file; ``where(key)``
    names the key in the error (``--lr``, ``CKPT: config.lr``)."""
    problems = [f"{where(k)}: {p}" for k, v in values.items() if k in SETTINGS and (p := SETTINGS[k].check(v))]
    if problems:
        raise CompressError([Diagnostic(p) for p in problems])
    return values


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
    values = {k: v for k, v in merged.items() if k in SETTINGS}
    for key, s in SETTINGS.items():
        if s.kind is float and key in values:
            values[key] = float(values[key])
    return RunConfig(**values)
