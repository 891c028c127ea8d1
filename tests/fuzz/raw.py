"""Raw text mutations of a YAML file: tags (``!!python/...`` and others), anchors and aliases (a "billion
laughs" included), merge keys, huge number literals, bad escapes, deep nesting, truncation, moved or
duplicated lines, character corruption, directives and line endings, very long values."""

from __future__ import annotations

import re

from hypothesis import strategies as st

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


def laughs(depth: int) -> str:
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
            f"lr_scheduler: {{class: ReduceLROnPlateau, patience: {laughs(depth)}}}",
            text,
            count=1,
            flags=re.M,
        )
    return _replace_value(draw, text, laughs(depth))


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
