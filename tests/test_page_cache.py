"""The list page cache (taskd/page_cache.py): a page comes from the cache only while the user's
tasks are exactly what the database would list, whatever changed them and in whatever order the
writers commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg
import pytest
from conftest import body, connect, insert_by_hand, new_user_id

from taskd.db import tasks
from taskd.page_cache import (
    MAX_PATCH,
    CachedPage,
    Changes,
    Page,
    PageCache,
    PageRows,
    page_rows,
    refreshed,
)

Conn = psycopg.AsyncConnection[Any]


async def seeded(conn: Conn, user: int, count: int = 3) -> list[int]:
    ids = []
    for n in range(count):
        task = await tasks.create_task(conn, user_id=user, title=f"task {n}", description="")
        ids.append(task.id)
    return ids


def titles(page: Page) -> list[str]:
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


# Writes that bypass the API (an operator's SQL). Done as the README says, they bump the user's
# version and stamp what they write; a delete by hand leaves no tombstone and takes no version.
BUMP_VERSION = "UPDATE users SET version = version + 1 WHERE id = %(user)s RETURNING version"


async def _sql_update(conn: Conn, user: int, ids: list[int]) -> None:
    await conn.execute(
        f"WITH bumped AS ({BUMP_VERSION})"
        " UPDATE tasks SET title = 'by hand', version = bumped.version"
        " FROM bumped WHERE user_id = %(user)s AND id = %(id)s",
        {"user": user, "id": ids[0]},
    )


async def _sql_delete(conn: Conn, user: int, ids: list[int]) -> None:
    await conn.execute("DELETE FROM tasks WHERE user_id = %s AND id = %s", [user, ids[1]])


def by_hand(count: int) -> str:
    """SQL that inserts `count` tasks for %(user)s by hand, as the README says."""
    return insert_by_hand(
        f"SELECT 'by hand ' || n, now(), now() FROM generate_series(1, {count}) AS n"
    )


async def _sql_delete_and_insert(conn: Conn, user: int, ids: list[int]) -> None:
    async with conn.transaction():
        await conn.execute("DELETE FROM tasks WHERE user_id = %s AND id = %s", [user, ids[1]])
        await conn.execute(by_hand(1), {"user": user})


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
    """The writer's transaction took the user's next version before the page was read and
    commits after: the page was read at the version before it, so the commit moves it on."""
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


async def test_a_task_whose_transaction_began_earlier_is_patched_in_by_created_at(
    database_url, user_id
):
    """created_at is when a transaction began: a task committed last can belong mid-list."""
    cache = PageCache(1024 * 1024)
    async with await connect(database_url) as reader, await connect(database_url) as writer:
        await seeded(reader, user_id, 2)
        await writer.execute("BEGIN")
        await writer.execute("SELECT now()")
        await tasks.create_task(reader, user_id=user_id, title="later", description="")
        before = await tasks.list_tasks(reader, user_id=user_id, limit=50, cache=cache)
        await tasks.create_task(writer, user_id=user_id, title="earlier", description="")
        await writer.execute("COMMIT")
        after = await tasks.list_tasks(reader, user_id=user_id, limit=50, cache=cache)
        uncached = await tasks.list_tasks(reader, user_id=user_id, limit=50)
    assert titles(before) == ["later", "task 1", "task 0"]
    assert titles(after) == ["later", "earlier", "task 1", "task 0"] == titles(uncached)
    assert after.json == uncached.json


@pytest.mark.parametrize("sort", ["created_at", "-created_at"])
async def test_a_patched_page_is_the_page_the_database_would_send(database_url, user_id, sort):
    cache = PageCache(1024 * 1024)
    async with await connect(database_url) as conn:
        ids = await seeded(conn, user_id, 5)
        await tasks.list_tasks(conn, user_id=user_id, sort=sort, limit=50, cache=cache)
        await tasks.update_task(conn, user_id=user_id, task_id=ids[1], title='ünïcode ✓ "q"')
        await tasks.delete_task(conn, user_id=user_id, task_id=ids[3])
        created = await tasks.create_task(conn, user_id=user_id, title="new", description="")
        await tasks.delete_task(conn, user_id=user_id, task_id=created.id)
        await tasks.create_task(conn, user_id=user_id, title="newer", description="d")
        patched = await tasks.list_tasks(conn, user_id=user_id, sort=sort, limit=50, cache=cache)
        uncached = await tasks.list_tasks(conn, user_id=user_id, sort=sort, limit=50)
    assert patched.json == uncached.json
    assert patched.next_after is None


async def test_a_page_that_would_outgrow_its_limit_is_read_again(database_url, user_id):
    cache = PageCache(1024 * 1024)
    async with await connect(database_url) as conn:
        await seeded(conn, user_id, 3)
        full = await tasks.list_tasks(conn, user_id=user_id, limit=3, cache=cache)
        await tasks.create_task(conn, user_id=user_id, title="fourth", description="")
        after = await tasks.list_tasks(conn, user_id=user_id, limit=3, cache=cache)
    assert full.next_after is None
    assert titles(after) == ["fourth", "task 2", "task 1"]
    assert after.next_after is not None


async def test_many_tasks_written_at_once_are_read_again_in_full(database_url, user_id):
    cache = PageCache(8 * 1024 * 1024)
    async with await connect(database_url) as conn:
        await seeded(conn, user_id, 2)
        await tasks.list_tasks(conn, user_id=user_id, limit=1000, cache=cache)
        await conn.execute(by_hand(MAX_PATCH + 5), {"user": user_id})
        after = await tasks.list_tasks(conn, user_id=user_id, limit=1000, cache=cache)
        uncached = await tasks.list_tasks(conn, user_id=user_id, limit=1000)
    assert after.json == uncached.json
    assert len(orjson.loads(after.json)) == MAX_PATCH + 7


async def test_a_task_inserted_by_hand_without_its_version_is_refused(database_url, user_id):
    """Such a row would be missing from the feed and from patched pages: refused instead."""
    async with await connect(database_url) as conn:
        await seeded(conn, user_id, 1)
        with pytest.raises(psycopg.errors.NotNullViolation):
            await conn.execute(
                "INSERT INTO tasks (user_id, title) VALUES (%s, 'no version')", [user_id]
            )


async def test_an_update_by_hand_renders_the_tasks_json_again(database_url, user_id):
    """The stored JSON is what every read serves: a write by hand cannot leave it stale."""
    async with await connect(database_url) as conn:
        (task_id,) = await seeded(conn, user_id, 1)
        await conn.execute(
            "UPDATE tasks SET title = 'by hand' WHERE user_id = %s AND id = %s",
            [user_id, task_id],
        )
        task = await tasks.get_task(conn, user_id=user_id, task_id=task_id)
    assert task is not None and orjson.loads(task.json)["title"] == "by hand"


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
    return CachedPage(Page(b"x" * size, None), 1, 0)


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


# refreshed() and page_rows() on their own


def rows(*tasks_: tuple[int, int]) -> PageRows:
    """Rows of (id, created_us), each task's JSON naming its id."""
    return PageRows(
        [task_id for task_id, _ in tasks_],
        [created for _, created in tasks_],
        [f'{{"id":{task_id}}}'.encode() for task_id, _ in tasks_],
    )


