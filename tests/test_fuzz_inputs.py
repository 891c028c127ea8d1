"""Fuzzing the readers of user YAML: schedules (ours and Distiller's), run configs, ``compress check``.

The promise under test (DESIGN.md, "Schedules"): whatever a user's file contains, reading it ends in
either a valid ``Schedule`` or our ``CompressError`` whose every diagnostic names the file and (but
for problems with the file as a whole) the line; never a traceback, a hang, or a Python object built
from a YAML tag.

Inputs are built three ways:

* structured mutations of the valid example files (``schedules/*.yaml``, ``tests/schedules/*.yaml``,
  ``configs/*.yaml``): keys deleted, renamed (unicode, RTL, emoji, control characters) or added,
  values replaced by wrong types, huge or non-finite numbers, negative epochs, values from other
  fields, 100-level nesting, shared values (anchors and aliases), then dumped back with
  ``yaml.safe_dump``;
* raw text mutations: ``!!python/...`` and other tags, anchors and aliases (a "billion laughs"
  included), huge number literals, bad escapes, deep nesting, truncation, duplicated lines, random
  character corruption (always valid UTF-8), line-ending and directive changes;
* documents built from the right names with random values: lr schedulers with the argument names
  torch takes, configs with every setting (mutations seldom guess those names);
* one very large file, and the largest file the reader accepts (single examples, not per example).

Every example runs in a worker process (started once, restarted after a hang or a crash; it builds
the lenet5 model that ``bind`` gets once, at its start), because a hang inside C code (``str`` of a
billion-laughs structure) can be neither interrupted in-process nor allowed to eat the CI machine's
memory. The parent kills the worker (its own child, by handle) after ``KILL_S`` seconds and reports
a hang; an answer slower than ``LIMIT_S`` fails too. On Linux the worker's address space is capped a
few GiB above its warm size, so a memory blowup becomes a ``MemoryError`` (a failure) rather than
the OOM killer's business. A YAML tag that builds a Python object would touch a tripwire module
(``fuzz_sentinel``), create a sentinel file or print "hacked", and each reply says whether it did.

Running it:

    pytest tests/test_fuzz_inputs.py                      # CI: derandomized, 300 examples per property, no shrinking
    COMPRESS_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_inputs.py          # thousands, with shrinking
    COMPRESS_FUZZ_EXAMPLES=5000 COMPRESS_FUZZ_RANDOM=1 pytest ...         # and a new random seed each run
    COMPRESS_FUZZ_SHRINK=0|1                                              # force shrinking off / on

CI runs derandomized, so a failure there reproduces exactly with the same command; it skips
shrinking so that a failing property costs one example (a hang costs ``KILL_S`` plus a worker
restart each time a shrink step replays it). Hypothesis' own ``deadline`` is off: the worker's kill
timer is a stricter deadline (it also stops loops in C code), and a worker restart would trip it.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCHEDULE_FILES = sorted((ROOT / "schedules").glob("*.yaml")) + sorted((ROOT / "tests" / "schedules").glob("*.yaml"))
CONFIG_FILES = sorted((ROOT / "configs").glob("*.yaml"))
FILE = "fuzz.yaml"  # the name parse_schedule is given; every diagnostic must carry it

LIMIT_S = 5.0  # one parse (+ bind) taking longer than this is a hang
CLI_LIMIT_S = 10.0  # one `compress check` taking longer than this is a hang
KILL_S = 15.0  # the worker is killed after this and the example fails as a hang
CLI_KILL_S = 25.0
STARTUP_S = 180.0  # importing torch and torchvision on a cold CI machine
MEMORY_HEADROOM = 3 * 2**30  # the worker's address space may grow this much beyond its warm size

# diagnostics about the file as a whole (size, syntax without a position, nesting) may lack a line
FILE_LEVEL_PREFIXES = ("invalid YAML", "file is ")

# ----------------------------------------------------------------------------- hypothesis settings

EXAMPLES = int(os.environ.get("COMPRESS_FUZZ_EXAMPLES", "300"))
RANDOM = os.environ.get("COMPRESS_FUZZ_RANDOM", "") not in ("", "0")
SHRINK = os.environ.get("COMPRESS_FUZZ_SHRINK", "1" if "COMPRESS_FUZZ_EXAMPLES" in os.environ else "0") != "0"

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=not RANDOM,
    database=None,
    deadline=None,  # see the module docstring: the worker's kill timer is the deadline
    phases=[p for p in Phase if SHRINK or p is not Phase.shrink],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)

# ----------------------------------------------------------------------------- seeds: the valid examples


class _SeedLoader(yaml.SafeLoader):
    """safe_load, plus 1e-4 as a float (as compress reads it), so seeds re-dump as valid files."""


_SeedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_seeds(paths: list[Path]) -> list[tuple[str, str, Any]]:
    return [(p.name, text, yaml.load(text, Loader=_SeedLoader)) for p in paths for text in [p.read_text("utf-8")]]


SCHEDULE_SEEDS = _read_seeds(SCHEDULE_FILES)
CONFIG_SEEDS = _read_seeds(CONFIG_FILES)
PRISTINE_CONFIGS = {p.name: p.read_text("utf-8") for p in CONFIG_FILES}

# ----------------------------------------------------------------------------- vocabulary of nasty values

WORDS = """
version config rules lr_scheduler name penalty groups strength layers epochs frequency mode threshold
threshold_criterion keep_mask l1 l2 group_lasso elements filters channels kernels rows cols layer 2D 3D 4D
Filters Channels Rows Cols Rows+Cols Channels+4D proximal norm mean_abs max Mean_Abs Max regularizers
lr_schedulers policies pruners quantizers extensions class reg_regims threshold_criteria instance_name args
starting_epoch ending_epoch regularizer pruner quantizer extension L1Regularizer L2Regularizer
GroupLassoRegularizer StepLR MultiStepLR ExponentialLR CosineAnnealingLR ReduceLROnPlateau CyclicLR OneCycleLR
LambdaLR MultiplicativeLR SequentialLR ChainedScheduler ConstantLR LinearLR PolynomialLR
CosineAnnealingWarmRestarts step_size gamma milestones T_max T_0 patience last_epoch verbose base_lr max_lr
total_steps lr_lambda factor conv1.weight conv2.weight fc1.weight fc2.weight fc3.weight conv1.bias fc1.bias
*.weight conv*.weight module.conv1.weight features.module.0.weight arch dataset batch_size optimizer lr
momentum nesterov weight_decay seed device out_dir name limit_batches data_dir download val_split test workers
input_size pretrained lenet5 mlp simplenet_mnist resnet20_cifar mnist5k mnist cifar10 imagefolder sgd adam
adamw cpu cuda cuda:0 meta
""".split()

NASTY_STRINGS = [
    "",
    " ",
    "\t",
    "~",
    "null",
    "yes",
    "off",
    "NaN",
    ".nan",
    "-.inf",
    "1e-4",
    "0x1F",
    "1_000",
    "1:30",
    "2001-12-14",
    "<<",
    "=",
    "!",
    "&a",
    "*a",
    "|",
    ">",
    "#",
    "%",
    "@",
    "`",
    "---",
    "...",
    "- a",
    "a: b",
    "[",
    "]",
    "{",
    "}",
    "'",
    '"',
    "\\",
    "\u202eevil\u202c",  # right-to-left override
    "\u200f\u200e",
    "مرحبا",
    "שלום",
    "😀",
    "👩\u200d👩\u200d👧",
    "e\u0301\u0301\u0301",
    "\u2028",
    "\u0085",
    "\ufeff",
    "\x1b[31mred",
    "\x07\x08\x7f",
    "Ω" * 5,
    "a" * 5000,
    "*",
    "**",
    "?",
    "[!a]",
    "conv[",
    "module.",
    "..",
    ".",
    "/",
    "/nonexistent/x.yaml",
    "../configs/lenet5-mnist5k.yaml",
    "../configs/mlp-mnist5k.yaml",
    "../configs",
    "a:b",
]

EDGE_INTS = [
    0,
    1,
    -1,
    2,
    7,
    -7,
    2**31 - 1,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63),
    10**9,
    10**18,
    10**300,
    10**301,
    10**400,
    -(10**400),
]
EDGE_FLOATS = [
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    1e308,
    -1e308,
    5e-324,
    1e-320,
    0.1,
    1e-4,
    1e16,
    2.0**53,
    -0.5,
]

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(EDGE_INTS),
    st.integers(-1000, 1000),
    st.sampled_from(EDGE_FLOATS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NASTY_STRINGS),
    st.sampled_from(WORDS),
    TEXT,
)
KEYS = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(NASTY_STRINGS),
    TEXT,
    st.integers(-3, 3),
    st.none(),
    st.booleans(),
    st.sampled_from([math.nan, 1.5, -0.0]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=8,
)


def _nested(depth: int, kind: str, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if kind == "list" or (kind == "mixed" and i % 2) else {"k": value}
    return value


# ----------------------------------------------------------------------------- structured mutations


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


# ----------------------------------------------------------------------------- raw text mutations

TAGGED = [
    '!!python/object/apply:os.system ["echo hacked"]',
    '!!python/object/apply:os.system ["touch fuzz-sentinel"]',
    '!!python/name:os.system ""',
    '!!python/name:fuzz_sentinel.fire ""',
    "!!python/object/apply:fuzz_sentinel.fire []",
    "!!python/object/apply:fuzz_sentinel.fire {kwds: {a: 1}}",
    "!!python/object/new:fuzz_sentinel.Boom []",
    "!!python/object:fuzz_sentinel.Boom {a: 1}",
    '!!python/module:fuzz_sentinel ""',
    "!<tag:yaml.org,2002:python/object/apply:fuzz_sentinel.fire> []",
    "!!python/tuple [1, 2]",
    "!!python/complex 1+2j",
    "!!python/bytes aGk=",
    "!!python/str x",
    "!!python/int 5",
    "!!binary aGVsbG8=",
    '!!binary "!!!"',
    "!!timestamp 2001-12-14t21:59:43.10-05:00",
    "!!set {a, b}",
    "!!omap [a: 1, b: 2]",
    "!!pairs [a: 1, a: 2]",
    '!!int "0x1F"',
    '!!int "abc"',
    '!!int ""',
    '!!float "1"',
    '!!float "abc"',
    '!!bool "yes"',
    '!!bool "maybe"',
    '!!timestamp "garbage"',
    "!!timestamp 2001-02-30",
    '!!null ""',
    "!!str 5",
    "!!str [1]",
    "!!map [1]",
    "!!seq {a: 1}",
    "!custom x",
    "!!merge x",
]
HUGE_LITERALS = [
    "1" * 5000,
    "-" + "9" * 4301,
    "0x" + "f" * 4000,
    "0o" + "7" * 5000,
    "0b" + "1" * 15000,
    "1" + ":59" * 3000,  # sexagesimal (base 60) integer
    "1e99999",
    "-1e99999",
    "1" + "0" * 400 + ".5",
    ".NaN",
    "-.Inf",
    "0x_",
    "1:0.5",
]
ESCAPES = ["\\U7FFFFFFF", "\\UFFFFFFFF", "\\U00110000", "\\ud800", "\\udfff", "\\0", "\\x00", "\\N\\_\\L\\P", "\\q"]
DIRECTIVES = [
    "%YAML 1.1\n---\n",
    "%YAML 1.2\n---\n",
    "%YAML 2.0\n---\n",
    "%TAG !p! tag:yaml.org,2002:python/object/apply:\n---\n",
    "%TAG !! tag:yaml.org,2002:python/object/apply:\n---\n",
    "--- !!python/object/apply:fuzz_sentinel.fire []\n",
    "---\n",
    "\ufeff",
    "...\n",
]
SPECIALS = list(":-?[]{},&*!|>'\"%@`#\t\r\n \\") + ["\u2028", "\x85", "\ufeff", "\x00", "\x1b", "😀", "ש"]
VALUE_AT = re.compile(r"(?:: |- )(?=\S)")  # where a value starts on a line


def _laughs(depth: int) -> str:
    """A flow sequence whose last item expands to 9**depth strings: 'billion laughs' at depth 9-10."""
    parts = ["&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    parts += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, depth)]
    return "[" + ", ".join(parts) + "]"


def _replace_value(draw: st.DrawFn, text: str, new: str) -> str:
    starts = [m.end() for m in VALUE_AT.finditer(text)]
    if not starts:
        return text + new
    start = draw(st.sampled_from(starts))
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    # in a flow collection, replace up to the next separator only
    flow_end = min((i for i in (text.find(",", start, end), text.find("}", start, end)) if i >= 0), default=end)
    if text.rfind("{", 0, start) > text.rfind("\n", 0, start) or text.rfind("[", 0, start) > text.rfind("\n", 0, start):
        end = flow_end
    return text[:start] + new + text[end:]


def _op_tag(draw: st.DrawFn, text: str) -> str:
    return _replace_value(draw, text, draw(st.sampled_from(TAGGED)))


def _op_alias(draw: st.DrawFn, text: str) -> str:
    starts = [m.end() for m in VALUE_AT.finditer(text)]
    if len(starts) < 2:
        return text + "\nx: *undefined\n"
    a, b = sorted(draw(st.lists(st.sampled_from(starts), min_size=2, max_size=2, unique=True)))
    name = draw(st.sampled_from(["a", "id001", "😀", "x" * 200]))
    if draw(st.booleans()):  # anchor first, alias later (valid), or the other way round
        head, tail = text[:a] + f"&{name} " + text[a:b], text[b:]
        end = tail.find("\n")
        return head + f"*{name}" + (tail[end:] if end >= 0 else "")
    line_end = text.find("\n", a)
    return text[:a] + f"*{name}" + (text[line_end:] if line_end >= 0 else "") + f"\nz: &{name} 1\n"


def _op_laughs(draw: st.DrawFn, text: str) -> str:
    depth = draw(st.integers(1, 10))
    if draw(st.booleans()) and "lr_scheduler:" in text:
        # where check prints the value back: an accepted argument of an lr scheduler
        return re.sub(
            r"^lr_scheduler:.*$",
            f"lr_scheduler: {{class: ReduceLROnPlateau, patience: {_laughs(depth)}}}",
            text,
            count=1,
            flags=re.M,
        )
    return _replace_value(draw, text, _laughs(depth))


def _op_merge(draw: st.DrawFn, text: str) -> str:
    lines = text.split("\n")
    i = draw(st.integers(0, len(lines)))
    indent = re.match(r"[ -]*", lines[i - 1]).group(0).replace("-", " ") if i else ""
    merge = draw(st.sampled_from(["<<: *a", "<<: [*a, *a]", "<<: {a: 1}", "<<: 5", "<<: [1]", "<<: *nope"]))
    lines.insert(i, indent + merge)
    return "\n".join(lines)


def _op_corrupt(draw: st.DrawFn, text: str) -> str:
    chars = list(text)
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(chars)))
        char = draw(st.sampled_from(SPECIALS) | st.characters(blacklist_categories=("Cs",)))
        how = draw(st.sampled_from(["insert", "replace", "delete"]))
        if how == "insert" or pos == len(chars):
            chars.insert(pos, char)
        elif how == "replace":
            chars[pos] = char
        else:
            del chars[pos]
    return "".join(chars)


def _op_truncate(draw: st.DrawFn, text: str) -> str:
    return text[: draw(st.integers(0, len(text)))]


def _op_lines(draw: st.DrawFn, text: str) -> str:
    lines = text.split("\n")
    i = draw(st.integers(0, len(lines) - 1))
    how = draw(st.sampled_from(["duplicate", "duplicate", "delete", "move", "indent", "dedent", "tab"]))
    if how == "duplicate":
        lines.insert(draw(st.integers(0, len(lines))), lines[i])
    elif how == "delete":
        del lines[i]
    elif how == "move":
        lines.insert(draw(st.integers(0, len(lines) - 1)), lines.pop(i))
    elif how == "indent":
        lines[i] = " " * draw(st.integers(1, 9)) + lines[i]
    elif how == "dedent":
        lines[i] = lines[i].lstrip()
    else:
        lines[i] = "\t" + lines[i]
    return "\n".join(lines)


def _op_literal(draw: st.DrawFn, text: str) -> str:
    return _replace_value(draw, text, draw(st.sampled_from(HUGE_LITERALS)))


def _op_escape(draw: st.DrawFn, text: str) -> str:
    return _replace_value(draw, text, '"a' + draw(st.sampled_from(ESCAPES)) + 'b"')


def _op_nest(draw: st.DrawFn, text: str) -> str:
    n = draw(st.sampled_from([10, 100, 500, 1000, 3000]))
    new = draw(st.sampled_from(["[" * n + "]" * n, "{a: " * n + "1" + "}" * n, "[{a: " * (n // 2) + "}]" * (n // 2)]))
    return _replace_value(draw, text, new)


def _op_frame(draw: st.DrawFn, text: str) -> str:
    how = draw(st.sampled_from(["prefix", "suffix", "newlines"]))
    if how == "prefix":
        prefix = draw(st.sampled_from(DIRECTIVES))
        if "!p!" in prefix or "%TAG !! " in prefix:
            text = _replace_value(
                draw, text, draw(st.sampled_from(["!p!fuzz_sentinel.fire []", "!!fuzz_sentinel.fire []"]))
            )
        return prefix + text
    if how == "suffix":
        return text + draw(
            st.sampled_from(["\n---\nrules: []\n", "\n...\n", "\n--- !!python/name:os.system ''\n", "\x00"])
        )
    return text.replace("\n", draw(st.sampled_from(["\r\n", "\r", "\u2028", "\x85", "\n\n"])))


def _op_long(draw: st.DrawFn, text: str) -> str:
    size = draw(st.sampled_from([10_000, 60_000]))
    filler = draw(st.sampled_from(["a", "é", "😀", "conv*"]))
    return _replace_value(draw, text, filler * (size // len(filler)))


RAW_OPS = [
    _op_tag,
    _op_tag,
    _op_alias,
    _op_laughs,
    _op_merge,
    _op_corrupt,
    _op_corrupt,
    _op_truncate,
    _op_lines,
    _op_lines,
    _op_literal,
    _op_escape,
    _op_nest,
    _op_frame,
    _op_long,
]


@st.composite
def raw_mutated(draw: st.DrawFn, base: st.SearchStrategy) -> str:
    text = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        text = draw(st.sampled_from(RAW_OPS))(draw, text)
    return text


# Documents built from the right names with random values: mutations seldom guess an argument name
# that torch accepts, or a config key that no example file uses.
LR_CLASSES = """StepLR MultiStepLR ConstantLR LinearLR ExponentialLR PolynomialLR CosineAnnealingLR ReduceLROnPlateau
CyclicLR CosineAnnealingWarmRestarts OneCycleLR LambdaLR MultiplicativeLR SequentialLR ChainedScheduler""".split()
LR_ARGS = """T_0 T_max T_mult anneal_strategy base_lr base_momentum cooldown cycle_momentum div_factor end_factor epochs
eps eta_min factor final_div_factor frequency gamma last_epoch lr_lambda max_lr max_momentum milestones min_lr mode
patience pct_start power scale_fn scale_mode schedulers start_factor step_size step_size_down step_size_up
steps_per_epoch three_phase threshold threshold_mode total_iters total_steps verbose""".split()
CONFIG_KEYS = """arch dataset epochs batch_size optimizer lr momentum nesterov weight_decay seed device out_dir name
limit_batches data_dir download val_split test workers input_size pretrained""".split()
SMALL_NUMBERS = st.one_of(st.integers(-3, 40), st.floats(-2, 2), st.sampled_from([0, 1, 0.1, 0.5, 1.0]))


@st.composite
def lr_scheduler_document(draw: st.DrawFn) -> Any:
    spec = {"class": draw(st.sampled_from(LR_CLASSES))}
    for name in draw(st.lists(st.sampled_from(LR_ARGS), max_size=5, unique=True)):
        spec[name] = draw(st.one_of(SMALL_NUMBERS, VALUES, st.lists(SMALL_NUMBERS, max_size=4)))
    lr = spec if draw(st.booleans()) else [spec, {"class": "StepLR", "step_size": 3}]
    rules = [{"name": "a", "penalty": "l1", "strength": 0.001, "layers": ["fc1.weight"]}]
    return {"version": 1, "rules": draw(st.sampled_from([[], rules])), "lr_scheduler": lr}


@st.composite
def config_document(draw: st.DrawFn) -> Any:
    _, _, seed = draw(st.sampled_from(CONFIG_SEEDS))
    doc = dict(seed) if isinstance(seed, dict) else {}
    for key in draw(st.lists(st.sampled_from(CONFIG_KEYS), min_size=1, max_size=4, unique=True)):
        doc[key] = draw(st.one_of(SMALL_NUMBERS, st.sampled_from(WORDS), VALUES))
    return doc


def yaml_texts(seeds: list[tuple[str, str, Any]], built: st.SearchStrategy) -> st.SearchStrategy[str]:
    originals = st.sampled_from([text for _, text, _ in seeds])  # with their comments and layout
    structured = dumped(mutated_document(seeds))
    return st.one_of(structured, raw_mutated(originals), raw_mutated(structured), structured, dumped(built))


SCHEDULE_TEXTS = yaml_texts(SCHEDULE_SEEDS, lr_scheduler_document())
CONFIG_TEXTS = yaml_texts(CONFIG_SEEDS, config_document())
VALID_SCHEDULE_TEXTS = st.sampled_from([text for _, text, _ in SCHEDULE_SEEDS])

# ----------------------------------------------------------------------------- the worker process
#
# Runs in a child python started by ``Worker``; the functions below are this file's own, loaded
# there by path. Requests and replies are JSON lines on the child's stdin and a private copy of its
# stdout (fd 1 itself is pointed at stderr, so that nothing the code under test prints can garble
# the replies).

_BOOT = (
    "import importlib.util, sys; "
    "spec = importlib.util.spec_from_file_location('compress_fuzz_worker', sys.argv[1]); "
    "module = importlib.util.module_from_spec(spec); sys.modules[spec.name] = module; "
    "spec.loader.exec_module(module); module.worker_main(sys.argv[2])"
)

_TRIPPED: list[str] = []  # in the worker: every touch of the tripwire module


def _install_tripwire() -> None:
    """A module that records every attribute lookup and call: a YAML loader that builds Python
    objects (``!!python/name:fuzz_sentinel.fire``, ``/object/apply``, ``/object/new``, ...) must
    import it and look something up in it."""
    import types

    class Tripwire(types.ModuleType):
        def __getattribute__(self, name: str) -> Any:
            if not name.startswith("__"):
                _TRIPPED.append(f"fuzz_sentinel.{name} looked up")
            return super().__getattribute__(name)

    def fire(*args: Any, **kwargs: Any) -> None:
        _TRIPPED.append("fuzz_sentinel.fire() called")

    class Boom:
        def __new__(cls, *args: Any, **kwargs: Any) -> Boom:
            _TRIPPED.append("fuzz_sentinel.Boom created")
            return super().__new__(cls)

        def __setstate__(self, state: Any) -> None:
            _TRIPPED.append("fuzz_sentinel.Boom state set")

    module = Tripwire("fuzz_sentinel")
    module.fire = fire
    module.Boom = Boom
    sys.modules["fuzz_sentinel"] = module


class _WorkerState:
    def __init__(self, workdir: Path):
        from compress.models import build_model

        self.workdir = workdir
        self.model = build_model("lenet5", num_classes=10, in_channels=1, input_size=28)  # built once
        self.log = workdir / "worker.log"
        self.log_offset = 0
        self.configs = PRISTINE_CONFIGS
        (workdir / "schedules").mkdir(exist_ok=True)
        (workdir / "configs").mkdir(exist_ok=True)
        (workdir / "cfg").mkdir(exist_ok=True)
        self.sentinel = workdir / "fuzz-sentinel"

    def constructed(self) -> list[str]:
        """What the last request built from a tag; resets the evidence."""
        found = list(_TRIPPED)
        _TRIPPED.clear()
        if self.sentinel.exists():
            found.append("os.system('touch fuzz-sentinel') ran")
            self.sentinel.unlink()
        try:
            with open(self.log, "rb") as f:
                f.seek(self.log_offset)
                new = f.read()
            self.log_offset += len(new)
            if b"hacked" in new:
                found.append("os.system('echo hacked') ran")
        except OSError:
            pass
        return found


def _diagnostics(diagnostics: Any) -> list[dict[str, Any]]:
    out = []
    for d in diagnostics:
        plain = d.line is None or (isinstance(d.line, int) and not isinstance(d.line, bool))
        line = d.line if plain else repr(d.line)
        out.append(
            {
                "file": d.file if isinstance(d.file, str) or d.file is None else repr(d.file),
                "line": line,
                "field": _safe_str(d.field)[:200],
                "message": _safe_str(d.message)[:300],
                "warning": bool(d.warning),
                "type": type(d).__name__,
            }
        )
    return out


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception as exc:  # e.g. str() of an int beyond 4300 digits
        return f"<str() failed: {type(exc).__name__}: {exc}>"


def _exception_reply(exc: BaseException) -> dict[str, Any]:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}compress{os.sep}" in f.filename and "test_fuzz" not in f.filename]
    where = [f"{f.filename}:{f.lineno} in {f.name}" for f in (ours[-1:] + frames[-1:])]
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "outcome": "exception",
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": _safe_str(exc)[:500],
        "where": " / ".join(dict.fromkeys(where)),
        "traceback": text[-6000:],
    }


SAFE_TYPES = (str, int, float, bool, type(None), bytes, datetime.date, list, tuple, dict, set)


def _foreign_values(schedule: Any) -> list[str]:
    """Types in a parsed schedule that plain YAML cannot produce (the values a tag could have built)."""
    found: set[str] = set()
    seen: set[int] = set()
    stack: list[Any] = [schedule.config]
    for rule in schedule.rules:
        stack += [rule.name, rule.penalty, rule.mode, rule.threshold_criterion, rule.keep_mask]
        stack += [rule.epochs.start, rule.epochs.end, rule.epochs.frequency, rule.epochs.listed]
        for t in rule.targets:
            stack += [t.pattern, t.strength, t.groups, t.threshold]
    for spec in schedule.lr_schedulers:
        stack += [spec.cls, spec.args, spec.epochs.start, spec.epochs.end, spec.epochs.listed]
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if not isinstance(value, SAFE_TYPES):
            found.add(type(value).__qualname__)
        elif isinstance(value, dict):
            stack += list(value.keys()) + list(value.values())
        elif isinstance(value, list | tuple | set):
            stack += list(value)
    return sorted(found)


def _op_schedule(state: _WorkerState, request: dict[str, Any]) -> dict[str, Any]:
    from compress.errors import CompressError
    from compress.schedule import Schedule, parse_schedule
    from compress.scheduler import bind

    try:
        schedule = parse_schedule(request["text"], FILE, defer_errors=request["bind"])
        if not isinstance(schedule, Schedule):
            return {"outcome": "exception", "type": "not a Schedule", "message": type(schedule).__name__}
        foreign = _foreign_values(schedule)
        problems = list(schedule.problems)
        if request["bind"]:
            _, problems = bind(schedule, state.model, epochs=10)
    except CompressError as exc:
        return {"outcome": "error", "diagnostics": _diagnostics(exc.diagnostics)}
    except BaseException as exc:  # noqa: B036  anything else is what this test looks for
        return _exception_reply(exc)
    return {"outcome": "ok", "diagnostics": _diagnostics(problems), "foreign": foreign}


def _op_config(state: _WorkerState, request: dict[str, Any]) -> dict[str, Any]:
    from compress.config import load_config_file, resolve_config
    from compress.errors import CompressError

    path = state.workdir / "cfg" / "fuzz-config.yaml"
    path.write_text(request["text"], encoding="utf-8")
    try:
        values = load_config_file(path)
        foreign = sorted({type(v).__qualname__ for v in values.values() if not isinstance(v, str | int | float)})
        resolve_config([values])  # what the CLI does next with them
    except CompressError as exc:
        return {"outcome": "error", "diagnostics": _diagnostics(exc.diagnostics), "file": str(path)}
    except BaseException as exc:  # noqa: B036
        return _exception_reply(exc)
    return {"outcome": "ok", "diagnostics": [], "file": str(path), "foreign": foreign}


def _op_cli(state: _WorkerState, request: dict[str, Any]) -> dict[str, Any]:
    from click.testing import CliRunner

    from compress.cli import main

    schedule = state.workdir / "schedules" / FILE
    schedule.write_text(request["schedule"], encoding="utf-8")
    for name, pristine in state.configs.items():
        text = pristine if request.get("config") is None else request["config"]
        (state.workdir / "configs" / name).write_text(text, encoding="utf-8")
    args = ["check", "--schedule", str(schedule)]
    if request.get("config") is not None:
        args += ["--config", str(state.workdir / "configs" / "lenet5-mnist5k.yaml")]
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    reply: dict[str, Any] = {
        "outcome": "cli",
        "exit_code": result.exit_code,
        "exception": None if result.exception is None else type(result.exception).__name__,
        "output": result.output[-3000:],
    }
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        reply.update({k: v for k, v in _exception_reply(result.exception).items() if k != "outcome"})
    return reply


_HANDLERS = {"schedule": _op_schedule, "config": _op_config, "cli": _op_cli}


def _limit_memory() -> None:
    try:
        import resource

        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = size + MEMORY_HEADROOM
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError, StopIteration):
        pass  # not Linux: no cap; the kill timer still bounds a blowup in time


def worker_main(workdir: str) -> None:
    """The worker's loop: one JSON request per line in, one JSON reply per line out."""
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    os.dup2(2, 1)  # whatever the code under test prints goes to the log, not into the replies
    os.chdir(workdir)
    _install_tripwire()
    import torch

    torch.set_num_threads(1)
    state = _WorkerState(Path(workdir))
    # warm up what the first examples would otherwise pay for: the vocabulary, the CLI's imports,
    # torchvision's model zoo (an unknown --arch looks there)
    from compress.models import all_models

    all_models()
    _op_schedule(state, {"text": SCHEDULE_SEEDS[0][1], "bind": True})
    _op_cli(state, {"schedule": SCHEDULE_SEEDS[0][1]})
    state.constructed()
    _limit_memory()
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in requests:
        request = json.loads(line)
        start = time.perf_counter()
        try:
            reply = _HANDLERS[request["op"]](state, request)
        except BaseException as exc:  # noqa: B036  the harness itself failed: report, keep serving
            reply = _exception_reply(exc)
            reply["harness"] = True
        reply["elapsed"] = time.perf_counter() - start
        reply["constructed"] = state.constructed()
        replies.write(json.dumps(reply, default=repr) + "\n")
        replies.flush()


