"""Everything a study and each of its trials need, in one frozen, picklable value: the command
builds it once, and ``--jobs`` worker processes receive it as it is."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.config import RunConfig
from compress.errors import CompressError
from compress.schedule.model import Schedule
from compress.tuning.document import ScheduleDocument
from compress.tuning.measure import OBJECTIVES
from compress.tuning.space import Dimension
from compress.tuning.trial import StopRule

OBJECTIVE_SPELLINGS = {f"top1,{name}": name for name in OBJECTIVES}


def parse_objective(text: str) -> str:
    """``top1,filters`` -> ``filters``; top1 is always the first objective."""
    key = ",".join(part.strip() for part in text.split(","))
    if key in OBJECTIVES:
        key = f"top1,{key}"
    if key not in OBJECTIVE_SPELLINGS:
        raise CompressError(f"--objective: unknown {text!r}; valid: {', '.join(OBJECTIVE_SPELLINGS)}")
    return OBJECTIVE_SPELLINGS[key]


def masked(url: str) -> str:
    """A storage URL fit to print and to write into files: the password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


@dataclass(frozen=True)
class TuneSetup:
    schedule_path: str  # the schedule the user named
    schedule_text: str
    dims: tuple[Dimension, ...]
    config: RunConfig  # the trials' settings; out_dir and name are set per trial
    objective: str  # filters | macs | params
    min_top1: float | None
    stop_margin: float
    trials: int  # finished trials the study should hold
    jobs: int
    study_dir: Path
    study_name: str
    storage: str | None = None  # --storage URL; None: SQLite in STUDY_DIR/study.db
    arch: str | None = None  # --arch as given (a user's own model must be named to load checkpoints)

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.study_dir / 'study.db').resolve()}"

    @property
    def trials_dir(self) -> Path:
        return self.study_dir / "trials"

    def trial_dir(self, number: int) -> Path:
        return self.trials_dir / f"{number:03d}"

    def document(self) -> ScheduleDocument:
        return ScheduleDocument(self.schedule_text, self.schedule_path)

    def stop_rule(self, schedule: Schedule) -> StopRule:
        return StopRule.for_schedule(schedule, self.min_top1, self.stop_margin, self.config.epochs)

    def describe(self) -> dict[str, Any]:
        """What ``STUDY_DIR/tune.json`` records (and a resumed study is compared with)."""
        return {"schedule": self.schedule_path, "search": [d.describe() for d in self.dims],
                "objective": f"top1,{self.objective}", "min_top1": self.min_top1, "stop_margin": self.stop_margin,
                "epochs": self.config.epochs, "seed": self.config.seed, "study_name": self.study_name,
                "storage": masked(self.storage_url)}  # fmt: skip
