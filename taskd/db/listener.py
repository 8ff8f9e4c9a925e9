"""Each worker's one LISTEN session: it wakes the live-update streams of the user who wrote.

Every write is followed, on its connection, by a notification on CHANNEL (`notify_change`, run
by the write functions of taskd/db/tasks.py) whose payload is `user_id:version` and nothing
more: the streams read what changed with the change feed's query. The session is a connection
of its own, outside the pool (LISTEN needs a session that stays put). When it is lost, the
notifications raised meanwhile are lost with it: the listener reconnects by itself and then
wakes every stream, each of which reads from its own token, so a lost notification delays a
change but never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

import psycopg
from psycopg.conninfo import make_conninfo

from taskd.db.pool import conninfo
from taskd.db.queries import load_queries
from taskd.user_ids import UserId

log = logging.getLogger("taskd")

_QUERIES = load_queries("live.sql")

CHANNEL = "taskd_changes"
LISTEN = f"LISTEN {CHANNEL}"
# The first retry after a lost session is at once; then the delay doubles up to this.
RECONNECT_MAX_SECONDS = 5.0
# A server or network that stops answering is noticed by TCP keepalives within about 20 s
# (the session is silent between notifications, so nothing else would notice).
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 2,
}


async def notify_change(conn: psycopg.AsyncConnection, *, user_id: UserId, version: int) -> None:
    """Tell every worker's listener that `user_id` wrote `version` (at commit, if `conn` is in a
    transaction). A failure is logged, not raised: the write it follows has committed, and its
    client must hear so; the user's streams learn of it at the next write or reconnection."""
    query = _QUERIES["notify_change"]
    try:
        await conn.execute(query.sql, query.bind(user_id=user_id, version=version))
    except psycopg.Error as error:
        log.warning("could not notify the change listeners: %s", error)


class Subscription:
    """One stream's interest in one user's changes: set when they may have changed."""

    def __init__(self, user_id: UserId) -> None:
        self.user_id = user_id
        # The user's version the stream has read up to; a notification of it or an earlier one
        # (arriving late) is nothing new.
        self.version_read = -1
        self.woken = asyncio.Event()

    def wake(self, version: int | None) -> None:
        if version is None or version > self.version_read:
            self.woken.set()


class ChangeListener:
    """Listens on CHANNEL from `start()` (or the first subscription) until `close()`, reconnecting
    by itself."""

    def __init__(self, database_url: str, *, on_connected: Callable[[bool], None]) -> None:
        self._conninfo = make_conninfo(
            conninfo(database_url),
            application_name=f"taskd-listener[{os.getpid()}]",
            connect_timeout=5,
            **KEEPALIVES,
        )
        self._on_connected = on_connected
        # By the user id as the notifications spell it (integer or text ids alike).
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.backend_pid: int | None = None

    def start(self) -> None:
        """Start listening (on the running loop), unless it already has."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="taskd change listener")

    def subscribe(self, user_id: UserId) -> Subscription:
        """A subscription to `user_id`'s changes; the caller reads once after this, since
        anything committed before it was not notified to it."""
        self.start()
        subscription = Subscription(user_id)
        self._subscriptions.setdefault(str(user_id), set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        key = str(subscription.user_id)
        subscribers = self._subscriptions.get(key)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscriptions[key]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _listen(self) -> None:
        delay = 0.0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as conn:
                    await conn.execute(LISTEN)
                    self.backend_pid = conn.info.backend_pid
                    self._set_connected(True)
                    delay = 0.0
                    # Whatever committed while no session listened was not notified.
                    self._wake_all()
                    async for notification in conn.notifies():
                        self._dispatch(notification.payload)
            except psycopg.Error as error:
                if self.connected:
                    log.warning("change listener lost its session: %s", error)
                self._set_connected(False)
            await asyncio.sleep(delay)
            delay = min(max(2 * delay, 0.1), RECONNECT_MAX_SECONDS)

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        self._on_connected(connected)

    def _wake_all(self) -> None:
        for subscribers in self._subscriptions.values():
            for subscription in subscribers:
                subscription.wake(None)

    def _dispatch(self, payload: str) -> None:
        user, _, version = payload.rpartition(":")
        if not (user and version.isascii() and version.isdigit()):
            log.warning("ignoring a notification on %s that taskd did not raise", CHANNEL)
            return
        for subscription in self._subscriptions.get(user, ()):
            subscription.wake(int(version))
