"""List pages kept by a worker, served again only once the database confirms what changed.

A page of 1000 tasks is a few hundred KB that PostgreSQL builds and sends on every request, while
clients mostly ask again for a list that has not changed, or has changed in a task or two. So
each worker keeps the pages it served lately, with the user's version they were read at and how
many tasks the user had then. Before serving one again it asks PostgreSQL for the user's version
(one index lookup) and task count: every write bumps the version and stamps what it wrote with
the new value (migration 0008), so an unchanged version means an unchanged list, and the rows
and tombstones stamped later are exactly what changed since; the count catches rows deleted or
inserted by hand, which take no version. Nothing changed: the page is served as it is. The first
page of a list in created_at order with a few tasks changed: the page is patched (created_at
never changes, so the others keep their places) and checked against how many of the user's tasks
now fall within it, which also catches a delete that left no tombstone. Anything else is read
again in full.
"""

from __future__ import annotations

import zlib
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

# zlib's fastest level (for a 1000-task page, 0.4 ms of CPU and a 22nd of the bytes; level 6
# saves another sixth of them for three times the CPU), with a gzip header and trailer (RFC 1952).
GZIP_LEVEL = 1
GZIP_WBITS = 16 + 15
# More tasks written than this since a page was read: read it again rather than patch it.
MAX_PATCH = 100
# Up to this many tasks changed, a patch finds them in the page by a scan each; past it, by an
# index of the whole page (a 1000-task page: a scan is about a fifth of the index).
FEW_TO_SCAN = 4


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
    """A page's tasks in page order: each one's id, created_at in microseconds since PG_EPOCH,
    and the byte length of its JSON in the page (JSON array elements, one comma apart). Machine
    integers, 20 bytes a task: a copy of each task's JSON would cost as much memory again as the
    page."""

    ids: array[int]
    created_us: array[int]
    sizes: array[int]

    @property
    def size(self) -> int:
        return sum(
            len(values) * values.itemsize for values in (self.ids, self.created_us, self.sizes)
        )


@dataclass(frozen=True)
class CachedPage:
    """A page as served, with the user's version and task count when it was read, and its rows
    when it is the first page of the user's tasks in created_at order."""

    page: Page
    version: int
    task_count: int
    rows: PageRows | None = None

    @property
    def size(self) -> int:
        return len(self.page.json) + (self.rows.size if self.rows is not None else 0)


@dataclass(frozen=True)
class Written:
    """Tasks written since a version: ids, created_at in microseconds since PG_EPOCH, and JSON
    texts."""

    ids: list[int]
    created_us: Sequence[int]
    tasks: list[bytes]


@dataclass(frozen=True)
class Changes:
    """What tasks_changed_since found: the user's version and task count now, how many of the
    user's tasks come no later than a page's last one in its order (None for a page that holds
    them all, or when neither the version nor the count moved), the ids deleted through the API
    since, and the tasks written since (at most MAX_PATCH + 1)."""

    version: int
    task_count: int
    within_page: int | None
    deleted: list[int]
    written: Written


def page_rows(
    body: bytes, ids: list[int], created_us: Sequence[int], sizes: list[int]
) -> PageRows | None:
    """The rows of a page's JSON array `body`, with the byte lengths of its elements; None when
    they do not add up (lengths counted in a database encoding other than UTF-8)."""
    if sum(sizes) + max(len(sizes) - 1, 0) != len(body) - 2:
        return None
    return PageRows(array("q", ids), array("q", created_us), array("I", sizes))


# PostgreSQL's epoch: a timestamp in its binary form is microseconds since then.
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def utc_moment(created_us: int) -> datetime:
    """The timestamp of `created_us` microseconds since PG_EPOCH."""
    return PG_EPOCH + timedelta(microseconds=created_us)


