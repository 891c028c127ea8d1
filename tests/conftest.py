from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_data import no_cifar_checksums  # noqa: F401  (a fixture every test file may use)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo() -> Path:
    return ROOT


@pytest.fixture
def cli():
    """Runs the real ``compress`` command in-process (``tests.helpers.invoke``); returns click's Result."""
    from tests.helpers import invoke

    return invoke


@pytest.fixture(scope="module")
def lenet5():
    from compress.models import build_model

    return build_model("lenet5", num_classes=10, in_channels=1, input_size=28)


@pytest.fixture(scope="module")
def mlp():
    from compress.models import build_model

    return build_model("mlp", num_classes=10, in_channels=1, input_size=28)
