"""Security headers on every response, whichever route and status: `X-Content-Type-Options:
nosniff`, no `Server` banner, `Cache-Control: no-store` (everything but the documentation's
static assets), and CORS headers only for an origin CORS_ORIGINS lists, never for another one and
not at all when CORS_ORIGINS is unset; never `Access-Control-Allow-Credentials` (taskd is
bearer-only). The 431, answered before any handler, has them too."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from conftest import OneConnectionPool, make_token, new_user_id
from tornado.httpclient import HTTPResponse

from taskd.app import make_app
from taskd.client_stream import MAX_HEADER_BYTES
from taskd.config import Settings

ORIGIN = "https://app.example"
OTHER_ORIGIN = "https://evil.example"
BIG_BODY = b'{"title": "' + b"x" * 70_000 + b'"}'


@dataclass(frozen=True)
class Call:
    """One request; `{user}`, `{task}` and `{other}` (another user) fill in the path."""

    method: str
    path: str
    status: int
    token: str = "user"  # "user", "other" (another user's token) or "none"
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


JSON = {"Content-Type": "application/json"}
CALLS = {
    "list": Call("GET", "/api/{user}/tasks", 200),
    "create": Call("POST", "/api/{user}/tasks", 201, body=b'{"title": "t"}', headers=JSON),
    "read": Call("GET", "/api/{user}/tasks/{task}", 200),
    "not modified": Call("GET", "/api/{user}/tasks/{task}", 304, headers={"If-None-Match": "*"}),
    "replace": Call("PUT", "/api/{user}/tasks/{task}", 200, body=b'{"title": "u"}', headers=JSON),
    "complete": Call("PATCH", "/api/{user}/tasks/{task}/complete", 200, body=b""),
    "delete": Call("DELETE", "/api/{user}/tasks/{task}", 204),
    "changes": Call("GET", "/api/{user}/tasks/changes", 200),
    "preflight": Call(
        "OPTIONS",
        "/api/{user}/tasks",
        204,
        token="none",
        headers={"Access-Control-Request-Method": "POST"},
    ),
    "401": Call("GET", "/api/{user}/tasks", 401, token="none"),
    "401 bad token": Call("GET", "/api/{user}/tasks", 401, headers={"Authorization": "Bearer x"}),
    "403": Call("GET", "/api/{other}/tasks", 403),
    "404 task": Call("GET", "/api/{user}/tasks/999999999999", 404),
    "404 no route": Call("GET", "/nowhere", 404, token="none"),
    "405": Call("DELETE", "/api/{user}/tasks", 405),
    "405 unknown method": Call("BREW", "/api/{user}/tasks", 405),
    "405 health": Call("POST", "/healthz", 405, token="none", body=b""),
    "412": Call(
        "PUT",
        "/api/{user}/tasks/{task}",
        412,
        body=b'{"title": "u"}',
        headers={**JSON, "If-Match": '"stale"'},
    ),
    "413": Call("POST", "/api/{user}/tasks", 413, body=BIG_BODY, headers=JSON),
    "415": Call("POST", "/api/{user}/tasks", 415, body=b"{}", headers={"Content-Type": "text/x"}),
    "422": Call("POST", "/api/{user}/tasks", 422, body=b"[]", headers=JSON),
    "422 query": Call("GET", "/api/{user}/tasks?limit=0", 422),
    "healthz": Call("GET", "/healthz", 200, token="none"),
    "readyz": Call("GET", "/readyz", 200, token="none"),
    "metrics": Call("GET", "/metrics", 200, token="none"),
    "openapi": Call("GET", "/openapi.json", 200, token="none"),
    "docs": Call("GET", "/docs", 200, token="none"),
    "docs asset": Call("GET", "/docs/swagger-ui.css", 200, token="none"),
}
# The documentation's static assets are the same for everyone and may be cached.
CACHEABLE = {"/docs/swagger-ui.css"}


@pytest.fixture
def cors_origins(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """CORS_ORIGINS of the tests' taskd; parametrize indirectly (WITH_AND_WITHOUT_CORS)."""
    origins: tuple[str, ...] = getattr(request, "param", (ORIGIN,))
    return origins


WITH_AND_WITHOUT_CORS = pytest.mark.parametrize(
    "cors_origins", [(ORIGIN,), ()], indirect=True, ids=["CORS_ORIGINS set", "CORS_ORIGINS unset"]
)


@pytest.fixture
def app(settings: Settings, pool: Any, cors_origins: tuple[str, ...]) -> Any:
    return make_app(settings.replace(cors_origins=cors_origins), pool)


