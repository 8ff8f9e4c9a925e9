"""The flow with the client openapi-python-client generates (package `taskd_client`), against a
live taskd: one typed function per operation of the served /openapi.json.

Environment (from tests/check_clients.sh): TASKD_URL, TASKD_TOKEN and TASKD_OTHER_TOKEN, the
tokens of two users. Exits 0 when every step answered as the document and CONTRACT.md say.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import uuid
from http import HTTPStatus
from typing import Any, TypeVar, get_type_hints
from urllib.parse import parse_qs, urlsplit

import httpx
from taskd_client import AuthenticatedClient, Client
from taskd_client.api.documentation import get_open_api_document
from taskd_client.api.tasks import (
    create_task,
    delete_task,
    get_task,
    list_task_changes,
    list_tasks,
    update_task,
)
from taskd_client.models import (
    GetOpenApiDocumentResponse200,
    ListTasksSort,
    Problem,
    Task,
    TaskChanges,
    TaskCreate,
    TaskUpdate,
    ValidationProblem,
)
from taskd_client.types import UNSET, Response, Unset

NEXT_LINK = re.compile(r'^<([^>]*)>; rel="next"$')
T = TypeVar("T")


class FlowFailure(Exception):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise FlowFailure(what)


def equal(actual: object, expected: object, what: str) -> None:
    check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def subject(token: str) -> str:
    """A JWT's `sub`: the user whose URLs the token may use."""
    payload = token.split(".")[1]
    sub = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    check(isinstance(sub, str), "the token has a string sub")
    return str(sub)


def user_id_for(token: str) -> Any:
    """The token's sub as the type the generated client gives user ids (from the document:
    `int` today; a deployment may choose text ids)."""
    return get_type_hints(list_tasks.sync_detailed)["user_id"](subject(token))


def present(value: T | None, what: str) -> T:
    if value is None:
        raise FlowFailure(f"{what}: missing")
    return value


def parsed(response: Response[Any], kind: type[T], status: HTTPStatus, what: str) -> T:
    """The response's body as `kind`, after checking the status."""
    equal(response.status_code, status, what)
    if not isinstance(response.parsed, kind):
        raise FlowFailure(f"{what}: expected a {kind.__name__}, got {response.parsed!r}")
    return response.parsed


def tasks_of(response: Response[Any], what: str) -> list[Task]:
    tasks = parsed(response, list, HTTPStatus.OK, what)
    check(all(isinstance(task, Task) for task in tasks), f"{what}: tasks, got {tasks!r}")
    return tasks


def problem_of(response: Response[Any], status: HTTPStatus, what: str) -> Problem:
    problem = parsed(response, Problem, status, what)
    equal(problem.status, status, f"{what}: the problem's status")
    return problem


def next_cursor(response: Response[Any]) -> str | None:
    """The cursor in the `Link: <...>; rel="next"` target, or None on the last page."""
    link = response.headers.get("Link")
    if link is None:
        return None
    match = present(NEXT_LINK.match(link), f"a Link to the next page in {link!r}")
    query = parse_qs(urlsplit(match[1]).query)
    equal((query["sort"], query["limit"]), (["-created_at"], ["2"]), "the Link's query")
    return query["cursor"][0]


