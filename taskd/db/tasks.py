"""Task data functions. Each takes `user_id` as a required keyword and binds it."""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from psycopg import AsyncConnection, AsyncCursor, postgres
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.pq import Format, TransactionStatus

from taskd.db.listener import notify_change
from taskd.db.prepared import in_transaction
from taskd.db.queries import Query, load_queries
from taskd.db.users import provision_user
from taskd.page_cache import (
    HIT,
    MAX_PATCH,
    MISS,
    PATCH,
    CachedPage,
    Changes,
    Page,
    PageCache,
    SortValue,
    Written,
    page_rows,
    refreshed,
)
from taskd.user_ids import UserId

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


def _patched_in_order(sort: str) -> bool:
    """Whether a cached page in `sort` order can be patched (taskd/page_cache.py): in created_at
    order, which never changes, a task written keeps its place."""
    return SORTS[sort][0] == "created_at"


# A list that may become a patchable page (the first page of a user's tasks, in an order a page
# can be patched in) also reads each row's id, created_at and JSON length (sql/tasks.sql,
# list_tasks); every other list is read without them.
_ROW_ARRAYS = {
    True: "array_agg(id) AS ids, array_agg(created_at) AS created_at, "
    "array_agg(octet_length(task)) AS sizes",
    False: "NULL::bigint[] AS ids, NULL::timestamptz[] AS created_at, NULL::int[] AS sizes",
}

# (sort parameter, with row arrays) -> its list query
_LIST_QUERIES: dict[tuple[str, bool], Query] = {
    (sort, with_rows): _QUERIES["list_tasks"].variant(
        f"list_tasks[{sort}{', rows' if with_rows else ''}]",
        sort_column=column,
        direction=direction,
        after=after,
        row_arrays=_ROW_ARRAYS[with_rows],
    )
    for sort, (column, direction, after) in SORTS.items()
    for with_rows in (False, True)
    if _patched_in_order(sort) or not with_rows
}

# descending -> what changed since a cached page of that direction was read; a task comes no
# later than the page's last one when it is at or before it in the page's order
_CHANGES_QUERIES: dict[bool, Query] = {
    descending: _QUERIES["tasks_changed_since"].variant(
        f"tasks_changed_since[{'desc' if descending else 'asc'}]",
        within_page=">=" if descending else "<=",
    )
    for descending in (False, True)
}

# Deleted tasks stay visible to the change feed this long; older feed tokens must resync.
TOMBSTONE_RETENTION_DAYS = 30


class _TextAsBuffer(Loader):
    """Text as the UTF-8 bytes PostgreSQL sent (binary format, UTF8 client encoding), left in
    the result's memory: a page's JSON is copied once, into the response, and never decoded."""

    format = Format.BINARY

    def load(self, data: Buffer) -> Buffer:
        return data


_INT4 = struct.Struct("!i")
_TIMESTAMPTZ_ARRAY = postgres.types["timestamptz"].array_oid


class _MomentsAsMicroseconds(Loader):
    """A timestamptz[] of no NULLs as its values in microseconds since PG_EPOCH, the form in
    which the binary array carries them and taskd/page_cache.py keeps them: PostgreSQL need not
    compute a number per task, which took 28 % of its instructions for a 1000-task page that a
    cache may patch (callgrind: 9.98 M, now 7.13 M). Its header is three int4 (dimensions, has
    NULLs, element type) and, for the one dimension, its length and lower bound; each element,
    an int4 length and an int8."""

    format = Format.BINARY

    def load(self, data: Buffer) -> tuple[int, ...]:
        (dimensions,) = _INT4.unpack_from(data)
        if dimensions == 0:
            return ()
        (count,) = _INT4.unpack_from(data, 12)
        return struct.unpack_from("!" + "4xq" * count, data, 20)


def _binary_cursor(conn: AsyncConnection) -> AsyncCursor[Any]:
    """A cursor whose timestamptz arrays are read as microseconds (_MomentsAsMicroseconds)."""
    cursor = conn.cursor(binary=True)
    cursor.adapters.register_loader(_TIMESTAMPTZ_ARRAY, _MomentsAsMicroseconds)
    return cursor


@dataclass(frozen=True)
class RenderedTask:
    """A task as served: its id, its strong ETag (quoted) and its JSON text; for a task just
    read or written, also the user's version that its last write took (None for a replayed
    create, which is the task as the key's first use created it)."""

    id: int
    etag: str
    json: str
    version: int | None = field(default=None, compare=False)


def etag(task_id: int, version: int) -> str:
    """The strong entity-tag (RFC 9110 §8.8.3) of a task as its user's version `version` left
    it: versions are never reused within a user, so the tag changes with every change."""
    return f'"{task_id}.{version}"'


