"""List pages kept by a worker, served again only once the database confirms nothing changed.

A page of 1000 tasks is a few hundred KB that PostgreSQL builds and sends on every request, while
clients mostly ask again for a list that has not changed. So each worker keeps the pages it
served lately, with the snapshot they were read in and how many tasks the user had then, and
before serving one again asks PostgreSQL (an index lookup, not the page) whether the user's tasks
are still exactly what that snapshot saw: every write stamps its row with its transaction id
(migration 0004), so a write the snapshot did not see leaves a row it cannot see, and a delete
leaves fewer rows. Nothing is served that the database would not serve at that moment.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskd.db.tasks import Page


@dataclass(frozen=True)
class CachedPage:
    """A page as served, with the snapshot it was read in and the user's task count then."""

    page: Page
    snapshot: str
    task_count: int


class PageCache:
    """Least recently used pages, up to `max_bytes` of page JSON; 0 keeps none."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._pages: OrderedDict[Hashable, CachedPage] = OrderedDict()
        self._bytes = 0

    def get(self, key: Hashable) -> CachedPage | None:
        cached = self._pages.get(key)
        if cached is not None:
            self._pages.move_to_end(key)
        return cached

    def put(self, key: Hashable, cached: CachedPage) -> None:
        self.discard(key)
        size = len(cached.page.json)
        if size > self.max_bytes:
            return
        self._pages[key] = cached
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._pages.popitem(last=False)
            self._bytes -= len(evicted.page.json)

    def discard(self, key: Hashable) -> None:
        cached = self._pages.pop(key, None)
        if cached is not None:
            self._bytes -= len(cached.page.json)

    def __len__(self) -> int:
        return len(self._pages)
