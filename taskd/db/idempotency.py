"""Idempotent creates: a POST with an Idempotency-Key creates its task once, and a retry gets the
same answer. Each function takes `user_id` as a required keyword and binds it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection

from taskd.db.prepared import in_transaction
from taskd.db.queries import load_queries
from taskd.db.tasks import RenderedTask, create_task
from taskd.db.users import provision_user
from taskd.user_ids import UserId

_QUERIES = load_queries("idempotency_keys.sql")

# How long a key counts: a client retrying for longer is not retrying any more.
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)


async def create_task_once(
    conn: AsyncConnection,
    *,
    user_id: UserId,
    key: str,
    fingerprint: bytes,
    title: str,
    description: str,
) -> RenderedTask | None:
    """Create a task, unless `key` already created one within IDEMPOTENCY_KEY_TTL: then return
    that task as it was created (even if it has changed or gone since), or None when the key
    came with another request (another `fingerprint`).

    Claiming the key and creating the task are one transaction, so a failure leaves the key
    free; concurrent calls with one key queue on its primary key, and only the first creates."""
    forget = _QUERIES["forget_expired_idempotency_keys"]
    await conn.execute(forget.sql, forget.bind(user_id=user_id, ttl=IDEMPOTENCY_KEY_TTL))

    async def claim_key() -> RenderedTask | None:
        claim = _QUERIES["claim_idempotency_key"]
        # Which keys count as expired, from this clock: the TTL dwarfs any clock skew.
        expired_before = datetime.now(UTC) - IDEMPOTENCY_KEY_TTL
        params = claim.bind(
            user_id=user_id, key=key, fingerprint=fingerprint, expired_before=expired_before
        )
        async with conn.pipeline():
            await provision_user(conn, user_id=user_id)
            cursor = await conn.execute(claim.sql, params)
        if await cursor.fetchone():
            task = await create_task(conn, user_id=user_id, title=title, description=description)
            record = _QUERIES["record_idempotent_task"]
            await conn.execute(
                record.sql,
                record.bind(
                    user_id=user_id,
                    key=key,
                    task_id=task.id,
                    task_etag=task.etag,
                    task_json=task.json,
                ),
            )
            return task
        # The claim locked the key in use, so it cannot expire and change before this read.
        lookup = _QUERIES["get_idempotency_key"]
        cursor = await conn.execute(lookup.sql, lookup.bind(user_id=user_id, key=key))
        row = await cursor.fetchone()
        assert row is not None
        used_fingerprint, task_id, task_etag, task_json = row
        if used_fingerprint != fingerprint:
            return None
        return RenderedTask(task_id, task_etag, task_json)

    return await in_transaction(conn, claim_key)
