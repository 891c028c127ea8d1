"""Checkpoints as anyone may hand them over, through ``eval``, ``report``, ``thin`` and ``train --resume``.

The promise (#15): a checkpoint is data. Whatever a file holds, a command ends in exit 0 or in exit 2
with our one-line error, never a traceback; and no module a checkpoint names is ever imported (a
model of the user's own is built only when the command line names it again).

Inputs start from one real checkpoint (one epoch of lenet5-baseline on one batch) and are mutated:
keys dropped, fields given wrong types, junk (NaN, inf, huge numbers, unicode, nested lists and
dicts) put into config values and into the optimizer's, lr schedulers' and RNG states, state_dict
tensors of the wrong shape or dtype or full of NaN, stored ``arch`` strings that name code
(``fuzzmark:build``, whose import writes a marker file, ``os:system``, ``sys:exit`` ...); or the file
is replaced by random bytes, a truncated copy, or a valid pickle of something else.

The commands run in-process (``tests.helpers.invoke``), one per property, each on its own examples;
``COMPRESS_FUZZ_EXAMPLES`` (tests/fuzz/limits.py) raises every count alike.
"""

from __future__ import annotations

import copy
import importlib
import io
import math
import os
import sys
import traceback
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.limits import EXAMPLES, FUZZ
from tests.fuzz.values import EDGE_FLOATS, EDGE_INTS, NASTY_STRINGS, VALUES
from tests.helpers import invoke

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent.parent
MARKER_MODULE = "fuzzmark"


def _examples(default: int) -> int:
    """A few dozen examples per command in CI (each runs a real command); the env var raises them all."""
    return EXAMPLES if "COMPRESS_FUZZ_EXAMPLES" in os.environ else default


# ----------------------------------------------------------------------------- the sandbox and the seed


class Sandbox(dict):
    """The fixture's folders and seed; shown short in hypothesis' report (the seed is megabytes)."""

    def __repr__(self) -> str:
        return f"Sandbox({self['root']})"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A working directory holding ``fuzzmark.py`` (importing it writes ``cwd/fuzzmark-imported``),
    first on sys.path; the seed checkpoint, trained there; the examples' files beside it."""
    root = tmp_path_factory.mktemp("ckfuzz")
    cwd, cases, out = root / "cwd", root / "cases", root / "out"
    for d in (cwd, cases, out):
        d.mkdir()
    (cwd / f"{MARKER_MODULE}.py").write_text(
        "import pathlib\n"
        "pathlib.Path(__file__).with_name('fuzzmark-imported').write_text('imported')\n"
        "def build(**kwargs):\n"
        "    raise SystemExit('fuzzmark.build ran')\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.syspath_prepend(str(cwd))
        importlib.invalidate_caches()
        seed = invoke("train", "--schedule", ROOT / "schedules/lenet5-baseline.yaml", "--epochs", "1",
                      "--limit-batches", "1", "--out-dir", root / "seed", "--name", "r", "--no-plots",
                      "--table", "none")  # fmt: skip
        assert seed.exit_code == 0, seed.output
        state = torch.load(root / "seed" / "r" / "checkpoint.pt", weights_only=True)
        yield Sandbox(root=root, cwd=cwd, cases=cases, out=out, state=state,
                      bytes=(root / "seed" / "r" / "checkpoint.pt").read_bytes())  # fmt: skip
    sys.modules.pop(MARKER_MODULE, None)


# ----------------------------------------------------------------------------- what a checkpoint may hold

ARCHES = [
    f"{MARKER_MODULE}:build",
    f"{MARKER_MODULE}.sub:build",
    f"{MARKER_MODULE}:",
    f" {MARKER_MODULE}:build",
    f"{MARKER_MODULE}:build.__call__",
    "os:system",
    "sys:exit",
    "builtins:exec",
    "subprocess:run",
    "importlib:import_module",
    "torch.nn:Linear",
    "compress.models:build_model",
    ":",
    "lenet5",
    "mlp",
    "resnet20_cifar",
    "resnet18",
    "",
]
ARCH = st.one_of(
    st.sampled_from(ARCHES),
    st.builds(
        lambda a, b: f"{a}:{b}",
        st.sampled_from(["fuzzmark", "os", "a.b", "", "..x", "\u202e"]),
        st.sampled_from(["build", "", "x.y", "system"]),
    ),
    st.sampled_from(NASTY_STRINGS),
)
TENSOR_DTYPES = [torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.uint8, torch.bool, torch.complex64]
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(EDGE_INTS),
    st.sampled_from(EDGE_FLOATS),
    st.sampled_from(NASTY_STRINGS),
    VALUES,
    st.builds(lambda n: torch.full((n,), math.nan), st.integers(0, 3)),
)
# settings whose valid values would make one example train for long (all of mnist5k per epoch, 128
# DataLoader processes): only values that are cheap or refused
SLOW_SETTINGS = {
    "limit_batches": st.sampled_from([0, -1, 1, 2, 1.5, "1", math.nan, True, [1]]),
    "workers": st.sampled_from([0, 1, -1, 129, 10**30, "2", 1.5, True]),
    "compile": st.sampled_from([False, None, "yes", 1, [True]]),
}


