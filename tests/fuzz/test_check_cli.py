"""``compress check --schedule [--config]`` as a user runs it: the property, and a valid schedule passing."""

from __future__ import annotations

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from tests.fuzz.checks import _cli_shown, check_cli_reply
from tests.fuzz.harness import run_cli
from tests.fuzz.limits import FUZZ
from tests.fuzz.seeds import ROOT
from tests.fuzz.strategies import CONFIG_TEXTS, SCHEDULE_TEXTS, VALID_SCHEDULE_TEXTS

pytestmark = pytest.mark.slow


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


def test_valid_schedule_passes_check(worker):
    text = (ROOT / "schedules" / "lenet5-filters.yaml").read_text("utf-8")
    reply = run_cli(worker, text)
    check_cli_reply(reply, text)
    assert reply["exit_code"] == 0 and "OK: " in reply["output"], reply["output"]
