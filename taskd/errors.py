"""Errors that carry their HTTP status; the base handler turns them into RFC 9457 problems."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from tornado.web import HTTPError


class ApiError(HTTPError):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        # No log_message: an expected client error is not worth a warning in the log.
        super().__init__(status)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def problem(self) -> dict[str, Any]:
        return problem(self.status, self.detail, self.errors)


def problem(status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def unprocessable(loc: list[str | int], msg: str, type_: str) -> ApiError:
    """A 422 about one input, e.g. `unprocessable(["query", "limit"], ...)`."""
    where = ".".join(str(part) for part in loc)
    return ApiError(
        422, f"Invalid {where}: {msg}", errors=[{"loc": loc, "msg": msg, "type": type_}]
    )


class Unavailable(ApiError):
    """The database (or the JWKS) did not answer in time: 503 with Retry-After."""

    def __init__(
        self, detail: str = "The database is unavailable; retry shortly.", *, retry_after: int = 2
    ) -> None:
        super().__init__(503, detail, headers={"Retry-After": str(retry_after)})