async def send(api: Any, user: int, call: Call, origin: str | None) -> HTTPResponse:
    task_id = (await api.create(user))["id"] if "{task}" in call.path else None
    path = call.path.format(user=user, task=task_id, other=new_user_id())
    headers = dict(call.headers)
    if origin is not None:
        headers["Origin"] = origin
    tokens = {"user": make_token(user), "other": make_token(new_user_id()), "none": None}
    token = tokens[call.token]
    if token is not None:
        headers.setdefault("Authorization", f"Bearer {token}")
    response: HTTPResponse = await api.client.fetch(
        path,
        method=call.method,
        body=call.body,
        headers=headers,
        raise_error=False,
        allow_nonstandard_methods=True,
        follow_redirects=False,
    )
    assert response.code == call.status, response.body
    return response


def assert_security_headers(response: HTTPResponse, path: str) -> None:
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in headers
    assert headers["X-Request-ID"]
    if path in CACHEABLE:
        assert headers["Cache-Control"].startswith("public, max-age=")
    else:
        assert headers["Cache-Control"] == "no-store"


def cors_headers(response: HTTPResponse) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.get_all()
        if name.lower().startswith("access-control-")
    }


@WITH_AND_WITHOUT_CORS
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
async def test_every_response_has_the_security_headers(api, user_id, cors_origins, call):
    response = await send(api, user_id, call, origin=None)
    assert_security_headers(response, call.path)
    assert cors_headers(response) == {}


@WITH_AND_WITHOUT_CORS
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
async def test_cors_headers_only_for_a_configured_origin(api, user_id, cors_origins, call):
    allowed = await send(api, user_id, call, origin=ORIGIN)
    assert_security_headers(allowed, call.path)
    if cors_origins:
        assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Origin" in allowed.headers["Vary"]
        assert "Access-Control-Allow-Credentials" not in allowed.headers
        if call.method == "OPTIONS":
            assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
            # Every request header the README invites a page to send may be sent.
            requestable = allowed.headers["Access-Control-Allow-Headers"].split(", ")
            assert {"Authorization", "Content-Type", "X-Request-ID"} <= set(requestable)
            assert {"If-Match", "If-None-Match", "Idempotency-Key"} <= set(requestable)
    else:
        assert cors_headers(allowed) == {}
        assert "Vary" not in allowed.headers

    other = await send(api, user_id, call, origin=OTHER_ORIGIN)
    assert_security_headers(other, call.path)
    assert cors_headers(other) == {}


class TestBusyPool(OneConnectionPool):
    @WITH_AND_WITHOUT_CORS
    @pytest.mark.parametrize("origin", [ORIGIN, OTHER_ORIGIN])
    async def test_a_503_has_the_security_headers(self, api, user_id, pool, cors_origins, origin):
        await api.create(user_id)
        async with pool.connection():
            response = await send(api, user_id, Call("GET", "/api/{user}/tasks", 503), origin)
        assert_security_headers(response, "/api/{user}/tasks")
        assert response.headers["Retry-After"]
        allowed = bool(cors_origins) and origin == ORIGIN
        assert ("Access-Control-Allow-Origin" in response.headers) is allowed


async def test_tornados_own_400_for_a_malformed_request_has_no_server_banner(
    http_server, http_server_port
):
    """Tornado answers a request line it cannot parse itself, before any handler: with a bare
    status line, so there is no banner (nor any body a browser could sniff)."""
    _, port = http_server_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"NOT AN HTTP REQUEST\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer == b"HTTP/1.1 400 Bad Request\r\n\r\n"


async def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on a raw connection; the answer's status, headers and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


@WITH_AND_WITHOUT_CORS
@pytest.mark.parametrize("origin", [ORIGIN, OTHER_ORIGIN])
@pytest.mark.parametrize(
    "where", ["first", "after the limit"], ids=["Origin first", "Origin past the limit"]
)
async def test_a_431_has_the_cors_headers_of_a_configured_origin(
    taskd_port, cors_origins, origin, where
):
    """A script that sent too many header bytes reads its problem+json instead of a network
    error: the 431 carries the CORS headers, also when Origin comes far past the 32 KiB that
    made it a 431 (past what taskd had read by then)."""
    padding = f"X-Padding: {'p' * 8 * MAX_HEADER_BYTES}\r\n"
    origin_line = f"Origin: {origin}\r\n"
    fields = origin_line + padding if where == "first" else padding + origin_line
    request = f"GET /api/1/tasks HTTP/1.1\r\nHost: taskd\r\n{fields}\r\n".encode()
    status, headers, body = await raw_exchange(taskd_port, request)
    assert status == 431
    assert orjson.loads(body)["status"] == 431
    assert headers["Connection"] == "close"
    cors = {name: value for name, value in headers.items() if name.startswith("Access-Control-")}
    if cors_origins and origin == ORIGIN:
        assert cors == {
            "Access-Control-Allow-Origin": ORIGIN,
            "Access-Control-Expose-Headers": (
                "ETag, Location, Link, Retry-After, WWW-Authenticate, X-Request-ID"
            ),
        }
    else:
        assert cors == {}
    assert ("Vary" in headers) == bool(cors_origins)
