"""YAML -> ``Schedule``. Two spellings (ours and Distiller's), one meaning; no torch here."""

from __future__ import annotations

from pathlib import Path

from compress.errors import CompressError, Diagnostic
from compress.schedule.distiller import read_distiller
from compress.schedule.model import Epochs, LRSchedulerSpec, Rule, Schedule, Target, Thinning
from compress.schedule.native import read_native
from compress.schedule.vocabulary import Vocabulary, default_vocabulary
from compress.yamlio import FieldChecker, YamlMap, brief, parse_yaml, read_text

__all__ = [
    "Epochs",
    "LRSchedulerSpec",
    "Rule",
    "Schedule",
    "Target",
    "Thinning",
    "Vocabulary",
    "load_schedule",
    "parse_schedule",
]

DISTILLER_KEYS = {"regularizers", "lr_schedulers", "policies", "pruners", "quantizers", "extensions"}


def load_schedule(path: Path | str, vocab: Vocabulary | None = None, *, defer_errors: bool = False) -> Schedule:
    path = Path(path)
    return parse_schedule(read_text(path, "--schedule"), str(path), vocab, defer_errors=defer_errors)


def parse_schedule(
    text: str, source: str = "<schedule>", vocab: Vocabulary | None = None, *, defer_errors: bool = False
) -> Schedule:
    """Every problem in the file at once as one ``CompressError``; warnings ride on the result.

    With ``defer_errors`` the errors ride on the result too (the rules they concern are left out),
    so that binding to a model can report them together with its own: one list, not two rounds."""
    vocab = default_vocabulary() if vocab is None else vocab
    data, duplicates = parse_yaml(text, source)
    check = FieldChecker(source)
    if data is None:
        data = YamlMap()
        data.line, data.key_lines = 1, {}
    if not isinstance(data, YamlMap):
        raise CompressError(
            Diagnostic("a schedule must be a YAML mapping with rules: (or Distiller's policies:)", source, 1)
        )
    distiller = bool(DISTILLER_KEYS & set(data))
    if distiller and "rules" in data:
        check.error(
            data.line_of("rules"), "rules", "mixes our rules: with Distiller's sections; use one format per file"
        )
    for dup in duplicates:
        message = f"duplicate key {dup.key!r} (lines {dup.first_line} and {dup.second_line}); the later one is used"
        (check.warn if distiller else check.error)(dup.second_line, dup.key, message)
    _check_version(check, data)
    reader = read_distiller if distiller else read_native
    reading = reader(check, data, vocab)
    config = check.string(data, "config", "", None)
    if config is not None:
        config = str(Path(source).parent / config) if source != "<schedule>" else config
    if not defer_errors:
        check.raise_if_errors()
    return Schedule(reading.rules, reading.lr_schedulers, config, reading.thinning, source, text,
                    tuple(check.diagnostics), reading.orphans, data.line_of("config"), reading.pruning)  # fmt: skip


def _check_version(check: FieldChecker, data: YamlMap) -> None:
    version = data.get("version", 1)
    if version != 1 or isinstance(version, bool):
        check.error(data.line_of("version"), "version", f"unsupported schedule version {brief(version)}; valid: 1")