def whole_list(*tasks_: tuple[int, int]) -> CachedPage:
    page_rows_ = rows(*tasks_)
    body = b"[" + b",".join(page_rows_.tasks) + b"]"
    return CachedPage(Page(body, None), 10, len(tasks_), page_rows_)


def changes(
    count: int, *written: tuple[int, int], deleted: tuple[int, ...] = (), version: int = 20
) -> Changes:
    """What the database says since version 10 of whole_list()'s user: now `version`."""
    return Changes(version, count, list(deleted), rows(*written))


def listed_ids(page: CachedPage | None) -> list[int]:
    assert page is not None
    return [task["id"] for task in orjson.loads(page.page.json)]


def test_the_same_version_and_count_keep_the_page():
    cached_page = whole_list((2, 200), (1, 100))
    assert refreshed(cached_page, changes(2, version=10), limit=50, descending=True) is cached_page


def test_a_new_version_with_nothing_to_patch_keeps_the_tasks_at_that_version():
    cached_page = whole_list((2, 200), (1, 100))
    fresh = refreshed(cached_page, changes(2), limit=50, descending=True)
    assert fresh is not None and fresh.page.json == cached_page.page.json
    assert fresh.version == 20


def test_a_version_behind_the_pages_is_another_history_and_read_again():
    """A database restored from an older copy: the page may hold what it never had."""
    cached_page = whole_list((2, 200), (1, 100))
    assert refreshed(cached_page, changes(2, version=9), limit=50, descending=True) is None


def test_a_count_that_moved_without_a_version_is_read_again():
    """A task deleted by hand takes no version: only the count tells."""
    cached_page = whole_list((2, 200), (1, 100))
    assert refreshed(cached_page, changes(1, version=10), limit=50, descending=True) is None


def test_written_tasks_replace_theirs_and_new_ones_go_by_created_at():
    cached_page = whole_list((3, 300), (2, 200), (1, 100))
    fresh = refreshed(cached_page, changes(4, (2, 200), (9, 150)), limit=50, descending=True)
    assert listed_ids(fresh) == [3, 2, 9, 1]
    ascending = whole_list((1, 100), (2, 200))
    fresh = refreshed(ascending, changes(3, (5, 100)), limit=50, descending=False)
    assert listed_ids(fresh) == [1, 5, 2]


def test_deleted_tasks_leave_the_page():
    cached_page = whole_list((3, 300), (2, 200), (1, 100))
    assert listed_ids(
        refreshed(cached_page, changes(2, deleted=(2,)), limit=50, descending=True)
    ) == [3, 1]
    fresh = refreshed(cached_page, changes(3, (4, 400), deleted=(2,)), limit=50, descending=True)
    assert listed_ids(fresh) == [4, 3, 1]


@pytest.mark.parametrize(
    "change",
    [
        changes(3, (4, 400)),  # a delete without a tombstone: one task too many
        changes(4, (4, 400)),  # more than the limit of 3
        changes(3 + MAX_PATCH + 1, *((n, n) for n in range(10, 11 + MAX_PATCH))),
    ],
    ids=["count", "limit", "many"],
)
def test_a_page_that_cannot_be_patched_is_read_again(change):
    cached_page = whole_list((3, 300), (2, 200), (1, 100))
    assert (
        refreshed(cached_page, change, limit=3 if change.task_count == 4 else 500, descending=True)
        is None
    )


def test_a_page_without_rows_is_read_again_once_anything_changed():
    cached_page = CachedPage(Page(b"[]", None), 10, 0)
    assert refreshed(cached_page, changes(1, (1, 100)), limit=50, descending=True) is None


def test_page_rows_cuts_the_page_at_its_elements():
    body = b'[{"id":1,"t":"a,b"},{"id":22}]'
    cut = page_rows(body, [1, 22], [5, 4], [18, 9])
    assert cut is not None and cut.tasks == [b'{"id":1,"t":"a,b"}', b'{"id":22}']
    assert page_rows(b"[]", [], [], []) == PageRows([], [], [])
    assert page_rows(body, [1, 22], [5, 4], [17, 9]) is None
