"""The handler hierarchy: JSON in and out, RFC 9457 errors, CORS, and authenticated API routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cached_property
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import orjson
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from tornado.web import HTTPError, RequestHandler, stream_request_body

from taskd import cors, logs
from taskd.auth import AuthMixin, TokenVerifier
from taskd.config import Settings
from taskd.db.batches import UserWrites
from taskd.db.pool import connection
from taskd.db.tasks import Send, provisioned
from taskd.db.users import provision_user
from taskd.errors import ApiError, problem
from taskd.headers import accepts_gzip, content_length
from taskd.models import ModelT, parse_body
from taskd.page_cache import gzip_coded
from taskd.user_ids import UserId

log = logging.getLogger("taskd")

MAX_BODY_BYTES = 64 * 1024
LARGE_RESPONSE_BYTES = 64 * 1024
JSON_TYPE = "application/json"
PROBLEM_TYPE = "application/problem+json"
# Users already provisioned by this process; forgotten wholesale when it grows past the bound.
KNOWN_USERS_MAX = 100_000


class BaseHandler(RequestHandler):
    """JSON responses, problem+json errors, CORS, request ids. Subclasses add authentication;
    make_app refuses a route whose handler neither authenticates nor is marked `@public`."""

    SUPPORTED_METHODS: tuple[str, ...] = ("GET", "OPTIONS")
    PUBLIC: ClassVar[bool] = False

    @property
    def taskd_settings(self) -> Settings:
        settings: Settings = self.settings["taskd"]
        return settings

    @property
    def pool(self) -> AsyncConnectionPool:
        pool: AsyncConnectionPool = self.settings["pool"]
        return pool

    @property
    def writes(self) -> UserWrites:
        writes: UserWrites = self.settings["writes"]
        return writes

    @cached_property
    def request_id(self) -> str:
        return logs.request_id(self.request.headers.get(logs.REQUEST_ID_HEADER))

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        self.set_header(logs.REQUEST_ID_HEADER, self.request_id)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")
        origin = self.request.headers.get("Origin")
        for name, value in cors.response_headers(origin, self.taskd_settings.cors_origins).items():
            self.set_header(name, value)

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        # A path segment that is not UTF-8 is simply not a valid id: 403/404, never Tornado's 400.
        return value.decode("utf-8", errors="replace")

    async def options(self, *args: str) -> None:
        """CORS preflight for the configured origins; otherwise just the allowed methods."""
        allowed = ", ".join(self.SUPPORTED_METHODS)
        self.set_header("Allow", allowed)
        if self._headers.get("Access-Control-Allow-Origin") and self.request.headers.get(
            "Access-Control-Request-Method"
        ):
            self.set_header("Access-Control-Allow-Methods", allowed)
            self.set_header("Access-Control-Allow-Headers", cors.REQUEST_HEADERS)
            self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    def compute_etag(self) -> None:
        # Tornado would hash every GET body; task versions get ETags of their own (CONTRACT §8).
        return None

    def send_json(
        self, body: bytes | str, status: int = 200, *, gzipped: Callable[[], bytes] | None = None
    ) -> None:
        """Send `body`; when it is large and the client accepts gzip, gzip-coded (`gzipped`
        gives the coded form, for a body that keeps one; else it is coded here)."""
        self.set_status(status)
        self.set_header("Content-Type", JSON_TYPE)
        if isinstance(body, bytes) and len(body) > LARGE_RESPONSE_BYTES:
            # Only bodies this large are coded (list and feed pages, the OpenAPI document): never
            # a Task, which is smaller (and sent as str), so its strong ETag names exactly the
            # bytes sent. The choice depends on Accept-Encoding, which Vary says.
            self.add_header("Vary", "Accept-Encoding")
            if accepts_gzip(self.request.headers.get("Accept-Encoding")):
                self.set_header("Content-Encoding", "gzip")
                self.finish(gzipped() if gzipped is not None else gzip_coded(body))
                return
            # Headers first, so that Tornado sends the body as it is instead of copying it onto
            # the end of the headers (a list page is a few hundred KB).
            self.set_header("Content-Length", len(body))
            self.flush()
        self.finish(body)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs["exc_info"][1] if "exc_info" in kwargs else None
        if isinstance(error, ApiError):
            body = error.problem()
            for name, value in error.headers.items():
                self.set_header(name, value)
        elif status_code == 405:
            self.set_header("Allow", ", ".join(self.SUPPORTED_METHODS))
            body = problem(405, f"{self.request.method} is not allowed on this resource.")
        elif status_code >= 500:
            status_code = 500
            self.set_status(500)
            body = problem(500, "The server failed to handle this request.")
        else:
            message = error.log_message if isinstance(error, HTTPError) else None
            body = problem(status_code, message or self._reason)
        self.set_header("Content-Type", PROBLEM_TYPE)
        self.finish(orjson.dumps(body))

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Tornado's default would log the whole request, bearer token included.
        if isinstance(value, HTTPError):
            return
        log.error(
            "unhandled error in %s %s",
            self.request.method,
            self.request.path,
            exc_info=value,
            extra={"fields": {"request_id": self.request_id}},
        )


HandlerT = TypeVar("HandlerT", bound=type[BaseHandler])
T = TypeVar("T")


def public(handler: HandlerT) -> HandlerT:
    """Marks a handler whose routes need no token: health, metrics, the API's documentation."""
    handler.PUBLIC = True
    return handler


