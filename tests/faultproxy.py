"""A TCP proxy between taskd and PostgreSQL that a test can cut and restore.

Three ways to cut:

- "reset": every connection through the proxy is reset, and new ones are reset as soon as they
  are accepted. The database looks down: crashed, restarting, unreachable.
- "blackhole": connections are accepted and stay open, but nothing passes either way. The
  database looks silent: a network partition, a frozen server. On restore the bytes held back
  pass on, as TCP would retransmit them once a partition heals.
- "stall_new": the connections already open work; new ones are accepted but held, unanswered,
  until the restore: a server that can no longer start sessions.

It can also be pointed at another server (`retarget`), as when a database moves to a new host
behind the same address.

The proxy runs its own event loop in a thread, so it keeps forwarding while a test blocks its own.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, Literal
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict

CutMode = Literal["reset", "blackhole", "stall_new"]
CALL_TIMEOUT = 10.0
CHUNK = 65536


class FaultProxy:
    def __init__(self, target_url: str) -> None:
        """Forward to the server of `target_url`, over TCP or its Unix socket."""
        self._target = conninfo_to_dict(target_url)
        self._mode: CutMode | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._setup())

    async def _setup(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._accepting = asyncio.Event()
        self._accepting.set()
        self._links: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.WriteTransport] = set()
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port: int = self._server.sockets[0].getsockname()[1]

    def url(self) -> str:
        """The target's URL with the proxy in place of the server."""
        user = quote(str(self._target.get("user", "postgres")))
        password = self._target.get("password")
        userinfo = f"{user}:{quote(str(password))}" if password else user
        return f"postgresql://{userinfo}@127.0.0.1:{self.port}/{self._target['dbname']}"

    def cut(self, mode: CutMode) -> None:
        self._call(self._cut(mode))

    def restore(self) -> None:
        self._call(self._restore())

    def retarget(self, target_url: str) -> None:
        """Forward new connections to the server of `target_url` (a database of the same name);
        the connections open to the old one are reset."""
        self._call(self._retarget(conninfo_to_dict(target_url)))

    def close(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT)
        self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT)

    async def _cut(self, mode: CutMode) -> None:
        self._mode = mode
        if mode == "reset":
            self._reset_all()
        else:
            self._accepting.clear()
        if mode == "blackhole":
            self._flowing.clear()

    async def _restore(self) -> None:
        self._mode = None
        self._accepting.set()
        self._flowing.set()

    async def _retarget(self, target: dict[str, Any]) -> None:
        self._target = target
        self._reset_all()

    async def _close(self) -> None:
        self._server.close()
        await self._server.wait_closed()
        await self._cut("reset")
        self._accepting.set()
        self._flowing.set()
        await asyncio.gather(*self._links)

    def _reset_all(self) -> None:
        for transport in list(self._transports):
            _reset(transport)

    async def _link(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        """One client connection: reset at once during a "reset" cut, else forwarded."""
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        self._transports.add(client_out.transport)
        try:
            if self._mode == "reset":
                return
            await self._accepting.wait()
            if self._mode == "reset":
                return
            server_in, server_out = await self._connect()
            self._transports.add(server_out.transport)
            try:
                await asyncio.gather(
                    self._pump(client_in, server_out), self._pump(server_in, client_out)
                )
            finally:
                self._transports.discard(server_out.transport)
                _reset(server_out.transport)
        except (ConnectionError, OSError):
            pass
        finally:
            self._transports.discard(client_out.transport)
            _reset(client_out.transport)
            self._links.discard(task)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host = str(self._target.get("host", "127.0.0.1"))
        port = int(self._target.get("port", 5432))
        if host.startswith("/"):
            return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        return await asyncio.open_connection(host, port)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Forward one direction while the proxy is not blackholed; at EOF, end both."""
        while True:
            await self._flowing.wait()
            data = await source.read(CHUNK)
            if not data:
                break
            await self._flowing.wait()
            sink.write(data)
            await sink.drain()
        _reset(sink.transport)


def _reset(transport: asyncio.WriteTransport) -> None:
    """Close with a TCP reset, as a crashed server or a middlebox dropping state would."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family != socket.AF_UNIX and not transport.is_closing():
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
