"""Where a number lives in a schedule file, and the same file with other numbers.

Why the text is edited in place rather than loaded and dumped again: a schedule is a hand-written,
commented file, and the copy each trial runs (and each ``best/*.yaml``) should read like the
original with only the searched numbers changed. PyYAML's node tree knows where every scalar starts
and ends in the text, so a new value is spliced in at exactly that place: comments, order, quoting
and flow lists stay as they were.

Paths name a value by rule and key: in our format the first part is a rule's ``name``
(``conv-filters.layers.conv1.weight``, ``conv-filters.epochs.1``, ``fc-agp.sparsity.to``); in
Distiller's, an instance name in ``regularizers:`` / ``pruners:`` / ``lr_schedulers:``
(``filters_reg.reg_regims.conv1.weight.0``). Keys that hold dots (parameter names) are one part.
Any value can also be named from the top of the file (``rules.0.strength``,
``policies.1.ending_epoch``, ``lr_scheduler.gamma``).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from compress.errors import CompressError

# As compress.yamlio reads them: floats such as 1e-4 need no dot.
_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
NAMED_SECTIONS = ("regularizers", "pruners", "lr_schedulers", "quantizers", "extensions")  # Distiller's
DISTILLER_KEYS = {*NAMED_SECTIONS, "policies"}
NOT_SEARCHED = {"version", "config"}  # top-level keys that are not part of what a schedule does
LISTED = 24  # numbers an error lists before "and N more"


class _Loader(yaml.SafeLoader):
    """The pure-Python loader: its marks count characters of the text (libyaml's may count bytes)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789"))


@dataclass(frozen=True)
class Leaf:
    """One scalar of the schedule: its path, its node (for its place in the text), its value."""

    path: str
    node: yaml.ScalarNode
    value: Any
    shared: bool = False  # reached through a YAML alias: changing it would change every use

    @property
    def is_number(self) -> bool:
        return isinstance(self.value, (int, float)) and not isinstance(self.value, bool)


def scalar(text: str) -> Any:
    """A value written on the command line, read as a schedule reads it (``1e-3`` a float,
    ``true`` a boolean, ``filters`` a string)."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return text


def scalar_text(value: Any) -> str:
    """YAML for one value that reads back as the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    return text if text and scalar(text) == text and not re.search(r"[:#,\[\]{}&*!|>'\"%@`]", text) \
        else json.dumps(text)  # fmt: skip


def _uses(node: yaml.Node, seen: dict[int, int]) -> dict[int, int]:
    """How often each node is reached from the root (more than once: through a YAML alias)."""
    seen[id(node)] = seen.get(id(node), 0) + 1
    if seen[id(node)] == 1:
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else \
            node.value if isinstance(node, yaml.SequenceNode) else []  # fmt: skip
        for child in children:
            _uses(child, seen)
    return seen


class ScheduleDocument:
    """A schedule's text and the scalars in it, each under the path users write."""

    def __init__(self, text: str, source: str):
        self.text, self.source = text, source
        loader = _Loader(text)
        try:
            self.root = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise CompressError(f"{source}: invalid YAML: {exc}") from None
        finally:
            loader.dispose()
        self._constructor = _Loader("")
        self.leaves: dict[str, Leaf | None] = {}  # None: two values answer to this path
        self.named: list[str] = []  # the paths errors list: rule / instance names first
        if isinstance(self.root, yaml.MappingNode):
            self._index()

    @classmethod
    def read(cls, path: Path) -> ScheduleDocument:
        from compress.yamlio import read_text

        return cls(read_text(path, "--schedule"), str(path))

    @property
    def distiller(self) -> bool:
        return bool(DISTILLER_KEYS & set(self._keys(self.root)))

    def _keys(self, node: yaml.Node) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            return {}
        return {str(self._value(k)): v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value != "<<"}

    def _value(self, node: yaml.ScalarNode) -> Any:
        return self._constructor.construct_object(node, deep=True)

    def _index(self) -> None:
        """Every scalar under its short path (rule / instance name first) and its full path."""
        seen = _uses(self.root, {})
        short: list[tuple[str, yaml.Node]] = []
        for key, node in self._keys(self.root).items():
            if key in NOT_SEARCHED:
                continue
            if key == "rules" and isinstance(node, yaml.SequenceNode) and not self.distiller:
                for i, item in enumerate(node.value):
                    name = self._keys(item).get("name")
                    named = isinstance(name, yaml.ScalarNode) and isinstance(self._value(name), str)
                    short.append((self._value(name) if named else f"rules.{i}", item))
            elif key in NAMED_SECTIONS and isinstance(node, yaml.MappingNode):
                short += list(self._keys(node).items())
            else:
                short.append((key, node))
        for prefix, node in short:
            self._walk(prefix, node, seen, listed=True)
        for key, node in self._keys(self.root).items():
            if key not in NOT_SEARCHED:
                self._walk(key, node, seen, listed=False)

    def _walk(self, path: str, node: yaml.Node, seen: dict[int, int], *, listed: bool, shared: bool = False) -> None:
        shared = shared or seen.get(id(node), 0) > 1  # inside a node an alias reaches twice: shared too
        if isinstance(node, yaml.ScalarNode):
            if path in self.leaves and (leaf := self.leaves[path]) is not None and leaf.node is not node:
                self.leaves[path] = None
            elif path not in self.leaves:
                self.leaves[path] = Leaf(path, node, self._value(node), shared=shared)
                if listed:
                    self.named.append(path)
        elif isinstance(node, yaml.MappingNode):
            for key, child in self._keys(node).items():
                self._walk(f"{path}.{key}", child, seen, listed=listed, shared=shared)
        elif isinstance(node, yaml.SequenceNode):
            for i, child in enumerate(node.value):
                self._walk(f"{path}.{i}", child, seen, listed=listed, shared=shared)

    def numbers(self) -> list[str]:
        """The paths of the numbers a search may name, in file order."""
        return [p for p in self.named if (leaf := self.leaves.get(p)) is not None and leaf.is_number]

    def leaf(self, path: str, flag: str = "--search") -> Leaf:
        """The value at ``path``, or a one-line error that lists the numbers there are."""
        found = self.leaves.get(path)
        if found is not None and not found.shared:
            return found
        if path in self.leaves and found is None:
            raise CompressError(f"{flag} {path}: two values in {self.source} answer to this path; name it from the "
                                "top of the file (rules.N..., policies.N...)")  # fmt: skip
        if found is not None:
            raise CompressError(f"{flag} {path}: the value is shared through a YAML alias in {self.source}; "
                                "write it out where it is used to search it")  # fmt: skip
        numbers = self.numbers()
        listed = ", ".join(numbers[:LISTED]) + (f" and {len(numbers) - LISTED} more" if len(numbers) > LISTED else "")
        close = difflib.get_close_matches(path, numbers, n=1, cutoff=0.8)  # a typo, not any number
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CompressError(f"{flag} {path}: names nothing in {self.source}{hint}; its numbers: {listed or 'none'} "
                            "(a key the schedule lacks must be written into it first)")  # fmt: skip

    def with_values(self, values: dict[str, Any], *, absolute_config: bool = True) -> str:
        """The text with each path's value replaced, and a relative ``config:`` made absolute (the
        copy lives elsewhere, and must still name the same settings file)."""
        edits = [(self.leaf(path).node, scalar_text(value)) for path, value in values.items()]
        config = self._keys(self.root).get("config")
        if absolute_config and isinstance(config, yaml.ScalarNode) and isinstance(self._value(config), str):
            named = Path(self._value(config)).expanduser()
            if not named.is_absolute():
                edits.append((config, scalar_text(str((Path(self.source).parent / named).resolve()))))
        text = self.text
        for node, new in sorted(edits, key=lambda e: e[0].start_mark.index, reverse=True):
            text = text[: node.start_mark.index] + new + text[node.end_mark.index :]
        return text
