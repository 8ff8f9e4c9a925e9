"""Large responses go gzip-coded to clients that accept it (RFC 9110 §8.4, §12.5.3), and Vary says
so. Read off raw sockets: an HTTP client library would decode the body and hide what was sent."""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from conftest import make_token

from taskd.handlers.base import LARGE_RESPONSE_BYTES
from taskd.headers import accepts_gzip

# Each task about 5 KB of JSON: enough of them make a list larger than LARGE_RESPONSE_BYTES.
LONG_DESCRIPTION = "A description that goes on. " * 178
LARGE_LIST_TASKS = LARGE_RESPONSE_BYTES // len(LONG_DESCRIPTION) + 2


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def vary(self) -> set[str]:
        return {part.strip().lower() for value in self.values("Vary") for part in value.split(",")}


async def raw_get(port: int, path: str, user: int, accept_encoding: str | None) -> RawResponse:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {make_token(user)}"]
    if accept_encoding is not None:
        lines.append(f"Accept-Encoding: {accept_encoding}")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(("\r\n".join([*lines, "Connection: close", "", ""])).encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in header_lines]
    response = RawResponse(int(status_line.split()[1]), headers, body)  # type: ignore[arg-type]
    assert response.values("Content-Length") == [str(len(body))]
    return response


@pytest.fixture
def port(http_server_port: Any) -> int:
    _, bound = http_server_port
    return int(bound)


async def make_large_list(api: Any, user_id: int) -> bytes:
    """Tasks for the user, and their list (larger than LARGE_RESPONSE_BYTES) as sent to a
    client that takes no gzip."""
    for n in range(LARGE_LIST_TASKS):
        await api.create(user_id, f"task {n}", description=LONG_DESCRIPTION)
    response = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
    assert len(response.body) > LARGE_RESPONSE_BYTES
    return bytes(response.body)


@pytest.mark.parametrize("accept_encoding", ["gzip", "br;q=1.0, gzip;q=0.5", "*", "x-gzip"])
async def test_a_large_list_is_gzip_coded_for_a_client_that_accepts_it(
    api, port, user_id, accept_encoding
):
    large_list = await make_large_list(api, user_id)
    # Twice: the second is served from the page cache, and must be coded the same way.
    for _ in range(2):
        response = await raw_get(port, f"/api/{user_id}/tasks", user_id, accept_encoding)
        assert response.status == 200
        assert response.values("Content-Encoding") == ["gzip"]
        assert "accept-encoding" in response.vary()
        assert response.values("Content-Type") == ["application/json"]
        assert gzip.decompress(response.body) == large_list
        assert len(response.body) < len(large_list) / 10


@pytest.mark.parametrize(
    "accept_encoding", [None, "identity", "gzip;q=0", "gzip;q=0, *", "deflate", "gzip;q=x"]
)
async def test_a_large_list_is_sent_as_it_is_to_a_client_that_does_not_accept_gzip(
    api, port, user_id, accept_encoding
):
    large_list = await make_large_list(api, user_id)
    response = await raw_get(port, f"/api/{user_id}/tasks", user_id, accept_encoding)
    assert response.status == 200
    assert response.values("Content-Encoding") == []
    # It could have been coded: a cache must not give this response to a client that takes gzip
    # without asking, nor the coded one to this client.
    assert "accept-encoding" in response.vary()
    assert response.body == large_list


async def test_a_list_under_the_threshold_is_never_coded(api, port, user_id):
    for n in range(LARGE_LIST_TASKS - 3):
        await api.create(user_id, f"task {n}", description=LONG_DESCRIPTION)
    response = await raw_get(port, f"/api/{user_id}/tasks", user_id, "gzip")
    assert response.status == 200
    assert response.values("Content-Encoding") == []
    assert "accept-encoding" not in response.vary()
    assert LARGE_RESPONSE_BYTES / 2 < len(response.body) <= LARGE_RESPONSE_BYTES
    assert len(orjson.loads(response.body)) == LARGE_LIST_TASKS - 3


async def test_a_task_is_never_coded_so_its_etag_names_the_bytes_sent(api, port, user_id):
    # The largest Task there is stays under the threshold: a strong ETag (CONTRACT §8) belongs to
    # one representation, and a gzip-coded one would be another.
    longest = "\x01" * 5000  # escaped as \u0001: six bytes each
    task = await api.create(user_id, "x" * 500, description=longest)
    response = await raw_get(port, f"/api/{user_id}/tasks/{task['id']}", user_id, "gzip")
    assert response.status == 200
    assert response.values("Content-Encoding") == []
    assert len(response.values("ETag")) == 1
    assert orjson.loads(response.body)["description"] == longest


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("gzip", True),
        ("GZIP;Q=0.5", True),
        ("deflate, gzip ; q=1", True),
        ("x-gzip", True),
        ("*", True),
        ("br, *;q=0.1", True),
        (None, False),
        ("", False),
        ("identity", False),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("gzip;q=0, *", False),
        ("*;q=0", False),
        ("gzip;q=oops", False),
        ("gzip;level=9", False),
    ],
)
def test_accept_encoding_is_read_with_its_weights(value, accepted):
    assert accepts_gzip(value) is accepted
