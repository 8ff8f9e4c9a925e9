"""Graceful stop: an HTTP server that knows which requests are in flight, and waits for them.

A request is in flight from its headers until the last byte of its response has been handed to
the socket (or its client went away). Tornado's own `close_all_connections()` closes every
connection at once, cutting off responses still being produced or written, and a request that
arrives on an idle keep-alive connection while it goes through them is run and then cut off too.

A drain therefore starts nothing it cannot finish. It closes the idle keep-alive connections at
once (gracefully, so a client reads the end of the stream, not a reset); a request whose headers
Tornado had read from one of them but not yet handed on is not started at all. Each request in
flight finishes with `Connection: close`, and its connection is closed after it. What is still
in flight at the deadline is cut off, and only that is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
from asyncio import Future
from collections.abc import Awaitable, Callable
from typing import Any, cast

from tornado.http1connection import HTTP1ServerConnection
from tornado.httpserver import HTTPServer
from tornado.httputil import (
    HTTPConnection,
    HTTPHeaders,
    HTTPMessageDelegate,
    RequestStartLine,
    ResponseStartLine,
)
from tornado.iostream import IOStream

from taskd.client_stream import close_gracefully, finish_closing, linger_on_close
from taskd.exchange import ForwardingConnection, ForwardingDelegate


class InFlight:
    """A count of requests in flight, and a way to wait until there are none."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        self.count += 1
        self._idle.clear()

    def end(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> None:
        """Return once no request is in flight, or after `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)


class _Place:
    """One request's place in the count: taken at its headers, given back exactly once."""

    def __init__(self, in_flight: InFlight) -> None:
        self._in_flight = in_flight
        self._taken = False

    def take(self) -> None:
        self._taken = True
        self._in_flight.begin()

    def give_back(self) -> None:
        # Both the end of the response and the client going away may call this.
        if self._taken:
            self._taken = False
            self._in_flight.end()


class _TrackedRequest(ForwardingDelegate):
    """Wraps the application's delegate for one request: in flight from its headers on, unless
    the drain closed its connection before they were handed on; then it never starts."""

    def __init__(
        self, delegate: HTTPMessageDelegate, place: _Place, may_start: Callable[[], bool]
    ) -> None:
        super().__init__(delegate)
        self._place = place
        self._may_start = may_start
        self._started = False

    def headers_received(
        self, start_line: RequestStartLine | ResponseStartLine, headers: HTTPHeaders
    ) -> Awaitable[None] | None:
        if not self._may_start():
            return None
        self._started = True
        self._place.take()
        return super().headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return super().data_received(chunk) if self._started else None

    def finish(self) -> None:
        if self._started:
            super().finish()

    def on_connection_close(self) -> None:
        if self._started:
            super().on_connection_close()
            self._place.give_back()


class _TrackedConnection(ForwardingConnection):
    """The request's side of the connection, which says when the response's last write is done,
    and, once the server drains, that the connection closes after it."""

    def __init__(
        self,
        connection: HTTPConnection,
        stream: IOStream,
        on_done: Callable[[], None],
        draining: Callable[[], bool],
    ) -> None:
        super().__init__(connection)
        self._stream = stream
        self._on_done = on_done
        self._draining = draining
        self._last_write: Future[None] | None = None

    def write_headers(
        self,
        start_line: RequestStartLine | ResponseStartLine,
        headers: HTTPHeaders,
        chunk: bytes | None = None,
    ) -> Future[None]:
        if self._draining():
            headers["Connection"] = "close"
            linger_on_close(self._stream)
        self._last_write = super().write_headers(start_line, headers, chunk)
        return self._last_write

    def write(self, chunk: bytes) -> Future[None]:
        self._last_write = super().write(chunk)
        return self._last_write

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            # taskd's handlers finish each response in one piece (with a Content-Length, not
            # chunked), so the last write carries the response's last byte.
            if self._last_write is None or self._last_write.done():
                self._on_done()
            else:
                self._last_write.add_done_callback(lambda _: self._on_done())


class DrainingHTTPServer(HTTPServer):
    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.in_flight = InFlight()
        self.draining = False
        # The connections waiting for their next request's headers: idle, for the drain.
        self._idle: set[HTTP1ServerConnection] = set()

    def start_request(
        self, server_conn: object, request_conn: HTTPConnection
    ) -> HTTPMessageDelegate:
        connection = cast(HTTP1ServerConnection, server_conn)
        if self.draining:
            # The answer before said `Connection: close` (or went out before the drain began).
            close_gracefully(connection.stream)
        else:
            self._idle.add(connection)
        place = _Place(self.in_flight)
        tracked = _TrackedConnection(
            request_conn, connection.stream, place.give_back, lambda: self.draining
        )
        return _TrackedRequest(
            super().start_request(server_conn, tracked), place, lambda: self._start(connection)
        )

    def _start(self, connection: HTTP1ServerConnection) -> bool:
        """Whether a request whose headers came on `connection` may start: not if the drain
        closed it meanwhile (Tornado may have read them, and not yet handed them on)."""
        if connection not in self._idle:
            return False
        self._idle.discard(connection)
        return True

    def on_close(self, server_conn: object) -> None:
        self._idle.discard(cast(HTTP1ServerConnection, server_conn))
        super().on_close(server_conn)

    async def drain(self, timeout: float) -> int:
        """Stop accepting, close the idle connections, give the requests in flight up to
        `timeout` seconds to finish, then close all connections. Returns how many requests were
        cut off."""
        self.stop()
        self.draining = True
        for connection in list(self._idle):
            close_gracefully(connection.stream)
        self._idle.clear()
        await self.in_flight.wait_idle(timeout)
        # No request starts any more, and none ends between this count and the closes below.
        cut_off = self.in_flight.count
        for connection in list(self._connections):
            connection.stream.close()
        await self.close_all_connections()
        await finish_closing()
        return cut_off
