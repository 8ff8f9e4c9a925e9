"""The list page cache (taskd/page_cache.py): a page comes from the cache only while the user's
tasks are exactly what the database would list, whatever changed them and in whatever order the
writers commit."""

from __future__ import annotations

import random
import tracemalloc
from array import array
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg
import pytest
from conftest import body, connect, insert_by_hand, new_user_id

from taskd.db import tasks
from taskd.page_cache import (
    MAX_PATCH,
    PATCH,
    CachedPage,
    Changes,
    Page,
    PageCache,
    PageRows,
    Written,
    page_rows,
    refreshed,
    utc_moment,
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


async def test_a_page_that_outgrows_its_limit_keeps_its_first_tasks(database_url, user_id):
    cache = PageCache(1024 * 1024)
    async with await connect(database_url) as conn:
        await seeded(conn, user_id, 3)
        full = await tasks.list_tasks(conn, user_id=user_id, limit=3, cache=cache)
        await tasks.create_task(conn, user_id=user_id, title="fourth", description="")
        after = await tasks.list_tasks(conn, user_id=user_id, limit=3, cache=cache)
        uncached = await tasks.list_tasks(conn, user_id=user_id, limit=3)
    assert full.next_after is None
    assert titles(after) == ["fourth", "task 2", "task 1"]
    assert after == uncached and after.next_after is not None


def outcomes() -> tuple[PageCache, list[str]]:
    """A cache, and the outcomes of its lookups as they come."""
    seen: list[str] = []
    return PageCache(1024 * 1024, lambda outcome, _: seen.append(outcome)), seen


@pytest.mark.parametrize("sort", ["created_at", "-created_at"])
@pytest.mark.parametrize("change", CHANGES, ids=lambda change: change.__name__.strip("_"))
async def test_a_first_page_with_more_after_it_is_the_page_the_database_would_send(
    database_url, user_id, change, sort
):
    """Three of five tasks: each change falls within the page or after it, by sort."""
    cache, seen = outcomes()
    async with await connect(database_url) as conn:
        ids = await seeded(conn, user_id, 5)
        before = await tasks.list_tasks(conn, user_id=user_id, sort=sort, limit=3, cache=cache)
        await change(conn, user_id, ids)
        after = await tasks.list_tasks(conn, user_id=user_id, sort=sort, limit=3, cache=cache)
        uncached = await tasks.list_tasks(conn, user_id=user_id, sort=sort, limit=3)
    assert before.next_after is not None
    assert after == uncached
    if change in (_create, _update, _toggle):
        # Patched in: none of these needs the page read again (a delete within it does, for
        # the task that now follows on from it).
        assert seen[1] == PATCH


async def test_a_first_page_unchanged_is_not_counted_again(database_url, user_id):
    """A hit costs what it did before pages with more after them were patched: no count of the
    tasks up to the page's last one unless the version or the task count moved."""
    cache = PageCache(1024 * 1024)
    async with await connect(database_url) as conn:
        ids = await seeded(conn, user_id, 5)
        await tasks.list_tasks(conn, user_id=user_id, limit=3, cache=cache)
        cached_page = cache.get((user_id, "-created_at", None, None, None, 3))
        assert cached_page is not None
        unchanged = await tasks._changes_since(conn, user_id, cached_page, descending=True)
        await tasks.update_task(conn, user_id=user_id, task_id=ids[0], title="renamed")
        changed = await tasks._changes_since(conn, user_id, cached_page, descending=True)
    assert cached_page.page.next_after is not None
    assert unchanged.within_page is None
    assert changed.within_page == 3


async def test_a_first_page_is_patched_through_many_writes(database_url, user_id):
    """Writes within and after a first page of 20 of a user's 40 tasks, a list after each."""
    cache, seen = outcomes()
    async with await connect(database_url) as conn:
        ids = await seeded(conn, user_id, 40)
        await tasks.list_tasks(conn, user_id=user_id, limit=20, cache=cache)
        for n, task_id in enumerate(ids[::3]):
            if n % 3 == 0:
                await tasks.delete_task(conn, user_id=user_id, task_id=task_id)
            else:
                await tasks.update_task(conn, user_id=user_id, task_id=task_id, title=f"u{n}")
            await tasks.create_task(conn, user_id=user_id, title=f"new {n}", description="")
            patched = await tasks.list_tasks(conn, user_id=user_id, limit=20, cache=cache)
            assert patched == await tasks.list_tasks(conn, user_id=user_id, limit=20)
    assert seen.count(PATCH) == len(ids[::3])


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


def task_json(task_id: int) -> bytes:
    return f'{{"id":{task_id}}}'.encode()


def written(*tasks_: tuple[int, int]) -> Written:
    """Tasks of (id, created_us) written, each one's JSON naming its id."""
    return Written(
        [task_id for task_id, _ in tasks_],
        [created for _, created in tasks_],
        [task_json(task_id) for task_id, _ in tasks_],
    )


def first_page(*tasks_: tuple[int, int], count: int | None = None) -> CachedPage:
    """A first page of (id, created_us) tasks read at version 10: of all the user's tasks, or
    with more after it when the user had `count` tasks."""
    pieces = [task_json(task_id) for task_id, _ in tasks_]
    body = b"[" + b",".join(pieces) + b"]"
    ids = [task_id for task_id, _ in tasks_]
    cut = page_rows(body, ids, [created for _, created in tasks_], [len(p) for p in pieces])
    more = count is not None and count > len(tasks_)
    next_after = (utc_moment(tasks_[-1][1]), tasks_[-1][0]) if more else None
    return CachedPage(Page(body, next_after), 10, len(tasks_) if count is None else count, cut)


def whole_list(*tasks_: tuple[int, int]) -> CachedPage:
    return first_page(*tasks_)


def changes(
    count: int,
    *written_: tuple[int, int],
    deleted: tuple[int, ...] = (),
    version: int = 20,
    within_page: int | None = None,
) -> Changes:
    """What the database says since version 10 of the page's user: now `version`."""
    return Changes(version, count, within_page, list(deleted), written(*written_))


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
        changes(3 + MAX_PATCH + 1, *((n, n) for n in range(10, 11 + MAX_PATCH))),
    ],
    ids=["count", "many"],
)
def test_a_page_that_cannot_be_patched_is_read_again(change):
    cached_page = whole_list((3, 300), (2, 200), (1, 100))
    assert refreshed(cached_page, change, limit=500, descending=True) is None