class WorkerDied(Exception):
    pass


class Worker:
    """The parent's handle on the worker: ``call`` answers within ``timeout`` or reports a hang."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="compress-fuzz-"))
        self.proc: subprocess.Popen | None = None
        self.buffer = b""
        self.starts = 0

    def _start(self) -> None:
        self.starts += 1
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        log = open(self.dir / "worker.log", "ab")  # noqa: SIM115  handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(Path(__file__).resolve()), str(self.dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=self.dir,
            env=env,
        )
        log.close()
        self.buffer = b""
        ready = self._read(STARTUP_S)
        if not ready.get("ready"):
            raise WorkerDied(f"the fuzz worker did not start: {ready}")

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    code = self.proc.wait()
                    raise WorkerDied(f"the worker died (exit status {code}); its log: {self.log_tail()}")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def log_tail(self) -> str:
        try:
            return (self.dir / "worker.log").read_text("utf-8", "replace")[-3000:]
        except OSError:
            return ""

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            return self._read(timeout)
        except TimeoutError:
            self.stop()
            return {"outcome": "hang", "timeout": timeout, "constructed": []}
        except (WorkerDied, BrokenPipeError) as exc:
            self.stop()
            return {"outcome": "crash", "message": str(exc), "constructed": []}

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # our own child, by its handle
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
            self.proc = None

    def close(self) -> None:
        self.stop()  # nothing to flush: killing skips the seconds torch takes to shut down
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    sentinel = (w.dir / "fuzz-sentinel").exists()
    w.close()
    assert not sentinel, "a !!python/object/apply:os.system tag ran a shell command"


# ----------------------------------------------------------------------------- the properties


def _clip(text: str, limit: int = 1500) -> str:
    shown = (
        text
        if len(text) <= limit
        else text[: limit // 2] + f"\n[... {len(text) - limit} chars ...]\n" + text[-limit // 2 :]
    )
    return shown.encode("unicode_escape").decode("ascii") if any(c in shown for c in "\x00\r\x85\u2028") else shown


def _fail(message: str, text: str) -> None:
    raise AssertionError(f"{message}\n--- input ({len(text):,} chars) ---\n{_clip(text)}")


def _yaml_lines(text: str) -> int:
    return max(1, len(text.splitlines())) + 1  # splitlines breaks at least wherever YAML does


def _event(value: str) -> None:
    """Hypothesis' statistics (``--hypothesis-show-statistics``); a no-op in the single-example tests."""
    from hypothesis.control import _current_build_context

    if _current_build_context.value is not None:
        event(value)


