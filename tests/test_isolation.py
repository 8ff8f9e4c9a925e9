"""A user can only ever see or touch their own tasks (CONTRACT §1, §2 404, §4)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import pytest
from conftest import body, new_user_id
from tornado.httpclient import HTTPResponse

NEVER_AN_ID = 2**63 - 1

# Every request that names a task, with a body where the method takes one.
TASK_REQUESTS = [
    ("GET", "", None),
    ("PUT", "", {"title": "taken over"}),
    ("PUT", "", {"is_completed": True}),
    ("PUT", "", {"title": ""}),
    ("PUT", "", {"user_id": 1}),
    ("DELETE", "", None),
    ("PATCH", "/complete", None),
    ("PATCH", "/complete", {"is_completed": True}),
    ("PATCH", "/complete", {"is_completed": "yes"}),
]


@pytest.fixture
def owner() -> int:
    """User A, who owns the task; `user_id` is user B, who tries to reach it."""
    return new_user_id()


def response_summary(response: HTTPResponse) -> tuple[int, str | None, bytes, str | None]:
    return (
        response.code,
        response.headers.get("Content-Type"),
        response.body,
        response.headers.get("Allow"),
    )


async def snapshot(api: Any, user: int, task_id: int) -> tuple[bytes, bytes]:
    """A user's task and list, byte for byte."""
    task = await api.request("GET", f"/api/{user}/tasks/{task_id}", user=user)
    listing = await api.request("GET", f"/api/{user}/tasks", user=user)
    assert task.code == 200
    assert listing.code == 200
    return task.body, listing.body


@pytest.mark.parametrize(("method", "suffix", "json"), TASK_REQUESTS)
async def test_another_users_task_id_is_404_exactly_like_a_missing_one(
    api, owner, user_id, method, suffix, json
):
    task = await api.create(owner, "A's task")
    await api.create(user_id, "B's own task")

    theirs = await api.request(
        method, f"/api/{user_id}/tasks/{task['id']}{suffix}", user=user_id, json=json
    )
    missing = await api.request(
        method, f"/api/{user_id}/tasks/{NEVER_AN_ID}{suffix}", user=user_id, json=json
    )

    assert theirs.code == 404
    assert theirs.headers["Content-Type"] == "application/problem+json"
    assert body(theirs) == {
        "type": "about:blank",
        "title": HTTPStatus.NOT_FOUND.phrase,
        "status": 404,
        "detail": body(theirs)["detail"],
    }
    assert response_summary(theirs) == response_summary(missing)


@pytest.mark.parametrize(("method", "suffix", "json"), TASK_REQUESTS)
async def test_reaching_for_another_users_task_changes_nothing(
    api, owner, user_id, method, suffix, json
):
    task = await api.create(owner, "A's task", description="keep me")
    before = await snapshot(api, owner, task["id"])

    response = await api.request(
        method, f"/api/{user_id}/tasks/{task['id']}{suffix}", user=user_id, json=json
    )
    assert response.code == 404

    assert await snapshot(api, owner, task["id"]) == before
    response = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
    assert response.code == 200
    assert body(response) == []


async def test_a_users_list_never_contains_another_users_tasks(api, owner, user_id):
    theirs = [
        await api.create(owner, "shared word one"),
        await api.create(owner, "shared word two", description="shared"),
    ]
    response = await api.request(
        "PATCH", f"/api/{owner}/tasks/{theirs[0]['id']}/complete", user=owner
    )
    assert response.code == 200
    mine = [
        await api.create(user_id, "shared word mine"),
        await api.create(user_id, "other"),
    ]
    my_ids = {task["id"] for task in mine}
    their_ids = {task["id"] for task in theirs}

    for query in ["", "?completed=true", "?completed=false", "?q=shared", "?sort=title"]:
        response = await api.request("GET", f"/api/{user_id}/tasks{query}", user=user_id)
        assert response.code == 200, query
        listed = body(response)
        assert {task["id"] for task in listed} <= my_ids, query
        assert all(task["user_id"] == user_id for task in listed), query

    response = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
    assert {task["id"] for task in body(response)} == my_ids
    response = await api.request("GET", f"/api/{owner}/tasks", user=owner)
    assert {task["id"] for task in body(response)} == their_ids


async def test_paging_through_a_list_never_reaches_another_users_tasks(api, owner, user_id):
    for number in range(3):
        await api.create(owner, f"theirs {number}")
    mine = [await api.create(user_id, f"mine {number}") for number in range(3)]

    seen: list[int] = []
    url: str | None = f"/api/{user_id}/tasks?limit=1"
    while url is not None:
        response = await api.request("GET", url, user=user_id)
        assert response.code == 200
        seen += [task["id"] for task in body(response)]
        link = response.headers.get("Link")
        url = link[link.index("<") + 1 : link.index(">")] if link else None
        assert len(seen) <= len(mine)
    assert sorted(seen) == sorted(task["id"] for task in mine)


@pytest.mark.parametrize(
    ("method", "on_own_task", "fields"),
    [
        ("POST", False, {"title": "moved", "user_id": "{owner}"}),
        ("POST", False, {"title": "moved", "id": "{task}"}),
        ("PUT", True, {"title": "moved", "user_id": "{owner}"}),
        ("PUT", True, {"user_id": "{owner}"}),
        ("PUT", True, {"id": "{task}"}),
    ],
)
async def test_a_body_naming_user_id_or_id_is_422_and_moves_nothing(
    api, owner, user_id, method, on_own_task, fields
):
    task = await api.create(owner, "A's task")
    own = await api.create(user_id, "B's task")
    owner_before = await snapshot(api, owner, task["id"])
    own_before = await snapshot(api, user_id, own["id"])

    values = {"owner": owner, "task": task["id"]}
    json = {
        name: values[value.strip("{}")] if name in ("user_id", "id") else value
        for name, value in fields.items()
    }
    path = f"/api/{user_id}/tasks" + (f"/{own['id']}" if on_own_task else "")
    response = await api.request(method, path, user=user_id, json=json)

    assert response.code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = body(response)
    (field,) = {"user_id", "id"} & fields.keys()
    assert problem["status"] == 422
    assert problem["title"] == HTTPStatus.UNPROCESSABLE_ENTITY.phrase
    assert {"loc": ["body", field], "type": "extra_forbidden"} in [
        {"loc": error["loc"], "type": error["type"]} for error in problem["errors"]
    ]
    assert await snapshot(api, owner, task["id"]) == owner_before
    assert await snapshot(api, user_id, own["id"]) == own_before
