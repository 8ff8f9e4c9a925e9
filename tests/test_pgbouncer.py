"""Behind PgBouncer in transaction mode (README, `make test-pgbouncer`): each transaction of one
client connection runs on whichever server session is free, so neither a statement psycopg
prepared nor a setting made on an earlier one is there. With its default settings taskd turns
prepared statements off at PgBouncer's first refusal, and with statement_timeout set on the
database (the README's advice) it keeps its promises."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from conftest import PGBOUNCER_URL, SECRET, body, make_token, new_user_id, through_pgbouncer
from live import free_port, request
from test_daemon import log_entries
from test_unavailable import DB_TIMEOUT, assert_unavailable

from taskd import migrate
from taskd.config import Settings
from taskd.db import tasks as db
from taskd.db.pool import connection, make_pool, open_pool
from taskd.db.users import provision_user

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


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused a prepared" in r.getMessage()]


async def test_a_refusal_inside_the_idempotent_create_runs_its_transaction_again(
    api, user_id, caplog
):
    for n in range(5):  # the insert has run 5 times on the app's one connection
        await api.create(user_id, f"plain {n}")

    async def create_once(key: str) -> Any:
        headers = {"Idempotency-Key": key}
        return await api.request(
            "POST", f"/api/{user_id}/tasks", user=user_id, json={"title": key}, headers=headers
        )

    # The sixth insert is prepared inside the transaction, on one server session, and runs.
    first = await create_once("first")
    assert first.code == 201 and refusals(caplog) == []
    # In the next transaction PgBouncer's server session has no such statement: refused, and the
    # whole transaction, key claim included, runs again.
    second = await create_once("second")
    assert second.code == 201, second.body
    assert len(refusals(caplog)) == 1
    replayed = await create_once("second")
    assert (replayed.code, body(replayed)) == (201, body(second))
    listed = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
    titles = sorted(task["title"] for task in body(listed))
    assert titles == ["first", *(f"plain {n}" for n in range(5)), "second"]


# More than psycopg's default threshold: the sixth run prepares the write's statements, inside its
# transaction and so on one server session; the seventh, in another transaction, is refused.
WRITES = 7


async def tasks_made_elsewhere(settings: Settings, database_url: str, user: int) -> list[int]:
    """Tasks created through a pool of their own that never prepares, so that the app's
    connection has not run the insert."""
    pool = make_pool(settings.replace(prepare_threshold=None), database_url)
    await open_pool(pool, 10)
    try:
        async with connection(pool) as conn:
            await provision_user(conn, user_id=user)
            made = [
                await db.create_task(conn, user_id=user, title=f"t{n}", description="")
                for n in range(WRITES)
            ]
    finally:
        await pool.close()
    return [task.id for task in made]


@pytest.mark.parametrize("write", ["POST", "PUT", "DELETE"])
async def test_a_refused_write_is_answered_and_done_once(
    api, user_id, settings, database_url, caplog, write
):
    """POST and DELETE are pipelined transactions, run again whole; PUT is one statement."""
    ids = await tasks_made_elsewhere(settings, database_url, user_id)
    tasks = f"/api/{user_id}/tasks"
    for n, task_id in enumerate(ids):
        if write == "POST":
            response = await api.request("POST", tasks, user=user_id, json={"title": f"post{n}"})
        else:
            path, json = f"{tasks}/{task_id}", {"title": f"put{n}"} if write == "PUT" else None
            response = await api.request(write, path, user=user_id, json=json)
        assert response.code == {"POST": 201, "PUT": 200, "DELETE": 204}[write], response.body
    assert len(refusals(caplog)) == 1

    listed = body(await api.request("GET", tasks, user=user_id))
    titles = sorted(task["title"] for task in listed)
    written = [f"{write.lower()}{n}" for n in range(WRITES)]
    made = [f"t{n}" for n in range(WRITES)]
    assert titles == {"POST": sorted(made + written), "PUT": written, "DELETE": []}[write]


async def test_one_refusal_turns_preparing_off_on_every_connection_of_the_pool(
    settings, database_url, caplog
):
    pool = make_pool(settings.replace(pool_max=3, pool_min=3), database_url)
    await open_pool(pool, 10)
    try:
        async with connection(pool) as first, connection(pool) as second:
            for _ in range(5):  # psycopg's default threshold, on both connections
                for conn in (first, second):
                    await conn.execute("SELECT %s::int", [1])

            async def sixth_time(conn: Any) -> Any:
                cursor = await conn.execute("SELECT %s::int", [6])
                return await cursor.fetchone()

            # Both prepare the statement at once, and PgBouncer refuses both.
            assert await asyncio.gather(sixth_time(first), sixth_time(second)) == [(6,), (6,)]
            assert len(refusals(caplog)) == 1
            # The third connection, idle in the pool meanwhile, was told too.
            async with connection(pool) as third:
                assert third.prepare_threshold is None
        # So is each new connection of the pool.
        await pool.drain()
        async with connection(pool) as new:
            assert new not in (first, second, third)
            assert new.prepare_threshold is None
    finally:
        await pool.close()


CLIENTS = 8
ROUNDS = 6


def task_rounds(base_url: str) -> list[int]:
    """A user's requests, each statement of the data layer run more often than psycopg's default
    threshold (5) before it prepares: the statuses of the answers."""
    user = new_user_id()
    token = make_token(user)
    tasks = f"{base_url}/api/{user}/tasks"
    statuses = []
    for _ in range(ROUNDS):
        status, _, created = request("POST", tasks, token=token, json_body={"title": "t"})
        statuses.append(status)
        task = f"{tasks}/{json.loads(created)['id']}" if status == 201 else f"{tasks}/1"
        for method, url, json_body in [
            ("GET", tasks, None),
            ("GET", task, None),
            ("PUT", task, {"title": "renamed"}),
            ("PATCH", f"{task}/complete", None),
            ("GET", f"{tasks}/changes", None),
            ("DELETE", task, None),
        ]:
            statuses.append(request(method, url, token=token, json_body=json_body)[0])
        # The data layer's one explicit transaction.
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        once = request("POST", tasks, token=token, json_body={"title": "once"}, headers=headers)
        statuses.append(once[0])
    return statuses


def test_with_default_settings_taskd_turns_prepared_statements_off_with_one_warning(
    spawn, environ, database_url
):
    port = free_port()
    env = {
        **environ,
        "DATABASE_URL": database_url,
        "BETTER_AUTH_SECRET": SECRET,
        "API_PORT": str(port),
    }
    server = spawn("serve", env=env)
    base_url = server.base_url()

    with ThreadPoolExecutor(CLIENTS) as clients:
        statuses = [s for run in clients.map(task_rounds, [base_url] * CLIENTS) for s in run]

    assert set(statuses) <= {200, 201, 204}, sorted(set(statuses))
    assert len(statuses) == CLIENTS * ROUNDS * 8
    warnings = [entry for entry in log_entries(server) if entry["level"] == "warning"]
    ours = [entry["msg"] for entry in warnings if entry["logger"] == "taskd"]
    assert len(ours) == 1, warnings
    assert "refused a prepared statement" in ours[0]
    assert "TASKD_PREPARE_THRESHOLD=none" in ours[0]
    # psycopg's own note when the refusal ended a pipelined write early (taskd/db/prepared.py).
    others = [entry["msg"] for entry in warnings if entry["logger"] != "taskd"]
    assert all("pipeline aborted" in msg for msg in others), others
