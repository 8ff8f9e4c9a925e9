"""Live updates under measurement: a raw-socket reader of event streams, and the writes whose
events it times. Standard library only, like the rest of the harness."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from harness import HOST, BenchError

TIMEOUT_S = 30.0


async def open_stream(
    port: int, user_id: int, token: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An event stream of `user_id`'s changes, its response head read and checked."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(
        (
            f"GET /api/{user_id}/tasks/events HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_S)
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise BenchError(f"the event stream of user {user_id} answered {head.decode()!r}")
    return reader, writer


async def read_events(
    reader: asyncio.StreamReader, on_event: Callable[[dict[str, Any], float], None]
) -> None:
    """Call `on_event(data, arrival time)` for each event (heartbeats skipped) until EOF."""
    buffer = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return
        buffer += chunk[:-2]
        while b"\n\n" in buffer:
            block, _, buffer = buffer.partition(b"\n\n")
            arrived = time.perf_counter()
            data = [line[6:] for line in block.split(b"\n") if line.startswith(b"data: ")]
            if data:
                on_event(json.loads(b"\n".join(data)), arrived)


async def request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    method: str,
    path: str,
    token: str,
    body: dict[str, Any],
) -> tuple[int, bytes]:
    """One keep-alive request with a JSON body; (status, body) once the response is all in."""
    payload = json.dumps(body).encode()
    writer.write(
        (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        + payload
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_S)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def write_latencies(port: int, user_id: int, token: str, writes: int) -> list[float]:
    """Seconds from each create's complete 2xx response to the arrival of its event on another
    connection, for `writes` creates made one after the other. A negative figure: the event
    came first (the notification is sent before the response)."""
    stream_reader, stream_writer = await open_stream(port, user_id, token)
    arrivals: dict[int, float] = {}
    first = asyncio.Event()

    def on_event(data: dict[str, Any], arrived: float) -> None:
        first.set()
        for task in data["tasks"]:
            arrivals.setdefault(task["id"], arrived)

    reading = asyncio.create_task(read_events(stream_reader, on_event))
    await asyncio.wait_for(first.wait(), TIMEOUT_S)
    api_reader, api_writer = await asyncio.open_connection(HOST, port)
    answered: dict[int, float] = {}
    try:
        for n in range(writes):
            status, body = await request(
                api_reader, api_writer, "POST", f"/api/{user_id}/tasks", token, {"title": f"{n}"}
            )
            if status != 201:
                raise BenchError(f"a create answered {status}: {body[:300]!r}")
            answered[json.loads(body)["id"]] = time.perf_counter()
        deadline = time.monotonic() + TIMEOUT_S
        while not answered.keys() <= arrivals.keys():
            if time.monotonic() > deadline:
                missing = len(answered.keys() - arrivals.keys())
                raise BenchError(f"{missing} of {writes} writes never arrived as events")
            await asyncio.sleep(0.01)
    finally:
        reading.cancel()
        for writer in (stream_writer, api_writer):
            writer.close()
    return [arrivals[task_id] - at for task_id, at in answered.items()]


class IdleStreams:
    """Event streams held open by a thread of their own, their heartbeats read and dropped,
    while the caller runs load against the same server."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._writers: list[asyncio.StreamWriter] = []
        self._readers: list[asyncio.Task[None]] = []

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(TIMEOUT_S * 4)

    def open(self, port: int, users: list[tuple[int, str]]) -> None:
        self._call(self._open(port, users))

    async def _open(self, port: int, users: list[tuple[int, str]]) -> None:
        for user_id, token in users:
            reader, writer = await open_stream(port, user_id, token)
            self._writers.append(writer)
            self._readers.append(asyncio.create_task(read_events(reader, lambda *_: None)))

    def close(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(TIMEOUT_S)

    async def _close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        for writer in self._writers:
            writer.close()
        self._readers.clear()
        self._writers.clear()
