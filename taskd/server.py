"""One server process: its pool (opened in this process), its HTTP server, its graceful stop."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
import socket
from collections.abc import Callable
from typing import cast

from psycopg_pool import AsyncConnectionPool
from tornado.http1connection import HTTP1ServerConnection
from tornado.httputil import HTTPConnection, HTTPMessageDelegate
from tornado.ioloop import PeriodicCallback
from tornado.iostream import IOStream
from tornado.netutil import bind_sockets
from tornado.web import Application

from taskd.app import make_app
from taskd.client_stream import MAX_HEADER_BYTES, ClientStream
from taskd.config import Settings
from taskd.db.pool import make_pool, open_pool
from taskd.drain import DrainingHTTPServer
from taskd.early_answers import HeldAnswer, HeldRequest
from taskd.live import LiveUpdates
from taskd.metrics import Metrics

log = logging.getLogger("taskd")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# Bodies are capped at 64 KiB by the handlers (413); past this, Tornado does not read them.
MAX_STREAMED_BODY = 1024 * 1024
# A connection is closed when its next request's headers have not all arrived this long after
# it was opened or its last response went out (however steadily a slow client trickles them),
IDLE_CONNECTION_TIMEOUT = 60.0
# and when a request's body has not all arrived this long after its headers. Meanwhile it holds
# no database connection: handlers take one for their work only once the body is in.
BODY_TIMEOUT = 30.0
METRICS_REFRESH_MS = 1000


class TaskdServer(DrainingHTTPServer):
    """taskd's HTTP server: drains on stop, answers an oversized header block with 431, and
    keeps a connection usable after an answer given before its request was read."""

    def handle_stream(self, stream: IOStream, address: tuple[object, ...]) -> None:
        origins = self._app_settings.cors_origins
        super().handle_stream(ClientStream.taking_over(stream, origins), address)

    def start_request(
        self, server_conn: object, request_conn: HTTPConnection
    ) -> HTTPMessageDelegate:
        answer = HeldAnswer(request_conn, cast(HTTP1ServerConnection, server_conn).stream)
        return HeldRequest(super().start_request(server_conn, answer), answer)

    @property
    def _app_settings(self) -> Settings:
        app = cast(Application, self.request_callback)
        settings: Settings = app.settings["taskd"]
        return settings


def make_server(
    app: Application,
    *,
    idle_timeout: float = IDLE_CONNECTION_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
) -> TaskdServer:
    """The server for `app`; tests shorten its timeouts."""
    return TaskdServer(
        app,
        max_header_size=MAX_HEADER_BYTES,
        max_body_size=MAX_STREAMED_BODY,
        idle_connection_timeout=idle_timeout,
        body_timeout=body_timeout,
    )


class ListenError(Exception):
    """The address cannot be listened on; the message says why, for the operator."""


def listen(settings: Settings) -> list[socket.socket]:
    """The listening sockets for API_HOST:API_PORT. With several workers they let the workers
    bind beside them (SO_REUSEPORT), and so would let any process bind beside them that asks for
    the same, such as an old generation of taskd still serving: first make sure nobody listens
    there, with sockets that share the port with no one."""
    address = f"{settings.host}:{settings.port}"
    try:
        if settings.port != 0:
            for probe in bind_sockets(settings.port, settings.host):
                probe.close()
        return bind_sockets(settings.port, settings.host, reuse_port=settings.workers > 1)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise ListenError(
                f"{address} is already in use: is an older taskd still serving there? "
                "Stop it first (or choose another API_PORT)"
            ) from None
        raise ListenError(f"cannot listen on {address}: {error.strerror or error}") from None


def listen_beside(sockets: list[socket.socket]) -> list[socket.socket]:
    """New listening sockets on the addresses of `sockets`, which were bound with SO_REUSEPORT."""
    beside = []
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        beside.extend(bind_sockets(port, host, family=sock.family, reuse_port=True))
    return beside


def bound_port(sockets: list[socket.socket]) -> int:
    port: int = sockets[0].getsockname()[1]
    return port


def serve(
    settings: Settings,
    database_url: str,
    sockets: list[socket.socket],
    *,
    on_ready: Callable[[], None],
    on_stopping: Callable[[], None],
) -> None:
    """Serve on `sockets` until SIGTERM or SIGINT; then drain, close the pool and return.

    `on_ready` runs once the pool is open and the server accepts; `on_stopping` when a stop
    signal arrives.
    """
    asyncio.run(_serve(settings, database_url, sockets, on_ready, on_stopping))


async def _serve(
    settings: Settings,
    database_url: str,
    sockets: list[socket.socket],
    on_ready: Callable[[], None],
    on_stopping: Callable[[], None],
) -> None:
    pool = make_pool(settings, database_url)
    try:
        await open_pool(pool, settings.db_timeout)
        await _serve_with(pool, settings, sockets, on_ready, on_stopping)
    finally:
        await pool.close()


async def _serve_with(
    pool: AsyncConnectionPool,
    settings: Settings,
    sockets: list[socket.socket],
    on_ready: Callable[[], None],
    on_stopping: Callable[[], None],
) -> None:
    app = make_app(settings, pool)
    # What exists now lives as long as the process: keep it out of the collector's way, so a
    # full collection walks only what requests allocate, not the ~60k start-up objects too
    # (10 ms a pass, felt by every request in flight; bench: update p99 84-94 -> 77-90 ms).
    gc.collect()
    gc.freeze()
    server = make_server(app)
    metrics: Metrics = app.settings["metrics"]

    def refresh_metrics() -> None:
        # Every worker writes its own gauges; /metrics, in whichever worker, adds them up.
        metrics.observe_server(server.in_flight.count, pool.get_stats())

    refresh_metrics()
    refresh = PeriodicCallback(refresh_metrics, METRICS_REFRESH_MS)
    refresh.start()
    live: LiveUpdates = app.settings["live"]
    live.listener.start()
    stop = _stop_requested()
    server.add_sockets(sockets)
    on_ready()
    await stop.wait()
    on_stopping()
    # Event streams never finish by themselves: they end now, each between two events.
    live.end_streams()
    log.info(
        "stopping: no new connections; %d request(s) in flight get %g s to finish",
        server.in_flight.count,
        settings.drain_timeout,
    )
    cut_off = await server.drain(settings.drain_timeout)
    if cut_off:
        log.warning("drain deadline passed: %d request(s) cut off", cut_off)
    refresh.stop()
    await live.close_listener()


def _stop_requested() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    # A supervisor forks its workers with these signals blocked, so that a stop arriving during
    # start-up waits for the handlers above instead of killing the worker.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return stop