def check_reply(reply: dict[str, Any], text: str, file: str, limit: float) -> None:
    """The promise: a schedule (or config), or our error located in ``file``; nothing else, in time."""
    if reply.get("constructed"):
        _fail(f"a YAML tag built a Python object: {reply['constructed']}", text)
    outcome = reply["outcome"]
    _event(f"outcome: {outcome}")
    if outcome == "hang":
        _fail(f"no answer within {reply['timeout']} s: a hang (the worker was killed)", text)
    if outcome == "crash":
        _fail(f"the worker process died: {reply['message']}", text)
    if outcome == "exception":
        _fail(
            f"{reply['type']}: {reply['message']}\n  at {reply.get('where')}\n{reply.get('traceback', '')}",
            text,
        )
    if reply["elapsed"] > limit:
        _fail(f"took {reply['elapsed']:.1f} s (limit {limit} s): a hang", text)
    if reply.get("foreign"):
        _fail(f"the result holds objects plain YAML cannot make: {reply['foreign']}", text)
    diagnostics = reply["diagnostics"]
    if outcome == "error" and not any(not d["warning"] for d in diagnostics):
        _fail(f"CompressError without an error diagnostic: {diagnostics}", text)
    last_line = _yaml_lines(text)
    for d in diagnostics:
        if d["file"] != file:
            _fail(f"diagnostic names file {d['file']!r}, not {file!r}: {d}", text)
        if d["line"] is None and d["message"].startswith(FILE_LEVEL_PREFIXES):
            continue
        if not isinstance(d["line"], int) or not 1 <= d["line"] <= last_line:
            _fail(f"diagnostic without a valid line (1..{last_line}): {d}", text)


