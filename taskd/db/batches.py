"""One user's writes that arrive together, run together: one transaction, one commit.

Every write of a user holds the user's row lock from taking its version until its commit is on
disk (sql/tasks.sql), so one user's writes commit one after another, each waiting for its own
flush: a user's write rate is at most one write per commit, about 1,600 a second on this
project's machine whatever else is idle. So a worker runs the writes of a user it has at once
in one transaction, sent in one round trip: one lock, one flush for all of them. A user's first
write goes out at once; the writes that arrive while it runs wait for it, then go together;
and so on. Each write takes its own version, in the order the writes arrived, and gets its own
answer. Writes of different users never wait for each other here.

A transaction that fails for a reason other than the database being unavailable (a 503 for
every write in it, and for the writes queued behind it) is run again one write at a time, so
that one failing write fails alone. A queued write waits for its turn and a connection together
no longer than any request waits for a connection (TASKD_DB_TIMEOUT); past that it is the busy
503, and never sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from taskd.db.pool import busy, connection
from taskd.db.tasks import Send, run_writes
from taskd.errors import Unavailable
from taskd.user_ids import UserId

log = logging.getLogger("taskd")

T = TypeVar("T")

# The most writes in one transaction: it holds the user's lock for all of them.
MAX_BATCH = 64
# The least time a batch waits for a connection (psycopg_pool's timeout must be positive).
MIN_WAIT = 0.001


def _new_answer() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


@dataclass(eq=False)
class _Pending(Generic[T]):
    send: Send[T]
    answer: asyncio.Future[T] = field(default_factory=_new_answer)
    arrived: float = field(default_factory=time.monotonic)


class UserWrites:
    """The writes of one worker, batched per user, on connections of `pool`."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._waiting: dict[UserId, list[_Pending[Any]]] = {}
        # The task running each user's batches, one at a time, while the user has writes.
        self._drains: dict[UserId, asyncio.Task[None]] = {}
        self._unanswered: Counter[UserId] = Counter()

    def unanswered(self, user_id: UserId) -> int:
        """How many writes of `user_id` are waiting to run or running."""
        return self._unanswered[user_id]

    async def run(self, user_id: UserId, send: Send[T]) -> T:
        """Run the write `send` for `user_id`, with the user's other writes of the moment."""
        pending: _Pending[T] = _Pending(send)
        self._waiting.setdefault(user_id, []).append(pending)
        if user_id not in self._drains:
            self._drains[user_id] = asyncio.ensure_future(self._drain(user_id))
        self._unanswered[user_id] += 1
        try:
            try:
                # A write waits no longer for its batch than a request for a connection.
                return await asyncio.wait_for(asyncio.shield(pending.answer), self.pool.timeout)
            except TimeoutError as error:
                waiting = self._waiting.get(user_id, [])
                if pending not in waiting:
                    # Sent in a batch, which has bounds of its own, or answered meanwhile.
                    return await pending.answer
                waiting.remove(pending)
                if not waiting:
                    del self._waiting[user_id]
                raise busy(error) from None
        finally:
            self._unanswered[user_id] -= 1
            if not self._unanswered[user_id]:
                del self._unanswered[user_id]

    async def _drain(self, user_id: UserId) -> None:
        try:
            while waiting := self._waiting.pop(user_id, None):
                batch, rest = waiting[:MAX_BATCH], waiting[MAX_BATCH:]
                if rest:
                    self._waiting[user_id] = rest
                unavailable = await self._run_batch(user_id, batch)
                if unavailable is not None:
                    # The writes that queued meanwhile would wait as long again, for the same.
                    _fail(self._waiting.pop(user_id, []), unavailable)
        finally:
            del self._drains[user_id]
            for pending in self._waiting.pop(user_id, []):
                pending.answer.cancel()

    async def _run_batch(self, user_id: UserId, batch: list[_Pending[Any]]) -> Unavailable | None:
        """Run `batch`, answering each write of it; the 503 they got if the database was
        unavailable."""
        # What is left of the wait for the database of the write that has waited longest.
        wait = self.pool.timeout - (time.monotonic() - min(pending.arrived for pending in batch))
        try:
            async with connection(self.pool, wait=max(wait, MIN_WAIT)) as conn:
                answers = await run_writes(
                    conn, [pending.send for pending in batch], user_id=user_id
                )
        except psycopg.Error as error:
            # Not the database being unavailable: connection() made that a 503 (ApiError).
            if len(batch) == 1:
                _fail(batch, error)
                return None
            log.warning(
                "%d writes of one user failed together, run one by one: %s", len(batch), error
            )
            for index, pending in enumerate(batch):
                unavailable = await self._run_batch(user_id, [pending])
                if unavailable is not None:
                    _fail(batch[index + 1 :], unavailable)
                    return unavailable
            return None
        except BaseException as error:
            _fail(batch, error)
            if not isinstance(error, Exception):
                raise
            return error if isinstance(error, Unavailable) else None
        for pending, answer in zip(batch, answers, strict=True):
            pending.answer.set_result(answer)
        return None


def _fail(batch: list[_Pending[Any]], error: BaseException) -> None:
    """`error` for every write of `batch`; a cancellation (shutdown) cancels them."""
    for pending in batch:
        if pending.answer.done():
            continue
        if isinstance(error, Exception):
            pending.answer.set_exception(error)
        else:
            pending.answer.cancel()
