"""Every flag of ``compress train`` (and ``compress check``) with random values, as a user could type them.

The promise (#15): a flag's value ends in exit 0 or in exit 2 with our error, never a traceback; and
nothing is written outside ``--out-dir`` (a run name is one directory inside it).

The flags are not listed here: they are derived from click's parameters of the real commands
(``compress.cli.main``), and every run setting of ``compress.config.SETTINGS`` must be among them, so
that a new setting is fuzzed the day it is added. Values: numbers at and beyond every bound (huge,
negative, NaN, inf, float32's largest, 2**63), empty and blank strings, unicode (RTL overrides,
emoji, bytes that are not UTF-8 as Python's argv carries them: lone surrogates), path traversal
(``../..``, absolute paths, ``.``), and the names the flags take.

``compress check`` validates settings without training, so it gets most examples; ``compress train``
(one epoch on one batch) gets a few, with values that would make an example slow (many epochs,
every batch, 128 DataLoader workers, torch.compile) drawn only where they are cheap or refused.
Every example runs in a sandbox: the working directory and ``--out-dir`` are four levels deep inside
it, and the vocabulary's absolute and ``..`` paths stay inside it, so an escape shows up as a new file
in the sandbox outside ``--out-dir``.
"""

from __future__ import annotations

import importlib.util
import os
import traceback
from pathlib import Path

import click
import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from compress.cli import main
from compress.config import SETTINGS
from tests.fuzz.limits import EXAMPLES, FUZZ
from tests.fuzz.values import NASTY_STRINGS, WORDS
from tests.helpers import invoke

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent.parent
BASELINE = ROOT / "schedules" / "lenet5-baseline.yaml"
TRAIN = main.commands["train"]
CHECK = main.commands["check"]
DEPTH = 4  # the working directory and --out-dir are this many folders inside the sandbox
ABS = "{SANDBOX}"  # replaced by the sandbox's absolute path: absolute paths that stay inside it


def _examples(default: int) -> int:
    return EXAMPLES if "COMPRESS_FUZZ_EXAMPLES" in os.environ else default


def options(command: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in command.params if isinstance(p, click.Option) and p.name != "help"}


# ----------------------------------------------------------------------------- the values

NUMBERS = [
    "0", "-0", "1", "2", "-1", "0.5", "1.5", "+1", " 1", "1 ", "1e308", "1e309", "-1e308", "1e39", "-1e39",
    "3.4028234663852886e38", "3.4028235e38", "3.5e38", "1e-320", "5e-324", "nan", "NaN", "-nan", "inf", "-inf",
    "Infinity", "0x10", "0b1", "1_000", "9" * 40, "2**63", "4294967295", "4294967296", "9223372036854775807",
    "9223372036854775808", "18446744073709551616", "-9223372036854775809", "\u0661", "\u00b2", "1e", ".", "e5",
]  # fmt: skip
PATHS = [
    "..", ".", "./x", "a/b", "a\\b", "~", "~/x", "....", "-", "--", "x/..", "x/../..", "../escape", "../../escape",
    "../../../escape", "../../../../escape", "escape/../../..", f"{ABS}/abs-escape", f"{ABS}", f"{ABS}/../x",
    "\u202eevil", "ü", "名前", "😀", "a b", "a\tb", "a\nb", "\x1b[31m", "\udcff", "a\udce9b", "x" * 255, "x" * 256,
    "é" * 128, "CON", "nul", ".hidden", "-rf",
]  # fmt: skip
READ_ONLY = ["/", "/dev/null", "/dev/zero", "/nonexistent/x.yaml", "/etc", str(BASELINE),
             str(ROOT / "configs" / "lenet5-mnist5k.yaml"), str(ROOT / "schedules" / "lenet5-l1.yaml")]  # fmt: skip
