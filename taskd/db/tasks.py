"""Task data functions. Each takes `user_id` as a required keyword and binds it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from taskd.db.queries import Query, load_queries

_QUERIES = load_queries("tasks.sql")

# sort parameter -> (column, direction, keyset comparison); ties are broken by id.
SORTS: dict[str, tuple[str, str, str]] = {
    "created_at": ("created_at", "ASC", ">"),
    "-created_at": ("created_at", "DESC", "<"),
    "updated_at": ("updated_at", "ASC", ">"),
    "-updated_at": ("updated_at", "DESC", "<"),
    "title": ("title", "ASC", ">"),
    "-title": ("title", "DESC", "<"),
}
DEFAULT_SORT = "-created_at"

_LIST_QUERIES: dict[str, Query] = {
    sort: _QUERIES["list_tasks"].variant(
        f"list_tasks[{sort}]", sort_column=column, direction=direction, after=after
    )
    for sort, (column, direction, after) in SORTS.items()
}

SortValue = datetime | str

# Deleted tasks stay visible to the change feed this long; older feed tokens must resync.
TOMBSTONE_RETENTION_DAYS = 30


@dataclass(frozen=True)
class Page:
    """A JSON array of tasks, and where the next page starts when there is one."""

    json: bytes
    next_after: tuple[SortValue, int] | None


async def _fetch_value(conn: AsyncConnection, query: Query, params: dict[str, Any]) -> Any:
    cursor = await conn.execute(query.sql, params)
    row = await cursor.fetchone()
    return None if row is None else row[0]


async def create_task(
    conn: AsyncConnection, *, user_id: int, title: str, description: str
) -> tuple[int, str]:
    """Insert a task (provisioning its user) and return its id and JSON."""
    query = _QUERIES["create_task"]
    cursor = await conn.execute(
        query.sql, query.bind(user_id=user_id, title=title, description=description)
    )
    row = await cursor.fetchone()
    assert row is not None
    return row[0], row[1]


async def _task_by_id(conn: AsyncConnection, name: str, *, user_id: int, task_id: int) -> Any:
    query = _QUERIES[name]
    return await _fetch_value(conn, query, query.bind(user_id=user_id, task_id=task_id))


async def get_task(conn: AsyncConnection, *, user_id: int, task_id: int) -> str | None:
    task: str | None = await _task_by_id(conn, "get_task", user_id=user_id, task_id=task_id)
    return task


async def task_exists(conn: AsyncConnection, *, user_id: int, task_id: int) -> bool:
    return bool(await _task_by_id(conn, "task_exists", user_id=user_id, task_id=task_id))


async def update_task(
    conn: AsyncConnection,
    *,
    user_id: int,
    task_id: int,
    title: str | None = None,
    description: str | None = None,
    is_completed: bool | None = None,
) -> str | None:
    """Change the given fields (None leaves one as it is); None when there is no such task."""
    query = _QUERIES["update_task"]
    params = query.bind(
        user_id=user_id,
        task_id=task_id,
        title=title,
        description=description,
        is_completed=is_completed,
    )
    task: str | None = await _fetch_value(conn, query, params)
    return task


async def toggle_task(conn: AsyncConnection, *, user_id: int, task_id: int) -> str | None:
    task: str | None = await _task_by_id(conn, "toggle_task", user_id=user_id, task_id=task_id)
    return task


async def delete_task(conn: AsyncConnection, *, user_id: int, task_id: int) -> bool:
    """Delete a task, leaving a tombstone for the change feed; False when there is none."""
    query = _QUERIES["delete_task"]
    params = query.bind(user_id=user_id, task_id=task_id, retention_days=TOMBSTONE_RETENTION_DAYS)
    return await _fetch_value(conn, query, params) is not None


async def list_tasks(
    conn: AsyncConnection,
    *,
    user_id: int,
    sort: str = DEFAULT_SORT,
    completed: bool | None = None,
    pattern: str | None = None,
    after: tuple[SortValue, int] | None = None,
    limit: int,
) -> Page:
    """One page of tasks in `sort` order, starting after the (sort value, id) `after`."""
    query = _LIST_QUERIES[sort]
    after_value, after_id = after if after is not None else (None, None)
    params = query.bind(
        user_id=user_id,
        completed=completed,
        pattern=pattern,
        after_value=after_value,
        after_id=after_id,
        limit=limit + 1,
    )
    cursor = await conn.execute(query.sql, params)
    rows = await cursor.fetchall()
    more = len(rows) > limit
    if more:
        del rows[limit:]
    body = "[" + ",".join(row[0] for row in rows) + "]"
    next_after = (rows[-1][1], rows[-1][2]) if more else None
    return Page(body.encode(), next_after)


@dataclass(frozen=True)
class ChangesPage:
    """Changes after a position: task JSON texts, (id, deleted_at) pairs, and where they end."""

    tasks: list[str]
    deleted: list[tuple[int, str]]
    snapshot: str
    last: tuple[str, int] | None
    more: bool


async def task_changes(
    conn: AsyncConnection,
    *,
    user_id: int,
    since: str,
    upto: str | None,
    after: tuple[str, int],
    with_deletions: bool,
    limit: int,
) -> ChangesPage:
    """Tasks written and deleted by transactions invisible to snapshot `since` (and visible
    to `upto` when given), after the (transaction id, task id) position `after`."""
    query = _QUERIES["task_changes"]
    after_xid, after_id = after
    params = query.bind(
        user_id=user_id,
        since=since,
        upto=upto,
        after_xid=after_xid,
        after_id=after_id,
        with_deletions=with_deletions,
        limit=limit + 1,
    )
    cursor = await conn.execute(query.sql, params)
    rows = await cursor.fetchall()
    snapshot = rows[0][0]
    changes = [row for row in rows if row[1] is not None]
    more = len(changes) > limit
    del changes[limit:]
    return ChangesPage(
        tasks=[task for _, _, _, task, _ in changes if task is not None],
        deleted=[
            (task_id, deleted_at) for _, _, task_id, task, deleted_at in changes if task is None
        ],
        snapshot=snapshot,
        last=(changes[-1][1], changes[-1][2]) if changes else None,
        more=more,
    )
