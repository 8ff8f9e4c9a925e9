"""Schema migrations with yoyo's Python API, always under yoyo's lock, never on import."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yoyo import get_backend, read_migrations


def yoyo_url(database_url: str) -> str:
    """yoyo picks its psycopg 3 backend by the `postgresql+psycopg` scheme."""
    for scheme in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if database_url.startswith(scheme):
            return "postgresql+psycopg://" + database_url[len(scheme) :]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


# Installed inside the package (setup.py maps the top-level migrations/ there).
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _migrations() -> Any:
    migrations = read_migrations(str(MIGRATIONS_DIR))
    if not migrations:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return migrations


def pending(database_url: str) -> list[str]:
    """Ids of the migrations not yet applied."""
    backend = get_backend(yoyo_url(database_url))
    try:
        return [migration.id for migration in backend.to_apply(_migrations())]
    finally:
        backend.connection.close()


def apply(database_url: str) -> list[str]:
    """Apply pending migrations; returns the ids applied."""
    backend = get_backend(yoyo_url(database_url))
    try:
        with backend.lock():
            todo = backend.to_apply(_migrations())
            backend.apply_migrations(todo)
        return [migration.id for migration in todo]
    finally:
        backend.connection.close()


def summary(applied: Sequence[str], seconds: float) -> str:
    """One line for people in place of yoyo's line per step: what was applied, and how fast."""
    if not applied:
        return "schema up to date"
    which = " and ".join(applied) if len(applied) <= 2 else f"{applied[0]} to {applied[-1]}"
    count = "1 migration" if len(applied) == 1 else f"{len(applied)} migrations"
    return f"applied {count} ({which}) in {seconds:.1f} s"


def rollback(database_url: str) -> str | None:
    """Roll back the most recently applied migration; returns its id, None when none is."""
    backend = get_backend(yoyo_url(database_url))
    try:
        with backend.lock():
            applied = backend.to_rollback(_migrations())
            if not applied:
                return None
            last = applied[:1]
            backend.rollback_migrations(last)
        return str(last[0].id)
    finally:
        backend.connection.close()
