"""The floor: taskd's data layer behind bare Tornado handlers, and nothing else.

What taskd's requests cost at the least on its stack with its data layer: each request calls the
function of the installed taskd package that taskd's handler calls for it (taskd/db: the same
statements, pool, list page cache and patches, batches of one user's writes, notifications for
live updates), in worker processes like taskd's, and answers the JSON it returns. It leaves out
everything taskd's handlers do around the data layer: the token check (it trusts the user id in
the path), provisioning first-seen users (the benchmark seeds them), the access log, metrics,
request ids, security and CORS headers, drain and early-answer bookkeeping, idempotency, ETags
and 304s, problem+json bodies, gzip. A target of `bench/run.py`, never a server to expose: it
authenticates no one.

    python app.py      # DATABASE_URL, API_HOST, API_PORT, TASKD_WORKERS, ... as for taskd
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import orjson
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.process import fork_processes
from tornado.web import Application, RequestHandler

from taskd import migrate
from taskd.config import Settings, load_settings
from taskd.db import tasks as db
from taskd.db.batches import UserWrites
from taskd.db.pool import connection, make_pool, open_pool
from taskd.db.tasks import RenderedTask, Send
from taskd.listing import LIMIT_MAX
from taskd.page_cache import PageCache

JSON_TYPE = "application/json"


class Handler(RequestHandler):
    def set_default_headers(self) -> None:
        self.clear_header("Server")

    def compute_etag(self) -> None:
        return None

    def send(self, task: RenderedTask | None, status: int = 200) -> None:
        if task is None:
            self.set_status(404)
            self.finish()
            return
        self.set_status(status)
        self.set_header("Content-Type", JSON_TYPE)
        self.finish(task.json)

    async def run_write(self, user: str, send: Send[Any]) -> Any:
        writes: UserWrites = self.settings["writes"]
        return await writes.run(int(user), send)


class TaskList(Handler):
    async def get(self, user: str) -> None:
        async with connection(self.settings["pool"]) as conn:
            page = await db.list_tasks(
                conn, user_id=int(user), limit=LIMIT_MAX, cache=self.settings["page_cache"]
            )
        self.set_header("Content-Type", JSON_TYPE)
        self.finish(page.json)

    async def post(self, user: str) -> None:
        task = orjson.loads(self.request.body)
        write = db.create_write(
            user_id=int(user), title=task["title"], description=task.get("description", "")
        )
        self.send(await self.run_write(user, write), 201)


class Task(Handler):
    async def get(self, user: str, task: str) -> None:
        async with connection(self.settings["pool"]) as conn:
            self.send(await db.get_task(conn, user_id=int(user), task_id=int(task)))

    async def put(self, user: str, task: str) -> None:
        changes = orjson.loads(self.request.body)
        write = db.update_write(
            user_id=int(user),
            task_id=int(task),
            title=changes.get("title"),
            description=changes.get("description"),
            is_completed=changes.get("is_completed"),
        )
        self.send(await self.run_write(user, write))

    async def delete(self, user: str, task: str) -> None:
        version = await self.run_write(user, db.delete_write(user_id=int(user), task_id=int(task)))
        self.set_status(404 if version is None else 204)
        self.finish()


class TaskCompletion(Handler):
    async def patch(self, user: str, task: str) -> None:
        self.send(await self.run_write(user, db.toggle_write(user_id=int(user), task_id=int(task))))


async def serve(settings: Settings, sockets: list[socket.socket]) -> None:
    assert settings.database_url is not None
    pool = make_pool(settings, settings.database_url)
    await open_pool(pool, settings.db_timeout)
    routes = [
        (r"/api/(\d+)/tasks", TaskList),
        (r"/api/(\d+)/tasks/(\d+)", Task),
        (r"/api/(\d+)/tasks/(\d+)/complete", TaskCompletion),
    ]
    app = Application(
        routes,
        pool=pool,
        writes=UserWrites(pool),
        page_cache=PageCache(settings.list_cache_mb * 1024 * 1024),
        log_function=lambda handler: None,
    )
    HTTPServer(app).add_sockets(sockets)
    print(f"floor worker {os.getpid()} serves", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    settings = load_settings()
    if settings.database_url is None:
        raise SystemExit("DATABASE_URL is required")
    migrate.apply(settings.database_url)
    # As taskd's workers: each accepts on a socket of its own (SO_REUSEPORT).
    sockets = bind_sockets(settings.port, settings.host, reuse_port=True)
    if fork_processes(settings.workers) > 0:
        for sock in sockets:
            sock.close()
        sockets = bind_sockets(settings.port, settings.host, reuse_port=True)
    asyncio.run(serve(settings, sockets))


if __name__ == "__main__":
    main()
