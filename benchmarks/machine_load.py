"""How much of the machine other processes used while a timing benchmark ran (Linux /proc/stat).

On a 2-core box any other busy process makes torch's threads wait on each other: steps and epochs
get several times slower, which is why the timing scripts judge paired (interleaved) ratios and
end with this line, so that a reader knows whether the absolute times can be trusted."""

from __future__ import annotations

import os
import time


class BusyMeter:
    """Started at construction; ``report()`` gives the share of all cores that processes other
    than this one used since then."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [float(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
        return busy, sum(os.times()[:4]), time.monotonic()

    def report(self) -> str:
        end = self._sample()
        if self.start is None or end is None:
            return "other processes' CPU use: unknown (no /proc/stat)"
        others = max(0.0, (end[0] - self.start[0]) - (end[1] - self.start[1]))
        share = others / max(end[2] - self.start[2], 1e-9) / (os.cpu_count() or 1)
        note = "  -- busy machine: absolute times are inflated; the paired ratios less so" if share > 0.05 else ""
        load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
        return f"other processes used {100 * share:.0f}% of the {os.cpu_count()} cores (load average now {load}){note}"
