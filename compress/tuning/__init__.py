"""``compress tune``: search a schedule's numbers (strengths, levels, epochs, thresholds) for the
most sparsity at the accuracy a user accepts, with Optuna (an optional extra) as the search engine.

Each module has one job, and none imports ``compress.cli``:

- ``document``: where a number lives in a schedule file, and the same file with other numbers;
- ``space``: ``--search PATH=LOW:HIGH[:log|:int]`` / ``PATH=A,B,C`` as a checked search dimension;
- ``measure``: what a finished run's ``best.pt`` scores (top1, zero filters, MACs and parameters
  thinning removes);
- ``trial``: one trial, a real ``compress train`` run in ``STUDY_DIR/trials/NNN`` that reports
  every epoch and may stop early;
- ``setup``: everything a trial needs, picklable for worker processes;
- ``engine``: Optuna itself: storage, sampler, the study, the objective, the loop of a worker;
- ``workers``: ``--jobs N`` worker processes on one shared storage;
- ``front``: the Pareto front, ``pareto.csv``, ``best/*.yaml``, the table;
- ``plot``: ``pareto.png``.
"""