def _rendered(task_id: int, version: int, json: str) -> RenderedTask:
    return RenderedTask(task_id, etag(task_id, version), json, version)


def versions_named(if_match: list[str] | None, task_id: int) -> list[int] | None:
    """The versions of task `task_id` that the entity-tags `if_match` name (None: any version);
    a tag of another task, or not one of ours, names none."""
    if if_match is None:
        return None
    prefix = f'"{task_id}.'
    versions = []
    for tag in if_match:
        digits = tag[len(prefix) : -1]
        if tag.startswith(prefix) and tag.endswith('"') and digits.isascii() and digits.isdigit():
            version = int(digits)
            if version < 2**63:
                versions.append(version)
    return versions


async def _fetch_value(conn: AsyncConnection, query: Query, params: dict[str, Any]) -> Any:
    cursor = await conn.execute(query.sql, params)
    row = await cursor.fetchone()
    return None if row is None else row[0]


async def _fetch_task(
    conn: AsyncConnection, query: Query, params: dict[str, Any]
) -> RenderedTask | None:
    cursor = await conn.execute(query.sql, params)
    row = await cursor.fetchone()
    return None if row is None else _rendered(*row)


T = TypeVar("T")

# A write is sent, then collected: `send` issues its statements on a connection, in the
# transaction and pipeline of whoever runs it, and returns `collect`, which reads their results
# once the transaction has committed: the write's answer, and the user's version it took (None
# when it wrote nothing). `run_writes` runs several writes of one user in one transaction (for
# taskd/db/batches.py), `run_write` one.
Collect = Callable[[], Awaitable[tuple[T, int | None]]]
Send = Callable[[AsyncConnection], Awaitable[Collect[T]]]


async def run_writes(
    conn: AsyncConnection, sends: Sequence[Send[Any]], *, user_id: UserId
) -> list[Any]:
    """Run the writes `sends` of one user on `conn`, in one transaction and one round trip, and
    tell the user's live-update streams of the last version they took; their answers."""

    async def send_all() -> list[Collect[Any]]:
        return [await send(conn) for send in sends]

    answers, versions = [], []
    for collect in await _one_transaction(conn, send_all):
        answer, version = await collect()
        answers.append(answer)
        if version is not None:
            versions.append(version)
    if versions:
        await notify_change(conn, user_id=user_id, version=max(versions))
    return answers


async def run_write(conn: AsyncConnection, send: Send[T], *, user_id: UserId) -> T:
    """Run one write on `conn` (run_writes of one)."""
    answer: T = (await run_writes(conn, [send], user_id=user_id))[0]
    return answer


def provisioned(send: Send[T], *, user_id: UserId) -> Send[T]:
    """`send` after the statement that provisions its user, in its transaction and round trip:
    for a user the process has not seen yet, whose update or delete finds no task (a 404) but
    provisions the user all the same."""

    async def send_provisioned(conn: AsyncConnection) -> Collect[T]:
        await provision_user(conn, user_id=user_id)
        return await send(conn)

    return send_provisioned


async def _one_transaction(conn: AsyncConnection, statements: Callable[[], Awaitable[T]]) -> T:
    """The statements of one transaction sent at once, in one round trip: on an autocommit
    connection (the pool's) between a BEGIN and a COMMIT in the same pipeline, and run again
    whole if a pooler refused a prepared statement; elsewhere in the caller's transaction.
    (psycopg's transaction() would sync, so wait for the server, at BEGIN and again at COMMIT,
    while the user's row is locked. Without BEGIN the statements up to the pipeline's Sync are
    one implicit transaction for PostgreSQL, but not for Citus, which commits each on its worker
    as it ends.)"""
    if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        return await in_transaction(conn, statements, pipelined=True)
    async with conn.pipeline():
        return await statements()


def _task_collector(cursor: AsyncCursor[Any]) -> Collect[RenderedTask | None]:
    async def collect() -> tuple[RenderedTask | None, int | None]:
        row = await cursor.fetchone()
        if row is None:
            return None, None
        task = _rendered(*row)
        return task, task.version

    return collect


def create_write(*, user_id: UserId, title: str, description: str) -> Send[RenderedTask]:
    """Insert a task (provisioning its user)."""
    take, insert = _QUERIES["take_next_version"], _QUERIES["insert_task"]

    async def send(conn: AsyncConnection) -> Collect[RenderedTask]:
        await conn.execute(take.sql, take.bind(user_id=user_id))
        cursor = await conn.execute(
            insert.sql, insert.bind(user_id=user_id, title=title, description=description)
        )

        async def collect() -> tuple[RenderedTask, int | None]:
            task, version = await _task_collector(cursor)()
            assert task is not None
            return task, version

        return collect

    return send


