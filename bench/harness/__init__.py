"""The benchmark harness behind bench/run.py: standard library only, so any Python 3.11 runs it."""

# Servers under test listen here, and nowhere else is loaded.
HOST = "127.0.0.1"


class BenchError(Exception):
    """The benchmark could not run; the message says what to fix."""
