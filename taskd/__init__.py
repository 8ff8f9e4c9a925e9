"""taskd: a per-user task-management REST service."""

__version__ = "0.1.0"