ARGV_SAFE = [s for s in NASTY_STRINGS if "\x00" not in s]  # a NUL cannot reach argv
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=16)
ANY_VALUE = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(PATHS), st.sampled_from(ARGV_SAFE),
                      st.sampled_from(WORDS), TEXT, st.integers().map(str),
                      st.floats(allow_nan=True, allow_infinity=True).map(repr))  # fmt: skip

# values that are valid but would make one example slow: only cheap or refused ones
SLOW = {
    "epochs": st.sampled_from(["1", "2", "0", "-1", "100001", "1e3", "nan", "x", ""]),
    "limit_batches": st.sampled_from(["1", "2", "0", "-1", "1.5", "nan", "x", "", "1e400"]),
    "workers": st.sampled_from(["0", "1", "-1", "129", "1e9", "x", ""]),
    "input_size": st.sampled_from(["1", "28", "32", "0", "-5", "1e9", "x", ""]),
}
SLOW_FLAGS = {"compile": ["--no-compile"]}
WRITES = {"out_dir", "data_dir", "name"}  # flags whose value becomes a path something is written to
READS = {"config_path", "schedule_path", "resume", "pretrained", "data_dir"}


def _edges(name: str) -> list[str]:
    """A numeric setting's own bounds, and just past them (derived from its definition)."""
    s = SETTINGS.get(name)
    if s is None or s.kind not in (int, float):
        return []
    out = []
    for bound in (s.minimum, s.maximum, s.below):
        if bound is not None:
            if s.kind is int:
                out += [str(int(bound) + d) for d in (-1, 0, 1)]
            else:
                out += [repr(float(bound)), repr(bound * (1 + 1e-15) or -1e-300), repr(bound * (1 - 1e-15) or 1e-300)]
    return out


def value_strategy(name: str, option: click.Option) -> st.SearchStrategy[str]:
    if name in SLOW:
        return SLOW[name]
    branches = [ANY_VALUE]
    if _edges(name):
        branches += [st.sampled_from(_edges(name)), st.sampled_from(NUMBERS)]
    if isinstance(option.type, click.Choice):
        branches.append(st.sampled_from(list(option.type.choices)))
    if name in WRITES or name in READS:
        branches.append(st.sampled_from(PATHS))
    if name in READS and name not in WRITES:
        branches.append(st.sampled_from(READ_ONLY))
    return st.one_of(branches)


@st.composite
def flag_args(draw, command: click.Command, count: tuple[int, int]) -> list[tuple[str, str, str | None]]:
    """1..n options of ``command``: (param name, flag, value or None for a flag without one)."""
    opts = options(command)
    names = draw(st.lists(st.sampled_from(sorted(opts)), min_size=count[0], max_size=count[1], unique=True))
    out = []
    for name in names:
        option = opts[name]
        if name in SLOW_FLAGS:
            out.append((name, draw(st.sampled_from(SLOW_FLAGS[name])), None))
        elif option.is_flag:
            out.append((name, draw(st.sampled_from([*option.opts, *option.secondary_opts])), None))
        else:
            out.append((name, draw(st.sampled_from(option.opts)), draw(value_strategy(name, option))))
    return out


# ----------------------------------------------------------------------------- the sandbox


class Sandbox:
    def __init__(self, root: Path):
        self.root = root
        deep = root.joinpath(*[f"l{i}" for i in range(DEPTH)])
        self.cwd, self.out = deep / "cwd", deep / "out"
        self.cwd.mkdir(parents=True)
        self.out.mkdir()

    def __repr__(self) -> str:
        return f"Sandbox({self.root})"

    def inside(self, path: Path) -> bool:
        try:
            resolved = path.resolve()
        except (OSError, ValueError, UnicodeError):
            return False
        return resolved == self.root or self.root in resolved.parents

    def tree(self) -> set[Path]:
        return set(self.root.rglob("*"))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    box = Sandbox(tmp_path_factory.mktemp("flagfuzz").resolve())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(box.cwd)
        yield box


