"""The six task endpoints of CONTRACT §2. Validation and auth happen before any database work."""

from __future__ import annotations

import time

from taskd.changes import FeedToken, parse_since, render
from taskd.db import tasks as db
from taskd.db.idempotency import create_task_once
from taskd.db.pool import connection
from taskd.db.tasks import RenderedTask
from taskd.errors import ApiError, unprocessable
from taskd.handlers.base import ApiHandler
from taskd.headers import (
    IDEMPOTENCY_KEY,
    if_match_allows,
    if_none_match_names,
    parse_idempotency_key,
    parse_if_match,
)
from taskd.listing import parse_limit, parse_list_query
from taskd.models import ModelT, TaskCompletion, TaskCreate, TaskUpdate
from taskd.user_ids import parse_id

NO_SUCH_TASK = "No such task."
STALE_TASK = "The task has changed since the version If-Match names; fetch it again."


class TaskResponder(ApiHandler):
    """A route that answers with a task."""

    def send_task(self, task: RenderedTask, status: int = 200) -> None:
        """The task with its ETag, set here: Tornado's own ETags stay off (see compute_etag)."""
        self.set_header("ETag", task.etag)
        self.send_json(task.json, status)


class TaskListHandler(TaskResponder):
    SUPPORTED_METHODS = ("GET", "POST", "OPTIONS")

    async def get(self, _user: str) -> None:
        query = parse_list_query(self.request.query_arguments)
        async with self.database() as conn:
            page = await db.list_tasks(
                conn,
                user_id=self.current_user,
                sort=query.sort,
                completed=query.completed,
                pattern=query.pattern,
                after=query.after,
                limit=query.limit,
                cache=self.settings["page_cache"],
            )
        if page.next_after is not None:
            next_url = f"{self.request.path}?{query.next_query(page.next_after)}"
            self.set_header("Link", f'<{next_url}>; rel="next"')
        self.send_json(page.json, gzipped=lambda: page.gzipped)

    async def post(self, _user: str) -> None:
        key = parse_idempotency_key(self.request.headers.get_list(IDEMPOTENCY_KEY))
        new = self.json_body(TaskCreate)
        task: RenderedTask | None
        if key is None:
            task = await self.writes.run(
                self.current_user,
                db.create_write(
                    user_id=self.current_user, title=new.title, description=new.description
                ),
            )
        else:
            async with connection(self.pool) as conn:
                task = await create_task_once(
                    conn,
                    user_id=self.current_user,
                    key=key,
                    fingerprint=new.fingerprint(),
                    title=new.title,
                    description=new.description,
                )
        # Either way the create provisioned its user, in its own transaction.
        self.remember_provisioned()
        if task is None:
            raise unprocessable(
                ["header", IDEMPOTENCY_KEY],
                "This key was already used with a different body",
                "idempotency_key_reused",
            )
        self.set_header("Location", f"/api/{self.current_user}/tasks/{task.id}")
        self.send_task(task, 201)


class TaskItemHandler(TaskResponder):
    """Routes whose second path argument is a task id: an id that cannot exist is a 404."""

    def task_id(self) -> int:
        task_id = parse_id(self.path_args[1])
        if task_id is None:
            raise ApiError(404, NO_SUCH_TASK)
        return task_id

    def if_match(self) -> list[str] | None:
        return parse_if_match(self.request.headers.get("If-Match"))

    async def valid_body(
        self, model: type[ModelT], task_id: int, if_match: list[str] | None
    ) -> ModelT:
        """The body as `model`. A missing task (404) and a stale If-Match (412) outrank an
        invalid body (422): they would answer a valid body too (RFC 9110 §13.2.2)."""
        try:
            return self.json_body(model)
        except ApiError:
            async with self.database() as conn:
                task = await db.get_task(conn, user_id=self.current_user, task_id=task_id)
            if task is None:
                raise ApiError(404, NO_SUCH_TASK) from None
            if not if_match_allows(if_match, task.etag):
                raise ApiError(412, STALE_TASK) from None
            raise

    async def unwritten(self, task_id: int, if_match: list[str] | None) -> ApiError:
        """Why a write changed nothing: a task that exists had another version than If-Match
        named (412), or there is no such task (404, whatever If-Match said: RFC 9110 §13.2.1)."""
        if if_match is not None:
            async with self.database() as conn:
                if await db.task_exists(conn, user_id=self.current_user, task_id=task_id):
                    return ApiError(412, STALE_TASK)
        return ApiError(404, NO_SUCH_TASK)