def _tensor_like(draw, old: torch.Tensor) -> torch.Tensor:
    kind = draw(st.sampled_from(["shape", "dtype", "nan", "inf", "huge", "empty", "scalar", "transpose"]))
    if kind == "shape":
        return torch.zeros(tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=4))))
    if kind == "dtype":
        return torch.zeros(old.shape, dtype=draw(st.sampled_from(TENSOR_DTYPES)))
    if kind in ("nan", "inf", "huge"):
        return torch.full(old.shape, {"nan": math.nan, "inf": math.inf, "huge": 3e38}[kind], dtype=old.dtype)
    if kind == "empty":
        return torch.empty(0)
    if kind == "scalar":
        return torch.tensor(draw(st.sampled_from([0.0, math.nan, 1e30])))
    return old.t().contiguous() if old.dim() == 2 else old.flatten()


def _path_into(draw, value, depth: int = 0):
    """A random place inside nested dicts / lists: (container, key) or None at the top."""
    if depth >= 4 or not isinstance(value, (dict, list)) or not value or draw(st.booleans()):
        return None
    keys = list(value) if isinstance(value, dict) else list(range(len(value)))
    key = draw(st.sampled_from(keys))
    deeper = _path_into(draw, value[key], depth + 1)
    return deeper or (value, key)


class Case:
    """One example: file bytes or a checkpoint dict, shown as the mutations that made it (a dict of
    tensors would print megabytes)."""

    def __init__(self, kind: str, content: object, log: list[str]):
        self.kind, self.content, self.log = kind, content, log

    def __repr__(self) -> str:
        return f"Case({self.kind}: {'; '.join(self.log)})"[:3000]


def _short(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}:{value.dtype}"
    return repr(value)[:200]