def _concrete(box: Sandbox, flags: list[tuple[str, str, str | None]]) -> list[tuple[str, str, str | None]]:
    """The placeholders filled in; examples whose written-to paths would leave the sandbox are not run."""
    out = []
    for name, flag, value in flags:
        if value is not None:
            value = value.replace(ABS, str(box.root))
            if name == "arch" and ":" in value:
                module = value.partition(":")[0].strip().split(".")[0]
                try:  # naming an importable module's function on the command line runs it: by design
                    assume(not module.isidentifier() or importlib.util.find_spec(module) is None)
                except (ImportError, ValueError):
                    pass
            if name in WRITES:
                assume(box.inside(box.cwd / value) and box.inside(box.out / value))
        out.append((name, flag, value))
    return out


def _argv(flags: list[tuple[str, str, str | None]]) -> list[str]:
    return [part for _, flag, value in flags for part in ((flag,) if value is None else (flag, value))]


def _event(value: str) -> None:
    """Hypothesis' statistics (``--hypothesis-show-statistics``): how many examples got how far."""
    from hypothesis import event
    from hypothesis.control import _current_build_context

    if _current_build_context.value is not None:
        event(value)


def check_outcome(box: Sandbox, args: list, flags: list[tuple[str, str, str | None]]) -> None:
    out_dir = box.out
    for name, _, value in flags:
        if name == "out_dir" and value is not None:
            out_dir = box.cwd / value
    before = box.tree()
    try:
        result = invoke(*args)
    except Exception as exc:  # a traceback a user would see: shown short, with the frame that raised it
        frames = traceback.extract_tb(exc.__traceback__)
        at = ([f for f in frames if "/compress/" in f.filename] or frames)[-1]
        raise AssertionError(f"compress {args[0]} {_argv(flags)!r}: traceback {type(exc).__name__}: {str(exc)[:200]} "
                             f"at {at.filename}:{at.lineno} ({at.name})") from exc  # fmt: skip
    _event(f"{args[0]}: exit {result.exit_code}")
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (0, 2), (result.exit_code, result.output[-2000:])
    new = box.tree() - before
    allowed = out_dir.resolve() if box.inside(out_dir) else None
    escaped = sorted(str(p) for p in new if allowed is None or not (p == allowed or allowed in p.resolve().parents
                                                                       or p in allowed.parents))  # fmt: skip
    assert not escaped, f"written outside --out-dir {out_dir}: {escaped[:5]}"


# ----------------------------------------------------------------------------- the properties


def test_every_run_setting_is_a_flag():
    """The fuzzed flags come from click; every setting must be among them (train: all; check: "run")."""
    train, check = options(TRAIN), options(CHECK)
    assert set(SETTINGS) <= set(train), set(SETTINGS) - set(train)
    assert {n for n, s in SETTINGS.items() if s.flag == "run"} <= set(check)


@settings(FUZZ, max_examples=_examples(150))
@given(flags=flag_args(CHECK, (1, 3)))
def test_check_flags_fuzz(sandbox, flags):
    flags = _concrete(sandbox, flags)
    check_outcome(sandbox, ["check", "--schedule", BASELINE, *_argv(flags)], flags)


TRAIN_BASE = ("--epochs", "1", "--limit-batches", "1", "--name", "n", "--overwrite", "--no-plots", "--table", "none")


@settings(FUZZ, max_examples=_examples(30))
@given(flags=flag_args(TRAIN, (1, 2)))
def test_train_flags_fuzz(sandbox, flags):
    """One epoch on one batch, the fuzzed flags last (they win over the base ones)."""
    flags = _concrete(sandbox, flags)
    args = ["train", "--schedule", BASELINE, "--out-dir", sandbox.out, *TRAIN_BASE, *_argv(flags)]
    check_outcome(sandbox, args, flags)


