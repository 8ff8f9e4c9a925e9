"""The list page cache (taskd/page_cache.py): a page comes from the cache only while the user's
tasks are exactly what the database would list, whatever changed them and in whatever order the
writers commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg
import pytest
from conftest import body, new_user_id

from taskd.db import tasks
from taskd.page_cache import CachedPage, PageCache

Conn = psycopg.AsyncConnection[Any]


async def connect(database_url: str) -> Conn:
    return await psycopg.AsyncConnection.connect(database_url, autocommit=True)


async def seeded(conn: Conn, user: int, count: int = 3) -> list[int]:
    ids = []
    for n in range(count):
        task = await tasks.create_task(conn, user_id=user, title=f"task {n}", description="")
        ids.append(task.id)
    return ids


def titles(page: tasks.Page) -> list[str]:
    return [task["title"] for task in orjson.loads(page.json)]


async def test_an_unchanged_list_is_served_from_the_cache(database_url, user_id):
    cache = PageCache(1024 * 1024)
    async with await connect(database_url) as conn:
        await seeded(conn, user_id)
        first = await tasks.list_tasks(conn, user_id=user_id, limit=50, cache=cache)
        again = await tasks.list_tasks(conn, user_id=user_id, limit=50, cache=cache)
    assert again is first
    assert titles(first) == ["task 2", "task 1", "task 0"]


Change = Callable[[Conn, int, list[int]], Awaitable[Any]]


async def _create(conn: Conn, user: int, ids: list[int]) -> None:
    await tasks.create_task(conn, user_id=user, title="new", description="")


async def _update(conn: Conn, user: int, ids: list[int]) -> None:
    await tasks.update_task(conn, user_id=user, task_id=ids[0], title="renamed")


async def _toggle(conn: Conn, user: int, ids: list[int]) -> None:
    await tasks.toggle_task(conn, user_id=user, task_id=ids[1])


async def _delete(conn: Conn, user: int, ids: list[int]) -> None:
    await tasks.delete_task(conn, user_id=user, task_id=ids[2])


# Writes that bypass the API (an operator's SQL): no tombstone, only the rows themselves.
async def _sql_update(conn: Conn, user: int, ids: list[int]) -> None:
    await conn.execute(
        "UPDATE tasks SET title = 'by hand' WHERE user_id = %s AND id = %s", [user, ids[0]]
    )


async def _sql_delete(conn: Conn, user: int, ids: list[int]) -> None:
    await conn.execute("DELETE FROM tasks WHERE user_id = %s AND id = %s", [user, ids[1]])


async def _sql_delete_and_insert(conn: Conn, user: int, ids: list[int]) -> None:
    async with conn.transaction():
        await conn.execute("DELETE FROM tasks WHERE user_id = %s AND id = %s", [user, ids[1]])
        await conn.execute("INSERT INTO tasks (user_id, title) VALUES (%s, 'same count')", [user])


CHANGES = [_create, _update, _toggle, _delete, _sql_update, _sql_delete, _sql_delete_and_insert]


@pytest.mark.parametrize("change", CHANGES, ids=lambda change: change.__name__.strip("_"))
async def test_any_change_to_the_users_tasks_is_listed_at_once(database_url, user_id, change):
    cache = PageCache(1024 * 1024)
    async with await connect(database_url) as conn:
        ids = await seeded(conn, user_id)
        before = await tasks.list_tasks(conn, user_id=user_id, limit=50, cache=cache)
        await change(conn, user_id, ids)
        after = await tasks.list_tasks(conn, user_id=user_id, limit=50, cache=cache)
        uncached = await tasks.list_tasks(conn, user_id=user_id, limit=50)
    assert after.json == uncached.json
    assert after.json != before.json


@pytest.mark.parametrize("change", [_update, _delete, _create], ids=["update", "delete", "create"])
async def test_a_write_that_commits_after_the_page_was_read_is_listed_once_it_commits(
    database_url, user_id, change
):
    """The writer's transaction took its id before the page was read and commits after: its id
    is below the page snapshot's xmax, so only snapshot visibility tells it was not seen."""
    cache = PageCache(1024 * 1024)
    async with await connect(database_url) as reader, await connect(database_url) as writer:
        ids = await seeded(reader, user_id)
        await writer.execute("BEGIN")
        await change(writer, user_id, ids)
        # Another transaction takes a later id and commits first.
        await reader.execute("INSERT INTO users (id) VALUES (%s)", [new_user_id()])
        during = await tasks.list_tasks(reader, user_id=user_id, limit=50, cache=cache)
        assert titles(during) == ["task 2", "task 1", "task 0"]
        await writer.execute("COMMIT")
        after = await tasks.list_tasks(reader, user_id=user_id, limit=50, cache=cache)
        uncached = await tasks.list_tasks(reader, user_id=user_id, limit=50)
    assert after.json == uncached.json != during.json


