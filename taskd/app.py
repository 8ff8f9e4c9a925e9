"""make_app(): the route table and everything handlers need, shared by the server and tests."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool
from tornado.web import Application

from taskd.auth import TokenVerifier
from taskd.config import Settings
from taskd.handlers import tasks
from taskd.handlers.base import NotFoundHandler
from taskd.jwks import JwksCache


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
    )


def make_app(
    settings: Settings, pool: AsyncConnectionPool, *, jwks: JwksCache | None = None
) -> Application:
    """The application. `jwks` replaces the cache of `settings.jwks_url` (tests give theirs a
    clock they can move)."""
    return Application(
        tasks.ROUTES,
        default_handler_class=NotFoundHandler,
        taskd=settings,
        pool=pool,
        token_verifier=make_verifier(settings, jwks),
        known_users=set(),
    )
