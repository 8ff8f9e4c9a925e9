"""make_app(): the route table and everything handlers need, shared by the server and tests."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from psycopg_pool import AsyncConnectionPool
from tornado.web import Application, RequestHandler

from taskd import logs, openapi, routes
from taskd.auth import AuthMixin, TokenVerifier
from taskd.config import Settings
from taskd.db.batches import UserWrites
from taskd.handlers import docs, events, health, tasks
from taskd.handlers.base import BaseHandler, NotFoundHandler
from taskd.jwks import JwksCache
from taskd.live import LiveUpdates
from taskd.metrics import Metrics
from taskd.page_cache import PageCache
from taskd.readiness import Readiness

Route = tuple[str, type[RequestHandler]]


def make_verifier(settings: Settings, jwks: JwksCache | None = None) -> TokenVerifier:
    if jwks is None and settings.jwks_url is not None:
        jwks = JwksCache(settings.jwks_url)
    if settings.secret is None and jwks is None:
        raise ValueError("BETTER_AUTH_SECRET or TASKD_JWKS_URL is required")
    return TokenVerifier(
        settings.secret,
        jwks=jwks,
        leeway=settings.jwt_leeway,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        user_ids=settings.user_ids,
    )


def check_authentication(route_table: Sequence[Route]) -> None:
    """Deny by default: every route authenticates (AuthMixin) or is marked `@public`."""
    for pattern, handler in route_table:
        if not (issubclass(handler, AuthMixin) or getattr(handler, "PUBLIC", False)):
            raise ValueError(f"route {pattern!r} neither authenticates nor is marked @public")


# The methods the access log and the metrics name as sent; any other is OTHER_METHOD, so that a
# client making methods up cannot add a metric series per request.
KNOWN_METHODS = frozenset(RequestHandler.SUPPORTED_METHODS)
OTHER_METHOD = "other"


class RequestRecorder:
    """The Application's `log_function`: after each response, its access-log line and metrics."""

    def __init__(self, route_table: Sequence[Route], metrics: Metrics) -> None:
        self._templates = {handler: routes.template(pattern) for pattern, handler in route_table}
        if len(self._templates) != len(route_table):
            raise ValueError("each route needs a handler class of its own (to name its route)")
        self._metrics = metrics

    def __call__(self, handler: RequestHandler) -> None:
        method = handler.request.method
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        route = self._templates.get(type(handler), routes.UNMATCHED)
        status = handler.get_status()
        seconds = handler.request.request_time()
        request_id = handler.request_id if isinstance(handler, BaseHandler) else None
        logs.log_access(
            method=method, route=route, status=status, seconds=seconds, request_id=request_id
        )
        self._metrics.observe_request(method, route, status, seconds)


def make_app(
    settings: Settings, pool: AsyncConnectionPool, *, jwks: JwksCache | None = None
) -> Application:
    """The application. `jwks` replaces the cache of `settings.jwks_url` (tests give theirs a
    clock they can move)."""
    if settings.database_url is None:
        raise ValueError("DATABASE_URL is required (taskd serve resolves the embedded one)")
    # events first: its path would otherwise match the route of a task whose id is "events".
    route_table: list[Route] = [*events.ROUTES, *tasks.ROUTES, *health.ROUTES, *docs.ROUTES]
    check_authentication(route_table)
    metrics = Metrics()
    return Application(
        route_table,
        default_handler_class=NotFoundHandler,
        log_function=RequestRecorder(route_table, metrics),
        taskd=settings,
        pool=pool,
        token_verifier=make_verifier(settings, jwks),
        known_users=set(),
        writes=UserWrites(pool),
        page_cache=PageCache(settings.list_cache_mb * 1024 * 1024, metrics.observe_list_cache),
        metrics=metrics,
        live=LiveUpdates(settings, settings.database_url, metrics),
        readiness=Readiness(pool, settings.database_url),
        openapi=orjson.dumps(openapi.build(route_table, user_ids=settings.user_ids)),
    )
