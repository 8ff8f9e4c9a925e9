"""How much of the machine's CPU went to work other than the benchmark's during a scenario.

The benchmark's own work is the server's processes, PostgreSQL (all but the sessions of other
databases), wrk and the driver itself; whatever else the machine did in the meantime, such as
another test suite, shows up as the difference from the machine's total.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from harness import processes
from harness.postgres import other_database_backends

POSTGRES = "postgres"
# A fixed amount of pure CPU work, timed before each scenario. On a virtual machine the cores
# can run slower for a while with nothing on this machine using more CPU (seen here: ten
# million additions took 0.9 s, then 1.9 s eight minutes later, the machine idle), which the
# share of other work cannot see.
SPEED_PROBE_LOOPS = 1_000_000


def _machine_seconds() -> float:
    """User and system CPU time of the whole machine since boot, over all cores."""
    user, nice, system = (int(value) for value in Path("/proc/stat").read_text().split()[1:4])
    return (user + nice + system) / processes.CLOCK_TICKS_PER_SECOND


def _own_and_children_seconds() -> float:
    """This driver's CPU time and its waited-for children's (wrk, psql)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _watched(server_pid: int) -> dict[int, float]:
    """CPU seconds of the server's processes and of PostgreSQL's, by pid."""
    members = processes.tree(server_pid) + processes.named(POSTGRES)
    return {info.pid: info.cpu_seconds for info in members}


@dataclass(frozen=True)
class Snapshot:
    wall: float
    machine: float
    own: float
    watched: dict[int, float]


def snapshot(server_pid: int) -> Snapshot:
    return Snapshot(
        time.monotonic(), _machine_seconds(), _own_and_children_seconds(), _watched(server_pid)
    )


def foreign_share(start: Snapshot, server_pid: int, database_url: str) -> float:
    """The share of the machine's CPU capacity since `start` used by work not the benchmark's."""
    end = snapshot(server_pid)
    foreign_backends = set(other_database_backends(database_url))
    watched = sum(
        seconds - start.watched.get(pid, 0.0)
        for pid, seconds in end.watched.items()
        if pid not in foreign_backends
    )
    ours = watched + end.own - start.own
    capacity = (end.wall - start.wall) * (os.cpu_count() or 1)
    return max(0.0, end.machine - start.machine - ours) / capacity


def speed_probe_ms() -> float:
    """How long SPEED_PROBE_LOOPS additions take this process, in ms: lower is faster."""
    start = time.perf_counter()
    total = 0
    for n in range(SPEED_PROBE_LOOPS):
        total += n
    return (time.perf_counter() - start) * 1000
