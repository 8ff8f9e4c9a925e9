"""The async connection pool: bounded acquire time and queue, so overload is a fast 503.

A database outage is a 503 as well, however the database fails: refusing connections, closing
them (a restart), or going silent (a network partition, a frozen server). The pool replaces the
connections it lost and recovers on its own once the database is back.

Its connections prepare statements until a transaction pooler refuses one (taskd/db/prepared.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout, TooManyRequests

from taskd.config import Settings
from taskd.db.prepared import PoolConnection, PreparedStatements
from taskd.errors import Unavailable

log = logging.getLogger("taskd")

# psycopg_pool retries a lost connection with a doubling delay for 5 minutes by default: after a
# long outage its next try could come a minute after the database is back. Giving up sooner keeps
# the delays short; a request that then finds the pool empty makes it try again at once.
RECONNECT_SECONDS = 5.0
# The server cancels a statement at the deadline (statement_timeout) itself; a unit of work still
# running this much later is waiting on a server, or a network, that has stopped answering.
SILENCE_GRACE_SECONDS = 1.0


# Each connection's settings, in one statement. A query that outlives the deadline is cancelled
# by the server and answered 503. Prepared statements keep one generic plan: PostgreSQL would
# plan taskd's list and revalidation queries afresh on every run (their custom plans look
# cheaper), for 0.2-0.6 ms each; the generic plans use the user's index as the custom ones do.
# Not on Citus, whose coordinator plans a distributed query from its parameters' values:
# without them it cannot plan the list or the create.
#
# The last column keeps the backend from giving a list's memory back to the kernel after every
# statement. A 1000-task page (400 KB of JSON) takes a backend about 3 MB of heap: the aggregate,
# its result, the message sent. glibc's malloc trims the heap's free top beyond twice its mmap
# threshold, which starts at 128 KB and rises to the size of the largest mmap-ed block freed so
# far (mallopt(3), M_MMAP_THRESHOLD): every such list faulted its 3 MB back in, some 500 page
# faults, which cost the backend more CPU than the rest of the list. One 4 MiB value made and
# freed here raises the threshold to 4 MiB, so pages of up to about 1 MB of JSON are built in
# memory the backend keeps (README, Performance).
_SESSION_SETTINGS = """
    SELECT set_config('statement_timeout', %s, false),
           set_config('plan_cache_mode',
                      CASE WHEN EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')
                           THEN current_setting('plan_cache_mode')
                           ELSE 'force_generic_plan' END,
                      false),
           octet_length(repeat(repeat('x', 1024), 4096))
"""


def conninfo(database_url: str) -> str:
    """psycopg takes libpq URLs; accept the SQLAlchemy-style scheme some users paste too."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def connect_timeout(deadline: float) -> int:
    """libpq's connect_timeout for a deadline: whole seconds, at least one."""
    return max(1, round(deadline))


def make_pool(settings: Settings, database_url: str) -> AsyncConnectionPool[Any]:
    """One pool per worker process; TASKD_POOL_MAX is the total across the workers."""
    max_size = max(1, settings.pool_max // settings.workers)
    timeout_ms = int(settings.db_timeout * 1000)
    prepared_statements = PreparedStatements(settings.prepare_threshold)

    async def configure(conn: PoolConnection) -> None:
        prepared_statements.adopt(conn)
        await conn.execute(_SESSION_SETTINGS, [str(timeout_ms)])

    async def check(conn: AsyncConnection) -> None:
        """Before a connection is lent: one its server closed is replaced, not lent."""
        if closed_by_server(conn):
            # A server that closed one idle connection has most likely closed them all (it
            # restarted): replace them all now, not one failed check (and a backoff) at a time.
            await pool.drain()
            raise psycopg.OperationalError("the server closed an idle connection")

    pool = AsyncConnectionPool(
        conninfo(database_url),
        connection_class=PoolConnection,
        min_size=min(settings.pool_min, max_size),
        max_size=max_size,
        timeout=settings.db_timeout,
        max_waiting=settings.pool_max_waiting,
        kwargs={
            "autocommit": True,
            # List pages pass PostgreSQL's text through as UTF-8 bytes, whatever the server's.
            "client_encoding": "UTF8",
            "connect_timeout": connect_timeout(settings.db_timeout),
            # Which worker holds which connection, as pg_stat_activity shows it.
            "application_name": f"taskd[{os.getpid()}]",
        },
        configure=configure,
        check=check,
        reconnect_timeout=RECONNECT_SECONDS,
        open=False,
        name="taskd",
    )
    return pool


async def open_pool(pool: AsyncConnectionPool, timeout: float) -> None:
    """Open and wait for the first connections, so a bad DATABASE_URL fails at start-up."""
    await pool.open()
    await pool.wait(timeout=timeout)


def closed_by_server(conn: AsyncConnection) -> bool:
    """Whether the server closed this idle connection (a restart, a cut connection).

    An idle connection has nothing to read unless its server closed it or sent a notice. Reading
    what is there tells which, with no round trip (and no wait on a server gone silent), unlike
    psycopg's own check.
    """
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        while poller.poll(0):
            conn.pgconn.consume_input()
    except psycopg.OperationalError:
        return True
    return False


def _sever(conn: AsyncConnection) -> None:
    """End a connection whose server stopped answering: the statement waiting on it fails at once
    with OperationalError, and the pool replaces it. (Cancelling the task instead would make
    psycopg ask the silent server to cancel the statement, and wait for it up to 10 s.)"""
    with suppress(psycopg.Error, OSError), socket.socket(fileno=os.dup(conn.fileno())) as sock:
        sock.shutdown(socket.SHUT_RDWR)
        log.warning("the database did not answer in time: connection closed")


@contextmanager
def _severed_after(conn: AsyncConnection, seconds: float) -> Iterator[None]:
    timer = asyncio.get_running_loop().call_later(seconds, _sever, conn)
    try:
        yield
    finally:
        timer.cancel()


def busy(cause: Exception) -> Unavailable:
    """The 503 of a request that waited its time for the database and did not get to it."""
    return _unavailable("The database is busy; retry shortly.", cause)


def _unavailable(detail: str, cause: Exception) -> Unavailable:
    """A 503 for the client; its cause goes to the log, never to the client."""
    log.warning("answering 503: %s: %s", type(cause).__name__, cause)
    return Unavailable(detail)


@asynccontextmanager
async def connection(
    pool: AsyncConnectionPool, wait: float | None = None
) -> AsyncIterator[AsyncConnection]:
    """One connection for one unit of work, waited for at most `wait` seconds (the pool's
    timeout by default); any database outage becomes a 503."""
    try:
        async with pool.connection(timeout=wait) as conn:
            with _severed_after(conn, pool.timeout + SILENCE_GRACE_SECONDS):
                yield conn
    except (PoolTimeout, TooManyRequests) as error:
        raise busy(error) from None
    except psycopg.errors.QueryCanceled as error:
        raise _unavailable("The database did not answer in time; retry shortly.", error) from None
    except psycopg.OperationalError as error:
        raise _unavailable("The database is unavailable; retry shortly.", error) from None