@public
class NotFoundHandler(BaseHandler):
    SUPPORTED_METHODS = RequestHandler.SUPPORTED_METHODS

    def prepare(self) -> None:
        raise ApiError(404, "No such resource.")


@stream_request_body
class ApiHandler(AuthMixin, BaseHandler):
    """An authenticated `/api/{user_id}/...` route. The body is read only after the checks of
    `prepare()`, capped at 64 KiB, and never while holding a database connection."""

    BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

    def initialize(self) -> None:
        self._body_chunks: list[bytes] = []
        self._body_size = 0

    @property
    def token_verifier(self) -> TokenVerifier:
        verifier: TokenVerifier = self.settings["token_verifier"]
        return verifier

    async def prepare(self) -> None:
        if self.request.method == "OPTIONS":
            return
        await self.authenticate()
        if self.request.method in self.BODY_METHODS:
            self._check_body_headers()

    def _check_body_headers(self) -> None:
        length = content_length(self.request.headers.get("Content-Length", "0"))
        if length is None:
            raise ApiError(400, "The Content-Length header must be a number of bytes.")
        if length > MAX_BODY_BYTES:
            raise ApiError(413, f"The body must be at most {MAX_BODY_BYTES} bytes.")
        has_body = length > 0 or "Transfer-Encoding" in self.request.headers
        media_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if (has_body or self.request.method != "PATCH") and media_type != JSON_TYPE:
            raise ApiError(415, "The body must be application/json.")

    # A user this process has not seen yet is provisioned by the request's first database work,
    # on its connection: a connection of its own would queue in the pool a second time, and
    # under load a first-seen user's request took twice as long as the others. (A create
    # provisions its user itself, and then calls remember_provisioned.)

    @asynccontextmanager
    async def database(self) -> AsyncIterator[AsyncConnection]:
        """A connection for the request's work, its user provisioned on it first if need be."""
        async with connection(self.pool) as conn:
            if self.current_user not in self._known_users:
                await provision_user(conn, user_id=self.current_user)
                self.remember_provisioned()
            yield conn

    async def run_write(self, send: Send[T]) -> T:
        """The write `send` of the request's user, batched with the user's others (UserWrites),
        after the statement that provisions the user, in its transaction, if need be."""
        first = self.current_user not in self._known_users
        if first:
            send = provisioned(send, user_id=self.current_user)
        answer = await self.writes.run(self.current_user, send)
        if first:
            self.remember_provisioned()
        return answer

    def remember_provisioned(self) -> None:
        """The request's user has a row: this process need not provision them again."""
        known = self._known_users
        if len(known) >= KNOWN_USERS_MAX:
            known.clear()
        known.add(self.current_user)

    @property
    def _known_users(self) -> set[UserId]:
        known: set[UserId] = self.settings["known_users"]
        return known

    def data_received(self, chunk: bytes) -> None:
        self._body_size += len(chunk)
        if self._body_size <= MAX_BODY_BYTES:
            self._body_chunks.append(chunk)

    @property
    def raw_body(self) -> bytes:
        if self._body_size > MAX_BODY_BYTES:
            raise ApiError(413, f"The body must be at most {MAX_BODY_BYTES} bytes.")
        return b"".join(self._body_chunks)

    def json_body(self, model: type[ModelT]) -> ModelT:
        return parse_body(model, self.raw_body)
