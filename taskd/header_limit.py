"""431 for a request whose header block is over the limit, where Tornado would just hang up.

Tornado reads a request's header block with `read_until_regex(..., max_bytes=max_header_size)`;
past the limit its IOStream closes itself (an UnsatisfiableReadError) without a word, and the
client, say a browser carrying oversized cookies, sees only a reset connection. The stream below
answers 431 first, on a duplicate of the socket that outlives the stream's close, and keeps
reading and discarding what the client still sends for a moment: closing a socket with unread
data resets the connection, and a reset can destroy the answer before the client has read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable
from typing import Any

import orjson
from tornado.iostream import IOStream, StreamClosedError, UnsatisfiableReadError

from taskd.errors import problem

MAX_HEADER_BYTES = 32 * 1024
# How long, and how much, a refused client may still send before the connection is closed.
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 1024 * 1024
_READ_CHUNK = 64 * 1024

_BODY = orjson.dumps(
    problem(431, f"The request's header fields must total at most {MAX_HEADER_BYTES} bytes.")
)
RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Content-Type: application/problem+json\r\n"
    b"Content-Length: %d\r\n"
    b"Cache-Control: no-store\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"Connection: close\r\n"
    b"\r\n%s"
) % (len(_BODY), _BODY)

# The refusals under way; the event loop keeps only weak references to its tasks.
_refusals: set[asyncio.Task[None]] = set()


class HeaderLimitedStream(IOStream):
    """An IOStream that answers 431 when the header block it is reading overflows."""

    _reading_headers = False

    @classmethod
    def taking_over(cls, stream: IOStream) -> HeaderLimitedStream:
        """The same connection as `stream`, which has not been read or written yet."""
        return cls(
            stream.socket,
            max_buffer_size=stream.max_buffer_size,
            read_chunk_size=stream.read_chunk_size,
        )

    # Tornado's HTTP/1 server reads a header block, and nothing else, with read_until_regex;
    # read_until (a chunk-size line) is the only other read that can overflow.
    def read_until_regex(self, regex: bytes, max_bytes: int | None = None) -> Awaitable[bytes]:
        self._reading_headers = True
        return super().read_until_regex(regex, max_bytes)

    def read_until(self, delimiter: bytes, max_bytes: int | None = None) -> Awaitable[bytes]:
        self._reading_headers = False
        return super().read_until(delimiter, max_bytes)

    def close(self, exc_info: Any = False) -> None:
        overflow = isinstance(exc_info, UnsatisfiableReadError) and self._reading_headers
        if overflow and not self.closed():
            refusal = asyncio.ensure_future(_refuse(self.socket.dup()))
            _refusals.add(refusal)
            refusal.add_done_callback(_refusals.discard)
        super().close(exc_info)


async def _refuse(connection: socket.socket) -> None:
    stream = IOStream(connection)
    try:
        with contextlib.suppress(StreamClosedError, TimeoutError, OSError):
            await stream.write(RESPONSE)
            connection.shutdown(socket.SHUT_WR)
            discarded = 0
            async with asyncio.timeout(LINGER_SECONDS):
                while discarded < LINGER_MAX_BYTES:
                    discarded += len(await stream.read_bytes(_READ_CHUNK, partial=True))
    finally:
        stream.close()