class TaskHandler(TaskItemHandler):
    SUPPORTED_METHODS = ("GET", "PUT", "DELETE", "OPTIONS")

    async def get(self, _user: str, _task: str) -> None:
        task_id = self.task_id()
        async with self.database() as conn:
            task = await db.get_task(conn, user_id=self.current_user, task_id=task_id)
        if task is None:
            raise ApiError(404, NO_SUCH_TASK)
        if if_none_match_names(self.request.headers.get("If-None-Match"), task.etag):
            self.set_header("ETag", task.etag)
            self.set_status(304)
            self.finish()
            return
        self.send_task(task)

    async def put(self, _user: str, _task: str) -> None:
        task_id = self.task_id()
        if_match = self.if_match()
        update = await self.valid_body(TaskUpdate, task_id, if_match)
        task = await self.run_write(
            db.update_write(
                user_id=self.current_user, task_id=task_id, if_match=if_match, **update.changes()
            ),
        )
        if task is None:
            raise await self.unwritten(task_id, if_match)
        self.send_task(task)

    async def delete(self, _user: str, _task: str) -> None:
        task_id = self.task_id()
        if_match = self.if_match()
        version = await self.run_write(
            db.delete_write(user_id=self.current_user, task_id=task_id, if_match=if_match),
        )
        if version is None:
            raise await self.unwritten(task_id, if_match)
        self.set_status(204)
        self.finish()


class TaskCompleteHandler(TaskItemHandler):
    SUPPORTED_METHODS = ("PATCH", "OPTIONS")

    async def patch(self, _user: str, _task: str) -> None:
        task_id = self.task_id()
        if_match = self.if_match()
        # No body toggles; {"is_completed": bool} sets, so a retried request cannot flip twice.
        completion = (
            await self.valid_body(TaskCompletion, task_id, if_match) if self.raw_body else None
        )
        if completion is None:
            write = db.toggle_write(user_id=self.current_user, task_id=task_id, if_match=if_match)
        else:
            write = db.update_write(
                user_id=self.current_user,
                task_id=task_id,
                if_match=if_match,
                is_completed=completion.is_completed,
            )
        task = await self.run_write(write)
        if task is None:
            raise await self.unwritten(task_id, if_match)
        self.send_task(task)


class TaskChangesHandler(ApiHandler):
    """The change feed (CONTRACT §8); see taskd/changes.py for how it stays gap-free."""

    SUPPORTED_METHODS = ("GET", "OPTIONS")

    async def get(self, _user: str) -> None:
        moment = int(time.time())
        since = parse_since(self.request.query_arguments, moment)
        limit = parse_limit(self.request.query_arguments)
        token = since or FeedToken.beginning(moment)
        async with self.database() as conn:
            page = await db.task_changes(
                conn,
                user_id=self.current_user,
                # From the beginning, every task there is stands for itself.
                with_deletions=since is not None,
                limit=limit,
                **token.position(),
            )
        token.check_reached_by(page)
        self.send_json(render(page, token.following(page, moment)))


USER = r"/api/([^/]+)"
ROUTES = [
    (USER + r"/tasks", TaskListHandler),
    (USER + r"/tasks/changes", TaskChangesHandler),
    (USER + r"/tasks/([^/]+)", TaskHandler),
    (USER + r"/tasks/([^/]+)/complete", TaskCompleteHandler),
]
