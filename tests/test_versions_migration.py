"""Migration 0008, per-user versions (issue 10): from a database of the release before it, and
what it leaves behind."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import psycopg
from yoyo import get_backend, read_migrations

from taskd import migrate
from taskd.db.queries import SQL_DIR

PREVIOUS_RELEASE_MIGRATIONS = Path(__file__).with_name("migrations_before_0008")
# What ties data to one server's transaction counter.
TRANSACTION_ID_FUNCTIONS = re.compile(
    r"pg_current_xact_id|pg_current_snapshot|pg_snapshot|pg_visible_in_snapshot|xid8|txid_",
    re.IGNORECASE,
)
THE_MIGRATION_THAT_REMOVES_THEM = "0008.per-user-versions"


def test_nothing_shipped_depends_on_transaction_ids_but_the_migration_that_removes_them():
    shipped = sorted(SQL_DIR.glob("*.sql")) + sorted(migrate.MIGRATIONS_DIR.glob("*.sql"))
    assert len(shipped) > 10
    offending = [
        path.name
        for path in shipped
        if TRANSACTION_ID_FUNCTIONS.search(path.read_text(encoding="utf-8"))
        and not path.name.startswith(THE_MIGRATION_THAT_REMOVES_THEM)
    ]
    assert offending == []


def apply_previous_release(url: str) -> None:
    backend = get_backend(migrate.yoyo_url(url))
    try:
        with backend.lock():
            migrations = read_migrations(str(PREVIOUS_RELEASE_MIGRATIONS))
            backend.apply_migrations(backend.to_apply(migrations))
    finally:
        backend.connection.close()


def test_a_database_of_the_previous_release_gets_versions_in_the_order_of_its_changes(
    create_database,
):
    url = create_database()
    apply_previous_release(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (id) VALUES (1), (2)")
        for title in ("first", "second", "third"):
            conn.execute("INSERT INTO tasks (user_id, title) VALUES (1, %s)", [title])
        conn.execute("INSERT INTO tasks (user_id, title) VALUES (2, 'theirs')")
        conn.execute(
            "UPDATE tasks SET title = 'first, edited', updated_at = now() + interval '1 second'"
            " WHERE title = 'first'"
        )
        conn.execute(
            "WITH gone AS (DELETE FROM tasks WHERE title = 'second' RETURNING user_id, id)"
            " INSERT INTO task_tombstones (user_id, id) SELECT user_id, id FROM gone"
        )
        before = dict(conn.execute("SELECT id, json FROM tasks").fetchall())

    # 0008, then 0009, which keeps the integer user ids.
    assert migrate.apply(url) == [THE_MIGRATION_THAT_REMOVES_THEM, migrate.USER_IDS_MIGRATION]

    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT id, version FROM users ORDER BY id").fetchall() == [
            (1, 3),
            (2, 1),
        ]
        rows = conn.execute(
            "SELECT id, title, version, json FROM tasks ORDER BY user_id, version"
        ).fetchall()
        # By the time of each change: "third" inserted, "second" deleted, "first" edited.
        assert [(title, version) for _, title, version, _ in rows] == [
            ("third", 1),
            ("first, edited", 3),
            ("theirs", 1),
        ]
        # The stored JSON is what the previous release served, to the byte.
        assert {task_id: json for task_id, _, _, json in rows} == before
        assert all(orjson.loads(json)["id"] == task_id for task_id, _, _, json in rows)
        tombstones = conn.execute("SELECT user_id, version FROM task_tombstones").fetchall()
        assert tombstones == [(1, 2)]
        assert not _columns_named(conn, "%xid%")
        assert conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'tasks'::regclass AND NOT tgisinternal"
        ).fetchone() == (0,)

    assert migrate.rollback(url) == migrate.USER_IDS_MIGRATION
    assert migrate.rollback(url) == THE_MIGRATION_THAT_REMOVES_THEM
    with psycopg.connect(url, autocommit=True) as conn:
        # The previous release's stamps are back, so it can run on the database again.
        assert _columns_named(conn, "%xid%") == [
            ("task_tombstones", "deleted_xid"),
            ("tasks", "changed_xid"),
        ]
        assert dict(conn.execute("SELECT id, json FROM tasks").fetchall()) == before


def _columns_named(conn: psycopg.Connection[Any], pattern: str) -> list[tuple[str, str]]:
    return [
        (table, column)
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND column_name LIKE %s"
            " ORDER BY table_name, column_name",
            [pattern],
        ).fetchall()
    ]
