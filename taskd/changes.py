"""The change feed's opaque token and response body.

A token names a PostgreSQL snapshot (`xmin:xmax:xip,...`) the client has seen everything of:
the next poll returns each task written, and each task deleted, by a transaction that snapshot
did not see. Transactions are judged by visibility, that is by commit order, so one that took
its id early and committed late is reported on the first poll after it commits.

A poll with more changes than `limit` answers a run of pages: every page of the run is bounded
by the snapshot of its first page (`upto`) and keyed by (transaction id, task id), and the run's
last page hands out `upto` as the next `since`. Changes committed meanwhile wait for that poll.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from taskd.db.tasks import TOMBSTONE_RETENTION_DAYS, ChangesPage
from taskd.errors import ApiError, unprocessable
from taskd.listing import query_text

# A snapshot that sees no transaction at all: from it, everything is a change.
BEGINNING = "1:1:"
START = ("0", 0)
_SNAPSHOT = re.compile(r"([0-9]{1,19}):([0-9]{1,19}):([0-9]{1,19}(?:,[0-9]{1,19})*)?")
_XID = re.compile(r"[0-9]{1,19}")
TOKEN_MAX_CHARS = 16 * 1024
RETENTION_SECONDS = TOMBSTONE_RETENTION_DAYS * 24 * 3600


@dataclass(frozen=True)
class FeedToken:
    since: str | None  # None: from the beginning
    since_at: int  # when `since` was taken (Unix time), to refuse tokens past retention
    upto: str | None = None  # set while a run of pages lasts
    upto_at: int = 0
    after: tuple[str, int] = START

    def encode(self) -> str:
        fields = [self.since, self.since_at, self.upto, self.upto_at, list(self.after)]
        return base64.urlsafe_b64encode(orjson.dumps(fields)).rstrip(b"=").decode()

    def position(self) -> dict[str, Any]:
        """The arguments of db.tasks.task_changes that read the page after this token."""
        return {
            "since": self.since or BEGINNING,
            "upto": self.upto,
            "after": self.after,
            "with_deletions": self.since is not None,
        }

    def following(self, page: ChangesPage, now: int) -> FeedToken:
        """The token of the poll after `page`."""
        if page.more:
            assert page.last is not None
            if self.upto is None:
                return FeedToken(self.since, self.since_at, page.snapshot, now, page.last)
            return FeedToken(self.since, self.since_at, self.upto, self.upto_at, page.last)
        if self.upto is not None:
            return FeedToken(self.upto, self.upto_at)
        return FeedToken(page.snapshot, now)


def parse_since(arguments: Mapping[str, list[bytes]], now: int) -> FeedToken:
    """The token in `since`, or the beginning; 422 if it is not ours, 410 if too old."""
    return parse_token(query_text(arguments, "since"), now, ["query", "since"])


def parse_token(text: str | None, now: int, loc: list[str | int]) -> FeedToken:
    """The token `text` (None or empty: the beginning), which came from `loc`; 422 naming
    `loc` if it is not ours, 410 if too old."""
    if not text:
        return FeedToken(None, now)
    token = _decode(text, loc)
    if token.since is not None and now - token.since_at > RETENTION_SECONDS:
        raise ApiError(
            410,
            f"The token is older than the {TOMBSTONE_RETENTION_DAYS} days deletions are kept: "
            "start again without since.",
        )
    return token


def _decode(text: str, loc: list[str | int]) -> FeedToken:
    invalid = unprocessable(loc, "is not a token returned by this endpoint", "value_error")
    if len(text) > TOKEN_MAX_CHARS:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        since, since_at, upto, upto_at, (after_xid, after_id) = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise invalid from None
    valid = (
        (since is None or _is_snapshot(since))
        and (upto is None or _is_snapshot(upto))
        and all(type(moment) is int and 0 <= moment < 2**53 for moment in (since_at, upto_at))
        and isinstance(after_xid, str)
        and _XID.fullmatch(after_xid) is not None
        and type(after_id) is int
        and 0 <= after_id < 2**63
    )
    if not valid:
        raise invalid
    return FeedToken(since, since_at, upto, upto_at, (after_xid, after_id))


def _is_snapshot(value: object) -> bool:
    """Whether PostgreSQL's pg_snapshot input would accept `value` (so it can't cause a 500)."""
    if not isinstance(value, str):
        return False
    match = _SNAPSHOT.fullmatch(value)
    if match is None:
        return False
    xmin, xmax = int(match[1]), int(match[2])
    in_progress = [int(xid) for xid in match[3].split(",")] if match[3] else []
    return (
        0 < xmin <= xmax < 2**63
        and all(xmin <= xid < xmax for xid in in_progress)
        and in_progress == sorted(in_progress)
    )


def render(page: ChangesPage, following: FeedToken) -> bytes:
    deleted = [{"id": task_id, "deleted_at": deleted_at} for task_id, deleted_at in page.deleted]
    return b"".join(
        (
            b'{"tasks":[',
            ",".join(page.tasks).encode(),
            b'],"deleted":',
            orjson.dumps(deleted),
            b',"next":',
            orjson.dumps(following.encode()),
            b',"has_more":',
            b"true" if page.more else b"false",
            b"}",
        )
    )
