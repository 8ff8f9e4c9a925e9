"""Slow and broken clients: idle connections and headers that trickle in are closed after the idle
timeout, and a body that stalls is closed after the body timeout without holding a database
connection meanwhile.

The server is taskd's own (taskd.server.make_server) with its timeouts shortened; raw sockets
play the clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import PGBOUNCER_URL, make_token
from tornado.testing import bind_unused_port

from taskd.server import make_server

IDLE_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
# How much later than its timeout a close may come on a busy machine.
SLACK = 4.0
TRICKLE_INTERVAL = 0.05
NO_REPLY = 30.0


@pytest.fixture
def port(io_loop: Any, app: Any) -> Iterator[int]:
    server = make_server(app, idle_timeout=IDLE_TIMEOUT, body_timeout=BODY_TIMEOUT)
    sock, port = bind_unused_port()
    server.add_sockets([sock])
    yield port
    server.stop()
    io_loop.run_sync(server.close_all_connections)


class Client:
    """One raw connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_until_closed(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        return await asyncio.wait_for(self.reader.read(), NO_REPLY)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
def clients(io_loop: Any) -> Iterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        io_loop.run_sync(client.close)


async def connect(port: int, clients: list[Client]) -> Client:
    client = await Client.connect(port)
    clients.append(client)
    return client


def assert_closed_after(started: float, timeout: float) -> float:
    elapsed = time.monotonic() - started
    assert timeout * 0.8 <= elapsed < timeout + SLACK, elapsed
    return elapsed


async def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(port, clients):
    started = time.monotonic()
    client = await connect(port, clients)
    assert await client.read_until_closed() == b""
    assert_closed_after(started, IDLE_TIMEOUT)


async def test_headers_that_trickle_in_are_cut_off_at_the_idle_timeout(port, clients):
    """The timeout covers the whole header block: a byte every 50 ms does not keep it open."""
    started = time.monotonic()
    client = await connect(port, clients)

    async def trickle() -> None:
        for byte in b"GET /healthz HTTP/1.1\r\n" + b"X-Slow: still coming\r\n" * 1000:
            await client.send(bytes([byte]))
            await asyncio.sleep(TRICKLE_INTERVAL)

    sender = asyncio.ensure_future(trickle())
    try:
        assert await client.read_until_closed() == b""
        assert_closed_after(started, IDLE_TIMEOUT)
        assert not sender.done()  # the client was still sending when the server hung up
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender


async def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(port, clients):
    client = await connect(port, clients)
    await client.send(b"GET /healthz HTTP/1.1\r\nHost: taskd\r\n\r\n")
    head = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), NO_REPLY)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert await asyncio.wait_for(client.reader.readexactly(15), NO_REPLY) == b'{"status":"ok"}'
    started = time.monotonic()
    assert await client.read_until_closed() == b""
    assert_closed_after(started, IDLE_TIMEOUT)


async def _connections_in_use(database_url: str) -> int:
    """taskd's connections (all of this process's) that are not idle, as PostgreSQL sees them."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FILTER (WHERE state <> 'idle'), count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'taskd[%%]'"
        )
        row = await cursor.fetchone()
    assert row is not None
    busy, total = row
    assert total >= 1  # the pool's connections are there, just idle
    return int(busy)


async def test_a_stalled_body_holds_no_database_connection_and_is_closed(
    port, clients, pool, database_url, user_id
):
    body = b'{"title": "never arrives in full"}'.ljust(1000)
    client = await connect(port, clients)
    checkouts = pool.get_stats().get("requests_num", 0)
    await client.send(
        f"POST /api/{user_id}/tasks HTTP/1.1\r\nHost: taskd\r\n"
        f"Authorization: Bearer {make_token(user_id)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[:10]
    )
    started = time.monotonic()
    # Past its checks (a refused request is answered at once: the read below sees no answer),
    # the request waits for the rest of its body, without asking the pool for a connection.
    await asyncio.sleep(BODY_TIMEOUT / 2)

    stats = pool.get_stats()
    assert stats.get("requests_num", 0) == checkouts, stats
    assert stats["pool_size"] - stats["pool_available"] == 0, stats
    if not PGBOUNCER_URL:  # behind PgBouncer the server's sessions are PgBouncer's, not named
        assert await _connections_in_use(database_url) == 0
    assert time.monotonic() - started < BODY_TIMEOUT  # all of that while the body was stalled

    assert await client.read_until_closed() == b""
    assert_closed_after(started, BODY_TIMEOUT)
    assert await _task_count(database_url, user_id) == 0


async def _task_count(database_url: str, user_id: int) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT count(*) FROM tasks WHERE user_id = %s", [user_id])
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_the_server_serves_normally_after_slow_clients_were_cut_off(port, clients, user_id):
    stalled = [await connect(port, clients) for _ in range(5)]
    for client in stalled:
        await client.send(b"GET /api/1/tasks HTTP/1.1\r\nHost: ta")
    fresh = await connect(port, clients)
    await fresh.send(
        f"GET /api/{user_id}/tasks HTTP/1.1\r\nHost: taskd\r\nConnection: close\r\n"
        f"Authorization: Bearer {make_token(user_id)}\r\n\r\n".encode()
    )
    response = await fresh.read_until_closed()
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b"\r\n\r\n[]")
    for client in stalled:
        assert await client.read_until_closed() == b""
