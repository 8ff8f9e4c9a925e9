"""CONTRACT §7: /healthz, /readyz and /metrics, public on purpose; deny-by-default elsewhere."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from conftest import body
from prometheus_client.parser import text_string_to_metric_families
from test_tasks_api import problem
from tornado.web import RequestHandler

from taskd import migrate
from taskd.app import check_authentication
from taskd.db.pool import make_pool
from taskd.handlers.base import BaseHandler, public

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def test_healthz_answers_without_a_token(api):
    response = await api.request("GET", "/healthz")
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert body(response) == {"status": "ok"}


async def test_readyz_is_200_on_a_migrated_reachable_database(api):
    response = await api.request("GET", "/readyz")
    assert response.code == 200, response.body
    assert body(response) == {"status": "ready"}


def assert_not_ready(response: Any) -> dict[str, Any]:
    details = problem(response, 503)
    assert int(response.headers["Retry-After"]) > 0
    return details


class TestPendingMigrations:
    @pytest.fixture
    def database_url(self, create_database):
        return create_database()

    async def test_readyz_is_503_naming_the_pending_migrations(self, api, database_url):
        details = assert_not_ready(await api.request("GET", "/readyz"))
        pending = migrate.pending(database_url)
        assert pending
        assert details["detail"] == (
            f"{len(pending)} migration(s) pending ({', '.join(pending)}): run 'taskd migrate'."
        )


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TestUnreachableDatabase:
    @pytest.fixture
    def pool(self, io_loop, settings):
        url = f"postgresql://postgres@127.0.0.1:{unused_port()}/taskd"
        unreachable = make_pool(settings.replace(db_timeout=0.5), url)
        io_loop.run_sync(unreachable.open)  # no wait(): it cannot connect
        yield unreachable
        io_loop.run_sync(unreachable.close)

    async def test_readyz_is_503_and_healthz_still_200(self, api):
        details = assert_not_ready(await api.request("GET", "/readyz"))
        assert "retry" in details["detail"]
        assert (await api.request("GET", "/healthz")).code == 200


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def sample(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


async def test_metrics_count_requests_by_route_and_status(api, user_id, settings):
    for _ in range(3):
        assert (await api.request("GET", f"/api/{user_id}/tasks", user=user_id)).code == 200
    assert (await api.request("GET", f"/api/{user_id}/tasks")).code == 401
    assert (await api.request("GET", "/nowhere")).code == 404

    response = await api.request("GET", "/metrics")
    assert response.code == 200
    assert response.headers["Content-Type"] == METRICS_TYPE
    found = samples(response.body.decode())

    route = "/api/{user_id}/tasks"
    requests = "taskd_http_requests_total"
    assert sample(found, requests, method="GET", route=route, status="200") == 3
    assert sample(found, requests, method="GET", route=route, status="401") == 1
    assert sample(found, requests, method="GET", route="unmatched", status="404") == 1
    latency = "taskd_http_request_duration_seconds"
    assert sample(found, latency + "_count", method="GET", route=route) == 4
    assert sample(found, latency + "_bucket", method="GET", route=route, le="+Inf") == 4
    assert sample(found, "taskd_db_pool_max_connections") == settings.pool_max
    assert 1 <= sample(found, "taskd_db_pool_connections") <= settings.pool_max
    assert sample(found, "taskd_db_pool_connections_in_use") == 0
    assert sample(found, "taskd_db_pool_requests_waiting") == 0


async def test_metrics_name_no_method_a_client_makes_up(api, taskd_port):
    # Each method would otherwise be a metric series of its own, kept as long as the worker runs.
    for made_up in ("MADEUP1", "MADEUP2", "PROPFIND"):
        reader, writer = await asyncio.open_connection("127.0.0.1", taskd_port)
        writer.write(f"{made_up} /api/1/tasks HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert (await reader.readline()).startswith(b"HTTP/1.1 405 ")
        writer.close()
        await writer.wait_closed()

    text = (await api.request("GET", "/metrics")).body.decode()
    assert "MADEUP" not in text and "PROPFIND" not in text
    found = samples(text)
    requests = "taskd_http_requests_total"
    assert sample(found, requests, method="other", route="/api/{user_id}/tasks", status="405") == 3


def test_a_route_that_neither_authenticates_nor_is_public_is_refused():
    class Forgotten(BaseHandler):
        pass

    @public
    class Open(BaseHandler):
        pass

    check_authentication([("/open", Open)])
    for handler in (Forgotten, RequestHandler):
        with pytest.raises(ValueError, match="neither authenticates nor is marked @public"):
            check_authentication([("/forgotten", handler)])


async def test_metrics_count_list_cache_hits_patches_and_misses(api, user_id):
    path = f"/api/{user_id}/tasks"

    async def listed(query: str = "") -> None:
        assert (await api.request("GET", path + query, user=user_id)).code == 200

    await api.create(user_id, "first")
    await listed()  # read and kept
    await listed()  # unchanged: served as kept
    await listed()
    await api.create(user_id, "second")
    await listed()  # brought up to date from the one task written
    await listed("?sort=title")  # another page: read and kept, without rows to patch
    await api.create(user_id, "third")
    await listed("?sort=title")  # changed, and only a created_at page can be patched: read again

    found = samples((await api.request("GET", "/metrics")).body.decode())
    lookups = "taskd_list_cache_lookups_total"
    assert sample(found, lookups, outcome="miss") == 3
    assert sample(found, lookups, outcome="hit") == 2
    assert sample(found, lookups, outcome="patch") == 1
    assert sample(found, "taskd_list_cache_bytes") > 0


class TestListCacheOff:
    @pytest.fixture
    def settings(self, settings):
        return settings.replace(list_cache_mb=0)

    async def test_every_list_is_a_miss_and_the_cache_holds_nothing(self, api, user_id):
        await api.create(user_id, "first")
        for _ in range(3):
            assert (await api.request("GET", f"/api/{user_id}/tasks", user=user_id)).code == 200
        found = samples((await api.request("GET", "/metrics")).body.decode())
        assert sample(found, "taskd_list_cache_lookups_total", outcome="miss") == 3
        assert ("taskd_list_cache_lookups_total", frozenset({("outcome", "hit")})) not in found
        assert sample(found, "taskd_list_cache_bytes") == 0
