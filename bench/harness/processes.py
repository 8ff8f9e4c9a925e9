"""Processes under /proc: who belongs to a server, the CPU time each has used, and the most
memory each has held."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
# Writing 5 to /proc/PID/clear_refs resets the process's peak RSS (VmHWM) to its current RSS.
RESET_PEAK_RSS = "5"
CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    pgrp: int
    state: str
    name: str
    cpu_seconds: float


def _info(pid: int) -> ProcessInfo | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The name is in parentheses and may itself contain spaces or parentheses.
    name = text[text.index("(") + 1 : text.rindex(")")]
    # The fields after the name, from the 3rd (state); utime and stime are the 14th and 15th,
    # cutime and cstime (its children's, once reaped) the 16th and 17th. Children count: a server
    # that opens and closes database connections makes PostgreSQL fork backends that exit before
    # anyone samples them, and only the postmaster's cutime shows what they used.
    fields = text[text.rindex(")") + 2 :].split()
    state, ppid, pgrp = fields[0], int(fields[1]), int(fields[2])
    cpu_seconds = sum(int(value) for value in fields[11:15]) / CLOCK_TICKS_PER_SECOND
    return ProcessInfo(pid, ppid, pgrp, state, name, cpu_seconds)


def _all_processes() -> list[ProcessInfo]:
    infos = (_info(int(entry.name)) for entry in PROC.iterdir() if entry.name.isdigit())
    return [info for info in infos if info is not None and info.state != "Z"]


def tree(root: int) -> list[ProcessInfo]:
    """`root` and all its living descendants, root first; empty once `root` has exited."""
    processes = _all_processes()
    members = [info for info in processes if info.pid == root]
    if not members:
        return []
    pids = {root}
    grown = True
    while grown:
        children = [info for info in processes if info.ppid in pids and info.pid not in pids]
        members.extend(children)
        pids.update(info.pid for info in children)
        grown = bool(children)
    return members


def named(name: str) -> list[ProcessInfo]:
    return [info for info in _all_processes() if info.name == name]


def group_members(pgrp: int) -> list[int]:
    """The living processes of a process group."""
    return [info.pid for info in _all_processes() if info.pgrp == pgrp]


def reset_peak_rss(pid: int) -> bool:
    try:
        (PROC / str(pid) / "clear_refs").write_text(RESET_PEAK_RSS)
    except OSError:
        return False
    return True


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM: the most resident memory the process has had (since start or the last reset)."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None