def check_cli_reply(reply: dict[str, Any], shown: str) -> None:
    if reply.get("constructed"):
        _fail(f"a YAML tag built a Python object: {reply['constructed']}", shown)
    outcome = reply["outcome"]
    if outcome == "hang":
        _fail(f"compress check gave no answer within {reply['timeout']} s: a hang (the worker was killed)", shown)
    if outcome == "crash":
        _fail(f"the worker process died: {reply['message']}", shown)
    if outcome == "exception":  # the harness, not the CLI
        _fail(f"harness: {reply['type']}: {reply['message']}\n{reply.get('traceback', '')}", shown)
    _event(f"compress check exit {reply['exit_code']}")
    if reply["exception"] not in (None, "SystemExit"):
        _fail(
            f"compress check raised {reply.get('type')}: {reply.get('message')}\n  at {reply.get('where')}\n"
            f"{reply.get('traceback', '')}",
            shown,
        )
    if reply["exit_code"] not in (0, 2):
        _fail(f"compress check exited {reply['exit_code']}; output:\n{reply['output']}", shown)
    if "Traceback" in reply["output"]:
        _fail(f"compress check printed a traceback:\n{reply['output']}", shown)
    if reply["elapsed"] > CLI_LIMIT_S:
        _fail(f"compress check took {reply['elapsed']:.1f} s (limit {CLI_LIMIT_S} s): a hang", shown)


