"""The seeds: the valid example files (``schedules/``, ``tests/schedules/``, ``configs/``) that the
mutations start from, read as compress reads them; and ``FILE``, the name every schedule is parsed under."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
SCHEDULE_FILES = sorted((ROOT / "schedules").glob("*.yaml")) + sorted((ROOT / "tests" / "schedules").glob("*.yaml"))
CONFIG_FILES = sorted((ROOT / "configs").glob("*.yaml"))
FILE = "fuzz.yaml"  # the name parse_schedule is given; every diagnostic must carry it


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
