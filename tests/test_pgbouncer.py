"""Behind PgBouncer in transaction mode (README, `make test-pgbouncer`): each transaction of one
client connection runs on whichever server session is free, so neither a statement psycopg
prepared nor a setting made on an earlier one is there. With the README's advice (prepared
statements off, statement_timeout set on the database) the app keeps its promises."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from conftest import PGBOUNCER_URL, body, through_pgbouncer
from test_unavailable import DB_TIMEOUT, assert_unavailable

from taskd import migrate
from taskd.config import Settings

pytestmark = pytest.mark.skipif(
    not PGBOUNCER_URL, reason="needs PgBouncer in transaction mode (make test-pgbouncer)"
)
# More executions of the listing query than psycopg's default threshold (5) before it prepares.
REPEATS = 12


@pytest.fixture(scope="module")
def database_url(create_database: Any) -> str:
    """A migrated database of this module's own whose sessions start with statement_timeout set
    to the app's deadline, reached through PgBouncer."""
    url: str = create_database()
    migrate.apply(url)
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} SET statement_timeout = {int(DB_TIMEOUT * 1000)}")
    return through_pgbouncer(url)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """One client connection, so every request runs on the same psycopg connection."""
    return settings.replace(db_timeout=DB_TIMEOUT, pool_max=1, pool_min=1)


async def server_pid(pool: Any) -> int:
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT pg_backend_pid()")
        row = await cursor.fetchone()
    pid: int = row[0]
    return pid


async def test_a_repeated_query_still_answers_once_pgbouncer_serves_another_session(
    api, user_id, pool, database_url
):
    task = await api.create(user_id, "listed")
    for _ in range(REPEATS):
        response = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
        assert response.code == 200, response.body
    served_by = await server_pid(pool)

    # PgBouncer hands out its most recently used server session first: the holder gets the one
    # the app has been using, and keeps it in an open transaction.
    async with await psycopg.AsyncConnection.connect(database_url) as holder:
        cursor = await holder.execute("SELECT pg_backend_pid()")
        assert await cursor.fetchone() == (served_by,)

        response = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
        assert response.code == 200, response.body
        assert body(response) == [task]
        assert await server_pid(pool) != served_by


async def test_with_statement_timeout_on_the_database_a_query_past_the_deadline_is_503(
    api, user_id, database_url
):
    task = await api.create(user_id, "locked")
    path = f"/api/{user_id}/tasks/{task['id']}"
    async with await psycopg.AsyncConnection.connect(database_url) as blocker:
        await blocker.execute(
            "SELECT 1 FROM tasks WHERE user_id = %s AND id = %s FOR UPDATE", [user_id, task["id"]]
        )
        started = time.monotonic()
        response = await api.request("PUT", path, user=user_id, json={"title": "x"})
        elapsed = time.monotonic() - started
        await blocker.rollback()
    assert_unavailable(response)
    assert elapsed < DB_TIMEOUT + 5
    after = await api.request("GET", path, user=user_id)
    assert body(after) == task
