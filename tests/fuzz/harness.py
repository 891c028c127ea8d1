"""The parent's side of the worker process: ``Worker`` starts it (once, and again after a hang or a
crash), sends it JSON requests, kills it (its own child, by handle) when an answer does not come in
time, and turns that into a "hang" or "crash" reply; ``run_schedule`` and ``run_cli`` are the requests
the tests send."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.fuzz.limits import CLI_KILL_S, KILL_S, STARTUP_S
from tests.fuzz.seeds import ROOT

# The child python puts the repository first on its path (as pytest does here) and runs the worker's loop.
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); import tests.fuzz.worker as w; w.worker_main(sys.argv[2])"


class WorkerDied(Exception):
    pass


class Worker:
    """The parent's handle on the worker: ``call`` answers within ``timeout`` or reports a hang."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="compress-fuzz-"))
        self.proc: subprocess.Popen | None = None
        self.buffer = b""
        self.starts = 0

    def _start(self) -> None:
        self.starts += 1
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        log = open(self.dir / "worker.log", "ab")  # noqa: SIM115  handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(ROOT), str(self.dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=self.dir,
            env=env,
        )
        log.close()
        self.buffer = b""
        ready = self._read(STARTUP_S)
        if not ready.get("ready"):
            raise WorkerDied(f"the fuzz worker did not start: {ready}")

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    code = self.proc.wait()
                    raise WorkerDied(f"the worker died (exit status {code}); its log: {self.log_tail()}")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def log_tail(self) -> str:
        try:
            return (self.dir / "worker.log").read_text("utf-8", "replace")[-3000:]
        except OSError:
            return ""

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            return self._read(timeout)
        except TimeoutError:
            self.stop()
            return {"outcome": "hang", "timeout": timeout, "constructed": []}
        except (WorkerDied, BrokenPipeError) as exc:
            self.stop()
            return {"outcome": "crash", "message": str(exc), "constructed": []}

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # our own child, by its handle
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
            self.proc = None

    def close(self) -> None:
        self.stop()  # nothing to flush: killing skips the seconds torch takes to shut down
        shutil.rmtree(self.dir, ignore_errors=True)


def run_schedule(worker: Worker, text: str, *, bind: bool = False) -> dict[str, Any]:
    return worker.call({"op": "schedule", "text": text, "bind": bind}, KILL_S)


def run_cli(worker: Worker, schedule: str, config: str | None = None) -> dict[str, Any]:
    return worker.call({"op": "cli", "schedule": schedule, "config": config}, CLI_KILL_S)
