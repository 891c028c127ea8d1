"""What a reply from the worker must satisfy: a schedule (or config) or our error whose diagnostics name the
file and a line, in time, with nothing built from a YAML tag; ``compress check`` exiting 0 or 2 without a
traceback. A failure shows the input that caused it."""

from __future__ import annotations

from typing import Any

from hypothesis import event

from tests.fuzz.limits import CLI_LIMIT_S

# diagnostics about the file as a whole (size, syntax without a position, nesting) may lack a line
FILE_LEVEL_PREFIXES = ("invalid YAML", "file is ")


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


def _cli_shown(schedule: str, config: str | None) -> str:
    """What a failure of ``compress check`` shows. (Named with its underscore in test_cli_check_fuzz, whose
    source seeds hypothesis' derandomized examples: renaming it would change them.)"""
    return schedule if config is None else f"{schedule}\n--- config ---\n{config}"
