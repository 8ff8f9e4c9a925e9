"""Overload: more concurrent requests than the pool can serve get a fast 503 with Retry-After, not
a queue that grows without bound; and once the burst is over, everything is served again.

The server is a live `taskd serve` with a pool of 2 connections and room for 4 requests to wait
for one (TASKD_POOL_MAX_WAITING); the 200 requests of a burst arrive at once, each on its own
connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
import pytest
from concurrency import wait_for_lock_waiters
from conftest import make_token, new_user_id
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

POOL_MAX = 2
MAX_WAITING = 4
DB_TIMEOUT = 10.0
BURST = 200
# A 503 for a full queue comes at once; this bound, half the acquire timeout, leaves room for
# a busy machine and still tells it from a request that waited out the timeout.
FAST = DB_TIMEOUT / 2


@dataclass
class Outcome:
    code: int
    seconds: float
    response: HTTPResponse


@pytest.fixture
def client(io_loop: Any) -> Iterator[AsyncHTTPClient]:
    client = AsyncHTTPClient(force_instance=True, max_clients=BURST + 10)
    yield client
    client.close()


@pytest.fixture
def server(spawn: Any, external_env: dict[str, str]) -> Any:
    env = {
        **external_env,
        "TASKD_POOL_MIN": str(POOL_MAX),
        "TASKD_POOL_MAX": str(POOL_MAX),
        "TASKD_POOL_MAX_WAITING": str(MAX_WAITING),
        "TASKD_DB_TIMEOUT": str(DB_TIMEOUT),
    }
    return spawn("serve", "--port", "0", env=env)


class Api:
    def __init__(self, client: AsyncHTTPClient, base: str, user: int) -> None:
        self.client = client
        self.base = base
        self.user = user
        self.token = make_token(user, ttl=600)

    async def call(self, method: str, path: str, payload: Any = None) -> Outcome:
        started = time.monotonic()
        response = await self.client.fetch(
            f"{self.base}/api/{self.user}{path}",
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            body=None if payload is None else orjson.dumps(payload),
            raise_error=False,
            request_timeout=60,
            connect_timeout=60,
        )
        return Outcome(response.code, time.monotonic() - started, response)


def assert_fast_503(outcome: Outcome) -> None:
    response = outcome.response
    assert outcome.code == 503, response.body
    assert response.headers["Retry-After"].isdigit()
    assert response.headers["Content-Type"] == "application/problem+json"
    assert orjson.loads(response.body)["status"] == 503
    assert outcome.seconds < FAST, outcome.seconds


def access_lines(server: Any) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in list(server.stderr) if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "taskd.access"]


async def assert_served_normally(api: Api, task_id: int, title: str) -> None:
    for _ in range(20):
        outcome = await api.call("GET", f"/tasks/{task_id}")
        assert outcome.code == 200, outcome.response.body
        assert orjson.loads(outcome.response.body)["title"] == title


async def test_a_burst_at_a_busy_pool_gets_fast_503s_beyond_the_queue(server, client, database_url):
    """Both connections are busy (a write of each of two users waits for a row lock: one user's
    writes would share one connection, taskd/db/batches.py): 4 requests of the burst may queue,
    the other 196 are refused at once; all of them are served once the lock goes."""
    apis = [Api(client, server.base_url(), new_user_id()) for _ in range(POOL_MAX)]
    task_ids = []
    for api in apis:
        created = await api.call("POST", "/tasks", {"title": "contended"})
        assert created.code == 201
        task_ids.append(orjson.loads(created.response.body)["id"])

    async with await psycopg.AsyncConnection.connect(database_url) as holder:
        for api, task_id in zip(apis, task_ids, strict=True):
            await holder.execute(
                "SELECT 1 FROM tasks WHERE user_id = %s AND id = %s FOR UPDATE", [api.user, task_id]
            )
        writes = [
            asyncio.ensure_future(api.call("PUT", f"/tasks/{task_id}", {"title": "written"}))
            for api, task_id in zip(apis, task_ids, strict=True)
        ]
        await wait_for_lock_waiters(database_url, POOL_MAX)

        burst = [asyncio.ensure_future(apis[0].call("GET", "/tasks")) for _ in range(BURST)]
        refused = BURST - MAX_WAITING
        deadline = time.monotonic() + 60
        while sum(request.done() for request in burst) < refused:
            assert time.monotonic() < deadline, "the burst was not answered"
            await asyncio.sleep(0.05)
        answered = [request.result() for request in burst if request.done()]
        assert len(answered) == refused
        for outcome in answered:
            assert_fast_503(outcome)
    # The holder's transaction is over: the writes and the queued requests go through.
    for outcome in await asyncio.gather(*writes):
        assert outcome.code == 200, outcome.response.body
    queued = [outcome for outcome in await asyncio.gather(*burst) if outcome.code != 503]
    assert [outcome.code for outcome in queued] == [200] * MAX_WAITING

    for api, task_id in zip(apis, task_ids, strict=True):
        await assert_served_normally(api, task_id, "written")
    statuses = [line["status"] for line in access_lines(server)]
    assert statuses.count(503) == refused
    assert 500 not in statuses


async def test_a_burst_of_real_queries_gets_only_successes_and_fast_503s(server, client):
    api = Api(client, server.base_url(), new_user_id())
    created = await api.call("POST", "/tasks", {"title": "popular"})
    assert created.code == 201
    task_id = orjson.loads(created.response.body)["id"]

    paths = ["/tasks", f"/tasks/{task_id}", "/tasks?q=pop&sort=title"]
    outcomes = await asyncio.gather(*(api.call("GET", paths[n % 3]) for n in range(BURST)))
    codes = [outcome.code for outcome in outcomes]
    assert set(codes) <= {200, 503}, sorted(set(codes))
    for outcome in outcomes:
        if outcome.code == 503:
            assert_fast_503(outcome)

    await assert_served_normally(api, task_id, "popular")
    assert 500 not in [line["status"] for line in access_lines(server)]
