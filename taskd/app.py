"""make_app(): the route table and everything handlers need, shared by the server and tests."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool
from tornado.web import Application

from taskd.auth import TokenVerifier
from taskd.config import Settings
from taskd.handlers import tasks
from taskd.handlers.base import NotFoundHandler


def make_verifier(settings: Settings) -> TokenVerifier:
    if settings.secret is None:
        raise ValueError("BETTER_AUTH_SECRET is required")
    return TokenVerifier(
        settings.secret,
        leeway=settings.jwt_leeway,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


def make_app(settings: Settings, pool: AsyncConnectionPool) -> Application:
    return Application(
        tasks.ROUTES,
        default_handler_class=NotFoundHandler,
        taskd=settings,
        pool=pool,
        token_verifier=make_verifier(settings),
        known_users=set(),
    )
