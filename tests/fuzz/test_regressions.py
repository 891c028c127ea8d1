"""Regressions: the smallest input the fuzzer found for each distinct bug, through the parser, ``bind``
and ``compress check``."""

from __future__ import annotations

import sys

import pytest

from tests.fuzz.checks import _cli_shown, check_cli_reply, check_reply
from tests.fuzz.harness import run_cli, run_schedule
from tests.fuzz.limits import LIMIT_S
from tests.fuzz.raw import laughs
from tests.fuzz.seeds import FILE

pytestmark = pytest.mark.slow


# The smallest input found for each distinct bug, numbered as in the report that came with the fuzzer;
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
    "5 billion laughs as the version (repr in _check_version)": f"version: {laughs(9)}\n",
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
        f"version: 1\nrules: []\nlr_scheduler: {{class: ReduceLROnPlateau, patience: {laughs(9)}}}\n",
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
