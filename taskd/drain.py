"""Graceful stop: an HTTP server that knows which requests are in flight, and waits for them.

A request is in flight from its headers until the last byte of its response has been handed to
the socket (or its client went away). Tornado's own `close_all_connections()` closes every
connection at once, cutting off responses still being produced or written: a drain first waits
for the requests in flight, and only then closes what is left, the idle keep-alive connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from asyncio import Future
from collections.abc import Awaitable, Callable
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.httputil import (
    HTTPConnection,
    HTTPHeaders,
    HTTPMessageDelegate,
    RequestStartLine,
    ResponseStartLine,
)


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


class _TrackedRequest(HTTPMessageDelegate):
    """Wraps the application's delegate for one request: in flight from its headers on."""

    def __init__(self, delegate: HTTPMessageDelegate, place: _Place) -> None:
        self._delegate = delegate
        self._place = place

    def headers_received(
        self, start_line: RequestStartLine | ResponseStartLine, headers: HTTPHeaders
    ) -> Awaitable[None] | None:
        self._place.take()
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._delegate.data_received(chunk)

    def finish(self) -> None:
        self._delegate.finish()

    def on_connection_close(self) -> None:
        self._delegate.on_connection_close()
        self._place.give_back()


class _TrackedConnection(HTTPConnection):
    """The request's side of the connection, which says when the response's last write is done.

    Everything besides writing (close callbacks, `context`, `detach()`) is the real connection's.
    """

    def __init__(self, connection: HTTPConnection, on_done: Callable[[], None]) -> None:
        self._connection = connection
        self._on_done = on_done
        self._last_write: Future[None] | None = None
        self.context = getattr(connection, "context", None)

    def write_headers(
        self,
        start_line: RequestStartLine | ResponseStartLine,
        headers: HTTPHeaders,
        chunk: bytes | None = None,
    ) -> Future[None]:
        self._last_write = self._connection.write_headers(start_line, headers, chunk)
        return self._last_write

    def write(self, chunk: bytes) -> Future[None]:
        self._last_write = self._connection.write(chunk)
        return self._last_write

    def finish(self) -> None:
        try:
            self._connection.finish()
        finally:
            # taskd's handlers finish each response in one piece (with a Content-Length, not
            # chunked), so the last write carries the response's last byte.
            if self._last_write is None or self._last_write.done():
                self._on_done()
            else:
                self._last_write.add_done_callback(lambda _: self._on_done())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class DrainingHTTPServer(HTTPServer):
    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.in_flight = InFlight()

    def start_request(
        self, server_conn: object, request_conn: HTTPConnection
    ) -> HTTPMessageDelegate:
        place = _Place(self.in_flight)
        connection = _TrackedConnection(request_conn, place.give_back)
        return _TrackedRequest(super().start_request(server_conn, connection), place)

    async def drain(self, timeout: float) -> int:
        """Stop accepting, give the requests in flight up to `timeout` seconds to finish, then
        close all connections. Returns how many requests were cut off."""
        self.stop()
        # From now on a request is answered with `Connection: close`, and its connection closed.
        self.conn_params.no_keep_alive = True
        await self.in_flight.wait_idle(timeout)
        cut_off = self.in_flight.count
        await self.close_all_connections()
        return cut_off
