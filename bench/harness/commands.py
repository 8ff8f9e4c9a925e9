"""Running the programs the benchmark needs, never through a shell."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import BenchError

OUTPUT_TAIL_CHARS = 2000


def program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BenchError(f"{name} is not installed (or not on PATH)")
    return path


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a program to completion; BenchError with the end of its output if it fails."""
    # S603: the argument lists are built by the harness and no shell is involved.
    result = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)  # noqa: S603
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-OUTPUT_TAIL_CHARS:]
        raise BenchError(f"{Path(args[0]).name} exited with {result.returncode}:\n{output}")
    return result


def progress(message: str) -> None:
    """What the harness is doing, on stderr: stdout carries only the report."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def ensure_wrk() -> str:
    """The wrk binary, installed with apt-get (Debian's `wrk` package) when it is missing."""
    if shutil.which("wrk") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise BenchError(
                "wrk is not installed: install Debian's wrk package (apt-get install wrk)"
            )
        progress("installing wrk with apt-get")
        run(["apt-get", "update", "-q"])
        run(["apt-get", "install", "-y", "-q", "wrk"])
    return program("wrk")
