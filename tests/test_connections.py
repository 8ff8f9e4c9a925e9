"""CONTRACT §9: every answer, whatever its status, leaves its keep-alive connection usable for the
next request, or says `Connection: close` and closes gracefully, so that the answer arrives whole.

Early refusals (401, 403, 405, 413 and 415 come from `prepare()` of a handler that streams its
body, before Tornado has read the request) used to close the connection without a word: the
next request on it was lost, 200 times out of 200. Raw sockets play the clients, as HTTP/1.1
clients behave: the next request after the answer, or pipelined right behind the first one.
taskd's own server (taskd.server.make_server) serves the app on the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from conftest import OneConnectionPool, make_token, new_user_id

from taskd.client_stream import MAX_HEADER_BYTES

NO_REPLY = 30.0
NEXT_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: taskd\r\n\r\n"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def port(taskd_port: int) -> int:
    return taskd_port


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def says_close(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


class Connection:
    """One raw keep-alive connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, method: str = "GET") -> Response | None:
        """The next final response (a 100 Continue is skipped), or None once the server has
        closed the connection cleanly; a reset fails the test."""
        while True:
            try:
                head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), NO_REPLY)
            except asyncio.IncompleteReadError as error:
                assert error.partial == b"", f"a partial answer: {error.partial!r}"
                return None
            status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
            status = int(status_line.split()[1])
            if status != 100:
                break
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if method == "HEAD" or status in (204, 304) else int(headers["content-length"])
        body = await asyncio.wait_for(self.reader.readexactly(length), NO_REPLY)
        return Response(status, headers, body)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
def connect(io_loop: Any, port: int) -> Iterator[Any]:
    opened: list[Connection] = []

    async def open_one() -> Connection:
        connection = Connection(*await asyncio.open_connection("127.0.0.1", port))
        opened.append(connection)
        return connection

    yield open_one
    for connection in opened:
        io_loop.run_sync(connection.close)


@dataclass(frozen=True)
class Call:
    """One request; `{user}` and `{task}` (a task of the user's) fill in the path. `body` goes
    with a Content-Length unless `chunked`."""

    method: str
    path: str
    status: int
    token: str = "user"  # "user", "other" (another user's) or "none"
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False

    def encode(self, user: int, task: int) -> bytes:
        tokens = {"user": make_token(user), "other": make_token(new_user_id()), "none": None}
        lines = [f"{self.method} {self.path.format(user=user, task=task)} HTTP/1.1", "Host: t"]
        if tokens[self.token] is not None:
            lines.append(f"Authorization: Bearer {tokens[self.token]}")
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        body = self.body or b""
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        elif self.body is not None:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


TASK = b'{"title": "t"}'
BODY_70_KB = b'{"title": "' + b"x" * 70_000 + b'"}'
# Every status taskd answers with a route, each from where it is decided. The 503 is
# TestBusyPool's below, the 431 test_a_431_says_close_and_arrives_whole's.
CALLS = {
    "200 list": Call("GET", "/api/{user}/tasks", 200),
    "201 create": Call("POST", "/api/{user}/tasks", 201, body=TASK, headers=JSON),
    "201 create, chunked body": Call(
        "POST", "/api/{user}/tasks", 201, body=TASK, headers=JSON, chunked=True
    ),
    "204 delete": Call("DELETE", "/api/{user}/tasks/{task}", 204),
    "304 not modified": Call(
        "GET", "/api/{user}/tasks/{task}", 304, headers={"If-None-Match": "*"}
    ),
    "401 no token": Call("GET", "/api/{user}/tasks", 401, token="none"),
    "401 bad token": Call("GET", "/api/{user}/tasks", 401, headers={"Authorization": "Bearer x"}),
    "401 with a body": Call(
        "POST", "/api/{user}/tasks", 401, token="none", body=TASK, headers=JSON
    ),
    "401 with a 64 KiB body": Call(
        "POST", "/api/{user}/tasks", 401, token="none", body=b"x" * 65536, headers=JSON
    ),
    "401 after Expect: 100-continue": Call(
        "PUT",
        "/api/{user}/tasks/{task}",
        401,
        token="none",
        body=TASK,
        headers={**JSON, "Expect": "100-continue"},
    ),
    "401 with a chunked body": Call(
        "POST", "/api/{user}/tasks", 401, token="none", body=TASK, headers=JSON, chunked=True
    ),
    "403": Call("GET", "/api/{user}/tasks", 403, token="other"),
    "403 with a body": Call(
        "PUT", "/api/{user}/tasks/{task}", 403, token="other", body=TASK, headers=JSON
    ),
    "404 task": Call("GET", "/api/{user}/tasks/999999999999", 404),
    "404 no route, with a body": Call("POST", "/nowhere", 404, token="none", body=TASK),
    "405": Call("DELETE", "/api/{user}/tasks", 405),
    "405 with a body": Call("PATCH", "/api/{user}/tasks", 405, body=TASK, headers=JSON),
    "405 health, with a body": Call("POST", "/healthz", 405, token="none", body=TASK),
    "412": Call(
        "PUT",
        "/api/{user}/tasks/{task}",
        412,
        body=TASK,
        headers={**JSON, "If-Match": '"stale"'},
    ),
    "413": Call("POST", "/api/{user}/tasks", 413, body=BODY_70_KB, headers=JSON),
    "413 chunked": Call(
        "POST", "/api/{user}/tasks", 413, body=BODY_70_KB, headers=JSON, chunked=True
    ),
    "415": Call("POST", "/api/{user}/tasks", 415, body=TASK, headers={"Content-Type": "text/x"}),
    "422": Call("POST", "/api/{user}/tasks", 422, body=b"[]", headers=JSON),
    "422 query": Call("GET", "/api/{user}/tasks?limit=0", 422),
    "400 malformed Content-Length": Call(
        "POST", "/api/{user}/tasks", 400, headers={**JSON, "Content-Length": "\xb2"}
    ),
}
# Refusals whose body taskd does not read (over 64 KiB, or of unknown length) or cannot frame:
# they say close. Every other answer keeps the connection.
CLOSING = {"401 with a chunked body", "413", "400 malformed Content-Length"}


