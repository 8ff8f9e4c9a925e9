"""A server under test: started in its own process group, awaited, measured, always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from harness import BenchError, processes

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
KILL_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.2
# Idle: the server's processes together used under 5% of a core over the last half second.
IDLE_WINDOW_S = 0.5
IDLE_CPU_SHARE = 0.05
IDLE_TIMEOUT_S = 60.0
LOG_TAIL_CHARS = 3000


@dataclass(frozen=True)
class Launch:
    """How to start a server, and the line it logs `ready_count` times once it serves."""

    command: list[str]
    env: dict[str, str]
    ready_line: str
    ready_count: int


@dataclass(frozen=True)
class MemoryPeak:
    pid: int
    name: str
    peak_mib: float


@dataclass(frozen=True)
class MemoryPeaks:
    """Peak RSS of the server's parent process and of each of its children (the workers)."""

    parent: MemoryPeak
    children: list[MemoryPeak] = field(default_factory=list)
    since_reset: bool = True

    @property
    def max_worker_mib(self) -> float:
        return max((child.peak_mib for child in self.children), default=self.parent.peak_mib)


class Server:
    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self._process = process
        self._log_path = log_path

    @property
    def pid(self) -> int:
        return self._process.pid

    def log_tail(self) -> str:
        return self._log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]

    def wait_ready(self, launch: Launch, answers: Callable[[], bool]) -> None:
        """Until the ready line has been logged ready_count times and the API answers."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BenchError(
                    f"the server exited with status {self._process.returncode}:\n{self.log_tail()}"
                )
            ready = self._log_path.read_text(errors="replace").count(launch.ready_line)
            if ready >= launch.ready_count and answers():
                return
            time.sleep(POLL_INTERVAL_S)
        raise BenchError(
            f"the server was not ready after {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}"
        )

    def wait_idle(self) -> None:
        """Until the server's processes stop using the CPU."""
        deadline = time.monotonic() + IDLE_TIMEOUT_S
        before = self._cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(IDLE_WINDOW_S)
            after = self._cpu_seconds()
            if after - before < IDLE_CPU_SHARE * IDLE_WINDOW_S:
                return
            before = after
        raise BenchError(f"the server was still busy {IDLE_TIMEOUT_S:.0f} s after the load stopped")

    def _cpu_seconds(self) -> float:
        return sum(info.cpu_seconds for info in processes.tree(self.pid))

    def reset_memory_peaks(self) -> bool:
        """Start a new peak-RSS window for every process of the server."""
        results = [processes.reset_peak_rss(info.pid) for info in processes.tree(self.pid)]
        return all(results)

    def memory_peaks(self, since_reset: bool) -> MemoryPeaks:
        def peak(info: processes.ProcessInfo) -> MemoryPeak:
            kib = processes.peak_rss_kib(info.pid) or 0
            return MemoryPeak(info.pid, info.name, round(kib / 1024, 1))

        members = processes.tree(self.pid)
        if not members:
            raise BenchError(f"the server is gone:\n{self.log_tail()}")
        parent, *children = [peak(info) for info in members]
        return MemoryPeaks(parent, children, since_reset)

    def stop(self) -> None:
        """SIGTERM to the whole process group; SIGKILL to whatever outlives the timeout."""
        for signum, timeout in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, KILL_TIMEOUT_S)):
            self._signal_group(signum)
            if self._group_gone_within(timeout):
                break
        self._process.wait()

    def _group_gone_within(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while processes.group_members(self.pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_INTERVAL_S)
        return True

    def _signal_group(self, signum: signal.Signals) -> None:
        # The server leads its own process group, so the group id is its pid.
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signum)


@contextmanager
def running(launch: Launch, log_path: Path) -> Iterator[Server]:
    """Start the server in a new session (its own process group); stop it on the way out."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (the target's own command, no shell)
            launch.command,
            env={**os.environ, **launch.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, log_path)
    try:
        yield server
    finally:
        server.stop()
