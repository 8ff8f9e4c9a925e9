"""A client connection's stream: a 431 where Tornado would just hang up, and closes that never
turn into a reset.

Closing a socket with unread data in it resets the connection, and a reset can destroy an
answer the client has not read yet. So when taskd closes a connection on purpose (after an answer
that said `Connection: close`, or an idle one at a drain) it does so gracefully: it shuts the
socket down for writing, so the client reads the whole answer and then the end of the stream, and
reads and discards what the client still sends for a bounded time. This happens on a duplicate of
the socket that outlives Tornado's stream, so Tornado closes its stream as it always does.

Tornado reads a request's header block with `read_until_regex(..., max_bytes=max_header_size)`;
past the limit its IOStream closes itself (an UnsatisfiableReadError) without a word, and the
client, say a browser carrying oversized cookies, sees only a reset connection. The stream below
answers 431 first, on the duplicate, with the CORS headers its Origin earns (read from the header
block, which may go on past the limit), and then closes gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Awaitable, Coroutine
from typing import Any

import orjson
from tornado.iostream import IOStream, StreamClosedError, UnsatisfiableReadError

from taskd import cors
from taskd.errors import problem

MAX_HEADER_BYTES = 32 * 1024
# How long, and how much, a client may still send to a connection taskd is closing (and, for a
# 431, to the rest of its header block) before the connection is closed outright: enough for a
# body past the 1 MiB Tornado reads, refused with 413. A client that has sent nothing for
# LINGER_QUIET_SECONDS has nothing more in flight.
LINGER_SECONDS = 2.0
LINGER_QUIET_SECONDS = 0.5
LINGER_MAX_BYTES = 4 * 1024 * 1024
_READ_CHUNK = 64 * 1024

_HEADER_BLOCK_END = re.compile(rb"\r?\n\r?\n")
# A whole line of the header block; a line still being received does not count.
_ORIGIN_LINE = re.compile(rb"(?im)^origin:[ \t]*([^\r\n]*?)[ \t]*\r?\n")

_BODY_431 = orjson.dumps(
    problem(431, f"The request's header fields must total at most {MAX_HEADER_BYTES} bytes.")
)

# The closes under way; the event loop keeps only weak references to its tasks.
_closing: set[asyncio.Task[None]] = set()


def answer_431(headers: dict[str, str]) -> bytes:
    """The whole 431 response, with `headers` (CORS) besides its own."""
    lines = [
        b"HTTP/1.1 431 Request Header Fields Too Large",
        b"Content-Type: application/problem+json",
        b"Content-Length: %d" % len(_BODY_431),
        b"Cache-Control: no-store",
        b"X-Content-Type-Options: nosniff",
        *(f"{name}: {value}".encode("latin-1") for name, value in headers.items()),
        b"Connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + _BODY_431


class ClientStream(IOStream):
    """An IOStream that answers 431 when the header block it is reading overflows, and closes
    gracefully once `linger_on_close` is set."""

    _reading_headers = False
    linger_on_close = False

    def __init__(self, *args: Any, cors_origins: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cors_origins = cors_origins

    @classmethod
    def taking_over(cls, stream: IOStream, cors_origins: tuple[str, ...]) -> ClientStream:
        """The same connection as `stream`, which has not been read or written yet."""
        return cls(
            stream.socket,
            max_buffer_size=stream.max_buffer_size,
            read_chunk_size=stream.read_chunk_size,
            cors_origins=cors_origins,
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
        if not self.closed():
            if isinstance(exc_info, UnsatisfiableReadError) and self._reading_headers:
                # What Tornado read of the header block is still in its buffer.
                received = bytes(self._read_buffer)
                _hand_over(_refuse(self.socket.dup(), received, self._cors_origins))
            elif self.linger_on_close:
                _hand_over(_linger(self.socket.dup()))
        super().close(exc_info)


def linger_on_close(stream: IOStream) -> None:
    """From now on, closing `stream` closes its connection gracefully (if it is a ClientStream)."""
    if isinstance(stream, ClientStream):
        stream.linger_on_close = True


def close_gracefully(stream: IOStream) -> None:
    linger_on_close(stream)
    stream.close()


async def finish_closing() -> None:
    """Wait for the graceful closes under way (each ends within its bounds)."""
    if _closing:
        await asyncio.wait(set(_closing))


def _hand_over(close: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(close)
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def _refuse(connection: socket.socket, received: bytes, origins: tuple[str, ...]) -> None:
    stream = IOStream(connection)
    try:
        with contextlib.suppress(StreamClosedError, OSError):
            origin = await _origin(stream, received) if origins else None
            await stream.write(answer_431(cors.response_headers(origin, origins)))
            await _discard(stream, connection)
    finally:
        stream.close()


async def _linger(connection: socket.socket) -> None:
    stream = IOStream(connection)
    try:
        with contextlib.suppress(StreamClosedError, OSError):
            await _discard(stream, connection)
    finally:
        stream.close()


async def _origin(stream: IOStream, received: bytes) -> str | None:
    """The request's Origin, from the header block: what was received, and the rest as the
    client sends it, within the linger bounds (past them the answer goes without it)."""
    block = bytearray(received)
    end = _HEADER_BLOCK_END.search(block)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LINGER_SECONDS):
            while end is None and len(block) < LINGER_MAX_BYTES:
                searched = max(0, len(block) - 3)  # the blank line may straddle two reads
                block += await stream.read_bytes(_READ_CHUNK, partial=True)
                end = _HEADER_BLOCK_END.search(block, searched)
    match = _ORIGIN_LINE.search(block, 0, end.end() if end else len(block))
    return match.group(1).decode("latin-1") if match else None


async def _discard(stream: IOStream, connection: socket.socket) -> None:
    """Shut the connection down for writing, then read and discard what the client still sends
    until it closes its end too, falls quiet, or the linger bounds are reached."""
    connection.shutdown(socket.SHUT_WR)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + LINGER_SECONDS
    discarded = 0
    with contextlib.suppress(TimeoutError):
        while discarded < LINGER_MAX_BYTES and loop.time() < give_up:
            quiet = min(LINGER_QUIET_SECONDS, give_up - loop.time())
            read = stream.read_bytes(_READ_CHUNK, partial=True)
            discarded += len(await asyncio.wait_for(read, quiet))
