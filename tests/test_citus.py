"""On Citus (make test-citus): a user's shard moved to the other worker in the middle of a sync.

Citus's rebalancer moves a shard group with `citus_move_shard_placement`; the user's rows in
users, tasks, task_tombstones and idempotency_keys (co-located) go together. A client's feed
token and the app's cached list pages must mean the same after the move as before it.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import citus
import orjson
import psycopg
import pytest
from conftest import CITUS_URL, body, connect, new_user_id
from live import taskd
from test_changes import drain, poll

from taskd.db import tasks as db
from taskd.db.idempotency import create_task_once

pytestmark = pytest.mark.citus_only("runs on a Citus coordinator")
USER_TABLES = {
    "users": "id",
    "tasks": "user_id",
    "task_tombstones": "user_id",
    "idempotency_keys": "user_id",
}


def distribution(url: str) -> dict[str, tuple[str, int]]:
    """Each distributed table's distribution column and co-location group."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT logicalrelid::text, column_to_column_name(logicalrelid, partkey),"
            " colocationid FROM pg_dist_partition"
        ).fetchall()
    return {table: (column, group) for table, column, group in rows}


def test_migrate_distribute_distributes_every_user_table_by_user_then_changes_nothing(
    create_database: Any, environ: dict[str, str], workdir: Path
) -> None:
    url = create_database()
    env = {**environ, "DATABASE_URL": url}
    assert taskd("migrate", env=env, cwd=workdir).returncode == 0
    user = new_user_id()
    with psycopg.connect(url) as conn:  # a row written while the tables were local
        conn.execute("INSERT INTO users (id) VALUES (%s)", [user])

    first = taskd("migrate", "--distribute", env=env, cwd=workdir)
    assert first.returncode == 0, first.stderr
    version = first.stdout.rpartition("(Citus ")[2].rstrip(")\n")
    assert first.stdout == (
        "schema up to date\n"
        f"distributed idempotency_keys, task_tombstones, tasks, users (Citus {version})\n"
    )
    tables = distribution(url)
    assert {table: column for table, (column, _) in tables.items()} == USER_TABLES
    assert len({group for _, group in tables.values()}) == 1
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT id FROM users").fetchall() == [(user,)]
        # The coordinator's own copy of the row, invisible now, is gone too.
        assert conn.execute("SELECT pg_relation_size('users')").fetchone() == (0,)

    again = taskd("migrate", "--distribute", env=env, cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"schema up to date\nalready distributed (Citus {version})\n"
    assert distribution(url) == tables


async def test_migrate_distribute_after_migrating_without_citus_makes_the_writes_work(
    create_database: Any, environ: dict[str, str], workdir: Path
) -> None:
    url = create_database(with_citus=False)
    env = {**environ, "DATABASE_URL": url}
    assert taskd("migrate", env=env, cwd=workdir).returncode == 0
    assert CITUS_URL is not None
    citus.install_citus(CITUS_URL, url)

    result = taskd("migrate", "--distribute", env=env, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert set(distribution(url)) == set(USER_TABLES)
    user = new_user_id()
    async with await connect(url) as conn:
        created = await db.create_task(conn, user_id=user, title="on a worker", description="")
        found = await db.get_task(conn, user_id=user, task_id=created.id)
    assert found is not None and orjson.loads(found.json)["title"] == "on a worker"


async def placement(conn: Any, user: int) -> tuple[int, str, int]:
    """The user's shard of users (its shard group's) and the worker that holds it."""
    cursor = await conn.execute(
        "SELECT shardid, nodename, nodeport FROM citus_shards"
        " WHERE shardid = get_shard_id_for_distribution_column('users', %s)",
        [user],
    )
    row = await cursor.fetchone()
    assert row is not None
    return row


async def move_to_the_other_worker(conn: Any, user: int) -> tuple[str, int]:
    """Moves the user's shard group; returns the worker it moved to. block_writes: writes to
    the group wait while it is copied (a logical-replication move first waits for every
    transaction open on the worker, in any database, which a busy test run rarely lets end)."""
    shard, host, port = await placement(conn, user)
    cursor = await conn.execute(
        "SELECT nodename, nodeport FROM pg_dist_node"
        " WHERE groupid <> 0 AND noderole = 'primary' AND (nodename, nodeport) <> (%s, %s)"
        " ORDER BY nodeid LIMIT 1",
        [host, port],
    )
    target = await cursor.fetchone()
    assert target is not None, "the cluster needs a second worker"
    await conn.execute(
        "SELECT citus_move_shard_placement(%s, %s, %s, %s, %s,"
        " shard_transfer_mode => 'block_writes')",
        [shard, host, port, *target],
    )
    return target


async def test_a_shard_move_in_the_middle_of_a_sync_loses_and_repeats_nothing(
    api, app, database_url, user_id
):
    path = f"/api/{user_id}/tasks"
    kept, renamed, doomed = [await api.create(user_id, title) for title in ("a", "b", "c")]
    await api.create(user_id, "d")
    # A client in the middle of a run of feed pages: one page read, more to come.
    first_page = await poll(api, user_id, limit=2)
    assert first_page["has_more"] is True
    synced, _, token = await drain(api, user_id, first_page["next"])
    assert [task["title"] for task in first_page["tasks"] + synced] == ["a", "b", "c", "d"]
    # The list served, twice: the second from the app's cache.
    listed = await api.request("GET", path, user=user_id)
    assert (await api.request("GET", path, user=user_id)).body == listed.body
    assert len(app.settings["page_cache"]) > 0

    async with await connect(database_url) as conn:
        before = await placement(conn, user_id)
        moving = asyncio.ensure_future(move_to_the_other_worker(conn, user_id))
        during = await api.create(user_id, "during the move")
        target = await moving
        after = await placement(conn, user_id)
    assert (after[1], after[2]) == target != (before[1], before[2])

    created = await api.create(user_id, "after the move")
    response = await api.request(
        "PUT", f"{path}/{renamed['id']}", user=user_id, json={"title": "B"}
    )
    assert response.code == 200, response.body
    response = await api.request("PATCH", f"{path}/{kept['id']}/complete", user=user_id)
    assert response.code == 200, response.body
    response = await api.request("DELETE", f"{path}/{doomed['id']}", user=user_id)
    assert response.code == 204, response.body

    listed = await api.request("GET", path, user=user_id)
    changed, deleted, next_token = await drain(api, user_id, token, limit=2)
    now = {task["id"]: task for task in body(listed)}
    assert changed == [now[during["id"]], now[created["id"]], now[renamed["id"]], now[kept["id"]]]
    assert [gone["id"] for gone in deleted] == [doomed["id"]]
    again = await poll(api, user_id, next_token)
    assert again["tasks"] == [] and again["deleted"] == [] and again["has_more"] is False

    async with await connect(database_url) as conn:
        own = await db.list_tasks(conn, user_id=user_id, limit=50)
    assert body(listed) == orjson.loads(own.json)
    assert [task["title"] for task in body(listed)] == [
        "after the move",
        "during the move",
        "d",
        "B",
        "a",
    ]


# psycopg prepares a statement on its 5th execution; Citus plans a prepared statement's
# parameters differently from literals, so both kinds of plan are checked.
EXECUTIONS = 7
REMOTE_SERVER = re.compile(r"on server \S+@(\S+) connectionId")


async def test_every_statement_on_a_users_rows_runs_on_their_worker_alone(database_url, user_id):
    """Each write and read of the API touches only the worker that holds the user's shard,
    with a plain COMMIT there: no other shard, no two-phase commit, and no coordinator step but
    one: a create keeps the version its first statement took in a setting of the transaction
    (set_config over that statement's one row, on the coordinator), so that its insert, routed
    to the worker, needs no second round trip."""
    issued: list[tuple[str, str]] = []
    async with await connect(database_url) as conn:
        _, host, port = await placement(conn, user_id)
        conn.add_notice_handler(
            lambda notice: issued.append((notice.message_primary, notice.message_detail or ""))
        )
        await conn.execute("SET citus.log_remote_commands TO on")
        for n in range(EXECUTIONS):
            task = await db.create_task(conn, user_id=user_id, title=f"t{n}", description="")
            renamed = await db.update_task(conn, user_id=user_id, task_id=task.id, title="b")
            assert renamed is not None
            await db.toggle_task(conn, user_id=user_id, task_id=task.id, if_match=[renamed.etag])
            await db.get_task(conn, user_id=user_id, task_id=task.id)
            await db.list_tasks(conn, user_id=user_id, limit=50)
            await db.task_changes(
                conn, user_id=user_id, after=(0, None), upto=None, with_deletions=True, limit=50
            )
            await db.delete_task(conn, user_id=user_id, task_id=task.id)
            await create_task_once(
                conn,
                user_id=user_id,
                key=f"key {n}",
                fingerprint=b"request",
                title="once",
                description="",
            )
    servers = {match[1] for _, detail in issued if (match := REMOTE_SERVER.search(detail))}
    assert servers == {f"{host}:{port}"}
    assert not [message for message, _ in issued if "PREPARE TRANSACTION" in message]
    local = [message for message, _ in issued if "locally" in message]
    assert local and all(
        message.startswith(
            "executing the command locally: SELECT set_config('taskd.version'::text,"
        )
        and "FROM read_intermediate_result(" in message
        for message in local
    ), local
