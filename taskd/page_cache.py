"""List pages kept by a worker, served again only once the database confirms what changed.

A page of 1000 tasks is a few hundred KB that PostgreSQL builds and sends on every request, while
clients mostly ask again for a list that has not changed, or has changed in a task or two. So
each worker keeps the pages it served lately, with the user's version they were read at and how
many tasks the user had then. Before serving one again it asks PostgreSQL for the user's version
(one index lookup) and task count: every write bumps the version and stamps what it wrote with
the new value (migration 0008), so an unchanged version means an unchanged list, and the rows
and tombstones stamped later are exactly what changed since; the count catches rows deleted or
inserted by hand, which take no version. Nothing changed: the page is served as it is. A whole list
in created_at order with a few tasks changed: the page is patched (created_at never changes, so
the others keep their places) and checked against the user's task count, which also catches a
delete that left no tombstone. Anything else is read again in full.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

# zlib's fastest level (for a 1000-task page, 0.4 ms of CPU and a 22nd of the bytes; level 6
# saves another sixth of them for three times the CPU), with a gzip header and trailer (RFC 1952).
GZIP_LEVEL = 1
GZIP_WBITS = 16 + 15
# More tasks written than this since a page was read: read it again rather than patch it.
MAX_PATCH = 100


SortValue = datetime | str


@dataclass(frozen=True)
class Page:
    """A JSON array of tasks, and where the next page starts when there is one."""

    json: bytes
    next_after: tuple[SortValue, int] | None

    @cached_property
    def gzipped(self) -> bytes:
        """The JSON gzip-coded, made once per page: a cached page is coded for its first client
        that accepts gzip and sent coded as it is to the others."""
        return gzip_coded(self.json)


def gzip_coded(data: bytes) -> bytes:
    return zlib.compress(data, GZIP_LEVEL, wbits=GZIP_WBITS)


@dataclass(frozen=True)
class PageRows:
    """A page's tasks in page order: id, created_at in microseconds, and JSON text."""

    ids: list[int]
    created_us: list[int]
    tasks: list[bytes]


@dataclass(frozen=True)
class CachedPage:
    """A page as served, with the user's version and task count when it was read, and its rows
    when it is all of the user's tasks in created_at order."""

    page: Page
    version: int
    task_count: int
    rows: PageRows | None = None

    @property
    def size(self) -> int:
        return len(self.page.json) * (2 if self.rows is not None else 1)


@dataclass(frozen=True)
class Changes:
    """What tasks_changed_since found: the user's version and task count now, the ids deleted
    through the API since, and the tasks written since (at most MAX_PATCH + 1)."""

    version: int
    task_count: int
    deleted: list[int]
    written: PageRows


def page_rows(
    body: bytes, ids: list[int], created_us: list[int], sizes: list[int]
) -> PageRows | None:
    """The rows of a page's JSON array `body`, cut by the byte lengths of its elements; None
    when they do not add up (lengths counted in a database encoding other than UTF-8)."""
    if sum(sizes) + max(len(sizes) - 1, 0) != len(body) - 2:
        return None
    tasks = []
    start = 1
    for size in sizes:
        tasks.append(body[start : start + size])
        start += size + 1
    return PageRows(ids, created_us, tasks)


def refreshed(
    cached: CachedPage, changes: Changes, *, limit: int, descending: bool
) -> CachedPage | None:
    """`cached`, a page of at most `limit` tasks (newest first when `descending`), brought up to
    `changes`; or None when the page must be read again."""
    if changes.version == cached.version and changes.task_count == cached.task_count:
        return cached
    written = changes.written
    rows = cached.rows
    # A lower version than the page's is another history (a database restored from an older
    # copy): nothing the page holds can be trusted.
    if changes.version < cached.version or rows is None or len(written.ids) > MAX_PATCH:
        return None
    by_id = dict(zip(rows.ids, zip(rows.created_us, rows.tasks, strict=True), strict=True))
    for task_id in changes.deleted:
        by_id.pop(task_id, None)
    by_id.update(zip(written.ids, zip(written.created_us, written.tasks, strict=True), strict=True))
    if len(by_id) != changes.task_count or len(by_id) > limit:
        return None
    order = sorted(by_id, key=lambda task_id: (by_id[task_id][0], task_id))
    if descending:
        order.reverse()
    patched = PageRows(
        order, [by_id[task_id][0] for task_id in order], [by_id[task_id][1] for task_id in order]
    )
    body = b"".join((b"[", b",".join(patched.tasks), b"]"))
    return CachedPage(Page(body, None), changes.version, changes.task_count, patched)


# What a lookup came to, for /metrics: served as kept, patched from what changed, or read in full
# (nothing kept, or a kept page that could not be brought up to date).
HIT = "hit"
PATCH = "patch"
MISS = "miss"


class PageCache:
    """Least recently used pages, up to `max_bytes`; 0 keeps none. `observe` hears of every
    lookup's outcome (HIT, PATCH or MISS) with the bytes the cache then holds."""

    def __init__(self, max_bytes: int, observe: Callable[[str, int], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self._pages: OrderedDict[Hashable, CachedPage] = OrderedDict()
        self._bytes = 0
        self._observe = observe

    def record(self, outcome: str) -> None:
        if self._observe is not None:
            self._observe(outcome, self._bytes)

    @property
    def enabled(self) -> bool:
        """Whether it keeps pages at all; with 0 bytes (TASKD_LIST_CACHE_MB=0) it only counts
        the misses."""
        return self.max_bytes > 0

    def keeps(self, size: int) -> bool:
        """Whether a page of `size` bytes would be kept: pages larger than the budget are not."""
        return size <= self.max_bytes

    def get(self, key: Hashable) -> CachedPage | None:
        cached = self._pages.get(key)
        if cached is not None:
            self._pages.move_to_end(key)
        return cached

    def put(self, key: Hashable, cached: CachedPage) -> None:
        self.discard(key)
        if not self.keeps(cached.size):
            return
        self._pages[key] = cached
        self._bytes += cached.size
        while self._bytes > self.max_bytes:
            _, evicted = self._pages.popitem(last=False)
            self._bytes -= evicted.size

    def discard(self, key: Hashable) -> None:
        cached = self._pages.pop(key, None)
        if cached is not None:
            self._bytes -= cached.size

    def __len__(self) -> int:
        return len(self._pages)
