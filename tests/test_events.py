"""Live updates, GET /api/{user_id}/tasks/events (CONTRACT §8): the change feed as Server-Sent
Events, pushed through PostgreSQL LISTEN/NOTIFY.

The stream is read from a raw socket (its chunks decoded here, so nothing hides what the server
sent) from taskd's own server, while a second client writes through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
import pytest
from conftest import (
    PGBOUNCER_URL,
    OneConnectionPool,
    body,
    direct_url,
    make_token,
    new_user_id,
)
from faultproxy import FaultProxy
from test_changes import drain

from taskd.config import Settings
from taskd.live import LiveUpdates
from taskd.metrics import Metrics

HEARTBEAT = 0.3
# How long a pushed event may take to arrive on a busy machine, and how long silence must last
# to count as "nothing more was sent".
ARRIVAL_TIMEOUT = 10.0
QUIET = 1.0


@pytest.fixture
def settings(settings: Settings, database_url: str, server_url: str) -> Settings:
    listen_url = direct_url(database_url, server_url) if PGBOUNCER_URL else None
    return settings.replace(event_heartbeat=HEARTBEAT, listen_url=listen_url)


@pytest.fixture
def app(io_loop: Any, app: Any) -> Iterator[Any]:
    yield app
    io_loop.run_sync(app.settings["live"].close_listener)


@pytest.fixture
def port(taskd_port: int) -> int:
    return taskd_port


@dataclass
class Event:
    id: str | None
    data: dict[str, Any] | None  # None: a comment line
    comment: str | None = None


class EventStream:
    """One raw HTTP/1.1 connection reading an event stream: the response head, then its chunks
    decoded and split into events and comments."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""  # of a response that is not a stream
        self._buffer = b""
        self.ended = False  # the terminating chunk arrived

    @classmethod
    async def open(
        cls,
        port: int,
        user: int,
        *,
        token: str | None = None,
        query: str = "",
        headers: dict[str, str] | None = None,
        path_user: int | None = None,
    ) -> EventStream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        stream = cls(reader, writer)
        lines = [
            f"GET /api/{path_user or user}/tasks/events{query} HTTP/1.1",
            "Host: 127.0.0.1",
            "Accept: text/event-stream",
        ]
        if token != "":
            lines.append(f"Authorization: Bearer {token or make_token(user)}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        await stream._read_head()
        return stream

    async def _read_head(self) -> None:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), ARRIVAL_TIMEOUT)
        status_line, *header_lines = head.decode().split("\r\n")[:-2]
        self.status = int(status_line.split()[1])
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if "content-length" in self.headers:
            length = int(self.headers["content-length"])
            self.body = await self.reader.readexactly(length)

    async def _read_chunk(self) -> bytes:
        size_line = await self.reader.readuntil(b"\r\n")
        size = int(size_line.strip(), 16)
        chunk = await self.reader.readexactly(size + 2)
        assert chunk.endswith(b"\r\n")
        if size == 0:
            self.ended = True
        return chunk[:-2]

    async def next(self, timeout: float = ARRIVAL_TIMEOUT) -> Event | None:
        """The next event or comment; None once the stream has ended."""
        deadline = time.monotonic() + timeout
        while b"\n\n" not in self._buffer:
            if self.ended:
                assert self._buffer == b"", f"cut mid-event: {self._buffer!r}"
                return None
            remaining = deadline - time.monotonic()
            self._buffer += await asyncio.wait_for(self._read_chunk(), max(remaining, 0.01))
        block, _, self._buffer = self._buffer.partition(b"\n\n")
        fields: dict[str, list[str]] = {}
        for line in block.decode().split("\n"):
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
        if "" in fields:
            return Event(None, None, comment="\n".join(fields[""]))
        return Event(fields["id"][0], orjson.loads("\n".join(fields["data"])))

    async def next_event(self, timeout: float = ARRIVAL_TIMEOUT) -> Event:
        """The next event, past any heartbeat comments."""
        deadline = time.monotonic() + timeout
        while True:
            event = await self.next(deadline - time.monotonic())
            assert event is not None, "the stream ended"
            if event.data is not None:
                return event

    async def assert_quiet(self, seconds: float = QUIET) -> None:
        """Nothing but heartbeats for `seconds`."""
        deadline = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError):
            while (remaining := deadline - time.monotonic()) > 0:
                event = await self.next(remaining)
                assert event is not None and event.data is None, event

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
def streams(io_loop: Any) -> Iterator[list[EventStream]]:
    opened: list[EventStream] = []
    yield opened
    for stream in opened:
        io_loop.run_sync(stream.close)