async def a_task(connect: Any, user: int) -> int:
    connection = await connect()
    await connection.send(
        Call("POST", "/api/{user}/tasks", 201, body=TASK, headers=JSON).encode(user, 0)
    )
    response = await connection.response()
    assert response is not None and response.status == 201
    task_id: int = orjson.loads(response.body)["id"]
    return task_id


async def assert_next_request_answered_or_closed(
    connection: Connection, first: Response, *, pipelined: bool
) -> None:
    if not pipelined:
        with contextlib.suppress(ConnectionError):
            await connection.send(NEXT_REQUEST)
    following = await connection.response()
    if first.says_close:
        assert following is None, "the answer said close, and the connection did not close"
    else:
        assert following is not None, "the next request on the connection was lost"
        assert (following.status, following.body) == (200, b'{"status":"ok"}')


@pytest.mark.parametrize("pipelined", [False, True], ids=["one after the other", "pipelined"])
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
async def test_the_next_request_is_answered_or_the_answer_said_close(
    connect, user_id, call, pipelined
):
    name = next(name for name, known in CALLS.items() if known is call)
    task = await a_task(connect, user_id) if "{task}" in call.path else 0
    connection = await connect()
    request = call.encode(user_id, task)
    await connection.send(request + NEXT_REQUEST if pipelined else request)
    first = await connection.response(call.method)
    assert first is not None, "no answer at all"
    assert first.status == call.status, first.body
    if first.status >= 400:
        assert first.headers["content-type"] == "application/problem+json"
        assert orjson.loads(first.body)["status"] == call.status
    assert first.says_close == (name in CLOSING)
    await assert_next_request_answered_or_closed(connection, first, pipelined=pipelined)


@pytest.mark.parametrize("size", [1024 * 1024, 3 * 1024 * 1024], ids=["1 MiB", "3 MiB"])
async def test_a_413_for_a_large_body_sent_in_full_arrives_whole(connect, user_id, size):
    """The client sends the whole body before it reads anything, as simple clients do: the
    answer is there, complete, followed by the end of the stream rather than a reset."""
    body = b'{"title": "' + b"x" * (size - 14) + b'"}'
    connection = await connect()
    call = Call("POST", "/api/{user}/tasks", 413, body=body, headers=JSON)
    await connection.send(call.encode(user_id, 0) + NEXT_REQUEST)
    response = await connection.response()
    assert response is not None
    assert response.status == 413 and response.says_close
    assert orjson.loads(response.body) == {
        "type": "about:blank",
        "title": "Request Entity Too Large",
        "status": 413,
        "detail": "The body must be at most 65536 bytes.",
    }
    assert await connection.response() is None


@pytest.mark.parametrize("pipelined", [False, True], ids=["one after the other", "pipelined"])
async def test_a_431_says_close_and_arrives_whole(connect, pipelined):
    connection = await connect()
    request = b"GET /healthz HTTP/1.1\r\nHost: t\r\nCookie: %s\r\n\r\n" % (b"c" * MAX_HEADER_BYTES)
    await connection.send(request + NEXT_REQUEST if pipelined else request)
    response = await connection.response()
    assert response is not None
    assert response.status == 431 and response.says_close
    assert orjson.loads(response.body)["status"] == 431
    await assert_next_request_answered_or_closed(connection, response, pipelined=pipelined)


class TestBusyPool(OneConnectionPool):
    @pytest.mark.parametrize("pipelined", [False, True], ids=["one after the other", "pipelined"])
    async def test_a_503_keeps_the_connection(self, connect, pool, user_id, pipelined):
        await a_task(connect, user_id)  # provisions the user while the pool is free
        connection = await connect()
        request = Call("GET", "/api/{user}/tasks", 503).encode(user_id, 0)
        async with pool.connection():
            await connection.send(request + NEXT_REQUEST if pipelined else request)
            response = await connection.response()
        assert response is not None
        assert response.status == 503 and response.headers["retry-after"]
        assert not response.says_close
        await assert_next_request_answered_or_closed(connection, response, pipelined=pipelined)
