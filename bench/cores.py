"""What the machine's other processes leave to a server and the process measuring it: the cores
those two ran on, and those that stayed idle, between two readings. On a machine to themselves,
all of this process's cores; fewer while other processes (another test, a build) take some. A
throughput per core left compares phases that other processes disturbed differently; the cores
not left say whether a phase met a busy machine at all.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuReading:
    """CPU counters at one moment: the seconds the server's and this process's threads have run,
    and the seconds this process's cores have been idle."""

    at: float
    ours: float
    idle: float


def run_seconds(pid: int) -> float:
    """Seconds every thread of a process has run so far, from the scheduler's own count in
    nanoseconds (/proc/<pid>/task/*/schedstat): CPU times sampled at each clock tick are off by
    several ticks in a phase that gets a tenth of a core."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total / 1e9


def cpu_reading(pid: int) -> CpuReading:
    cpus = {f"cpu{n}" for n in os.sched_getaffinity(0)}
    idle = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name in cpus:  # user nice system idle iowait ...
            idle += int(ticks[3]) + int(ticks[4])
    ours = run_seconds(pid) + run_seconds(os.getpid())
    return CpuReading(time.monotonic(), ours, idle / os.sysconf("SC_CLK_TCK"))


def cores_left(before: CpuReading, after: CpuReading) -> float:
    """Cores the machine's other processes left to the server and this process between two
    readings: what these used, and what stayed idle. All of this process's cores on a machine to
    themselves, fewer while other processes take some: throughput per core left compares phases
    that other processes disturbed differently."""
    wall = max(after.at - before.at, 1e-9)
    return max(after.ours - before.ours + after.idle - before.idle, 0.01 * wall) / wall
