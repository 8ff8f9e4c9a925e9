"""Prepared statements, turned off for the whole pool the first time a pooler refuses one.

psycopg prepares a statement on the server once it has run TASKD_PREPARE_THRESHOLD times on a
connection. Behind a transaction pooler without prepared-statement support (PgBouncer before
1.21, or without `max_prepared_statements`; older poolers), each transaction may run on another
server session, where the statement is missing ("prepared statement "_pg3_0" does not exist") or
another client's is ("... already exists"). taskd then stops preparing, on every connection of
its pool, says so once in the log, and runs the refused statement again unprepared.

Running it again is safe: PostgreSQL refuses it at Parse or at Bind, and so executes none of it
(the cursor has no result of it; a refusal after the statement ran, say of psycopg's own
DEALLOCATE, is raised as it is). Outside a transaction and a pipeline the cursor runs the
statement again at once. Inside a transaction the refusal has aborted it, and the rollback undoes
everything the unit of work did in it: `in_transaction` runs that whole unit again. (When the
refusal surfaces in the middle of a pipelined transaction, psycopg logs a warning of its own as
it ends the pipeline: "error ignored terminating ...: pipeline aborted".)
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg.abc import Params, QueryNoTemplate
from psycopg.pq import PipelineStatus, TransactionStatus

log = logging.getLogger("taskd")

T = TypeVar("T")
# PostgreSQL's answers to a Parse of a name in use and to a Bind of a name it does not know.
REFUSALS = (psycopg.errors.DuplicatePreparedStatement, psycopg.errors.InvalidSqlStatementName)


class PreparedStatements:
    """Whether the connections of one pool prepare statements: after `threshold` executions of
    one, as TASKD_PREPARE_THRESHOLD says, until a refusal turns preparing off (None) on all of
    them, those lent at the time included."""

    def __init__(self, threshold: int | None) -> None:
        self.threshold = threshold
        self._connections: weakref.WeakSet[PoolConnection] = weakref.WeakSet()

    def adopt(self, conn: PoolConnection) -> None:
        """Called for each new connection of the pool."""
        conn.prepared_statements = self
        conn.prepare_threshold = self.threshold
        self._connections.add(conn)

    def refused(self, error: psycopg.Error) -> None:
        # Connections that sent a prepared statement before this refusal may report theirs too.
        if self.threshold is None:
            return
        self.threshold = None
        for conn in self._connections:
            conn.prepare_threshold = None
        log.warning(
            "the database refused a prepared statement (%s), as a transaction pooler without"
            " support for them does: this worker prepares no more statements and runs the"
            " refused one again; set TASKD_PREPARE_THRESHOLD=none to start that way",
            error,
        )


class PoolConnection(AsyncConnection[Any]):
    """A connection of taskd's pool: it shares the pool's PreparedStatements, and its cursors run
    a refused statement again."""

    prepared_statements: PreparedStatements

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory = PoolCursor


class PoolCursor(AsyncCursor[Any]):
    # Without the overload for template strings (Python 3.14): taskd's SQL comes from sql/.
    async def execute(  # type: ignore[override]
        self,
        query: QueryNoTemplate,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> PoolCursor:
        conn = self.connection
        preparing = prepare is True or (prepare is None and conn.prepare_threshold is not None)
        try:
            await super().execute(query, params, prepare=prepare, binary=binary)
        except REFUSALS as error:
            if not (preparing and self.pgresult is None and isinstance(conn, PoolConnection)):
                raise
            conn.prepared_statements.refused(error)
            alone = conn.pgconn.pipeline_status == PipelineStatus.OFF
            if not alone or conn.info.transaction_status != TransactionStatus.IDLE:
                raise  # for in_transaction, which runs the transaction again
            await super().execute(query, params, prepare=False, binary=binary)
        return self


async def in_transaction(
    conn: AsyncConnection[Any], work: Callable[[], Awaitable[T]], *, pipelined: bool = False
) -> T:
    """`await work()` in one transaction, run again (unprepared) when a pooler refused one of its
    prepared statements: the refusal aborted the first run, and the rollback undid it. With
    `pipelined`, BEGIN, the work and COMMIT go in one pipeline, so in one round trip.

    In a pipeline the refusal comes back with the results, from whichever call fetches them, so
    any refusal in the transaction counts, provided the connection was preparing statements."""
    preparing = conn.prepare_threshold is not None
    try:
        return await _transaction(conn, work, pipelined)
    except REFUSALS as error:
        if not (preparing and isinstance(conn, PoolConnection)):
            raise
        conn.prepared_statements.refused(error)
    return await _transaction(conn, work, pipelined)


async def _transaction(
    conn: AsyncConnection[Any], work: Callable[[], Awaitable[T]], pipelined: bool
) -> T:
    if not pipelined:
        async with conn.transaction():
            return await work()
    try:
        async with conn.pipeline():
            await conn.execute("BEGIN")
            result = await work()
            await conn.execute("COMMIT")
        return result
    except BaseException:
        # A statement failed, and the server skipped the rest, COMMIT included.
        if conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.rollback()
        raise