async def open_stream(port: int, user: int, streams: list[EventStream], **kwargs: Any):
    stream = await EventStream.open(port, user, **kwargs)
    streams.append(stream)
    return stream


async def test_the_stream_is_an_event_stream_whose_first_event_is_the_feed_without_since(
    api, port, streams, user_id
):
    first = await api.create(user_id, "first")
    stream = await open_stream(port, user_id, streams)
    assert stream.status == 200
    assert stream.headers["content-type"] == "text/event-stream"
    assert stream.headers["cache-control"] == "no-store"
    assert stream.headers["transfer-encoding"] == "chunked"
    event = await stream.next_event()
    assert event.data == {"tasks": [first], "deleted": [], "next": event.id, "has_more": False}


async def test_every_change_arrives_once_and_in_order(api, port, streams, user_id):
    stream = await open_stream(port, user_id, streams)
    assert (await stream.next_event()).data["tasks"] == []
    path = f"/api/{user_id}/tasks"
    created = await api.create(user_id, "one")
    assert (await stream.next_event()).data["tasks"] == [created]
    updated = await api.request(
        "PUT", f"{path}/{created['id']}", user=user_id, json={"title": "two"}
    )
    assert (await stream.next_event()).data["tasks"] == [body(updated)]
    toggled = await api.request("PATCH", f"{path}/{created['id']}/complete", user=user_id)
    assert (await stream.next_event()).data["tasks"] == [body(toggled)]
    keyed = await api.request(
        "POST", path, user=user_id, json={"title": "keyed"}, headers={"Idempotency-Key": "k1"}
    )
    assert (await stream.next_event()).data["tasks"] == [body(keyed)]
    deleted = await api.request("DELETE", f"{path}/{created['id']}", user=user_id)
    assert deleted.code == 204
    event = await stream.next_event()
    assert event.data["tasks"] == []
    assert [gone["id"] for gone in event.data["deleted"]] == [created["id"]]
    # A retried keyed create writes nothing, and sends nothing.
    again = await api.request(
        "POST", path, user=user_id, json={"title": "keyed"}, headers={"Idempotency-Key": "k1"}
    )
    assert again.code == 201
    await stream.assert_quiet()


async def test_a_burst_of_writes_arrives_as_the_feed_reports_it(api, port, streams, user_id):
    stream = await open_stream(port, user_id, streams)
    start = await stream.next_event()
    written = [await api.create(user_id, f"task {n}") for n in range(30)]
    seen: list[dict] = []
    while len(seen) < len(written):
        seen += (await stream.next_event()).data["tasks"]
    assert seen == written
    await stream.assert_quiet()
    feed_tasks, feed_deleted, _ = await drain(api, user_id, start.id)
    assert (feed_tasks, feed_deleted) == (seen, [])


async def test_a_resumed_stream_gets_exactly_what_changed_while_it_was_away(
    api, port, streams, user_id
):
    path = f"/api/{user_id}/tasks"
    kept, edited, removed = [await api.create(user_id, title) for title in ("k", "e", "r")]
    stream = await open_stream(port, user_id, streams)
    opened = await stream.next_event()
    await stream.close()

    edit = await api.request("PUT", f"{path}/{edited['id']}", user=user_id, json={"title": "E"})
    assert (await api.request("DELETE", f"{path}/{removed['id']}", user=user_id)).code == 204
    added = await api.create(user_id, "added")

    resumed = await open_stream(port, user_id, streams, headers={"Last-Event-ID": opened.id})
    event = await resumed.next_event()
    assert event.data["tasks"] == [body(edit), added]
    assert [gone["id"] for gone in event.data["deleted"]] == [removed["id"]]
    assert kept not in event.data["tasks"]
    await resumed.assert_quiet()