@st.composite
def mutated_states(draw, base: dict, log: list[str]) -> dict:
    """The seed checkpoint after 1-4 mutations; ``log`` gets one line per mutation."""
    state = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        what = draw(st.sampled_from(["drop", "field", "config", "config-drop", "config-add", "tensor", "tensor-keys",
                                     "nested", "arch", "position"]))  # fmt: skip
        config = state.get("config")
        config = config if isinstance(config, dict) and config else None
        tensors = state.get("state_dict")
        tensors = tensors if isinstance(tensors, dict) and tensors else None
        if what == "drop" and state:
            key = draw(st.sampled_from(sorted(state, key=repr)))
            state.pop(key)
            log.append(f"del {key}")
        elif what == "field":
            key = draw(st.sampled_from(sorted(base, key=repr)))
            state[key] = draw(JUNK)
            log.append(f"{key} = {_short(state[key])}")
        elif what == "config" and config:
            key = draw(st.sampled_from(sorted(config, key=repr)))
            config[key] = draw(SLOW_SETTINGS.get(key, JUNK))
            log.append(f"config.{key} = {_short(config[key])}")
        elif what == "config-drop" and config and set(config) - {"limit_batches"}:
            keys = sorted(set(config) - {"limit_batches"}, key=repr)  # its default is every batch: slow
            key = draw(st.sampled_from(keys))
            config.pop(key)
            log.append(f"del config.{key}")
        elif what == "config-add" and config:
            key = draw(st.one_of(st.sampled_from(NASTY_STRINGS), st.integers(-2, 2)))
            config[key] = draw(JUNK)
            log.append(f"config[{key!r}] = {_short(config[key])}")
        elif what == "tensor" and tensors:
            name = draw(st.sampled_from(sorted(tensors, key=repr)))
            old = tensors[name]
            tensors[name] = _tensor_like(draw, old) if isinstance(old, torch.Tensor) else draw(JUNK)
            log.append(f"state_dict.{name} = {_short(tensors[name])}")
        elif what == "tensor-keys" and tensors:
            name = draw(st.sampled_from(sorted(tensors, key=repr)))
            how = draw(st.sampled_from(["drop", "rename", "int key", "extra"]))
            if how == "drop":
                tensors.pop(name)
            elif how == "rename":
                tensors[draw(st.sampled_from(NASTY_STRINGS))] = tensors.pop(name)
            elif how == "int key":
                tensors[draw(st.integers(-2, 2))] = tensors.pop(name)
            else:
                tensors[f"{name}.extra"] = torch.zeros(3)
            log.append(f"state_dict.{name}: {how}")
        elif what == "nested":
            field = draw(st.sampled_from(["optimizer", "scheduler", "rng", "epoch_totals", "thinned_spec", "thinner",
                                          "best_key"]))  # fmt: skip
            place = _path_into(draw, state.get(field))
            value = draw(JUNK)
            if place is None:
                state[field] = value
                log.append(f"{field} = {_short(value)}")
            else:
                container, key = place
                container[key] = value
                log.append(f"{field}...[{key!r}] = {_short(value)}")
        elif what == "arch":
            arch = draw(ARCH)
            where = draw(st.sampled_from(["arch", "config", "both"]))
            if where in ("arch", "both"):
                state["arch"] = arch
            if where in ("config", "both") and config:
                config["arch"] = arch
            log.append(f"arch ({where}) = {arch!r}")
        elif what == "position":
            key = draw(st.sampled_from(["epoch", "next_epoch", "next_step", "best_epoch", "top1", "best_top1"]))
            state[key] = draw(st.one_of(st.sampled_from(EDGE_INTS), st.sampled_from(EDGE_FLOATS), st.none()))
            log.append(f"{key} = {_short(state[key])}")
    return state


def _file_bytes(draw, sandbox) -> bytes:
    """A file that is not a checkpoint we wrote: random, cut short, flipped bytes, or another pickle."""
    real = sandbox["bytes"]
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "other pickle", "empty"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=2048))
    if kind == "truncated":
        return real[: draw(st.integers(0, len(real) - 1))]
    if kind == "flipped":
        data = bytearray(real)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        return bytes(data)
    if kind == "other pickle":
        buffer = io.BytesIO()
        torch.save(draw(st.one_of(VALUES, st.just(torch.randn(3)), st.just({"format": "compress-checkpoint"}))), buffer)
        return buffer.getvalue()
    return b""


@st.composite
def checkpoint_cases(draw, sandbox) -> Case:
    if draw(st.integers(0, 9)) == 0:
        data = _file_bytes(draw, sandbox)
        return Case("bytes", data, [f"{len(data)} bytes: {data[:40]!r}"])
    log: list[str] = []
    return Case("state", draw(mutated_states(sandbox["state"], log)), log)


# ----------------------------------------------------------------------------- the property


