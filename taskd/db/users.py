"""User data functions."""

from __future__ import annotations

from psycopg import AsyncConnection

from taskd.db.queries import load_queries
from taskd.user_ids import UserId

_QUERIES = load_queries("users.sql")


async def provision_user(conn: AsyncConnection, *, user_id: UserId) -> None:
    query = _QUERIES["provision_user"]
    await conn.execute(query.sql, query.bind(user_id=user_id))