def run_schedule(worker: Worker, text: str, *, bind: bool = False) -> dict[str, Any]:
    return worker.call({"op": "schedule", "text": text, "bind": bind}, KILL_S)


def run_cli(worker: Worker, schedule: str, config: str | None = None) -> dict[str, Any]:
    return worker.call({"op": "cli", "schedule": schedule, "config": config}, CLI_KILL_S)


def _cli_shown(schedule: str, config: str | None) -> str:
    return schedule if config is None else f"{schedule}\n--- config ---\n{config}"


@FUZZ
@given(text=SCHEDULE_TEXTS)
def test_parse_schedule_fuzz(worker, text):
    note(f"text = {text!r}"[:3000])
    check_reply(run_schedule(worker, text), text, FILE, LIMIT_S)


@FUZZ
@given(text=SCHEDULE_TEXTS)
def test_parse_and_bind_fuzz(worker, text):
    note(f"text = {text!r}"[:3000])
    check_reply(run_schedule(worker, text, bind=True), text, FILE, LIMIT_S)


@FUZZ
@given(text=CONFIG_TEXTS)
def test_load_config_fuzz(worker, text):
    note(f"text = {text!r}"[:3000])
    reply = worker.call({"op": "config", "text": text}, KILL_S)
    check_reply(reply, text, reply.get("file", "<config>"), LIMIT_S)


