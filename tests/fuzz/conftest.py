"""The ``worker`` fixture: one worker process for every test in this package, closed at its end."""

from __future__ import annotations

import pytest

from tests.fuzz.harness import Worker


@pytest.fixture(scope="package")
def worker():
    w = Worker()
    yield w
    sentinel = (w.dir / "fuzz-sentinel").exists()
    w.close()
    assert not sentinel, "a !!python/object/apply:os.system tag ran a shell command"
