"""Logs on stderr: lines for people on a terminal, one JSON object per line for machines, and one
access-log line per request.

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
    duration_ms = round(seconds * 1000, 3)
    detail = f"{duration_ms:.1f} ms"
    if request_id is not None:
        detail += f", request {request_id}"
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
                "duration_ms": duration_ms,
                "request_id": request_id,
            },
            "detail": detail,
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


class TextFormatter(logging.Formatter):
    """A record as a line for people: local time, level, logger and message, then the record's
    `extra={"detail": ...}` in parentheses; a traceback follows on lines of its own."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{moment} {record.levelname:<7} {record.name}: {record.getMessage()}"
        detail = getattr(record, "detail", None)
        if detail:
            line += f" ({detail})"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def formatter_for(log_format: str, terminal: bool) -> logging.Formatter:
    """TASKD_LOG_FORMAT's formatter: `auto` writes text to a terminal and JSON anywhere else."""
    if log_format == "text" or (log_format == "auto" and terminal):
        return TextFormatter()
    return JsonFormatter()


def configure(log_format: str = "auto", level: int = logging.INFO) -> None:
    """Every logger's lines (taskd's, Tornado's, psycopg's) on stderr, in `log_format`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format, sys.stderr.isatty()))
    logging.basicConfig(level=level, handlers=[handler])
    # Neither formatter shows where a call was made from, nor the thread or multiprocessing
    # process it was made in: logging need not look them up for every record (the logging
    # HOWTO, "Optimization"). The process id stays: JSON lines carry it.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    # Both narrate at INFO: yoyo each step of each migration (taskd sums them up in one line),
    # pgserver each check it makes while starting the embedded PostgreSQL.
    for chatty in ("pgserver", "yoyo"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
