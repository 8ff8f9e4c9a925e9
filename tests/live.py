"""Driving the installed `taskd` command in subprocesses, as an operator or systemd would.

Every wait has a timeout; the `spawn` fixture (conftest.py) stops what a test started.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

TASKD = Path(sys.executable).with_name("taskd")
COMMAND_TIMEOUT = 60
START_TIMEOUT = 60
STOP_TIMEOUT = 30
LISTENING = re.compile(r"listening on (http://[^\s\"]+)")
# The variables taskd reads besides TASKD_*; tests start from an environment without any of them.
CONFIG_VARIABLES = (
    "DATABASE_URL",
    "BETTER_AUTH_SECRET",
    "API_HOST",
    "API_PORT",
    "CORS_ORIGINS",
    "NOTIFY_SOCKET",
    "PROMETHEUS_MULTIPROC_DIR",
)


def taskd(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TASKD), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def request(
    method: str,
    url: str,
    *,
    token: str | None = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request on a new connection; returns (status, headers, body) for every status,
    4xx/5xx included."""
    parts = urlsplit(url)
    headers = dict(headers or {})
    body = None
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def stop(popen: subprocess.Popen[Any]) -> None:
    """SIGTERM a process still running, SIGKILL if it outlives STOP_TIMEOUT, and reap it."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=STOP_TIMEOUT)


class Process:
    """A running `taskd serve`, its stdout and stderr collected line by line by two threads."""

    def __init__(self, args: Sequence[str], env: dict[str, str], cwd: Path) -> None:
        self.popen = subprocess.Popen(
            [str(TASKD), *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(
                target=self._drain, args=(self.popen.stdout, self.stdout), daemon=True
            ),
            threading.Thread(
                target=self._drain, args=(self.popen.stderr, self.stderr), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    def _drain(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def output(self) -> str:
        with self._changed:
            return "stdout:\n" + "\n".join(self.stdout) + "\nstderr:\n" + "\n".join(self.stderr)

    def wait_for(self, lines: list[str], pattern: re.Pattern[str]) -> re.Match[str]:
        """The first line of `lines` matching `pattern`; fails if the process exits first."""
        deadline = time.monotonic() + START_TIMEOUT
        with self._changed:
            while True:
                for line in lines:
                    match = pattern.search(line)
                    if match:
                        return match
                exited = self.popen.poll() is not None
                readers_done = not any(reader.is_alive() for reader in self._readers)
                if exited and readers_done:
                    pytest.fail(f"taskd exited ({self.popen.returncode}) first:\n{self.output()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"no line matching {pattern.pattern!r}:\n{self.output()}")
                self._changed.wait(min(remaining, 0.5))

    def base_url(self) -> str:
        return self.wait_for(self.stderr, LISTENING).group(1)

    def terminate(self) -> int:
        """SIGTERM, then the exit status (the readers have collected all output by then)."""
        self.popen.send_signal(signal.SIGTERM)
        returncode = self.popen.wait(timeout=STOP_TIMEOUT)
        for reader in self._readers:
            reader.join(timeout=STOP_TIMEOUT)
        return returncode

    def close(self) -> None:
        stop(self.popen)
        for reader in self._readers:
            reader.join(timeout=STOP_TIMEOUT)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()
