"""Run configs through ``load_config_file`` and ``resolve_config``: the property."""

from __future__ import annotations

import pytest
from hypothesis import given, note

from tests.fuzz.checks import check_reply
from tests.fuzz.limits import FUZZ, KILL_S, LIMIT_S
from tests.fuzz.strategies import CONFIG_TEXTS

pytestmark = pytest.mark.slow


@FUZZ
@given(text=CONFIG_TEXTS)
def test_load_config_fuzz(worker, text):
    note(f"text = {text!r}"[:3000])
    reply = worker.call({"op": "config", "text": text}, KILL_S)
    check_reply(reply, text, reply.get("file", "<config>"), LIMIT_S)
