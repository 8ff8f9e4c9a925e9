"""Live updates: the event streams open in one worker, their bounds, and their stop at SIGTERM.

A stream (taskd/handlers/events.py) waits on its `Stream` for one of: its user's changes (the
worker's ChangeListener wakes it), the stop of the server, its client going away, or a timeout
(its next heartbeat, or its token's expiry). The server calls `end_streams()` as it starts to
stop, so that streams, which would otherwise never finish, do not hold up its drain.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from taskd.config import Settings
from taskd.db.listener import ChangeListener, Subscription
from taskd.errors import ApiError
from taskd.metrics import Metrics
from taskd.user_ids import UserId

# When a refused client may try again: streams end when their tokens expire or clients leave.
RETRY_AFTER_SECONDS = 10


class Stream:
    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.ending = False

    def end(self) -> None:
        """Make `wait` return, and the stream end at its next event boundary."""
        self.ending = True
        self.subscription.woken.set()

    async def wait(self, timeout: float) -> bool:
        """Whether the user's changes (or the stream's end) came within `timeout` seconds."""
        woken = self.subscription.woken
        if not woken.is_set():
            try:
                await asyncio.wait_for(woken.wait(), timeout)
            except TimeoutError:
                return False
        woken.clear()
        return True


class LiveUpdates:
    """The worker's event streams, bounded per user and in all, and its change listener."""

    def __init__(self, settings: Settings, database_url: str, metrics: Metrics) -> None:
        self._max = settings.event_streams_max
        self._per_user = settings.event_streams_per_user
        self._metrics = metrics
        self._streams: set[Stream] = set()
        self._per_user_count: Counter[UserId] = Counter()
        self._stopping = False
        self.listener = ChangeListener(
            settings.listen_url or database_url, on_connected=metrics.observe_listener
        )
        # Streams woken together (after the listener reconnects, say) read a few at a time, so
        # that they wait here rather than in the pool's queue, which requests need.
        pool_share = max(1, settings.pool_max // settings.workers)
        self.reads = asyncio.Semaphore(max(1, pool_share // 2))

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def open(self, user_id: UserId) -> Stream:
        """A new stream of `user_id`'s changes; 429 past a bound, 503 when stopping."""
        if self._stopping:
            raise ApiError(503, "The server is stopping; reconnect.", headers={"Retry-After": "1"})
        if len(self._streams) >= self._max:
            raise _too_many("This server has as many event streams open as it allows.")
        if self._per_user_count[user_id] >= self._per_user:
            raise _too_many(f"At most {self._per_user} event streams per user are allowed.")
        stream = Stream(self.listener.subscribe(user_id))
        self._streams.add(stream)
        self._per_user_count[user_id] += 1
        self._metrics.event_streams.set(len(self._streams))
        return stream

    def close(self, stream: Stream) -> None:
        self._streams.discard(stream)
        user_id = stream.subscription.user_id
        self._per_user_count[user_id] -= 1
        if self._per_user_count[user_id] <= 0:
            del self._per_user_count[user_id]
        self.listener.unsubscribe(stream.subscription)
        self._metrics.event_streams.set(len(self._streams))

    def end_streams(self) -> None:
        """The server is stopping: every stream ends at its next event boundary, and no new one
        opens."""
        self._stopping = True
        for stream in self._streams:
            stream.end()

    async def close_listener(self) -> None:
        await self.listener.close()


def _too_many(detail: str) -> ApiError:
    return ApiError(429, detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
