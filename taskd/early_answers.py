"""Answers given before the request has been read keep the connection, or close it cleanly.

taskd's API handlers stream their bodies (`@stream_request_body`) and refuse from `prepare()`
(401, 403, 405, 413, 415) before Tornado has read the body, and, for a request without one,
before Tornado has even seen that there is none. Tornado closes a connection whose request it
had not finished reading when the answer finished ("the only way to avoid reading the whole
input body", HTTP1Connection.finish), without saying `Connection: close`; the client's next
request on that keep-alive connection is lost, and the unread body turns the close into a reset
that can take the answer with it.

So an early answer is held back until Tornado has read the request, discarding a body of at
most 64 KiB (the most taskd accepts), and the connection then serves the next request. A longer
body, or one of unknown length (chunked), is not worth reading: the answer goes out at once with
`Connection: close`, and the connection is closed gracefully (client_stream.py).
"""

from __future__ import annotations

from asyncio import Future
from collections.abc import Awaitable, Callable
from functools import partial

from tornado.concurrent import chain_future
from tornado.httputil import (
    HTTPConnection,
    HTTPHeaders,
    HTTPMessageDelegate,
    RequestStartLine,
    ResponseStartLine,
)
from tornado.iostream import IOStream, StreamClosedError

from taskd.client_stream import linger_on_close
from taskd.exchange import ForwardingConnection, ForwardingDelegate
from taskd.handlers.base import MAX_BODY_BYTES
from taskd.headers import content_length

# The longest body read and discarded after an early answer, to keep its connection.
DISCARD_MAX_BYTES = MAX_BODY_BYTES


def _discardable(headers: HTTPHeaders) -> bool:
    """Whether the body these headers announce is short enough to read and throw away."""
    if "Transfer-Encoding" in headers:
        return False
    length = content_length(headers.get("Content-Length", "0"))
    return length is not None and length <= DISCARD_MAX_BYTES


class HeldAnswer(ForwardingConnection):
    """The connection an answer is written to: one that comes before the request has been read
    waits for it, or, when the request will not be read, says `Connection: close`."""

    def __init__(self, connection: HTTPConnection, stream: IOStream) -> None:
        super().__init__(connection)
        self._stream = stream
        self._request_read = False
        self._discardable = True
        self._held: list[tuple[Callable[[], Future[None] | None], Future[None] | None]] = []

    def request_started(self, headers: HTTPHeaders) -> None:
        self._discardable = _discardable(headers)

    def request_read(self) -> None:
        """Tornado has read the whole request: what was held back goes out now."""
        self._request_read = True
        held, self._held = self._held, []
        for write, future in held:
            written = write()
            if future is not None and written is not None:
                chain_future(written, future)

    def request_abandoned(self) -> None:
        """The connection closed while the request was being read: nothing held will go out."""
        held, self._held = self._held, []
        for _, future in held:
            if future is not None and not future.done():
                future.set_exception(StreamClosedError())
                future.exception()  # retrieved: nobody waits for an answer that cannot go out

    def write_headers(
        self,
        start_line: RequestStartLine | ResponseStartLine,
        headers: HTTPHeaders,
        chunk: bytes | None = None,
    ) -> Future[None]:
        if not self._request_read:
            if self._discardable:
                return self._hold(partial(super().write_headers, start_line, headers, chunk))
            headers["Connection"] = "close"
            linger_on_close(self._stream)
        return super().write_headers(start_line, headers, chunk)

    def write(self, chunk: bytes) -> Future[None]:
        if self._held:
            return self._hold(partial(super().write, chunk))
        return super().write(chunk)

    def finish(self) -> None:
        if self._held:
            self._held.append((super().finish, None))
        else:
            super().finish()

    def _hold(self, write: Callable[[], Future[None]]) -> Future[None]:
        future: Future[None] = Future()
        self._held.append((write, future))
        return future


class HeldRequest(ForwardingDelegate):
    """Tells the request's HeldAnswer how long its body is and when it has been read."""

    def __init__(self, delegate: HTTPMessageDelegate, answer: HeldAnswer) -> None:
        super().__init__(delegate)
        self._answer = answer

    def headers_received(
        self, start_line: RequestStartLine | ResponseStartLine, headers: HTTPHeaders
    ) -> Awaitable[None] | None:
        self._answer.request_started(headers)
        return super().headers_received(start_line, headers)

    def finish(self) -> None:
        self._answer.request_read()
        super().finish()

    def on_connection_close(self) -> None:
        self._answer.request_abandoned()
        super().on_connection_close()
