"""What the numbers were measured on, for the JSON results."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from harness import BenchError
from harness.commands import program, run
from harness.postgres import server_version
from harness.targets import REPO_DIR


def _first_value(path: str, key: str) -> str | None:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":" if ":" in line else "=")
        if name.strip() == key:
            return value.strip().strip('"')
    return None


def _git_revision() -> str | None:
    try:
        command = [program("git"), "-C", str(REPO_DIR), "describe", "--always", "--dirty"]
        return run(command).stdout.strip()
    except BenchError:
        return None


def describe(admin_url: str) -> dict[str, Any]:
    return {
        "cpu": _first_value("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory": _first_value("/proc/meminfo", "MemTotal"),
        "os": _first_value("/etc/os-release", "PRETTY_NAME"),
        "kernel": platform.release(),
        "postgresql": server_version(admin_url),
        "git_revision": _git_revision(),
    }