async def test_last_event_id_wins_over_since(api, port, streams, user_id):
    stream = await open_stream(port, user_id, streams)
    opened = await stream.next_event()
    first = await api.create(user_id, "first")
    after_first = await stream.next_event()
    await stream.close()
    second = await api.create(user_id, "second")

    both = await open_stream(
        port,
        user_id,
        streams,
        query=f"?since={opened.id}",
        headers={"Last-Event-ID": after_first.id},
    )
    assert (await both.next_event()).data["tasks"] == [second]
    from_since = await open_stream(port, user_id, streams, query=f"?since={opened.id}")
    assert (await from_since.next_event()).data["tasks"] == [first, second]


async def test_a_large_backlog_arrives_in_pages_of_limit(api, port, streams, user_id):
    written = [await api.create(user_id, f"t{n}") for n in range(5)]
    stream = await open_stream(port, user_id, streams, query="?limit=2")
    pages = [(await stream.next_event()).data for _ in range(3)]
    assert [page["has_more"] for page in pages] == [True, True, False]
    assert [task for page in pages for task in page["tasks"]] == written


class TestListenerGap:
    @pytest.fixture
    def proxy(self, database_url: str, server_url: str) -> Iterator[FaultProxy]:
        """Between the listener and PostgreSQL (the pool connects directly)."""
        proxy = FaultProxy(direct_url(database_url, server_url))
        yield proxy
        proxy.close()

    @pytest.fixture
    def settings(self, settings: Settings, proxy: FaultProxy) -> Settings:
        return settings.replace(listen_url=proxy.url())

    async def test_no_change_is_lost_while_the_listener_reconnects(
        self, api, app, port, streams, user_id, proxy, database_url, server_url
    ):
        """The listener's session killed (pg_terminate_backend), and no new one possible for a
        while: the write made meanwhile is notified to no one, and still arrives once the
        listener is back."""
        listener = app.settings["live"].listener
        stream = await open_stream(port, user_id, streams)
        await stream.next_event()
        await wait_until(lambda: listener.connected)
        proxy.cut("stall_new")
        async with await psycopg.AsyncConnection.connect(
            direct_url(database_url, server_url), autocommit=True
        ) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s::integer)", [listener.backend_pid])
        await wait_until(lambda: not listener.connected)
        during_gap = await api.create(user_id, "written while no one listened")
        await stream.assert_quiet()
        proxy.restore()
        assert (await stream.next_event()).data["tasks"] == [during_gap]
        after_gap = await api.create(user_id, "written once it listens again")
        assert (await stream.next_event()).data["tasks"] == [after_gap]