async def create_task(
    conn: AsyncConnection, *, user_id: UserId, title: str, description: str
) -> RenderedTask:
    """Insert a task (provisioning its user) and return it."""
    write = create_write(user_id=user_id, title=title, description=description)
    return await run_write(conn, write, user_id=user_id)


async def get_task(conn: AsyncConnection, *, user_id: UserId, task_id: int) -> RenderedTask | None:
    query = _QUERIES["get_task"]
    return await _fetch_task(conn, query, query.bind(user_id=user_id, task_id=task_id))


async def task_exists(conn: AsyncConnection, *, user_id: UserId, task_id: int) -> bool:
    query = _QUERIES["task_exists"]
    return bool(await _fetch_value(conn, query, query.bind(user_id=user_id, task_id=task_id)))


# Each write takes `if_match`: the ETags one of which the task must have for the write to happen
# (None: any version). A write that happens to nothing answers None: no such task, or one whose
# version is not in `if_match`; `task_exists` tells which.


def _statement_write(query: Query, params: dict[str, Any]) -> Send[RenderedTask | None]:
    async def send(conn: AsyncConnection) -> Collect[RenderedTask | None]:
        return _task_collector(await conn.execute(query.sql, params))

    return send


def update_write(
    *,
    user_id: UserId,
    task_id: int,
    if_match: list[str] | None = None,
    title: str | None = None,
    description: str | None = None,
    is_completed: bool | None = None,
) -> Send[RenderedTask | None]:
    """Change the given fields (None leaves one as it is)."""
    query = _QUERIES["update_task"]
    params = query.bind(
        user_id=user_id,
        task_id=task_id,
        if_match=versions_named(if_match, task_id),
        title=title,
        description=description,
        is_completed=is_completed,
    )
    return _statement_write(query, params)


def toggle_write(
    *, user_id: UserId, task_id: int, if_match: list[str] | None = None
) -> Send[RenderedTask | None]:
    query = _QUERIES["toggle_task"]
    params = query.bind(
        user_id=user_id, task_id=task_id, if_match=versions_named(if_match, task_id)
    )
    return _statement_write(query, params)


def delete_write(
    *, user_id: UserId, task_id: int, if_match: list[str] | None = None
) -> Send[int | None]:
    """Delete a task, leaving a tombstone for the change feed; answers the user's new version,
    or None when nothing was deleted."""
    params = _QUERIES["delete_task"].bind(
        user_id=user_id,
        task_id=task_id,
        if_match=versions_named(if_match, task_id),
        retention_days=TOMBSTONE_RETENTION_DAYS,
    )

    async def send(conn: AsyncConnection) -> Collect[int | None]:
        taken = await conn.execute(_QUERIES["take_version_for_delete"].sql, params)
        await conn.execute(_QUERIES["insert_tombstone"].sql, params)
        deleted = await conn.execute(_QUERIES["delete_task"].sql, params)

        async def collect() -> tuple[int | None, int | None]:
            row = await taken.fetchone()
            if row is None:
                return None, None
            # A version taken for a task that another write deleted first is taken all the same.
            version: int = row[0]
            return (version if await deleted.fetchone() is not None else None), version

        return collect

    return send


async def update_task(
    conn: AsyncConnection, *, user_id: UserId, task_id: int, **changes: Any
) -> RenderedTask | None:
    """update_write run on `conn`; `changes` are its keywords."""
    write = update_write(user_id=user_id, task_id=task_id, **changes)
    return await run_write(conn, write, user_id=user_id)


async def toggle_task(
    conn: AsyncConnection, *, user_id: UserId, task_id: int, if_match: list[str] | None = None
) -> RenderedTask | None:
    write = toggle_write(user_id=user_id, task_id=task_id, if_match=if_match)
    return await run_write(conn, write, user_id=user_id)


async def delete_task(
    conn: AsyncConnection, *, user_id: UserId, task_id: int, if_match: list[str] | None = None
) -> int | None:
    write = delete_write(user_id=user_id, task_id=task_id, if_match=if_match)
    return await run_write(conn, write, user_id=user_id)


