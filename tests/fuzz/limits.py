"""The knobs: how many examples hypothesis runs and how (``COMPRESS_FUZZ_EXAMPLES``, ``COMPRESS_FUZZ_RANDOM``,
``COMPRESS_FUZZ_SHRINK``), and how long and how much memory one answer of the worker may take."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

LIMIT_S = 5.0  # one parse (+ bind) taking longer than this is a hang
CLI_LIMIT_S = 10.0  # one `compress check` taking longer than this is a hang
KILL_S = 15.0  # the worker is killed after this and the example fails as a hang
CLI_KILL_S = 25.0
STARTUP_S = 180.0  # importing torch and torchvision on a cold CI machine
MEMORY_HEADROOM = 3 * 2**30  # the worker's address space may grow this much beyond its warm size

# ----------------------------------------------------------------------------- hypothesis settings

EXAMPLES = int(os.environ.get("COMPRESS_FUZZ_EXAMPLES", "300"))
RANDOM = os.environ.get("COMPRESS_FUZZ_RANDOM", "") not in ("", "0")
SHRINK = os.environ.get("COMPRESS_FUZZ_SHRINK", "1" if "COMPRESS_FUZZ_EXAMPLES" in os.environ else "0") != "0"

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=not RANDOM,
    database=None,
    deadline=None,  # see the package docstring: the worker's kill timer is the deadline
    phases=[p for p in Phase if SHRINK or p is not Phase.shrink],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)