async def wait_until(condition: Any, timeout: float = ARRIVAL_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_heartbeats_keep_a_quiet_stream_talking(port, streams, user_id):
    stream = await open_stream(port, user_id, streams)
    await stream.next_event()
    started = time.monotonic()
    for _ in range(2):
        event = await stream.next(ARRIVAL_TIMEOUT)
        assert event is not None and event.comment == "heartbeat"
    assert time.monotonic() - started < 2 * HEARTBEAT + 2


async def test_without_a_token_401_and_with_another_users_403(port, streams, user_id):
    missing = await open_stream(port, user_id, streams, token="")
    assert missing.status == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"] == 'Bearer realm="taskd"'
    assert orjson.loads(missing.body)["status"] == 401
    expired = await open_stream(port, user_id, streams, token=make_token(user_id, ttl=-100))
    assert expired.status == 401
    other = await open_stream(port, user_id, streams, path_user=new_user_id())
    assert other.status == 403
    assert orjson.loads(other.body)["status"] == 403


async def test_a_token_that_is_not_ours_is_a_422_naming_where_it_came_from(port, streams, user_id):
    bad_header = await open_stream(port, user_id, streams, headers={"Last-Event-ID": "nope"})
    assert bad_header.status == 422
    assert orjson.loads(bad_header.body)["errors"][0]["loc"] == ["header", "Last-Event-ID"]
    bad_since = await open_stream(port, user_id, streams, query="?since=nope")
    assert bad_since.status == 422
    assert orjson.loads(bad_since.body)["errors"][0]["loc"] == ["query", "since"]


class TestBusyDatabase(OneConnectionPool):
    async def test_a_stream_that_cannot_read_its_first_page_is_a_503(
        self, api, pool, port, streams, user_id
    ):
        await api.create(user_id)  # its user is known: no database work before the read
        async with pool.connection():
            refused = await open_stream(port, user_id, streams)
        assert refused.status == 503
        assert refused.headers["retry-after"] == "2"
        assert refused.headers["content-type"] == "application/problem+json"
        assert await open_streams_metric(port) == 0


class TestBounds:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.replace(event_streams_per_user=2, event_streams_max=3)

    async def test_past_the_bound_per_user_429_with_retry_after(self, port, streams, user_id):
        for _ in range(2):
            assert (await open_stream(port, user_id, streams)).status == 200
        refused = await open_stream(port, user_id, streams)
        assert refused.status == 429
        assert refused.headers["retry-after"] == "10"
        assert refused.headers["content-type"] == "application/problem+json"
        await streams[0].close()
        await wait_for_stream_count(port, 1)
        assert (await open_stream(port, user_id, streams)).status == 200

    async def test_past_the_bound_per_worker_429(self, port, streams):
        for _ in range(3):
            assert (await open_stream(port, new_user_id(), streams)).status == 200
        refused = await open_stream(port, new_user_id(), streams)
        assert refused.status == 429
        assert refused.headers["retry-after"] == "10"


async def open_streams_metric(port: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    text = (await reader.read()).decode()
    writer.close()
    for line in text.splitlines():
        if line.startswith("taskd_event_streams_open "):
            return float(line.split()[1])
    raise AssertionError("no taskd_event_streams_open in /metrics")


async def wait_for_stream_count(port: int, count: int) -> None:
    deadline = time.monotonic() + ARRIVAL_TIMEOUT
    while await open_streams_metric(port) != count:
        assert time.monotonic() < deadline, "the open stream count never came to {count}"
        await asyncio.sleep(0.05)


async def test_metrics_count_the_open_streams(port, streams, user_id):
    assert await open_streams_metric(port) == 0
    stream = await open_stream(port, user_id, streams)
    await stream.next_event()
    assert await open_streams_metric(port) == 1
    await stream.close()
    await wait_for_stream_count(port, 0)


class TestExpiry:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.replace(jwt_leeway=0)

    async def test_the_stream_ends_cleanly_when_its_token_expires(self, port, streams, user_id):
        started = time.monotonic()
        stream = await open_stream(port, user_id, streams, token=make_token(user_id, ttl=2))
        await stream.next_event()

        async def until_the_end() -> None:
            while (event := await stream.next()) is not None:
                assert event.data is None

        await asyncio.wait_for(until_the_end(), ARRIVAL_TIMEOUT)
        assert stream.ended
        assert 1 <= time.monotonic() - started < 2 + 3


@pytest.mark.skipif(not PGBOUNCER_URL, reason="needs PgBouncer in transaction mode")
async def test_through_pgbouncer_in_transaction_mode_a_listener_hears_nothing(
    io_loop, settings, database_url, port, streams, user_id, api
):
    """Why TASKD_LISTEN_URL exists: LISTEN through the pooler is undone once its transaction
    ends, and the writes' notifications reach no one."""
    live = LiveUpdates(settings.replace(listen_url=database_url), database_url, Metrics())
    subscription = live.listener.subscribe(user_id)
    try:
        await wait_until(lambda: live.listener.connected)
        await asyncio.sleep(0.2)
        subscription.woken.clear()
        await api.create(user_id, "unheard")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(subscription.woken.wait(), QUIET)
    finally:
        await live.close_listener()


async def test_sigterm_ends_open_streams_at_once_and_exits_0(
    spawn, external_env, user_id, database_url, server_url
):
    env = {**external_env, "TASKD_WORKERS": "2", "TASKD_DRAIN_TIMEOUT": "30"}
    if PGBOUNCER_URL:
        env["TASKD_LISTEN_URL"] = direct_url(database_url, server_url)
    process = spawn("serve", "--port", "0", env=env)
    port = urlsplit(process.base_url()).port
    assert port is not None
    streams = [await EventStream.open(port, user_id) for _ in range(4)]
    try:
        for stream in streams:
            assert stream.status == 200
            await stream.next_event()
        started = time.monotonic()
        returncode = await asyncio.get_running_loop().run_in_executor(None, process.terminate)
        elapsed = time.monotonic() - started
        assert returncode == 0, process.output()
        assert elapsed < 5, process.output()
        for stream in streams:
            assert await stream.next(ARRIVAL_TIMEOUT) is None
            assert stream.ended
    finally:
        for stream in streams:
            await stream.close()
