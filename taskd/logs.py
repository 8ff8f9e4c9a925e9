"""Structured logs: one JSON object per line on stderr, and one access-log line per request.

An access line names the route's template (`/api/{user_id}/tasks/{id}`), never the raw URL, and
never carries a header or a body: tokens and task text stay out of the logs.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

REQUEST_ID_HEADER = "X-Request-ID"
# An id a client or proxy sends is kept when it is short and plain: nothing in it can break a
# log line or a response header.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_log = logging.getLogger("taskd.access")


def request_id(sent: str | None) -> str:
    """The request's id: the `X-Request-ID` the client sent when it is sane, else a new one."""
    if sent is not None and _SANE_REQUEST_ID.fullmatch(sent):
        return sent
    return uuid.uuid4().hex


def log_access(
    *, method: str, route: str, status: int, seconds: float, request_id: str | None
) -> None:
    level = logging.ERROR if status >= 500 else logging.INFO
    access_log.log(
        level,
        "%s %s %d",
        method,
        route,
        status,
        extra={
            "fields": {
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "request_id": request_id,
            }
        },
    )


def _error(error: BaseException) -> dict[str, Any]:
    described: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    cause = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    if cause is not None:
        described["cause"] = f"{type(cause).__name__}: {cause}"
    described["traceback"] = "".join(traceback.format_exception(error))
    return described


class JsonFormatter(logging.Formatter):
    """A record as one JSON object; `extra={"fields": {...}}` adds fields of its own."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "ts": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[1] is not None:
            entry["error"] = _error(record.exc_info[1])
        return orjson.dumps(entry, default=str).decode()


def configure(level: int = logging.INFO) -> None:
    """JSON lines on stderr for every logger (taskd's, Tornado's, psycopg's)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("pgserver").setLevel(logging.WARNING)
