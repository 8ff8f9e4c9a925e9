"""One request's two halves as the server wraps them for its own bookkeeping (drain.py,
early_answers.py): the delegate Tornado hands the request to, and the connection the application
answers on. Both wrappers pass everything on; subclasses override what they watch."""

from __future__ import annotations

from asyncio import Future
from collections.abc import Awaitable
from typing import Any

from tornado.httputil import (
    HTTPConnection,
    HTTPHeaders,
    HTTPMessageDelegate,
    RequestStartLine,
    ResponseStartLine,
)


class ForwardingDelegate(HTTPMessageDelegate):
    """The request's half: what Tornado reads, passed on to the application's delegate."""

    def __init__(self, delegate: HTTPMessageDelegate) -> None:
        self._delegate = delegate

    def headers_received(
        self, start_line: RequestStartLine | ResponseStartLine, headers: HTTPHeaders
    ) -> Awaitable[None] | None:
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._delegate.data_received(chunk)

    def finish(self) -> None:
        self._delegate.finish()

    def on_connection_close(self) -> None:
        self._delegate.on_connection_close()


class ForwardingConnection(HTTPConnection):
    """The response's half: what the application writes, passed on to Tornado's connection.
    Everything besides writing (close callbacks, `context`, `detach()`) is the real one's."""

    def __init__(self, connection: HTTPConnection) -> None:
        self._connection = connection
        self.context = getattr(connection, "context", None)

    def write_headers(
        self,
        start_line: RequestStartLine | ResponseStartLine,
        headers: HTTPHeaders,
        chunk: bytes | None = None,
    ) -> Future[None]:
        return self._connection.write_headers(start_line, headers, chunk)

    def write(self, chunk: bytes) -> Future[None]:
        return self._connection.write(chunk)

    def finish(self) -> None:
        self._connection.finish()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)
