"""Whether the database answers, for /readyz."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from taskd.db.pool import connection


async def ping(pool: AsyncConnectionPool) -> None:
    """Return when a pooled connection answers; raise Unavailable (503) when none does.

    psycopg's own check sends an empty query: no table is touched, so this is no named query
    of sql/ (all of which reach user data and must bind user_id).
    """
    async with connection(pool) as conn:
        await AsyncConnectionPool.check_connection(conn)
