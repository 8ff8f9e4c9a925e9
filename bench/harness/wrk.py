"""Driving one scenario with wrk and reading back the line its Lua script prints."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from harness import BenchError
from harness.commands import run

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "wrk"
RESULT_PREFIX = "BENCH "
# Slow responses are measured rather than dropped: wrk's default of 2 s would count the
# reference's slowest lists as timeouts and leave them out of its percentiles.
REQUEST_TIMEOUT_S = 10
# wrk stops by itself after the duration; this only guards against a wedged wrk.
GRACE_S = 60


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    bytes: int
    latency_ms: dict[str, float]
    socket_errors: dict[str, int]
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def busy_connections(self) -> float:
        """Requests in flight on average (Little's law). Under wrk's closed loop this is about
        the number of connections; much less means requests stalled past the end of the run,
        which wrk counts nowhere."""
        return self.requests_per_second * self.latency_ms["mean"] / 1000

    @property
    def non_2xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300)

    @property
    def socket_error_count(self) -> int:
        return sum(self.socket_errors.values())


@dataclass(frozen=True)
class Load:
    """wrk's settings for every scenario against one server."""

    wrk: str
    url: str
    connections: int
    threads: int
    env: dict[str, str]

    def run(self, scenario: str, seconds: int, env: dict[str, str] | None = None) -> WrkResult:
        command = [
            self.wrk,
            f"--threads={self.threads}",
            f"--connections={self.connections}",
            f"--duration={seconds}s",
            f"--timeout={REQUEST_TIMEOUT_S}s",
            f"--script={SCRIPTS_DIR / f'{scenario}.lua'}",
            self.url,
        ]
        completed = run(
            command,
            cwd=SCRIPTS_DIR,
            env={**os.environ, **self.env, **(env or {}), "BENCH_THREADS": str(self.threads)},
            timeout=seconds + GRACE_S,
        )
        return parse_result(completed.stdout)


def parse_result(output: str) -> WrkResult:
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise BenchError(f"wrk printed no result line:\n{output}")
    fields = {
        key: int(float(value))
        for key, value in (item.split("=", 1) for item in lines[-1][len(RESULT_PREFIX) :].split())
    }
    statuses = {
        int(key.removeprefix("status_")): count
        for key, count in fields.items()
        if key.startswith("status_")
    }
    return WrkResult(
        requests=fields["requests"],
        seconds=fields["duration_us"] / 1e6,
        bytes=fields["bytes"],
        latency_ms={
            name: fields[f"{name}_us"] / 1000 for name in ("p50", "p95", "p99", "max", "mean")
        },
        socket_errors={
            name: fields[key]
            for name, key in (
                ("connect", "connect_errors"),
                ("read", "read_errors"),
                ("write", "write_errors"),
                ("timeout", "timeouts"),
            )
        },
        statuses=dict(sorted(statuses.items())),
    )