@FUZZ
@given(
    case=st.one_of(
        st.tuples(SCHEDULE_TEXTS, st.none()),
        st.tuples(VALID_SCHEDULE_TEXTS, CONFIG_TEXTS),
        st.tuples(SCHEDULE_TEXTS, CONFIG_TEXTS),
    )
)
def test_cli_check_fuzz(worker, case):
    schedule, config = case
    note(f"schedule = {schedule!r}"[:3000])
    note(f"config = {config!r}"[:3000])
    check_cli_reply(run_cli(worker, schedule, config), _cli_shown(schedule, config))


# ----------------------------------------------------------------------------- single examples


@pytest.mark.parametrize("name", [name for name, _, _ in SCHEDULE_SEEDS])
def test_seeds_are_valid_schedules(worker, name):
    """The mutations start from valid files, and the dump step keeps them valid."""
    _, text, doc = next(s for s in SCHEDULE_SEEDS if s[0] == name)
    for variant in (text, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)):
        reply = run_schedule(worker, variant)
        check_reply(reply, variant, FILE, LIMIT_S)
        assert reply["outcome"] == "ok", reply


def test_valid_schedule_passes_check(worker):
    text = (ROOT / "schedules" / "lenet5-filters.yaml").read_text("utf-8")
    reply = run_cli(worker, text)
    check_cli_reply(reply, text)
    assert reply["exit_code"] == 0 and "OK: " in reply["output"], reply["output"]


