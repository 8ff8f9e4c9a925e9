"""The change feed's opaque token and response body.

A token names a version of the user (migration 0008) the client has seen everything up to: the
next poll returns each task written, and each task deleted, with a later version. Every write
takes the user's next version under the user row's lock, so versions follow commit order and a
poll that reads the user's version V with the changes up to it, in one statement, leaves no
gap behind V. Versions are data in the user's rows: a token stays valid when the database is
dumped and restored elsewhere, fails over, is replicated or is moved between Citus workers.

A poll with more changes than `limit` answers a run of pages: every page of the run is bounded by
the user's version at its first page (`upto`) and resumes after the last change of the page
before, by (version, task id), since a write by hand may stamp many rows with one version. The
run's last page hands out `upto` as the next token; changes committed meanwhile wait for that
poll. `at` is when the client last had everything up to the token's version, so that a token
older than the tombstones' retention is refused with 410.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from taskd.db.tasks import TOMBSTONE_RETENTION_DAYS, ChangesPage
from taskd.errors import ApiError, unprocessable
from taskd.listing import query_text

TOKEN_FORMAT = 2
TOKEN_MAX_CHARS = 1024
RETENTION_SECONDS = TOMBSTONE_RETENTION_DAYS * 24 * 3600
START_AGAIN = "start again without since"


@dataclass(frozen=True)
class FeedToken:
    after: int  # the user's version the client has seen everything before, and...
    after_id: int | None  # ...of this version, the tasks up to this id (None: all of them)
    at: int  # when the client last had everything up to `after` (Unix time)
    upto: tuple[int, int] | None = None  # while a run of pages lasts: its version, and when

    @classmethod
    def beginning(cls, now: int) -> FeedToken:
        """Where a client without a token starts: before the user's first version."""
        return cls(after=0, after_id=None, at=now)

    def encode(self) -> str:
        fields = {
            "v": TOKEN_FORMAT,
            "after": [self.after, self.after_id],
            "at": self.at,
            "upto": list(self.upto) if self.upto is not None else None,
        }
        return base64.urlsafe_b64encode(orjson.dumps(fields)).rstrip(b"=").decode()

    @property
    def upto_version(self) -> int | None:
        return None if self.upto is None else self.upto[0]

    def position(self) -> dict[str, Any]:
        """The arguments of db.tasks.task_changes that read the page after this token."""
        return {"after": (self.after, self.after_id), "upto": self.upto_version}

    def check_reached_by(self, page: ChangesPage) -> None:
        """410 when `page` was read from a database whose user's version is behind this token:
        it was restored from an older copy, or lost writes in a failover. The changes since
        cannot be told."""
        if page.version < (self.upto_version or self.after):
            raise ApiError(
                410, f"The token names changes this database does not have: {START_AGAIN}."
            )

    def following(self, page: ChangesPage, now: int) -> FeedToken:
        """The token of the poll after `page`."""
        if page.more:
            assert page.last is not None
            return FeedToken(*page.last, self.at, self.upto or (page.version, now))
        if self.upto is not None:
            return FeedToken(self.upto[0], None, self.upto[1])
        return FeedToken(page.version, None, now)


def parse_since(arguments: Mapping[str, list[bytes]], now: int) -> FeedToken | None:
    """The token in `since`, or None for the beginning; 422 if it is not ours, 410 if it is
    too old or from before this token format."""
    return parse_token(query_text(arguments, "since"), now, ["query", "since"])


def parse_token(text: str | None, now: int, loc: list[str | int]) -> FeedToken | None:
    """The token `text`, which came from `loc` (`since`, or an event stream's Last-Event-ID),
    or None for the beginning; 422 naming `loc` if it is not ours, 410 as for `since`."""
    if not text:
        return None
    token = decode(text, loc)
    if now - token.at > RETENTION_SECONDS:
        raise ApiError(
            410,
            f"The token is older than the {TOMBSTONE_RETENTION_DAYS} days deletions are kept: "
            f"{START_AGAIN}.",
        )
    return token


def decode(text: str, loc: list[str | int]) -> FeedToken:
    invalid = unprocessable(loc, "is not a token returned by this endpoint", "value_error")
    if len(text) > TOKEN_MAX_CHARS:
        raise invalid
    try:
        fields = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise invalid from None
    if _is_transaction_id_token(fields):
        raise ApiError(
            410,
            "The token is from an earlier version of taskd, whose tokens named one database "
            f"server's transactions: {START_AGAIN}.",
        )
    if not (isinstance(fields, dict) and fields.keys() == {"v", "after", "at", "upto"}):
        raise invalid
    after, at, upto = fields["after"], fields["at"], fields["upto"]
    valid = (
        fields["v"] == TOKEN_FORMAT
        and isinstance(after, list)
        and len(after) == 2
        and _is_bigint(after[0])
        and (after[1] is None or _is_bigint(after[1]))
        and _is_moment(at)
        and (
            upto is None
            or (
                isinstance(upto, list)
                and len(upto) == 2
                and _is_bigint(upto[0])
                and upto[0] >= after[0]
                and _is_moment(upto[1])
            )
        )
    )
    if not valid:
        raise invalid
    return FeedToken(after[0], after[1], at, None if upto is None else (upto[0], upto[1]))


def _is_bigint(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**63


def _is_moment(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**53


def _is_transaction_id_token(fields: object) -> bool:
    """A token of the feed before migration 0008: [since, since_at, upto, upto_at, after]."""
    return isinstance(fields, list) and len(fields) == 5 and isinstance(fields[1], int)


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
