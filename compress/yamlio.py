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


# libyaml's parser when PyYAML has it (about 10x faster on large files); same safe constructor.
_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_INT = 2**63 - 1  # beyond this no setting makes sense, and Python cannot even print some such numbers
MAX_VALUES = 100_000  # values a document may expand to through aliases ("billion laughs" stops here)


class _LineLoader(_BASE):
    def __init__(self, stream: str):
        super().__init__(stream)
        self.duplicates: list[Duplicate] = []


def _expect(node: yaml.Node, kind: type, what: str) -> None:
    if not isinstance(node, kind):
        raise yaml.constructor.ConstructorError(None, None, f"expected {what} here", node.start_mark)


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> YamlMap:
    _expect(node, yaml.MappingNode, "a mapping")
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
    _expect(node, yaml.SequenceNode, "a list")
    result = YamlList()
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    yield result
    result.extend(loader.construct_object(child, deep=True) for child in node.value)


def _construct_int(loader: _LineLoader, node: yaml.ScalarNode) -> int:
    value = yaml.SafeLoader.construct_yaml_int(loader, node)
    if abs(value) > MAX_INT:
        raise yaml.constructor.ConstructorError(None, None, "integer too large", node.start_mark)
    return value


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values the document holds once aliases are expanded (aliases are shared nodes)."""
    key = id(node)
    if key not in memo:
        memo[key] = 1  # a node that contains itself counts once
        if isinstance(node, yaml.SequenceNode):
            memo[key] = 1 + sum(_expanded_size(child, memo) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            memo[key] = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    return memo[key]


_LineLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_list)
# Floats such as 1e-4 and 5E-3 (YAML 1.1 demands a dot; every user writes them without one).
_LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


MAX_BYTES = 500_000  # schedules and configs are hand-written; a larger file is a mistake, and slow to parse


def parse_yaml(text: str, file: str) -> tuple[Any, list[Duplicate]]:
    """Parse one YAML document; a syntax error becomes a ``CompressError`` at its line."""
    if len(text) > MAX_BYTES:
        raise CompressError(Diagnostic(f"file is {len(text):,} characters; the limit is {MAX_BYTES:,}", file))
    loader = None
    try:
        loader = _LineLoader(text)
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_VALUES:
            raise CompressError(Diagnostic(f"aliases expand to more than {MAX_VALUES:,} values", file, 1))
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise CompressError(Diagnostic("invalid YAML: nested too deeply", file)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise CompressError(Diagnostic(f"invalid YAML: {problem}", file, line)) from None
    except (yaml.YAMLError, ValueError, OverflowError, IndexError, KeyError, AttributeError, TypeError) as exc:
        # PyYAML's own constructors raise plain Python errors for values such as !!int "abc"
        message = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CompressError(Diagnostic(f"invalid YAML: {message}", file)) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, loader.duplicates


def read_text(path: Path, what: str) -> str:
    """Read a user's file with an error that says which flag or field named it."""
    from compress.files import path_kind

    kind = path_kind(path, what)
    if kind == "missing":
        raise CompressError(f"{what}: file not found: {path}")
    if kind == "dir":
        raise CompressError(f"{what}: is a directory, not a file: {path}")
    if kind != "file":
        raise CompressError(f"{what}: not a regular file: {path}")
    if path.stat().st_size > MAX_BYTES:
        raise CompressError(f"{what}: {path} is {path.stat().st_size:,} bytes; the limit is {MAX_BYTES:,}")
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
        self.error(line, field, f"expected a mapping, got {kind_of(value)}")
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
            self.error(line, path, f"expected {'an integer' if integer else 'a number'}, got {kind_of(value)}")
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
            self.error(line, path, f"expected a string, got {kind_of(value)}")
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
            self.error(m.line_of(key), _join(field, key), f"expected true or false, got {kind_of(m[key])}")
            return default
        return m[key]


def brief(value: Any, limit: int = 40) -> str:
    """A user's value in a message: short, and never an expansion of a large structure."""
    if isinstance(value, (dict, list)) and len(value) > 20:
        return f"<{'mapping' if isinstance(value, dict) else 'list'} of {len(value)}>"
    text = repr(value)  # bounded: a document expands to at most MAX_VALUES values
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _join(field: str, key: Any) -> str:
    return f"{field}.{key}" if field else str(key)


def kind_of(value: Any) -> str:
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
