"""The six task endpoints of CONTRACT §2. Validation and auth happen before any database work."""

from __future__ import annotations

import time

from taskd.auth import parse_id
from taskd.changes import BEGINNING, parse_since, render
from taskd.db import tasks as db
from taskd.db.pool import connection
from taskd.errors import ApiError
from taskd.handlers.base import ApiHandler
from taskd.listing import parse_limit, parse_list_query
from taskd.models import TaskCreate, TaskUpdate

NO_SUCH_TASK = "No such task."


class TaskListHandler(ApiHandler):
    SUPPORTED_METHODS = ("GET", "POST", "OPTIONS")

    async def get(self, _user: str) -> None:
        query = parse_list_query(self.request.query_arguments)
        async with connection(self.pool) as conn:
            page = await db.list_tasks(
                conn,
                user_id=self.current_user,
                sort=query.sort,
                completed=query.completed,
                pattern=query.pattern,
                after=query.after,
                limit=query.limit,
            )
        if page.next_after is not None:
            next_url = f"{self.request.path}?{query.next_query(page.next_after)}"
            self.set_header("Link", f'<{next_url}>; rel="next"')
        self.send_json(page.json)

    async def post(self, _user: str) -> None:
        new = self.json_body(TaskCreate)
        async with connection(self.pool) as conn:
            task_id, task = await db.create_task(
                conn, user_id=self.current_user, title=new.title, description=new.description
            )
        self.set_header("Location", f"/api/{self.current_user}/tasks/{task_id}")
        self.send_json(task, 201)


class TaskItemHandler(ApiHandler):
    """Routes whose second path argument is a task id: an id that cannot exist is a 404."""

    def task_id(self) -> int:
        task_id = parse_id(self.path_args[1])
        if task_id is None:
            raise ApiError(404, NO_SUCH_TASK)
        return task_id

    def send_task(self, task: str | None) -> None:
        if task is None:
            raise ApiError(404, NO_SUCH_TASK)
        self.send_json(task)


class TaskHandler(TaskItemHandler):
    SUPPORTED_METHODS = ("GET", "PUT", "DELETE", "OPTIONS")

    async def get(self, _user: str, _task: str) -> None:
        task_id = self.task_id()
        async with connection(self.pool) as conn:
            task = await db.get_task(conn, user_id=self.current_user, task_id=task_id)
        self.send_task(task)

    async def put(self, _user: str, _task: str) -> None:
        task_id = self.task_id()
        try:
            update = self.json_body(TaskUpdate)
        except ApiError:
            # 404 outranks 422: a bad body for a task that does not exist is a 404.
            async with connection(self.pool) as conn:
                if not await db.task_exists(conn, user_id=self.current_user, task_id=task_id):
                    raise ApiError(404, NO_SUCH_TASK) from None
            raise
        async with connection(self.pool) as conn:
            task = await db.update_task(
                conn, user_id=self.current_user, task_id=task_id, **update.changes()
            )
        self.send_task(task)

    async def delete(self, _user: str, _task: str) -> None:
        task_id = self.task_id()
        async with connection(self.pool) as conn:
            deleted = await db.delete_task(conn, user_id=self.current_user, task_id=task_id)
        if not deleted:
            raise ApiError(404, NO_SUCH_TASK)
        self.set_status(204)
        self.finish()


class TaskCompleteHandler(TaskItemHandler):
    SUPPORTED_METHODS = ("PATCH", "OPTIONS")

    async def patch(self, _user: str, _task: str) -> None:
        task_id = self.task_id()
        # A toggle takes no body, but one sent must still respect the 64 KiB limit (413).
        _ = self.raw_body
        async with connection(self.pool) as conn:
            task = await db.toggle_task(conn, user_id=self.current_user, task_id=task_id)
        self.send_task(task)


class TaskChangesHandler(ApiHandler):
    """The change feed (CONTRACT §8); see taskd/changes.py for how it stays gap-free."""

    SUPPORTED_METHODS = ("GET", "OPTIONS")

    async def get(self, _user: str) -> None:
        moment = int(time.time())
        token = parse_since(self.request.query_arguments, moment)
        limit = parse_limit(self.request.query_arguments)
        async with connection(self.pool) as conn:
            page = await db.task_changes(
                conn,
                user_id=self.current_user,
                since=token.since or BEGINNING,
                upto=token.upto,
                after=token.after,
                with_deletions=token.since is not None,
                limit=limit,
            )
        self.send_json(render(page, token.following(page, moment)))


USER = r"/api/([^/]+)"
ROUTES = [
    (USER + r"/tasks", TaskListHandler),
    (USER + r"/tasks/changes", TaskChangesHandler),
    (USER + r"/tasks/([^/]+)", TaskHandler),
    (USER + r"/tasks/([^/]+)/complete", TaskCompleteHandler),
]
