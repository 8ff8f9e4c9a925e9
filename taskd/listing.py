"""The list endpoint's query parameters and its opaque keyset cursor."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

import orjson

from taskd.db.tasks import DEFAULT_SORT, SORTS
from taskd.errors import ApiError, unprocessable
from taskd.page_cache import SortValue
from taskd.user_ids import parse_id

LIMIT_MAX = 1000
Q_MAX = 500


@dataclass(frozen=True)
class ListQuery:
    completed: bool | None
    q: str | None
    sort: str
    limit: int
    after: tuple[SortValue, int] | None

    @property
    def pattern(self) -> str | None:
        """`q` as an ILIKE pattern, with `%`, `_` and the escape character taken literally."""
        if self.q is None:
            return None
        escaped = self.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"%{escaped}%"

    def next_query(self, after: tuple[SortValue, int]) -> str:
        """The query string of the page that starts after `after`."""
        params: dict[str, str] = {}
        if self.completed is not None:
            params["completed"] = "true" if self.completed else "false"
        if self.q is not None:
            params["q"] = self.q
        params["sort"] = self.sort
        params["limit"] = str(self.limit)
        params["cursor"] = encode_cursor(self.sort, after)
        return urlencode(params)


def invalid_parameter(name: str, msg: str, type_: str = "value_error") -> ApiError:
    return unprocessable(["query", name], msg, type_)


def query_text(arguments: Mapping[str, list[bytes]], name: str) -> str | None:
    """The last value of query parameter `name`, decoded; 422 naming it when unusable."""
    values = arguments.get(name)
    if not values:
        return None
    try:
        value = values[-1].decode()
    except UnicodeDecodeError:
        raise invalid_parameter(name, "must be valid UTF-8") from None
    if "\x00" in value:
        raise invalid_parameter(name, "must not contain the NUL character")
    return value


def parse_limit(arguments: Mapping[str, list[bytes]]) -> int:
    limit_text = query_text(arguments, "limit")
    if limit_text is None:
        return LIMIT_MAX
    if not limit_text.isascii() or not limit_text.isdigit() or len(limit_text) > 4:
        raise invalid_parameter("limit", f"must be an integer from 1 to {LIMIT_MAX}", "int_parsing")
    limit = int(limit_text)
    if not 1 <= limit <= LIMIT_MAX:
        raise invalid_parameter(
            "limit", f"must be an integer from 1 to {LIMIT_MAX}", "less_than_equal"
        )
    return limit


def parse_list_query(arguments: Mapping[str, list[bytes]]) -> ListQuery:
    """Validate the raw query arguments; each bad value is a 422 naming its parameter."""
    completed_text = query_text(arguments, "completed")
    if completed_text not in (None, "true", "false"):
        raise invalid_parameter("completed", "must be true or false", "bool_parsing")
    completed = None if completed_text is None else completed_text == "true"

    q = query_text(arguments, "q") or None
    if q is not None and len(q) > Q_MAX:
        raise invalid_parameter("q", f"must be at most {Q_MAX} characters", "string_too_long")

    sort = query_text(arguments, "sort") or DEFAULT_SORT
    if sort not in SORTS:
        raise invalid_parameter("sort", "must be one of " + ", ".join(SORTS), "enum")

    cursor = query_text(arguments, "cursor")
    after = decode_cursor(cursor, sort) if cursor else None
    return ListQuery(completed, q, sort, parse_limit(arguments), after)


def encode_cursor(sort: str, after: tuple[SortValue, int]) -> str:
    value, task_id = after
    # In UTC whatever the session's time zone, so that a patched page's cursor (page_cache.py)
    # reads as the database's would.
    encoded = value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value
    raw = orjson.dumps([sort, encoded, task_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, sort: str) -> tuple[SortValue, int]:
    """The (sort value, id) a cursor carries; 422 if it is not one of ours for this sort."""
    invalid = invalid_parameter("cursor", "is not a cursor returned by this endpoint")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, value, task_id = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise invalid from None
    if cursor_sort != sort:
        raise invalid_parameter(
            "cursor", "belongs to another sort order; keep the same sort across pages"
        )
    if not isinstance(value, str) or not isinstance(task_id, int) or parse_id(str(task_id)) is None:
        raise invalid
    if "\x00" in value or len(value) > 500:
        raise invalid
    if SORTS[sort][0] == "title":
        return value, task_id
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid from None
    if moment.tzinfo is None:
        raise invalid
    return moment, task_id
