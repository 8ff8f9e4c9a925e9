"""Live updates (CONTRACT §8): the change feed as Server-Sent Events, pushed as changes commit.

Each event is one page of the feed, read with the feed's own query (taskd/changes.py): `data:`
is the page's JSON and `id:` its `next` token, so a client that reconnects with `Last-Event-ID`
(or `?since=`) resumes exactly after the last event it received. The stream reads again whenever
the worker's change listener (taskd/db/listener.py) says its user wrote, sends a comment line
when it has been quiet for TASKD_EVENT_HEARTBEAT seconds, and ends when its token expires or the
server stops, always between two events.
"""

from __future__ import annotations

import logging
import time

from tornado.iostream import StreamClosedError

from taskd.changes import FeedToken, parse_since, parse_token, render
from taskd.db import tasks as db
from taskd.errors import ApiError
from taskd.handlers.base import ApiHandler
from taskd.listing import parse_limit
from taskd.live import LiveUpdates, Stream

log = logging.getLogger("taskd")

EVENT_STREAM_TYPE = "text/event-stream"
LAST_EVENT_ID = "Last-Event-ID"
HEARTBEAT = b": heartbeat\n\n"


def event(event_id: str, data: bytes) -> bytes:
    """One SSE event. A line break in `data` would end its field: each line gets a `data:`
    of its own, which the client joins back with line breaks."""
    return b"".join(
        (b"id: ", event_id.encode(), b"\ndata: ", data.replace(b"\n", b"\ndata: "), b"\n\n")
    )


class TaskEventsHandler(ApiHandler):
    SUPPORTED_METHODS = ("GET", "OPTIONS")

    def initialize(self) -> None:
        super().initialize()
        self._stream: Stream | None = None
        self._under_way = False  # the response's head and first event went out

    @property
    def live(self) -> LiveUpdates:
        live: LiveUpdates = self.settings["live"]
        return live

    async def get(self, _user: str) -> None:
        moment = int(time.time())
        start = self._resume_token(moment)
        limit = parse_limit(self.request.query_arguments)
        stream = self.live.open(self.current_user)
        self._stream = stream
        try:
            await self._serve(stream, start, limit, moment)
        except StreamClosedError:
            return
        except ApiError as error:
            if not self._under_way:
                raise
            # The stream is under way: the client reconnects with its last id, and gets the
            # error (a 503 while the database stays unavailable) as the answer.
            log.warning("ending an event stream: %s", error.detail)
        finally:
            self.live.close(stream)
        self.finish()

    def _resume_token(self, now: int) -> FeedToken | None:
        """The token of `Last-Event-ID`, else of `since` (None: neither, from the beginning): a
        reconnecting client sends its last id along with the URL it first opened, whose `since`
        is older."""
        last_event_id = self.request.headers.get(LAST_EVENT_ID)
        if last_event_id is not None:
            return parse_token(last_event_id, now, ["header", LAST_EVENT_ID])
        return parse_since(self.request.query_arguments, now)

    async def _serve(
        self, stream: Stream, start: FeedToken | None, limit: int, moment: int
    ) -> None:
        self.set_header("Content-Type", EVENT_STREAM_TYPE)
        # nginx would otherwise hold events back in its buffer.
        self.set_header("X-Accel-Buffering", "no")
        heartbeat = self.taskd_settings.event_heartbeat
        expires_at = self.token_expires_at
        # From the beginning, as the feed without since: every task there is stands for itself.
        token, sent_at = await self._send_changes(
            stream, start or FeedToken.beginning(moment), limit, beginning=start is None
        )
        while not stream.ending:
            now = time.time()
            if now >= expires_at:
                return
            if await stream.wait(min(sent_at + heartbeat, expires_at) - now):
                if stream.ending:
                    return
                token, sent = await self._send_changes(stream, token, limit)
                sent_at = sent or sent_at
            elif time.time() >= sent_at + heartbeat:
                self.write(HEARTBEAT)
                await self.flush()
                sent_at = time.time()

    async def _send_changes(
        self, stream: Stream, token: FeedToken, limit: int, *, beginning: bool | None = None
    ) -> tuple[FeedToken, float]:
        """Send every page after `token` that has a change. The stream's first call says
        whether it starts from the beginning, and sends its first page even if it has no
        change, so that the client holds a token at once. Returns the last page's token and
        when the last event went out (0.0 if none did)."""
        first = beginning is not None
        sent_at = 0.0
        while True:
            moment = int(time.time())
            async with self.live.reads, self.database() as conn:
                page = await db.task_changes(
                    conn,
                    user_id=self.current_user,
                    with_deletions=not beginning,
                    limit=limit,
                    **token.position(),
                )
            token.check_reached_by(page)
            following = token.following(page, moment)
            if first or page.tasks or page.deleted:
                self.write(event(following.encode(), render(page, following)))
                self._under_way = True
                await self.flush()
                sent_at = time.time()
                first = False
            beginning = False
            token = following
            if not page.more:
                # Everything up to the token's version is out: a notification of it, or of an
                # earlier version, that arrives now has nothing new.
                stream.subscription.version_read = token.after
                return token, sent_at

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if self._stream is not None:
            self._stream.end()


ROUTES = [(r"/api/([^/]+)/tasks/events", TaskEventsHandler)]
