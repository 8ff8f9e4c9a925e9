"""Requests that race for certain: all of them reach the database before any may get through."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import psycopg
from conftest import CITUS_URL, connect
from tornado.httpclient import HTTPResponse

# On Citus the requests wait on the worker that holds the row: citus_stat_activity shows the
# backends of every node.
LOCK_WAITERS = (
    f"SELECT count(*) FROM {'citus_stat_activity' if CITUS_URL else 'pg_stat_activity'}"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def wait_for_lock_waiters(
    database_url: str, count: int, timeout: float = 10, batched: Callable[[], int] = lambda: 0
) -> None:
    """Until `count` requests wait for a lock. `batched` says how many of them are writes of
    one user in the app's batches (taskd/db/batches.py): those wait as one, a transaction that
    waits for the lock and the writes queued behind it."""
    # Polling runs one query many times: conftest's connection does not prepare it behind PgBouncer.
    async with await connect(database_url) as conn:
        deadline = time.monotonic() + timeout
        while True:
            cursor = await conn.execute(LOCK_WAITERS)
            row = await cursor.fetchone()
            assert row is not None
            writes = batched()
            waiting = row[0] + writes - 1 if writes and row[0] else row[0]
            if waiting >= count:
                return
            assert time.monotonic() < deadline, f"{row[0]} of {count} requests wait for the lock"
            await asyncio.sleep(0.01)


async def race(
    database_url: str,
    lock: str,
    params: Sequence[Any],
    requests: list[Coroutine[Any, Any, HTTPResponse]],
    batched: Callable[[], int] = lambda: 0,
) -> list[HTTPResponse]:
    """Send `requests` while another transaction holds the row lock `lock` (a SELECT ... FOR
    UPDATE) takes; release it once every request waits for it, and return their responses.

    So every request has done whatever it does before its first write to that row, and a
    service that checks and then writes lets more than one of them through. `batched`: as for
    wait_for_lock_waiters."""
    async with await psycopg.AsyncConnection.connect(database_url) as holder:
        await holder.execute(lock, params)
        pending = [asyncio.ensure_future(request) for request in requests]
        await wait_for_lock_waiters(database_url, len(requests), batched=batched)
    # Leaving the block committed the holder's transaction, releasing the lock.
    return list(await asyncio.gather(*pending))