def test_a_whole_list_that_outgrows_its_limit_becomes_its_first_page():
    cached_page = whole_list((3, 300), (2, 200), (1, 100))
    fresh = refreshed(cached_page, changes(4, (4, 400)), limit=3, descending=True)
    assert listed_ids(fresh) == [4, 3, 2]
    assert fresh is not None and fresh.page.next_after == (utc_moment(200), 2)


# The first 3 of a user's 5 tasks, newest first: 1..5 were created at 100..500.
def newest_three() -> CachedPage:
    return first_page((5, 500), (4, 400), (3, 300), count=5)


def test_a_task_created_on_top_pushes_the_last_off_the_first_page():
    fresh = refreshed(newest_three(), changes(6, (6, 600), within_page=4), limit=3, descending=True)
    assert listed_ids(fresh) == [6, 5, 4]
    assert fresh is not None and fresh.page.next_after == (utc_moment(400), 4)


def test_a_task_written_after_the_first_page_leaves_it_as_it_was():
    cached_page = newest_three()
    fresh = refreshed(cached_page, changes(5, (1, 100), within_page=3), limit=3, descending=True)
    assert fresh is not None and fresh.page == cached_page.page and fresh.version == 20
    ascending = first_page((1, 100), (2, 200), (3, 300), count=5)
    fresh = refreshed(ascending, changes(6, (6, 600), within_page=3), limit=3, descending=False)
    assert fresh is not None and fresh.page == ascending.page and fresh.task_count == 6


def test_a_first_page_that_lost_a_task_is_read_again_unless_another_took_its_place():
    cached_page = newest_three()
    lost = changes(4, deleted=(4,), within_page=2)
    assert refreshed(cached_page, lost, limit=3, descending=True) is None
    replaced = changes(5, (6, 600), deleted=(4,), within_page=3)
    assert listed_ids(refreshed(cached_page, replaced, limit=3, descending=True)) == [6, 5, 3]


def test_a_first_page_is_checked_against_the_tasks_up_to_its_last_one():
    """Deleted by hand, a task leaves no tombstone: within the page, only the count tells."""
    cached_page = newest_three()
    within = changes(4, version=10, within_page=2)
    assert refreshed(cached_page, within, limit=3, descending=True) is None
    beyond = refreshed(cached_page, changes(4, version=10, within_page=3), limit=3, descending=True)
    assert beyond is not None and beyond.page == cached_page.page and beyond.task_count == 4