PLACES = {  # where a tagged value can sit in a schedule, with the line it is on
    "rule strength": "version: 1\nrules:\n  - name: a\n    penalty: l1\n    strength: {tag}\n"
    "    layers: [fc1.weight]\n",
    "lr argument": "version: 1\nrules: []\nlr_scheduler:\n  class: StepLR\n  step_size: {tag}\n",
    "top-level key": "version: 1\nrules: []\nextra: {tag}\n",
    "distiller strength": "regularizers:\n  r:\n    class: L1Regularizer\n    reg_regims:\n      fc1.weight: {tag}\n"
    "policies:\n  - regularizer: {{instance_name: r}}\n    epochs: [0]\n",
    "document": "{tag}\n",
}
PYTHON_TAGS = [t for t in TAGGED if "python" in t]


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("tag", PYTHON_TAGS)
def test_python_tags_never_build_objects(worker, tag, place):
    text = PLACES[place].format(tag=tag)
    reply = run_schedule(worker, text, bind=True)
    check_reply(reply, text, FILE, LIMIT_S)  # fails if the tripwire or the sentinel file was touched
    assert reply["outcome"] == "error", "a schedule with a Python tag was accepted"
    tag_line = next(i for i, line in enumerate(text.splitlines(), 1) if "python/" in line)
    # refused by the YAML layer itself, at the tag's line (not built, then found to be of a wrong type)
    refused = [d for d in reply["diagnostics"] if d["line"] == tag_line and d["message"].startswith("invalid YAML")]
    assert refused, reply["diagnostics"]


def _rules_file(target_chars: int) -> str:
    item = "  - name: r{i}\n    penalty: l1\n    strength: 0.001\n    layers: [fc1.weight]\n    epochs: [0, 5]\n"
    head, rules, size, i = "version: 1\nrules:\n", [], 0, 0
    while size < target_chars:
        rules.append(item.format(i=i))
        size += len(rules[-1])
        i += 1
    return head + "".join(rules)


def test_very_large_schedule_is_refused_or_fast(worker):
    """A few MB of valid list items: a schedule within LIMIT_S, or our error at once."""
    text = _rules_file(3_000_000)
    for bind in (False, True):
        reply = run_schedule(worker, text, bind=bind)
        check_reply(reply, text, FILE, LIMIT_S)
    reply = run_cli(worker, text)
    check_cli_reply(reply, text)


def test_largest_accepted_schedule_is_fast(worker):
    """10. Just under the reader's size limit: whatever it accepts must be read within LIMIT_S.
    A long flat list (an lr scheduler's milestones) is the cheapest YAML per character to write
    and the most expensive to parse per character."""
    from compress import yamlio

    limit = getattr(yamlio, "MAX_BYTES", 1_000_000)
    count = int(limit * 0.95) // 8
    text = (
        "version: 1\nrules: []\nlr_scheduler: {class: MultiStepLR, milestones: ["
        + ", ".join(str(100_000 + i) for i in range(count))
        + "]}\n"
    )
    assert len(text) <= limit
    check_reply(run_schedule(worker, text), text, FILE, LIMIT_S)