def refreshed(
    cached: CachedPage, changes: Changes, *, limit: int, descending: bool
) -> CachedPage | None:
    """`cached`, the first page of a list of at most `limit` tasks (newest first when
    `descending`), brought up to `changes`; or None when the page must be read again.

    The tasks the page keeps stay in their order, so the new page is runs of the old one's bytes
    with the written tasks between them: a few slices and one copy, whatever the page's size."""
    if changes.version == cached.version and changes.task_count == cached.task_count:
        return cached
    written = changes.written
    rows = cached.rows
    # A lower version than the page's is another history (a database restored from an older
    # copy): nothing the page holds can be trusted.
    if changes.version < cached.version or rows is None or len(written.ids) > MAX_PATCH:
        return None
    count = len(rows.ids)
    gone = sorted(_positions(rows.ids, {*changes.deleted, *written.ids}))
    sign = -1 if descending else 1

    def place(at: int) -> tuple[int, int]:
        """The sort key of the page's task at `at`, ascending in page order."""
        return sign * rows.created_us[at], sign * rows.ids[at]

    # A page with more after it holds the tasks up to its last one: written tasks that come
    # later belong to the pages after it.
    last = None if cached.page.next_after is None else place(count - 1)
    new = sorted(
        ((sign * created, sign * task_id), task_id, created, task)
        for task_id, created, task in zip(
            written.ids, written.created_us, written.tasks, strict=True
        )
        if last is None or (sign * created, sign * task_id) <= last
    )
    held = changes.task_count if last is None else changes.within_page
    total = count - len(gone) + len(new)
    # The page must now hold exactly the tasks up to its last one, and be full unless they are
    # all there are; a page that gave some up reads the tasks after it again.
    if total != held or (total < limit and total != changes.task_count):
        return None

    def kept(start: int, end: int) -> Iterator[tuple[int, int]]:
        """The runs of the page's tasks from `start` to `end` that it keeps."""
        for at in gone[bisect_left(gone, start) : bisect_left(gone, end)]:
            if start < at:
                yield start, at
            start = at + 1
        if start < end:
            yield start, end

    segments: list[tuple[int, int] | int] = []
    start = 0
    for index, (key, *_) in enumerate(new):
        end = bisect_left(range(count), key, key=place)
        segments.extend(kept(start, end))
        segments.append(index)
        start = end
    segments.extend(kept(start, count))

    body = memoryview(cached.page.json)
    # The old page's task `at` starts at byte `offset`, found by adding up the lengths as the
    # runs go (never more than once over the page).
    at, offset = 0, 1
    patched = PageRows(array("q"), array("q"), array("I"))
    pieces: list[bytes | memoryview] = []
    room = limit
    for segment in segments:
        if room == 0:
            break
        if isinstance(segment, int):
            _, task_id, created, task = new[segment]
            patched.ids.append(task_id)
            patched.created_us.append(created)
            patched.sizes.append(len(task))
            pieces.append(task)
            room -= 1
            continue
        start, end = segment[0], min(segment[1], segment[0] + room)
        offset += sum(rows.sizes[at:start]) + start - at
        length = sum(rows.sizes[start:end]) + end - start - 1
        pieces.append(body[offset : offset + length])
        at, offset = end, offset + length + 1
        patched.ids.extend(rows.ids[start:end])
        patched.created_us.extend(rows.created_us[start:end])
        patched.sizes.extend(rows.sizes[start:end])
        room -= end - start
    # One copy: the brackets and commas go in with the pieces.
    parts: list[bytes | memoryview] = [b"["]
    for piece in pieces:
        parts += (piece, b",")
    if pieces:
        parts.pop()
    parts.append(b"]")
    json = b"".join(parts)
    more = changes.task_count > limit
    next_after = (utc_moment(patched.created_us[-1]), patched.ids[-1]) if more else None
    return CachedPage(Page(json, next_after), changes.version, changes.task_count, patched)


def _positions(ids: array[int], wanted: set[int]) -> list[int]:
    """Where the ids `wanted` are in `ids`, those that are: a scan each for a few, one index
    of all of them for more."""
    if len(wanted) > FEW_TO_SCAN:
        position = dict(zip(ids, range(len(ids)), strict=True))
        return [position[task_id] for task_id in wanted if task_id in position]
    found = []
    for task_id in wanted:
        with suppress(ValueError):
            found.append(ids.index(task_id))
    return found


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