def _named_modules(value) -> set[str]:
    """Top-level modules that ``package.module:function`` strings anywhere in ``value`` name."""
    found = set()
    if isinstance(value, str) and ":" in value:
        found.add(value.partition(":")[0].strip().split(".")[0])
    elif isinstance(value, dict):
        for k, v in value.items():
            found |= _named_modules(k) | _named_modules(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            found |= _named_modules(v)
    return {m for m in found if m.isidentifier()}


def _user_model(state) -> bool:
    """Whether the file names a model of the user's own where compress reads the model from."""
    if not isinstance(state, dict):
        return False
    config = state.get("config")
    stored = [state.get("arch"), config.get("arch") if isinstance(config, dict) else None]
    return any(isinstance(a, str) and ":" in a for a in stored)


RESUME_FLAGS = ("--epochs", "2", "--name", "resumed", "--overwrite", "--no-plots", "--table", "none")


def _command(command: str, path: Path, sandbox) -> tuple:
    return {
        "eval": ("eval", path),
        "report": ("report", path),
        "thin": ("thin", path, "-o", sandbox["out"] / "thin.pt", "--overwrite", "--batch", "2"),
        "resume": ("train", "--resume", path, "--out-dir", sandbox["out"], *RESUME_FLAGS),
    }[command]


def _note(text: str, event: str | None = None) -> None:
    """``hypothesis.note`` (and ``event``, for ``--hypothesis-show-statistics``) inside a property;
    nothing in the single-example tests."""
    from hypothesis import event as count
    from hypothesis import note
    from hypothesis.control import _current_build_context

    if _current_build_context.value is not None:
        note(text)
        if event:
            count(event)


def check_checkpoint(sandbox, command: str, case: Case) -> None:
    kind, content = case.kind, case.content
    path = sandbox["cases"] / "case.pt"
    if kind == "bytes":
        path.write_bytes(content)
    else:
        torch.save(content, path)
    named = _named_modules(content) - {m for m in sys.modules}
    cwd_before = set(sandbox["cwd"].iterdir())
    root_before = set(sandbox["root"].iterdir())
    crash = None
    try:
        result = invoke(*_command(command, path, sandbox))
    except Exception as exc:  # a traceback a user would see: shown short, with the frame that raised it
        crash = exc
    finally:
        imported = sorted(m for m in named if m in sys.modules)
        sys.modules.pop(MARKER_MODULE, None)
    assert not (sandbox["cwd"] / "fuzzmark-imported").exists(), "a module the checkpoint named was imported"
    assert not imported, f"imported modules the checkpoint named: {imported}"
    if crash is not None:
        where = traceback.extract_tb(crash.__traceback__)
        ours = [f for f in where if "/compress/" in f.filename] or where
        raise AssertionError(f"compress {command} {case!r}: traceback {type(crash).__name__}: {str(crash)[:300]} "
                             f"at {ours[-1].filename}:{ours[-1].lineno} ({ours[-1].name})") from None  # fmt: skip
    _note(f"{case!r}\nexit {result.exit_code}: {result.output[-2000:]}", f"{command}: exit {result.exit_code}")
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 2), f"exit code {result.exit_code}"
    if kind == "state" and _user_model(content):
        assert result.exit_code == 2, "a checkpoint naming a model of the user's own was loaded"
    assert set(sandbox["cwd"].iterdir()) - cwd_before <= {sandbox["cwd"] / "__pycache__"}, "wrote into the cwd"
    assert set(sandbox["root"].iterdir()) == root_before, "wrote beside the sandbox's folders"


# one property per command: each draws its own checkpoints; the seed is valid, so most examples
# reach the code that uses the damaged field


@settings(FUZZ, max_examples=_examples(35))
@given(data=st.data())
def test_eval_fuzz(sandbox, data):
    check_checkpoint(sandbox, "eval", data.draw(checkpoint_cases(sandbox)))


@settings(FUZZ, max_examples=_examples(35))
@given(data=st.data())
def test_report_fuzz(sandbox, data):
    check_checkpoint(sandbox, "report", data.draw(checkpoint_cases(sandbox)))


@settings(FUZZ, max_examples=_examples(15))
@given(data=st.data())
def test_thin_fuzz(sandbox, data):
    check_checkpoint(sandbox, "thin", data.draw(checkpoint_cases(sandbox)))


@settings(FUZZ, max_examples=_examples(25))
@given(data=st.data())
def test_resume_fuzz(sandbox, data):
    check_checkpoint(sandbox, "resume", data.draw(checkpoint_cases(sandbox)))


def test_the_seed_checkpoint_passes_every_command(sandbox):
    """The mutations start from a checkpoint every command accepts."""
    for command in ("eval", "report", "thin", "resume"):
        path = sandbox["cases"] / "seed.pt"
        torch.save(sandbox["state"], path)
        result = invoke(*_command(command, path, sandbox))
        assert result.exit_code == 0, (command, result.output)


@pytest.mark.parametrize("arch", [a for a in ARCHES if ":" in a])
def test_every_stored_arch_that_names_code_is_refused(sandbox, arch):
    state = copy.deepcopy(sandbox["state"])
    state["arch"] = state["config"]["arch"] = arch
    for command in ("eval", "report", "thin", "resume"):
        check_checkpoint(sandbox, command, Case("state", state, [f"arch = {arch!r}"]))
