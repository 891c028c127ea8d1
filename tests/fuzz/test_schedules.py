"""Schedules (ours and Distiller's) through ``parse_schedule`` and ``bind``: the properties, the seeds,
Python tags wherever a value can sit, and the largest files."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, note

from tests.fuzz.checks import check_cli_reply, check_reply
from tests.fuzz.harness import run_cli, run_schedule
from tests.fuzz.limits import FUZZ, LIMIT_S
from tests.fuzz.raw import TAGGED
from tests.fuzz.seeds import FILE, SCHEDULE_SEEDS
from tests.fuzz.strategies import SCHEDULE_TEXTS

pytestmark = pytest.mark.slow


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


@pytest.mark.parametrize("name", [name for name, _, _ in SCHEDULE_SEEDS])
def test_seeds_are_valid_schedules(worker, name):
    """The mutations start from valid files, and the dump step keeps them valid."""
    _, text, doc = next(s for s in SCHEDULE_SEEDS if s[0] == name)
    for variant in (text, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)):
        reply = run_schedule(worker, variant)
        check_reply(reply, variant, FILE, LIMIT_S)
        assert reply["outcome"] == "ok", reply


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
