"""What runs inside the worker process: the tripwire module (``fuzz_sentinel``), the state built once
(the lenet5 model ``bind`` gets), one handler per request (parse a schedule, load a config, run
``compress check``), the memory cap, and the loop that answers requests.

The parent (``tests.fuzz.harness``) starts a child python that imports this module by name and calls
``worker_main``. Requests and replies are JSON lines on the child's stdin and a private copy of its
stdout (fd 1 itself is pointed at stderr, so that nothing the code under test prints can garble the
replies). This module must not import pytest or the parent's side.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from tests.fuzz.limits import MEMORY_HEADROOM
from tests.fuzz.seeds import FILE, PRISTINE_CONFIGS, SCHEDULE_SEEDS

_TRIPPED: list[str] = []  # in the worker: every touch of the tripwire module
HARNESS = f"{os.sep}tests{os.sep}fuzz{os.sep}"  # frames in this package are not the code under test


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
    ours = [f for f in frames if f"{os.sep}compress{os.sep}" in f.filename and HARNESS not in f.filename]
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
