"""One user's writes that arrive together run together (taskd/db/batches.py): one transaction,
each write with its own version and its own answer, and a failing write failing alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from conftest import body
from test_changes import drain, poll

from taskd.db import tasks as db
from taskd.db.batches import UserWrites

# Tornado's test client sends at most 10 requests at once.
WRITES = 10


@asynccontextmanager
async def user_held(database_url: str, user_id: Any) -> AsyncIterator[None]:
    """A transaction holding the user's row lock, which every write of the user takes first,
    until the block ends."""
    async with await psycopg.AsyncConnection.connect(database_url) as holder:
        await holder.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", [user_id])
        yield


async def until_unanswered(writes: UserWrites, user_id: Any, count: int) -> None:
    deadline = time.monotonic() + 10
    while writes.unanswered(user_id) < count:
        assert time.monotonic() < deadline, f"{writes.unanswered(user_id)} of {count} writes"
        await asyncio.sleep(0.01)


def version_of(response: Any) -> int:
    return int(response.headers["ETag"].strip('"').split(".")[1])


async def test_concurrent_writes_of_one_user_commit_together(api, app, user_id, database_url):
    await api.create(user_id, "provisions the user")
    since = (await poll(api, user_id))["next"]
    writes: UserWrites = app.settings["writes"]
    path = f"/api/{user_id}/tasks"
    async with user_held(database_url, user_id):
        posts = [
            asyncio.ensure_future(api.request("POST", path, user=user_id, json={"title": f"t{n}"}))
            for n in range(WRITES)
        ]
        await until_unanswered(writes, user_id, WRITES)
    responses = await asyncio.gather(*posts)

    assert [response.code for response in responses] == [201] * WRITES
    created = [body(response) for response in responses]
    # now() is when a transaction began: the first write (or the first few) went out at once
    # and waited for the lock, the others queued behind it and went together in one more.
    assert len({task["created_at"] for task in created}) <= 2
    versions = sorted(version_of(response) for response in responses)
    assert versions == list(range(versions[0], versions[0] + WRITES))
    tasks, deleted, _ = await drain(api, user_id, since)
    assert sorted(task["id"] for task in tasks) == sorted(task["id"] for task in created)
    assert deleted == []


async def test_writes_of_one_task_in_one_batch_apply_in_order(app, user_id, database_url):
    writes: UserWrites = app.settings["writes"]
    first = await writes.run(
        user_id, db.create_write(user_id=user_id, title="first", description="")
    )
    in_order = [
        db.update_write(user_id=user_id, task_id=first.id, title="renamed"),
        db.toggle_write(user_id=user_id, task_id=first.id),
        # If-Match with the version the task had before: stale after the two writes above.
        db.toggle_write(user_id=user_id, task_id=first.id, if_match=[first.etag]),
        db.delete_write(user_id=user_id, task_id=first.id),
        db.toggle_write(user_id=user_id, task_id=first.id),
    ]
    async with user_held(database_url, user_id):
        answers = [asyncio.ensure_future(writes.run(user_id, write)) for write in in_order]
        await until_unanswered(writes, user_id, len(answers))
    renamed, toggled, stale, deleted, gone = await asyncio.gather(*answers)

    assert '"title":"renamed"' in renamed.json and '"is_completed":false' in renamed.json
    assert '"title":"renamed"' in toggled.json and '"is_completed":true' in toggled.json
    assert stale is None
    assert deleted is not None and deleted > toggled.version > renamed.version > first.version
    assert gone is None


async def test_a_failing_write_fails_alone(app, user_id, database_url):
    writes: UserWrites = app.settings["writes"]
    await writes.run(user_id, db.create_write(user_id=user_id, title="provisions", description=""))

    async def failing(conn: psycopg.AsyncConnection[Any]) -> Any:
        cursor = await conn.execute("SELECT 1 / 0")

        async def collect() -> tuple[None, None]:
            await cursor.fetchone()
            return None, None

        return collect

    sends = [db.create_write(user_id=user_id, title=f"t{n}", description="") for n in range(3)]
    async with user_held(database_url, user_id):
        answers = [
            asyncio.ensure_future(writes.run(user_id, send))
            for send in [sends[0], failing, sends[1], sends[2]]
        ]
        await until_unanswered(writes, user_id, len(answers))
    outcomes = await asyncio.gather(*answers, return_exceptions=True)

    assert isinstance(outcomes[1], psycopg.errors.DivisionByZero)
    created = [outcomes[0], outcomes[2], outcomes[3]]
    assert [task.json.count('"title":"t') for task in created] == [1, 1, 1]
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT title FROM tasks WHERE user_id = %s ORDER BY id", [user_id]
        )
        assert [title for (title,) in await cursor.fetchall()] == ["provisions", "t0", "t1", "t2"]
