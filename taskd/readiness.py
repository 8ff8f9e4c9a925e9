"""Readiness (`/readyz`): the database answers and its schema is the one this code expects."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import parse_qsl, urlencode, urlsplit

from psycopg_pool import AsyncConnectionPool

from taskd import migrate
from taskd.db.health import ping
from taskd.db.pool import SILENCE_GRACE_SECONDS, connect_timeout
from taskd.errors import Unavailable

log = logging.getLogger("taskd")

# Asking yoyo opens a connection of its own, outside the pool: do it at most this often.
SCHEMA_CHECK_SECONDS = 10.0


class Readiness:
    def __init__(self, pool: AsyncConnectionPool, database_url: str) -> None:
        self._pool = pool
        # The pool's deadline bounds yoyo's connection too: it would wait forever on a server
        # that accepts connections but never answers them.
        self._database_url = _with_connect_timeout(database_url, connect_timeout(pool.timeout))
        self._deadline = pool.timeout + SILENCE_GRACE_SECONDS
        self._lock = asyncio.Lock()
        self._pending: list[str] = []
        self._checked_at: float | None = None

    async def check(self) -> None:
        """Return when ready; otherwise raise Unavailable saying what is wrong."""
        await ping(self._pool)
        pending = await self._pending_migrations()
        if pending:
            raise Unavailable(
                f"{len(pending)} migration(s) pending ({', '.join(pending)}): run 'taskd migrate'."
            )

    async def _pending_migrations(self) -> list[str]:
        async with self._lock:
            now = time.monotonic()
            if self._checked_at is None or now - self._checked_at >= SCHEMA_CHECK_SECONDS:
                loop = asyncio.get_running_loop()
                try:
                    # yoyo is synchronous: keep it off the event loop.
                    self._pending = await asyncio.wait_for(
                        loop.run_in_executor(None, migrate.pending, self._database_url),
                        self._deadline,
                    )
                except Exception as error:
                    log.warning("cannot read the migration state", exc_info=error)
                    raise Unavailable("The database's migration state cannot be read.") from None
                self._checked_at = now
            return self._pending


def _with_connect_timeout(database_url: str, seconds: int) -> str:
    parts = urlsplit(database_url)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "connect_timeout"]
    query.append(("connect_timeout", str(seconds)))
    return parts._replace(query=urlencode(query, safe="/")).geturl()
