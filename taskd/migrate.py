"""Schema migrations with yoyo's Python API, always under yoyo's lock, never on import.

A deployment's kind of user ids (TASKD_USER_IDS) is chosen by the migration USER_IDS_MIGRATION,
which reads it from the session setting `taskd.user_ids`, and recorded as the type of
`users.id`. Every later run is checked against that record before it changes anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from yoyo import get_backend, read_migrations

from taskd.config import ConfigError
from taskd.user_ids import INTEGER, TEXT


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


USER_IDS_MIGRATION = "0009.choose-user-ids"
# users.id's type, as format_type() names it, for each kind of user ids.
_COLUMN_TYPES = {"bigint": INTEGER, "text": TEXT}


def pending(database_url: str) -> list[str]:
    """Ids of the migrations not yet applied."""
    backend = get_backend(yoyo_url(database_url))
    try:
        return [migration.id for migration in backend.to_apply(_migrations())]
    finally:
        backend.connection.close()


def apply(database_url: str, user_ids: str = INTEGER) -> list[str]:
    """Apply pending migrations, for a deployment of `user_ids`; returns the ids applied.
    ConfigError, before any change, when the database's user ids are of the other kind."""
    # Without the setting migration 0009 keeps integer ids, so an integer deployment's URL stays
    # as it was given (PgBouncer, for one, refuses the `options` startup parameter).
    if user_ids == TEXT:
        database_url = _with_text_ids_setting(database_url)
    backend = get_backend(yoyo_url(database_url))
    try:
        with backend.lock():
            todo = backend.to_apply(_migrations())
            choosing = any(migration.id == USER_IDS_MIGRATION for migration in todo)
            _check_user_ids(backend.connection, user_ids, choosing=choosing)
            backend.apply_migrations(todo)
        return [migration.id for migration in todo]
    finally:
        backend.connection.close()


def _with_text_ids_setting(database_url: str) -> str:
    """The URL with the session setting taskd.user_ids=text in its `options`: yoyo runs each
    migration on a connection of its own, which it opens from the URL."""
    parts = urlsplit(database_url)
    query = parse_qsl(parts.query)
    options = " ".join([value for key, value in query if key == "options"])
    query = [(key, value) for key, value in query if key != "options"]
    query.append(("options", f"{options} -c taskd.user_ids={TEXT}".strip()))
    return parts._replace(query=urlencode(query, quote_via=quote)).geturl()


def check_user_ids(database_url: str, user_ids: str) -> None:
    """ConfigError unless the database, fully migrated, records user ids of the kind `user_ids`."""
    backend = get_backend(yoyo_url(database_url))
    try:
        _check_user_ids(backend.connection, user_ids, choosing=False)
    finally:
        backend.connection.close()


def _check_user_ids(connection: Any, wanted: str, *, choosing: bool) -> None:
    """A database records its kind once USER_IDS_MIGRATION has run (`choosing` says it is about
    to). Before that its ids are integers, and text ids may be chosen while it has no users."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = to_regclass('users') AND attname = 'id'"
        )
        row = cursor.fetchone()
        recorded = _COLUMN_TYPES.get(row[0]) if row else None
        if choosing and wanted == TEXT and recorded == INTEGER:
            cursor.execute("SELECT EXISTS (SELECT FROM users)")
            if cursor.fetchone()[0]:
                raise ConfigError(
                    "TASKD_USER_IDS: text user ids can only be chosen for a database without "
                    "users, and this one has users with integer ids"
                )
        elif not choosing and recorded != wanted:
            raise ConfigError(
                f"TASKD_USER_IDS: the database records {recorded or 'no'} user ids (chosen when "
                f"it was first migrated), not {wanted}"
            )


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
