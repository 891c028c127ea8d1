"""Fuzzing the readers of user YAML: schedules (ours and Distiller's), run configs, ``compress check``.

The promise under test (DESIGN.md, "Schedules"): whatever a user's file contains, reading it ends in
either a valid ``Schedule`` or our ``CompressError`` whose every diagnostic names the file and (but
for problems with the file as a whole) the line; never a traceback, a hang, or a Python object built
from a YAML tag.

Inputs are built three ways:

* structured mutations of the valid example files (``schedules/*.yaml``, ``tests/schedules/*.yaml``,
  ``configs/*.yaml``): keys deleted, renamed (unicode, RTL, emoji, control characters) or added,
  values replaced by wrong types, huge or non-finite numbers, negative epochs, values from other
  fields, 100-level nesting, shared values (anchors and aliases), then dumped back with
  ``yaml.safe_dump``;
* raw text mutations: ``!!python/...`` and other tags, anchors and aliases (a "billion laughs"
  included), huge number literals, bad escapes, deep nesting, truncation, duplicated lines, random
  character corruption (always valid UTF-8), line-ending and directive changes;
* documents built from the right names with random values: lr schedulers with the argument names
  torch takes, configs with every setting (mutations seldom guess those names);
* one very large file, and the largest file the reader accepts (single examples, not per example).

Every example runs in a worker process (started once, restarted after a hang or a crash; it builds
the lenet5 model that ``bind`` gets once, at its start), because a hang inside C code (``str`` of a
billion-laughs structure) can be neither interrupted in-process nor allowed to eat the CI machine's
memory. The parent kills the worker (its own child, by handle) after ``KILL_S`` seconds and reports
a hang; an answer slower than ``LIMIT_S`` fails too. On Linux the worker's address space is capped a
few GiB above its warm size, so a memory blowup becomes a ``MemoryError`` (a failure) rather than
the OOM killer's business. A YAML tag that builds a Python object would touch a tripwire module
(``fuzz_sentinel``), create a sentinel file or print "hacked", and each reply says whether it did.

Running it:

    pytest tests/fuzz                       # CI: derandomized, 300 examples per property, no shrinking
    COMPRESS_FUZZ_EXAMPLES=5000 pytest tests/fuzz                         # thousands, with shrinking
    COMPRESS_FUZZ_EXAMPLES=5000 COMPRESS_FUZZ_RANDOM=1 pytest tests/fuzz  # and a new random seed each run
    COMPRESS_FUZZ_SHRINK=0|1                                              # force shrinking off / on

CI runs derandomized, so a failure there reproduces exactly with the same command; it skips
shrinking so that a failing property costs one example (a hang costs ``KILL_S`` plus a worker
restart each time a shrink step replays it). Hypothesis' own ``deadline`` is off: the worker's kill
timer is a stricter deadline (it also stops loops in C code), and a worker restart would trip it.

The package, one job a module:

    limits.py        how much fuzzing (COMPRESS_FUZZ_*) and how long one answer may take
    seeds.py         the valid example files the mutations start from
    values.py        the vocabulary of nasty values and the value strategies built from it
    structured.py    structured mutations of a parsed document, dumped back to YAML
    raw.py           raw text mutations of a YAML file
    strategies.py    documents built from the right names; the texts the properties draw
    worker.py        what runs inside the worker process
    harness.py       the parent's handle on the worker, and the requests it sends
    checks.py        what a reply must satisfy
    conftest.py      the ``worker`` fixture: one worker for the whole package
    test_*.py        the properties and single examples; test_regressions.py: bugs the fuzzer found
"""