def flow(base_url: str, token: str, other_token: str) -> None:
    client = AuthenticatedClient(base_url=base_url, token=token)
    described = get_open_api_document.sync_detailed(client=Client(base_url=base_url))
    document = parsed(described, GetOpenApiDocumentResponse200, HTTPStatus.OK, "/openapi.json")
    equal(document.openapi, "3.1.0", "the document's OpenAPI version")
    check("/api/{user_id}/tasks" in document.paths, "the document describes the task list")
    user_id = user_id_for(token)

    # Create, with the body the README shows: a title and no description.
    created: list[Task] = []
    for title in ("first", "second", "third", "fourth", "fifth"):
        response = create_task.sync_detailed(user_id, client=client, body=TaskCreate(title=title))
        task = parsed(response, Task, HTTPStatus.CREATED, f"POST {title}")
        equal(
            (task.title, task.description, task.is_completed, str(task.user_id)),
            (title, "", False, subject(token)),
            "the created task",
        )
        equal(response.headers.get("Location"), f"/api/{user_id}/tasks/{task.id}", "Location")
        created.append(task)

    # Pages of two, newest first, each found by following the previous page's Link.
    listed: list[int] = []
    pages = 0
    cursor: str | None = None
    while pages == 0 or cursor is not None:
        page = list_tasks.sync_detailed(
            user_id,
            client=client,
            sort=ListTasksSort.CREATED_AT_DESC,
            limit=2,
            cursor=UNSET if cursor is None else cursor,
        )
        listed.extend(task.id for task in tasks_of(page, f"page {pages + 1}"))
        cursor = next_cursor(page)
        pages += 1
    equal(pages, 3, "pages of two for five tasks")
    equal(listed, [task.id for task in reversed(created)], "the tasks, page by page")

    # If-None-Match: the current ETag is a 304 without a body.
    task_id = created[0].id
    fetched = get_task.sync_detailed(user_id, task_id, client=client)
    etag = present(fetched.headers.get("ETag"), "GET task: the ETag")
    unchanged = get_task.sync_detailed(user_id, task_id, client=client, if_none_match=etag)
    equal((unchanged.status_code, unchanged.content), (HTTPStatus.NOT_MODIFIED, b""), "a 304")

    # If-Match: a write with the current ETag succeeds, a second one with it is a 412.
    renamed = update_task.sync_detailed(
        user_id, task_id, client=client, body=TaskUpdate(title="renamed"), if_match=etag
    )
    equal(parsed(renamed, Task, HTTPStatus.OK, "PUT with If-Match").title, "renamed", "title")
    stale = update_task.sync_detailed(
        user_id, task_id, client=client, body=TaskUpdate(is_completed=True), if_match=etag
    )
    problem_of(stale, HTTPStatus.PRECONDITION_FAILED, "PUT with a stale If-Match")
    after = get_task.sync_detailed(user_id, task_id, client=client)
    equal(parsed(after, Task, HTTPStatus.OK, "GET").is_completed, False, "the refused write")

    # Idempotency-Key: a retry gets the first answer; the same key with another body is a 422.
    key = f"once-{uuid.uuid4()}"
    once = TaskCreate(title="once")
    first, retry = (
        parsed(
            create_task.sync_detailed(user_id, client=client, body=once, idempotency_key=key),
            Task,
            HTTPStatus.CREATED,
            what,
        )
        for what in ("POST with a key", "its retry")
    )
    equal(retry.to_dict(), first.to_dict(), "the retry's task")
    reused = create_task.sync_detailed(
        user_id, client=client, body=TaskCreate(title="other"), idempotency_key=key
    )
    reuse = parsed(reused, ValidationProblem, HTTPStatus.UNPROCESSABLE_ENTITY, "the key reused")
    equal(reuse.errors[0].loc, ["header", "Idempotency-Key"], "what the reused key's 422 names")
    named = tasks_of(list_tasks.sync_detailed(user_id, client=client, q="once"), "GET ?q=once")
    equal([task.id for task in named], [first.id], "tasks created with the key")

    # The change feed: everything from the start, then a deletion, then nothing.
    def poll(since: str | Unset, what: str) -> TaskChanges:
        response = list_task_changes.sync_detailed(user_id, client=client, since=since)
        return parsed(response, TaskChanges, HTTPStatus.OK, what)

    feed = poll(UNSET, "the feed from the start")
    expected = sorted([*(task.id for task in created), first.id])
    equal(sorted(task.id for task in feed.tasks), expected, "the feed's tasks")
    equal((feed.deleted, feed.has_more), ([], False), "the feed's deletions, has_more")
    gone = created[1].id
    deleted = delete_task.sync_detailed(user_id, gone, client=client)
    equal(deleted.status_code, HTTPStatus.NO_CONTENT, "DELETE")
    since = poll(feed.next_, "the feed since its last token")
    equal(since.tasks, [], "tasks changed since")
    equal([each.id for each in since.deleted], [gone], "tasks deleted since")
    quiet = poll(since.next_, "the feed after that")
    equal((quiet.tasks, quiet.deleted), ([], []), "the feed when nothing changed")

    # Each error model.
    refusing = AuthenticatedClient(base_url=base_url, token="not.a.token")
    refused = list_tasks.sync_detailed(user_id, client=refusing)
    problem_of(refused, HTTPStatus.UNAUTHORIZED, "a refused token")
    check("WWW-Authenticate" in refused.headers, "the 401's challenge")
    forbidden = list_tasks.sync_detailed(user_id_for(other_token), client=client)
    problem_of(forbidden, HTTPStatus.FORBIDDEN, "another user's URL")
    missing = get_task.sync_detailed(user_id, gone, client=client)
    problem_of(missing, HTTPStatus.NOT_FOUND, "a deleted task")
    invalid = create_task.sync_detailed(user_id, client=client, body=TaskCreate(title="   "))
    validation = parsed(invalid, ValidationProblem, HTTPStatus.UNPROCESSABLE_ENTITY, "blank title")
    equal(validation.errors[0].loc, ["body", "title"], "where the problem is")


def main() -> int:
    try:
        flow(os.environ["TASKD_URL"], os.environ["TASKD_TOKEN"], os.environ["TASKD_OTHER_TOKEN"])
    except FlowFailure as failure:
        print(f"openapi-python-client: FAIL: {failure}", file=sys.stderr)
        return 1
    except httpx.TransportError as error:
        # No retry: every answer, refusals included, must leave the connection usable.
        where = f"{error.request.method} {error.request.url}"
        print(f"openapi-python-client: FAIL: {where}: {error!r}", file=sys.stderr)
        return 1
    print("openapi-python-client: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
