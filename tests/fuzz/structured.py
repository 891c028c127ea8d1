"""Structured mutations: a valid document, parsed, with keys deleted, renamed or added and values replaced,
nested, shared (anchors and aliases) or made numeric extremes, then dumped back with ``yaml.safe_dump``."""

from __future__ import annotations

import copy
import math
from typing import Any

import yaml
from hypothesis import strategies as st

from tests.fuzz.values import KEYS, SCALARS, VALUES


def _nested(depth: int, kind: str, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if kind == "list" or (kind == "mixed" and i % 2) else {"k": value}
    return value


def _slots(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in ``doc``; shared values are visited once."""
    out: list[tuple[Any, Any]] = []
    seen: set[int] = set()

    def walk(node: Any) -> None:
        if id(node) in seen:
            return
        if isinstance(node, dict):
            seen.add(id(node))
            for key in list(node):
                out.append((node, key))
                walk(node[key])
        elif isinstance(node, list):
            seen.add(id(node))
            for i in range(len(node)):
                out.append((node, i))
                walk(node[i])

    walk(doc)
    return out


def _contains(haystack: Any, needle: Any) -> bool:
    """Whether ``needle`` (by identity) is ``haystack`` or inside it: aliasing it there would make a cycle."""
    stack, seen = [haystack], set()
    while stack:
        node = stack.pop()
        if node is needle:
            return True
        if id(node) in seen or not isinstance(node, dict | list):
            continue
        seen.add(id(node))
        stack.extend(node.values() if isinstance(node, dict) else node)
    return False


STRUCTURE_OPS = ("delete", "replace", "replace", "nest", "rename", "add", "transplant", "alias", "numeric", "wrap")


@st.composite
def mutated_document(draw: st.DrawFn, seeds: list[tuple[str, str, Any]]) -> Any:
    _, _, original = draw(st.sampled_from(seeds))
    doc = {"root": copy.deepcopy(original)}  # a holder, so the document itself can be replaced
    for _ in range(draw(st.integers(1, 4))):
        slots = _slots(doc)
        parent, key = draw(st.sampled_from(slots))
        op = draw(st.sampled_from(STRUCTURE_OPS))
        if op == "delete" and parent is not doc:
            del parent[key]
        elif op == "replace" or (op == "delete" and parent is doc):
            parent[key] = draw(VALUES)
        elif op == "nest":
            depth = draw(st.sampled_from([20, 100, 100, 150]))
            parent[key] = _nested(depth, draw(st.sampled_from(["list", "dict", "mixed"])), draw(SCALARS))
        elif op == "rename" and isinstance(parent, dict) and parent is not doc:
            new_key = draw(KEYS)
            parent[new_key] = parent.pop(key)
        elif op == "add":
            target = parent[key] if isinstance(parent[key], dict | list) else parent
            if target is doc:
                continue
            if isinstance(target, dict):
                target[draw(KEYS)] = draw(VALUES)
            else:
                target.insert(draw(st.integers(0, len(target))), draw(VALUES))
        elif op in ("transplant", "alias"):
            other_parent, other_key = draw(st.sampled_from(slots))
            value = other_parent[other_key]
            if op == "transplant":
                parent[key] = copy.deepcopy(value)
            elif not _contains(value, parent):
                parent[key] = value  # the same object twice: safe_dump writes an anchor and an alias
        elif op == "numeric":
            value = parent[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                value = draw(st.integers(-3, 12))
            parent[key] = draw(
                st.sampled_from(
                    [-value, value - 1, value + 1, value * 10**6, -1, 0, 10**400, -(10**9), math.nan, -math.inf]
                )
            )
        elif op == "wrap":
            value = parent[key]
            if isinstance(value, list) and value and draw(st.booleans()):
                parent[key] = value[0]
            else:
                parent[key] = draw(
                    st.sampled_from([[value], {"x": value}, {value: 1} if _hashable(value) else [value]])
                )
    return doc["root"]


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


@st.composite
def dumped(draw: st.DrawFn, documents: st.SearchStrategy) -> str:
    doc = draw(documents)
    return yaml.safe_dump(
        doc,
        allow_unicode=True,
        sort_keys=False,
        default_flow_style=draw(st.sampled_from([False, None, True])),
        indent=draw(st.sampled_from([2, 4, 8])),
        width=draw(st.sampled_from([80, 20, 10**6])),
    )
