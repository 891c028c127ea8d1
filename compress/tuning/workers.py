"""``--jobs N``: N worker processes, each running ``engine.work`` (Optuna's ``study.optimize``, one
trial at a time) on the study's shared storage, and the parent printing what they finish.

Processes, not threads: a trial is a training run that holds the interpreter, and torch's own
threads are divided among the workers (cores // N each) so that they do not fight over the cores.
``spawn``, not ``fork``: the parent has already started torch's thread pools, which do not survive
a fork. A worker sends each finished trial (Optuna's ``FrozenTrial``) to the parent over a queue.
A stop of the parent (Ctrl-C reaches every process of the terminal's group; SIGTERM is passed on)
ends the workers too; their running trials are failed, and ``--resume`` replaces them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from queue import Empty
from typing import Any

from compress.errors import CompressError
from compress.tuning.engine import open_storage, open_study, work
from compress.tuning.setup import TuneSetup

JOIN_S = 30.0


def _worker(setup: TuneSetup, index: int, threads: int, queue: Any) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        study = open_study(setup, open_storage(setup.storage_url), worker=index)
        work(study, setup, lambda trial: queue.put(("trial", trial)))
        queue.put(("done", index))
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's and the parent's: one is enough
        queue.put(("done", index))
    except CompressError as exc:
        queue.put(("error", str(exc)))
    except Exception as exc:  # noqa: BLE001 - reported by the parent, which chooses the exit
        queue.put(("error", f"worker {index}: {type(exc).__name__}: {exc}"))


def run_workers(setup: TuneSetup, on_trial: Callable[[Any], None], study: Any) -> None:
    """Start ``setup.jobs`` workers, hand each finished trial to ``on_trial``, wait for them all.
    ``study``: the parent's handle on the same study, to see when the enqueued trials are taken."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // setup.jobs)
    procs = [context.Process(target=_worker, args=(setup, i + 1, threads, queue), daemon=True)
             for i in range(setup.jobs)]  # fmt: skip
    errors: list[str] = []
    previous = _pass_on_sigterm()
    stopped = True
    try:
        start_after_the_queue(procs, lambda: _waiting(study))
        _listen(queue, procs, on_trial, errors)
        stopped = False
    finally:
        _end(procs, interrupt=stopped)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if errors:
        raise CompressError(errors[0])


def start_after_the_queue(procs: list[Any], waiting: Callable[[], bool], poll_s: float = 0.1) -> None:
    """The first worker alone takes the enqueued trials (the schedule as written); the others start
    once none waits. SQLite cannot lock a row, so two processes asking at once can both pop the same
    enqueued trial (Optuna issue 4002) and train it into the same trial directory."""
    procs[0].start()
    while procs[0].is_alive() and waiting():
        time.sleep(poll_s)
    for p in procs[1:]:
        p.start()


def _waiting(study: Any) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _listen(queue: Any, procs: list[Any], on_trial: Callable[[Any], None], errors: list[str]) -> None:
    done = 0
    while done < len(procs):
        try:
            kind, payload = queue.get(timeout=1.0)
        except Empty:
            if not any(p.is_alive() for p in procs):
                return
            continue
        if kind == "trial":
            on_trial(payload)
        elif kind == "error":
            errors.append(payload)
            done += 1
        else:
            done += 1


def _end(procs: list[Any], *, interrupt: bool) -> None:
    """Wait for the workers; when the parent is stopping, first ask them to stop (SIGINT: the
    running trial is marked failed), and terminate those that do not."""
    for p in procs:
        if interrupt and p.is_alive():
            os.kill(p.pid, signal.SIGINT)
    for p in procs:
        if p.pid is not None:
            p.join(timeout=JOIN_S)
        if p.is_alive():
            p.terminate()
            p.join()


def _pass_on_sigterm() -> Any:
    """SIGTERM to the parent becomes KeyboardInterrupt, so that ``run_workers`` ends the workers
    instead of leaving them training on their own."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handle(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handle)
