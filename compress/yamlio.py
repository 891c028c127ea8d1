"""YAML reading that remembers where things were, so every error can name file and line.

Why not plain ``yaml.safe_load``: it forgets line numbers, silently keeps the last of two duplicate
keys, and reads ``1e-4`` as a string. This loader is a ``SafeLoader`` (no Python objects are ever
constructed) that returns ``YamlMap`` / ``YamlList`` carrying the lines of their keys and items.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from compress.errors import CompressError, Diagnostic


class YamlMap(dict):
    """A mapping that knows the line of itself and of each key (1-based)."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class YamlList(list):
    """A sequence that knows the line of itself and of each item (1-based)."""

    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


@dataclass(frozen=True)
class Duplicate:
    key: str
    first_line: int
    second_line: int


class _LineLoader(yaml.SafeLoader):
    def __init__(self, stream: str):
        super().__init__(stream)
        self.duplicates: list[Duplicate] = []


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> YamlMap:
    explicit = {id(key) for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"}
    loader.flatten_mapping(node)  # resolves YAML merge keys (<<) as SafeLoader does: merged pairs come first
    result = YamlMap()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    yield result
    written: dict = {}  # key -> line, for keys written out in this mapping (an override of a merged key is fine)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value, not a list or mapping", key_node.start_mark
            ) from None
        line = key_node.start_mark.line + 1
        if id(key_node) in explicit:
            if key in written:
                loader.duplicates.append(Duplicate(str(key), written[key], line))
            written[key] = line
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line


def _construct_list(loader: _LineLoader, node: yaml.SequenceNode) -> YamlList:
    result = YamlList()
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    yield result
    result.extend(loader.construct_object(child, deep=True) for child in node.value)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_list)
# Floats such as 1e-4 and 5E-3 (YAML 1.1 demands a dot; every user writes them without one).
_LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


MAX_BYTES = 1_000_000  # schedules and configs are hand-written; a larger file is a mistake, and slow to parse


def parse_yaml(text: str, file: str) -> tuple[Any, list[Duplicate]]:
    """Parse one YAML document; a syntax error becomes a ``CompressError`` at its line."""
    if len(text) > MAX_BYTES:
        raise CompressError(Diagnostic(f"file is {len(text):,} characters; the limit is {MAX_BYTES:,}", file))
    loader = _LineLoader(text)
    try:
        data = loader.get_single_data()
    except RecursionError:
        raise CompressError(Diagnostic("invalid YAML: nested too deeply", file)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise CompressError(Diagnostic(f"invalid YAML: {problem}", file, line)) from None
    except yaml.YAMLError as exc:
        raise CompressError(Diagnostic(f"invalid YAML: {exc}", file)) from None
    finally:
        loader.dispose()
    return data, loader.duplicates


def read_text(path: Path, what: str) -> str:
    """Read a user's file with an error that says which flag or field named it."""
    if not path.exists():
        raise CompressError(f"{what}: file not found: {path}")
    if path.is_dir():
        raise CompressError(f"{what}: is a directory, not a file: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CompressError(f"{what}: cannot read {path}: {exc}") from None


class FieldChecker:
    """Collects every problem in one file instead of stopping at the first one.

    Readers call ``keys``/``number``/``string``/... and go on; ``raise_if_errors`` ends the read with
    all problems at once, each at its file, line and dotted field path.
    """

    def __init__(self, file: str):
        self.file = file
        self.diagnostics: list[Diagnostic] = []

    def error(self, line: int | None, field: str, message: str) -> None:
        self.diagnostics.append(Diagnostic(message, self.file, line, field))

    def warn(self, line: int | None, field: str, message: str) -> None:
        self.diagnostics.append(Diagnostic(message, self.file, line, field, warning=True))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if not d.warning]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.warning]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise CompressError(self.errors)

    def mapping(self, value: Any, line: int, field: str) -> YamlMap | None:
        if isinstance(value, YamlMap):
            return value
        self.error(line, field, f"expected a mapping, got {_kind(value)}")
        return None

    def keys(self, m: YamlMap, field: str, allowed: set[str], required: tuple[str, ...] = ()) -> None:
        from compress.errors import suggest

        for key in m:
            if key not in allowed:
                hint = suggest(str(key), allowed) or f"; valid keys: {', '.join(sorted(allowed))}"
                self.error(m.line_of(key), _join(field, key), f"unknown key{hint}")
        for key in required:
            if key not in m:
                self.error(m.line, _join(field, key), "required key is missing")

    def number(
        self,
        m: YamlMap,
        key: str,
        field: str,
        default: Any = None,
        *,
        integer: bool = False,
        minimum: float | None = None,
    ) -> Any:
        """A finite int/float (never a bool) at or above ``minimum``; ``default`` when absent or wrong."""
        if key not in m or m[key] is None:
            return default
        value, path, line = m[key], _join(field, key), m.line_of(key)
        expected = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, expected):
            self.error(line, path, f"expected {'an integer' if integer else 'a number'}, got {_kind(value)}")
            return default
        if isinstance(value, int) and abs(value) > 1e300:
            self.error(line, path, f"number too large: {str(value)[:20]}...")
            return default
        if value != value or value in (float("inf"), float("-inf")):
            self.error(line, path, f"must be a finite number, got {value}")
            return default
        if minimum is not None and value < minimum:
            self.error(line, path, f"must be >= {minimum}, got {value}")
            return default
        return value

    def string(self, m: YamlMap, key: str, field: str, default: Any = None, choices: set[str] | None = None) -> Any:
        if key not in m or m[key] is None:
            return default
        value, path, line = m[key], _join(field, key), m.line_of(key)
        if not isinstance(value, str):
            self.error(line, path, f"expected a string, got {_kind(value)}")
            return default
        if choices is not None and value not in choices:
            from compress.errors import one_of, suggest

            self.error(line, path, f"unknown value {value!r}{suggest(value, choices)}; {one_of(choices)}")
            return default
        return value

    def boolean(self, m: YamlMap, key: str, field: str, default: Any = None) -> Any:
        if key not in m or m[key] is None:
            return default
        if not isinstance(m[key], bool):
            self.error(m.line_of(key), _join(field, key), f"expected true or false, got {_kind(m[key])}")
            return default
        return m[key]


def _join(field: str, key: Any) -> str:
    return f"{field}.{key}" if field else str(key)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string ({value!r})" if len(value) < 40 else "a string"
    return f"{type(value).__name__} ({value!r})"