# ----------------------------------------------------------------------------- regressions: bugs the fuzzer found
#
# The smallest input found for each distinct bug, numbered as in the report that came with this file;
# each fails until its bug is fixed.

HUGE_HEX = "0x" + "f" * 3600  # 4335 decimal digits: more than str(int) prints (sys.get_int_max_str_digits)

PARSE_REGRESSIONS = {
    # 1. yamlio.parse_yaml builds the loader outside its try: PyYAML's Reader rejects a control
    #    character in its constructor, and yaml.reader.ReaderError escapes
    "1 control character (ReaderError from _LineLoader.__init__)": "a: \x1b\n",
    # 2. parse_yaml catches only yaml.YAMLError; PyYAML's scanner and SafeConstructor raise others
    "2 escape beyond unicode (ValueError in scanner)": 'a: "\\U7FFFFFFF"\n',
    "2 escape beyond C int (OverflowError in scanner)": 'a: "\\UFFFFFFFF"\n',
    "2 decimal int over 4300 digits (ValueError in construct_yaml_int)": "a: " + "1" * 4301 + "\n",
    "2 !!int of a non-number (ValueError)": 'a: !!int "abc"\n',
    "2 !!int of an empty string (IndexError)": 'a: !!int ""\n',
    "2 !!float of a non-number (ValueError)": 'a: !!float "abc"\n',
    "2 !!bool of a non-boolean (KeyError)": 'a: !!bool "maybe"\n',
    "2 !!timestamp of garbage (AttributeError)": 'a: !!timestamp "garbage"\n',
    "2 !!timestamp of an impossible date (ValueError)": "a: !!timestamp 2001-02-30\n",
    # 3. compress.yamlio's own constructors assume the node kind that their tag implies
    "3 !!map on a sequence (TypeError in _construct_map)": "a: !!map [1]\n",
    "3 !!seq on a mapping (AttributeError in _construct_list)": "a: !!seq {a: 1}\n",
    # 4. a non-decimal literal makes an int too long for str(); every message that prints it fails
    "4 huge hex version (ValueError in _check_version)": f"version: {HUGE_HEX}\n",
    "4 huge hex name (ValueError in yamlio.kind_of)": f"rules:\n  - name: {HUGE_HEX}\n",
    "4 huge hex strength (ValueError in FieldChecker.number)": f"rules:\n  - strength: {HUGE_HEX}\n",
    # 5. a message repeats a value with repr(): aliases expand, 9**9 strings from 300 bytes
    "5 billion laughs as the version (repr in _check_version)": f"version: {_laughs(9)}\n",
}
BIND_REGRESSIONS = {
    "4 huge hex epoch (ValueError in Epochs.describe)": (
        f"rules:\n  - {{name: a, penalty: l1, strength: 1, layers: [fc1.weight], epochs: [{HUGE_HEX}]}}\n"
    ),
    # 6. with defer_errors, a rule whose group name is unknown is kept, and bind looks the name up
    "6 unknown group name, errors deferred (KeyError in groups.get from bind)": (
        "rules:\n  - {name: a, penalty: group_lasso, groups: kern, strength: 1, layers: [conv2.weight]}\n"
    ),
}


@pytest.mark.parametrize("text", list(PARSE_REGRESSIONS.values()), ids=list(PARSE_REGRESSIONS))
def test_regression_parse(worker, text):
    check_reply(run_schedule(worker, text), text, FILE, LIMIT_S)


@pytest.mark.parametrize("text", list(BIND_REGRESSIONS.values()), ids=list(BIND_REGRESSIONS))
def test_regression_bind(worker, text):
    check_reply(run_schedule(worker, text, bind=True), text, FILE, LIMIT_S)


VALID = "version: 1\nrules: []\n"
ONE_RULE = "version: 1\nrules:\n  - {name: a, penalty: l1, strength: 0.001, layers: [fc1.weight]}\n"
CLI_REGRESSIONS = {
    # 4. (again) an lr scheduler accepts the huge int, and format_plan prints it
    "4 huge hex lr argument (ValueError in format_plan)": (
        f"version: 1\nrules: []\nlr_scheduler: {{class: StepLR, step_size: {HUGE_HEX}}}\n",
        None,
    ),
    # 5. (again) format_plan prints lr scheduler arguments with str(): 39 MB of output at depth 7
    "5 billion laughs in an lr argument (str in format_plan)": (
        f"version: 1\nrules: []\nlr_scheduler: {{class: ReduceLROnPlateau, patience: {_laughs(9)}}}\n",
        None,
    ),
    # 6. (again) what a user sees: compress check --schedule with a misspelt group, a traceback
    "6 unknown group name (KeyError in groups.get from bind)": (
        "rules:\n  - {name: a, penalty: group_lasso, groups: kern, strength: 1, layers: [conv2.weight]}\n",
        None,
    ),
    # 7. Epochs.active_epochs walks range(run epochs) in Python, from bind and from format_plan
    "7 epochs: 1000000000 in the config (a loop over every epoch)": (ONE_RULE, "epochs: 1000000000\n"),
    # 8. torch.manual_seed takes at most 2**64 - 1; the config only checks seed >= 0
    "8 seed: 2**64 in the config (ValueError in torch.manual_seed)": (VALID, "seed: 18446744073709551616\n"),
    # 9. importlib.import_module raises TypeError, not ImportError, for a relative module name
    "9 arch: '.a:b' in the config (TypeError in import_callable)": (VALID, "arch: '.a:b'\n"),
}


@pytest.mark.parametrize("case", list(CLI_REGRESSIONS.values()), ids=list(CLI_REGRESSIONS))
def test_regression_cli(worker, case):
    schedule, config = case
    check_cli_reply(run_cli(worker, schedule, config), _cli_shown(schedule, config))


@pytest.mark.skipif(sys.platform != "linux", reason="needs /dev/zero and the worker's memory cap (Linux)")
def test_regression_schedule_config_pointing_at_endless_file(worker):
    """11. ``config:`` names any path, and read_text reads all of it before the size check."""
    text = "version: 1\nconfig: /dev/zero\nrules: []\n"
    check_cli_reply(run_cli(worker, text), text)
