"""House rules of the code base, checked so that they stay true: imports point one way (no module
imports one that imports it back), functions fit on a screen, and every registry answers an unknown
name with our error and a suggestion."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from compress.errors import CompressError

PACKAGE = Path(__file__).resolve().parent.parent / "compress"
MAX_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The compress modules ``name`` imports: ``from pkg import sub`` is an edge to ``pkg.sub``."""
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            edges |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module in modules:
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
            edges |= subs or {node.module}
            if len(subs) < len(node.names):  # names that are not submodules come from the module itself
                edges.add(node.module)
    edges.discard(name)
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_module_imports_one_that_imports_it_back():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # a package importing its own submodules (to register them) is the one allowed direction
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(f"{name}.")}
    assert _cycles(graph) == []


def test_every_function_fits_on_a_screen():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {length} lines")
    assert long == []


def _registries():
    from compress.datasets import DATASETS
    from compress.groups import GROUPS
    from compress.models import MODELS
    from compress.optim import OPTIMIZERS
    from compress.regularizers import PENALTIES

    return {"dataset": DATASETS, "group": GROUPS, "model": MODELS, "optimizer": OPTIMIZERS, "penalty": PENALTIES}


@pytest.mark.parametrize("kind", ["dataset", "group", "model", "optimizer", "penalty"])
def test_every_registry_answers_an_unknown_name_with_a_suggestion(kind):
    registry = _registries()[kind]
    name = registry.names()[0]
    with pytest.raises(CompressError) as info:
        registry.get(name + "x")
    message = str(info.value)
    assert f"unknown {kind} {name + 'x'!r} (did you mean {name!r}" in message
    assert message.endswith("valid: " + ", ".join(registry.names()))


def _docstring_samples() -> list[tuple[str, str]]:
    """Every YAML sample a docstring of ours shows: the block indented deeper than the docstring
    itself, right after ``YAML::`` or ``Sample::`` (reStructuredText's literal block)."""
    samples = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            body = getattr(node, "body", None)
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) or not body:
                continue
            doc = ast.get_docstring(node, clean=False)
            for marker in ("YAML::", "Sample::"):
                if doc and marker in doc:
                    block = _indented_block(doc.split(marker, 1)[1], body[0].col_offset)
                    samples.append((f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', 1)}", block))
    return samples


def _indented_block(text: str, base: int) -> str:
    """The lines after a ``::`` marker that are blank or indented deeper than ``base``."""
    block = []
    for line in text.split("\n")[1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= base:
            break
        block.append(line)
    return "\n".join(block).strip("\n")


@pytest.mark.parametrize(("where", "text"), _docstring_samples(), ids=lambda value: str(value)[:40])
def test_every_yaml_sample_in_a_docstring_is_a_schedule_the_readers_accept(where, text):
    """A sample in a docstring cannot drift from the schema: each is read as a schedule (a rule
    alone is read as the only rule of one), and every error is a failure."""
    import textwrap

    from compress.schedule import parse_schedule

    text = textwrap.dedent(text)
    if text.lstrip().startswith("- "):
        text = "rules:\n" + textwrap.indent(text, "  ")
    schedule = parse_schedule(text, where)
    assert schedule.rules or schedule.pruning or schedule.lr_schedulers or schedule.thinning, where
