"""503 with Retry-After when the database does not answer in time (CONTRACT §2)."""

from __future__ import annotations

import time

import psycopg
import pytest
from conftest import body
from tornado.httpclient import HTTPResponse

from taskd.config import Settings

DB_TIMEOUT = 0.5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A pool of one connection that gives up after half a second."""
    return settings.replace(db_timeout=DB_TIMEOUT, pool_max=1, pool_min=0)


def assert_unavailable(response: HTTPResponse) -> None:
    assert response.code == 503, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) > 0
    problem = body(response)
    assert set(problem) == {"type", "title", "status", "detail"}
    assert problem["status"] == 503


@pytest.mark.parametrize(
    ("method", "suffix", "payload"),
    [
        ("GET", "", None),
        ("POST", "", {"title": "x"}),
        ("GET", "/{id}", None),
        ("PUT", "/{id}", {"title": "x"}),
        ("DELETE", "/{id}", None),
        ("PATCH", "/{id}/complete", None),
    ],
)
async def test_busy_pool_is_503_with_retry_after(api, user_id, pool, method, suffix, payload):
    task = await api.create(user_id, "t")
    path = f"/api/{user_id}/tasks" + suffix.format(id=task["id"])
    async with pool.connection():
        started = time.monotonic()
        response = await api.request(method, path, user=user_id, json=payload)
        elapsed = time.monotonic() - started
    assert_unavailable(response)
    assert elapsed < DB_TIMEOUT + 2
    after = await api.request("GET", f"/api/{user_id}/tasks/{task['id']}", user=user_id)
    assert after.code == 200
    assert body(after) == task


async def test_busy_pool_is_503_for_a_user_seen_for_the_first_time(api, user_id, pool):
    async with pool.connection():
        response = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
    assert_unavailable(response)
    after = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
    assert after.code == 200
    assert body(after) == []


@pytest.mark.parametrize(
    ("method", "suffix", "payload"),
    [
        ("PUT", "", {"title": "x"}),
        ("DELETE", "", None),
        ("PATCH", "/complete", None),
    ],
)
@pytest.mark.direct_postgres(
    "taskd sets statement_timeout once per connection, and PgBouncer in transaction mode runs"
    " the next query on another server session; test_pgbouncer.py checks the README's"
    " database-level statement_timeout instead"
)
async def test_query_that_outlives_the_deadline_is_503(
    api, user_id, database_url, method, suffix, payload
):
    task = await api.create(user_id, "locked")
    path = f"/api/{user_id}/tasks/{task['id']}{suffix}"
    async with await psycopg.AsyncConnection.connect(database_url) as blocker:
        await blocker.execute(
            "SELECT 1 FROM tasks WHERE user_id = %s AND id = %s FOR UPDATE", [user_id, task["id"]]
        )
        response = await api.request(method, path, user=user_id, json=payload)
        await blocker.rollback()
    assert_unavailable(response)
    after = await api.request("GET", f"/api/{user_id}/tasks/{task['id']}", user=user_id)
    assert body(after) == task
