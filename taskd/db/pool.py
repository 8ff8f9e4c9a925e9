"""The async connection pool: bounded acquire time and queue, so overload is a fast 503."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout, TooManyRequests

from taskd.config import Settings
from taskd.errors import Unavailable

log = logging.getLogger("taskd")


def conninfo(database_url: str) -> str:
    """psycopg takes libpq URLs; accept the SQLAlchemy-style scheme some users paste too."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def make_pool(settings: Settings, database_url: str) -> AsyncConnectionPool:
    """One pool per worker process; TASKD_POOL_MAX is the total across the workers."""
    max_size = max(1, settings.pool_max // settings.workers)
    timeout_ms = int(settings.db_timeout * 1000)

    async def configure(conn: AsyncConnection) -> None:
        # A query that outlives the deadline is cancelled by the server and answered 503.
        await conn.execute("SELECT set_config('statement_timeout', %s, false)", [str(timeout_ms)])
        conn.prepare_threshold = settings.prepare_threshold

    return AsyncConnectionPool(
        conninfo(database_url),
        min_size=min(settings.pool_min, max_size),
        max_size=max_size,
        timeout=settings.db_timeout,
        max_waiting=settings.pool_max_waiting,
        kwargs={
            "autocommit": True,
            # List pages pass PostgreSQL's text through as UTF-8 bytes, whatever the server's.
            "client_encoding": "UTF8",
            "connect_timeout": max(1, round(settings.db_timeout)),
            # Which worker holds which connection, as pg_stat_activity shows it.
            "application_name": f"taskd[{os.getpid()}]",
        },
        configure=configure,
        open=False,
        name="taskd",
    )


async def open_pool(pool: AsyncConnectionPool, timeout: float) -> None:
    """Open and wait for the first connections, so a bad DATABASE_URL fails at start-up."""
    await pool.open()
    await pool.wait(timeout=timeout)


def _unavailable(detail: str, cause: Exception) -> Unavailable:
    """A 503 for the client; its cause goes to the log, never to the client."""
    log.warning("answering 503: %s: %s", type(cause).__name__, cause)
    return Unavailable(detail)


@asynccontextmanager
async def connection(pool: AsyncConnectionPool) -> AsyncIterator[AsyncConnection]:
    """One connection for one unit of work; any database outage becomes a 503."""
    try:
        async with pool.connection() as conn:
            yield conn
    except (PoolTimeout, TooManyRequests) as error:
        raise _unavailable("The database is busy; retry shortly.", error) from None
    except psycopg.errors.QueryCanceled as error:
        raise _unavailable("The database did not answer in time; retry shortly.", error) from None
    except psycopg.OperationalError as error:
        raise _unavailable("The database is unavailable; retry shortly.", error) from None
