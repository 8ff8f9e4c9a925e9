"""Running the HTTP server: sockets bound first, workers forked, then one pool per process."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.process import fork_processes

from taskd.app import make_app
from taskd.config import Settings
from taskd.db.pool import make_pool, open_pool

log = logging.getLogger("taskd")

# Bodies are capped at 64 KiB by the handlers (413); past this, Tornado drops the connection.
MAX_STREAMED_BODY = 1024 * 1024
IDLE_CONNECTION_TIMEOUT = 60.0
BODY_TIMEOUT = 30.0
DRAIN_SECONDS = 10.0


def listen(settings: Settings) -> list[socket.socket]:
    return bind_sockets(settings.port, settings.host, reuse_port=settings.workers > 1)


def bound_port(sockets: list[socket.socket]) -> int:
    port: int = sockets[0].getsockname()[1]
    return port


def serve(
    settings: Settings,
    database_url: str,
    sockets: list[socket.socket],
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. With several workers, fork before any loop or pool exists."""
    if settings.workers > 1:
        fork_processes(settings.workers, max_restarts=100)
    asyncio.run(_serve(settings, database_url, sockets, on_listening))


async def _serve(
    settings: Settings,
    database_url: str,
    sockets: list[socket.socket],
    on_listening: Callable[[], None] | None,
) -> None:
    pool = make_pool(settings, database_url)
    await open_pool(pool, settings.db_timeout)
    server = HTTPServer(
        make_app(settings, pool),
        max_body_size=MAX_STREAMED_BODY,
        idle_connection_timeout=IDLE_CONNECTION_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
    )
    server.add_sockets(sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if on_listening is not None:
        on_listening()
    await stop.wait()
    log.info("stopping: no new connections, draining in-flight requests")
    server.stop()
    try:
        await asyncio.wait_for(server.close_all_connections(), DRAIN_SECONDS)
    except TimeoutError:
        log.warning("drain deadline passed; closing the remaining connections")
    await pool.close()