def test_a_first_page_with_nothing_left_after_it_says_so():
    cached_page = first_page((4, 400), (3, 300), (2, 200), count=4)
    fresh = refreshed(
        cached_page, changes(3, deleted=(1,), within_page=3), limit=3, descending=True
    )
    assert listed_ids(fresh) == [4, 3, 2]
    assert fresh is not None and fresh.page.next_after is None


def test_a_page_without_rows_is_read_again_once_anything_changed():
    cached_page = CachedPage(Page(b"[]", None), 10, 0)
    assert refreshed(cached_page, changes(1, (1, 100)), limit=50, descending=True) is None


def first_ids(created: dict[int, int], limit: int, descending: bool) -> list[int]:
    """The first page's ids of tasks `created` (id -> created_us), as the database orders them."""
    order = sorted(created, key=lambda task_id: (created[task_id], task_id), reverse=descending)
    return order[:limit]


@pytest.mark.parametrize("seed", range(400))
def test_a_patched_page_is_the_first_page_of_the_tasks_there_are_now(seed):
    """Random tasks (created_at ties included), a first page of them, then random writes
    through the API and deletes by hand; refreshed() against sorting everything again."""
    rng = random.Random(seed)
    descending = rng.random() < 0.5
    limit = rng.randint(1, 12)
    created = {task_id: rng.randint(1, 30) for task_id in range(1, rng.randint(1, 25) + 1)}
    page_ids = first_ids(created, limit, descending)
    cached = first_page(*((task_id, created[task_id]) for task_id in page_ids), count=len(created))
    now, deleted, written_ = dict(created), [], {}
    by_hand = False
    for _ in range(rng.randint(0, 8)):
        kind = rng.choice(["create", "update", "delete", "delete by hand"])
        if kind == "create":
            task_id = max((*created, *now)) + 1
            now[task_id] = written_[task_id] = rng.randint(0, 40)
            continue
        if not now:
            continue
        task_id = rng.choice(list(now))
        if kind == "update":
            written_[task_id] = now[task_id]
            continue
        del now[task_id]
        written_.pop(task_id, None)
        if kind == "delete":
            deleted.append(task_id)
        else:
            by_hand = True
    within_page = None
    if cached.page.next_after is not None:
        sign = -1 if descending else 1
        last = page_ids[-1]
        within_page = sum(
            (sign * now[task_id], sign * task_id) <= (sign * created[last], sign * last)
            for task_id in now
        )
    version = 20 if written_ or deleted else 10
    found = Changes(version, len(now), within_page, deleted, written(*written_.items()))
    fresh = refreshed(cached, found, limit=limit, descending=descending)

    expected = first_ids(now, limit, descending)
    if fresh is not None:
        assert listed_ids(fresh) == expected
        assert fresh.page.next_after == (
            (utc_moment(now[expected[-1]]), expected[-1]) if len(now) > limit else None
        )
        assert fresh.rows == first_page(*((task_id, now[task_id]) for task_id in expected)).rows
        return
    # Read again only for a delete by hand, or a page left short with tasks after it.
    short = within_page is not None and within_page < limit and within_page != len(now)
    assert by_hand or short


def test_page_rows_finds_the_page_elements():
    body = b'[{"id":1,"t":"a,b"},{"id":22}]'
    cut = page_rows(body, [1, 22], [5, 4], [18, 9])
    assert cut == PageRows(array("q", [1, 22]), array("q", [5, 4]), array("I", [18, 9]))
    assert page_rows(b"[]", [], [], []) == PageRows(array("q"), array("q"), array("I"))
    assert page_rows(body, [1, 22], [5, 4], [17, 9]) is None


def test_a_kept_page_costs_what_the_cache_counts():
    """The budget is of memory: a 1000-task page with its rows takes about what it says."""
    pieces = [b'{"id":%d,"title":"%s"}' % (n, b"x" * 300) for n in range(1000)]
    body = b"[" + b",".join(pieces) + b"]"
    ids, created, sizes = (
        list(range(1000)),
        list(range(10**15, 10**15 + 1000)),
        list(map(len, pieces)),
    )
    tracemalloc.start()
    try:
        cut = page_rows(body, ids, created, sizes)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cut is not None
    kept = CachedPage(Page(body, None), 1, 1000, cut)
    assert kept.size - len(body) <= held <= 1.2 * (kept.size - len(body)) + 1024
    assert kept.size < 1.1 * len(body)