async def list_tasks(
    conn: AsyncConnection,
    *,
    user_id: UserId,
    sort: str = DEFAULT_SORT,
    completed: bool | None = None,
    pattern: str | None = None,
    after: tuple[SortValue, int] | None = None,
    limit: int,
    cache: PageCache | None = None,
) -> Page:
    """One page of tasks in `sort` order, starting after the (sort value, id) `after`; from
    `cache`, brought up to date, when the database says little or nothing changed."""
    key = (user_id, sort, completed, pattern, after, limit)
    cached = cache.get(key) if cache is not None else None
    if cache is not None and cached is not None:
        descending = _descending(sort)
        changes = await _changes_since(conn, user_id, cached, descending=descending)
        fresh = refreshed(cached, changes, limit=limit, descending=descending)
        if fresh is not None:
            cache.put(key, fresh)
            cache.record(HIT if fresh is cached else PATCH)
            return fresh.page
    patchable = (
        cache is not None
        and cache.enabled
        and _patched_in_order(sort)
        and after is None
        and completed is None
        and pattern is None
    )
    query = _LIST_QUERIES[sort, patchable]
    after_value, after_id = after if after is not None else (None, None)
    params = query.bind(
        user_id=user_id,
        completed=completed,
        pattern=pattern,
        after_value=after_value,
        after_id=after_id,
        limit=limit,
    )
    cursor = _binary_cursor(conn)
    # Text comes back as buffers: the page's JSON. A title sort value is a varchar, read as str.
    cursor.adapters.register_loader("text", _TextAsBuffer)
    await cursor.execute(query.sql, params)
    row = await cursor.fetchone()
    assert row is not None
    tasks_json, last_value, last_id, version, task_count, more, ids, created_us, sizes = row
    page = Page(b"".join((b"[", tasks_json, b"]")), (last_value, last_id) if more else None)
    # A page's rows are indexed only for a cache that can keep it (none when it is off).
    if cache is not None and cache.keeps(len(page.json)):
        # No arrays for an empty page (array_agg of no rows is NULL): it is read again when a
        # task appears.
        rows = page_rows(page.json, ids, created_us, sizes) if ids is not None else None
        cache.put(key, CachedPage(page, version, task_count, rows))
    if cache is not None:
        cache.record(MISS)
    return page


def _descending(sort: str) -> bool:
    return SORTS[sort][1] == "DESC"


async def _changes_since(
    conn: AsyncConnection, user_id: UserId, cached: CachedPage, *, descending: bool
) -> Changes:
    query = _CHANGES_QUERIES[descending]
    # Only a page that can be patched has its tasks up to its last one counted, and only when
    # something changed (refreshed() serves it as it is otherwise).
    edge = cached.page.next_after if cached.rows is not None else None
    last_value, last_id = edge or (None, None)
    params = query.bind(
        user_id=user_id,
        since=cached.version,
        since_count=cached.task_count,
        last_value=last_value,
        last_id=last_id,
        # One more than a patch takes, to tell that there are more.
        max_written=MAX_PATCH + 1,
    )
    cursor = _binary_cursor(conn)
    await cursor.execute(query.sql, params)
    row = await cursor.fetchone()
    assert row is not None
    now, task_count, within_page, deleted, ids, created_us, tasks = row
    written = Written(ids, created_us, [task.encode() for task in tasks])
    return Changes(now, task_count, within_page, deleted, written)


@dataclass(frozen=True)
class ChangesPage:
    """Changes after a position: task JSON texts, (id, deleted_at) pairs, the user's version when
    they were read, the (version, task id) of the page's last change, and whether more follow."""

    tasks: list[str]
    deleted: list[tuple[int, str]]
    version: int
    last: tuple[int, int] | None
    more: bool


async def task_changes(
    conn: AsyncConnection,
    *,
    user_id: UserId,
    after: tuple[int, int | None],
    upto: int | None,
    with_deletions: bool,
    limit: int,
) -> ChangesPage:
    """Tasks written and deleted after the position `after`, (version, task id) with None for
    all tasks of that version, up to version `upto` when given, in the order of their versions
    (the order their writes committed in), at most `limit` of them."""
    query = _QUERIES["task_changes"]
    after_version, after_id = after
    params = query.bind(
        user_id=user_id,
        after=after_version,
        after_id=after_id,
        upto=upto,
        with_deletions=with_deletions,
        limit=limit + 1,
    )
    cursor = await conn.execute(query.sql, params)
    rows = await cursor.fetchall()
    version = rows[0][0]
    changes = [row for row in rows if row[1] is not None]
    more = len(changes) > limit
    del changes[limit:]
    return ChangesPage(
        tasks=[task for _, _, _, task, _ in changes if task is not None],
        deleted=[
            (task_id, deleted_at) for _, _, task_id, task, deleted_at in changes if task is None
        ],
        version=version,
        last=(changes[-1][1], changes[-1][2]) if changes else None,
        more=more,
    )