TRAIN_ONLY = sorted(n for n, s in SETTINGS.items() if s.flag == "train")  # compress check has no flag for them
YAML_VALUES = st.one_of(
    st.sampled_from(["../x", "../../x", f"{ABS}/abs", ".", "..", "", " ", "a\x00b", "\x00", "a/b", "名前", "x" * 300]),
    st.sampled_from([None, True, False, 0, -1, 1, 2**63, 10**400, 1.5, float("nan"), float("inf"), [], {}, ["x"]]),
    TEXT,
)


@settings(FUZZ, max_examples=_examples(25))
@given(config=st.dictionaries(st.sampled_from(TRAIN_ONLY), YAML_VALUES, min_size=1, max_size=2))
def test_train_only_settings_in_a_config_file_fuzz(sandbox, config):
    """The settings only ``train`` takes, from ``--config`` (YAML can hold what argv cannot: NUL)."""
    for key in ("limit_batches", "workers"):  # every batch, 128 processes: slow, and the check is the same
        if isinstance(config.get(key), int) and not isinstance(config[key], bool) and config[key] > 2:
            config[key] = 2
    for key in ("out_dir", "name"):
        if isinstance(config.get(key), str):
            config[key] = config[key].replace(ABS, str(sandbox.root))
            assume(sandbox.inside(sandbox.cwd / config[key].replace("\x00", "")))
            assume(sandbox.inside(sandbox.out / config[key].replace("\x00", "")))
    path = sandbox.root / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    args = ["train", "--schedule", BASELINE, "--config", path, "--epochs", "1", "--limit-batches", "1",
            "--no-plots", "--table", "none", "--overwrite"]  # fmt: skip
    out = config.get("out_dir") if isinstance(config.get("out_dir"), str) else None
    if out is None:  # a flag would win over the file's value
        args += ["--out-dir", sandbox.out]
    if not isinstance(config.get("name"), str):
        args += ["--name", "n"]
    check_outcome(sandbox, args, [("out_dir", "--out-dir", out)] if out is not None else [])


# ----------------------------------------------------------------------------- what the fuzzing found
# each also a plain test, so that it fails by name (and runs first, whatever the properties draw)

FOUND = {
    "--seed at its maximum (numpy's seed takes < 2**32)": ("check", "--seed", str(2**63 - 1)),
    "--seed 2**32": ("check", "--seed", str(2**32)),
    "a --schedule name longer than 255 bytes": ("check", "--schedule", "x" * 256),
    "a --config name longer than 255 bytes": ("check", "--config", "x" * 256),
    "a --pretrained name longer than 255 bytes": ("check", "--pretrained", "x" * 256),
    "a --resume name longer than 255 bytes": ("train", "--resume", "x" * 256),
    "a --name that is not UTF-8 (argv byte 0xe9)": ("train", "--name", "a\udce9b"),
    "an --out-dir that is not UTF-8 (argv byte 0xff)": ("train", "--out-dir", "\udcff"),
}


@pytest.mark.parametrize("case", list(FOUND))
def test_flag_values_the_fuzzing_found(sandbox, case):
    command, flag, value = FOUND[case]
    name = {"--out-dir": "out_dir", "--name": "name"}.get(flag, flag)
    if command == "check":
        args = ["check", "--schedule", BASELINE, flag, value]
    else:
        args = ["train", "--schedule", BASELINE, "--out-dir", sandbox.out, *TRAIN_BASE, flag, value]
    check_outcome(sandbox, args, [(name, flag, value)])


@pytest.mark.parametrize("value", ["a\x00b", "\x00"])
def test_a_nul_in_out_dir_from_a_config_file(sandbox, value):
    """YAML's ``"\\0"`` reaches ``out_dir`` (argv cannot carry a NUL)."""
    path = sandbox.root / "nul.yaml"
    path.write_text(yaml.safe_dump({"out_dir": value}), encoding="utf-8")
    args = ["train", "--schedule", BASELINE, "--config", path, "--epochs", "1", "--limit-batches", "1", "--name", "n",
            "--no-plots", "--table", "none"]  # fmt: skip
    check_outcome(sandbox, args, [("out_dir", "--out-dir", value.replace("\x00", ""))])