async def test_each_page_and_filter_is_cached_apart(database_url, user_id):
    cache = PageCache(1024 * 1024)
    async with await connect(database_url) as conn:
        ids = await seeded(conn, user_id, 4)
        await tasks.toggle_task(conn, user_id=user_id, task_id=ids[0])
        first = await tasks.list_tasks(conn, user_id=user_id, limit=2, cache=cache)
        assert first.next_after is not None
        second = await tasks.list_tasks(
            conn, user_id=user_id, limit=2, after=first.next_after, cache=cache
        )
        done = await tasks.list_tasks(conn, user_id=user_id, limit=2, completed=True, cache=cache)
        by_title = await tasks.list_tasks(conn, user_id=user_id, limit=2, sort="title", cache=cache)
    assert titles(first) == ["task 3", "task 2"]
    assert titles(second) == ["task 1", "task 0"]
    assert titles(done) == ["task 0"]
    assert titles(by_title) == ["task 0", "task 1"]
    assert len(cache) == 4


async def test_one_users_cached_page_is_never_another_users(database_url, user_id):
    cache = PageCache(1024 * 1024)
    other = new_user_id()
    async with await connect(database_url) as conn:
        await seeded(conn, user_id)
        await tasks.create_task(conn, user_id=other, title="the other's", description="")
        mine = await tasks.list_tasks(conn, user_id=user_id, limit=50, cache=cache)
        theirs = await tasks.list_tasks(conn, user_id=other, limit=50, cache=cache)
    assert titles(mine) == ["task 2", "task 1", "task 0"]
    assert titles(theirs) == ["the other's"]


async def test_the_api_lists_every_change_between_identical_requests(api, user_id):
    path = f"/api/{user_id}/tasks"
    task = await api.create(user_id, "first")

    async def listed() -> list[tuple[str, bool]]:
        response = await api.request("GET", path, user=user_id)
        assert response.code == 200
        return [(item["title"], item["is_completed"]) for item in body(response)]

    assert await listed() == await listed() == [("first", False)]
    await api.request("PUT", f"{path}/{task['id']}", user=user_id, json={"title": "renamed"})
    assert await listed() == [("renamed", False)]
    await api.request("PATCH", f"{path}/{task['id']}/complete", user=user_id)
    assert await listed() == [("renamed", True)]
    await api.create(user_id, "second")
    assert await listed() == [("second", False), ("renamed", True)]
    await api.request("DELETE", f"{path}/{task['id']}", user=user_id)
    assert await listed() == [("second", False)]


def cached(size: int) -> CachedPage:
    return CachedPage(tasks.Page(b"x" * size, None), "1:1:", 0)


def test_the_cache_keeps_the_most_recently_used_pages_within_its_budget():
    cache = PageCache(100)
    cache.put("a", cached(40))
    cache.put("b", cached(40))
    assert cache.get("a") is not None
    cache.put("c", cached(40))
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None


def test_a_page_larger_than_the_budget_is_not_kept():
    cache = PageCache(100)
    cache.put("a", cached(40))
    cache.put("big", cached(101))
    assert cache.get("big") is None
    assert cache.get("a") is not None


def test_a_budget_of_zero_keeps_nothing():
    cache = PageCache(0)
    cache.put("a", cached(1))
    assert len(cache) == 0
