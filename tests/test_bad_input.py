"""Inputs that become 500s in careless services: each is a 4xx problem here (CONTRACT §2)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from conftest import Api, body
from tornado.httpclient import HTTPResponse


def as_json(document: Any) -> bytes:
    return orjson.dumps(document)


def unprocessable(response: HTTPResponse, loc: list[str]) -> None:
    """A 422 problem whose first error's `loc` starts with `loc`."""
    assert response.code == 422, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = body(response)
    assert set(problem) == {"type", "title", "status", "detail", "errors"}
    assert problem["status"] == 422
    assert problem["errors"]
    for error in problem["errors"]:
        assert set(error) == {"loc", "msg", "type"}
    assert problem["errors"][0]["loc"][: len(loc)] == loc, problem["errors"]


async def send(api: Api, method: str, path: str, user: int, payload: bytes) -> HTTPResponse:
    return await api.request(
        method, path, user=user, body=payload, headers={"Content-Type": "application/json"}
    )


def case(payload: bytes, loc: list[str], name: str) -> Any:
    return pytest.param(payload, loc, id=name)


STAMP = "2026-01-01T00:00:00.000000Z"

# Wrong for a create and for an update alike. `loc` is the prefix the first error must carry.
BAD_BODIES = [
    case(as_json({"title": "x", "colour": "red"}), ["body", "colour"], "unknown-field"),
    case(as_json({"title": "x", "user_id": 1}), ["body", "user_id"], "user_id"),
    case(as_json({"title": "x", "id": 1}), ["body", "id"], "id"),
    case(
        as_json({"title": "x", "created_at": "2026-01-01T00:00:00.000000Z"}),
        ["body", "created_at"],
        "created",
    ),
    case(
        as_json({"title": "x", "updated_at": "2026-01-01T00:00:00.000000Z"}),
        ["body", "updated_at"],
        "updated",
    ),
    case(as_json({"title": 123}), ["body", "title"], "title-int"),
    case(as_json({"title": True}), ["body", "title"], "title-bool"),
    case(as_json({"title": 1.5}), ["body", "title"], "title-float"),
    case(as_json({"title": ["x"]}), ["body", "title"], "title-array"),
    case(as_json({"title": {"text": "x"}}), ["body", "title"], "title-object"),
    case(as_json({"title": None}), ["body", "title"], "title-null"),
    case(as_json({"title": ""}), ["body", "title"], "title-empty"),
    case(as_json({"title": "   "}), ["body", "title"], "title-blank"),
    case(as_json({"title": " \t\n\r "}), ["body", "title"], "title-whitespace"),
    case(as_json({"title": "x" * 501}), ["body", "title"], "title-501"),
    case(as_json({"title": "  " + "x" * 501 + "  "}), ["body", "title"], "title-501-stripped"),
    case(as_json({"title": "😀" * 501}), ["body", "title"], "title-501-four-byte"),
    case(as_json({"title": "x", "description": "d" * 5001}), ["body", "description"], "desc-5001"),
    case(
        as_json({"title": "x", "description": "😀" * 5001}), ["body", "description"], "desc-emoji"
    ),
    case(as_json({"title": "x", "description": None}), ["body", "description"], "desc-null"),
    case(as_json({"title": "x", "description": 5}), ["body", "description"], "desc-int"),
    case(as_json({"title": "x", "description": False}), ["body", "description"], "desc-bool"),
    case(as_json({"title": "a\u0000b"}), ["body", "title"], "nul-in-title"),
    case(as_json({"title": "\u0000"}), ["body", "title"], "nul-title"),
    case(as_json({"title": "x", "description": "a\u0000"}), ["body", "description"], "nul-desc"),
    case(b'{"title": "\\ud800"}', ["body"], "lone-high-surrogate-title"),
    case(b'{"title": "x\\udc00y"}', ["body"], "lone-low-surrogate-title"),
    case(b'{"title": "x", "description": "\\ud800"}', ["body"], "lone-surrogate-desc"),
    case(b'{"title": "\xff"}', ["body"], "not-utf-8"),
    case(b'{"title": "\xed\xa0\x80"}', ["body"], "utf-8-encoded-surrogate"),
    case(b"[]", ["body"], "empty-array"),
    case(as_json([{"title": "x"}]), ["body"], "array"),
    case(b'"x"', ["body"], "string"),
    case(b"5", ["body"], "number"),
    case(b"null", ["body"], "null"),
    case(b"true", ["body"], "true"),
    case(b"{", ["body"], "truncated"),
    case(b'{"title": "x",}', ["body"], "trailing-comma"),
    case(b"{'title': 'x'}", ["body"], "single-quotes"),
    case(b'{"title": "x"} {}', ["body"], "two-documents"),
    case(b'{"title": NaN}', ["body"], "nan"),
    case(b'{"title": 1e999}', ["body"], "infinite-number"),
    case(b'{"title": "x"}\x00', ["body"], "trailing-nul-byte"),
    case(b'{"title": "a\x00b"}', ["body"], "raw-nul-byte-in-string"),
    case(b'{"title": ' + b"[" * 5000 + b"]" * 5000 + b"}", ["body"], "deeply-nested"),
    case(b"", ["body"], "empty"),
    case(b"   \n", ["body"], "whitespace-only"),
]


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        *BAD_BODIES,
        case(as_json({}), ["body", "title"], "empty-object"),
        case(as_json({"description": "d"}), ["body", "title"], "missing-title"),
        case(as_json({"title": "x", "is_completed": False}), ["body", "is_completed"], "completed"),
    ],
)
async def test_create_with_a_bad_body_is_422(api, user_id, payload, loc):
    unprocessable(await send(api, "POST", f"/api/{user_id}/tasks", user_id, payload), loc)
    listed = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
    assert body(listed) == []


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        *BAD_BODIES,
        case(as_json({}), ["body"], "empty-object"),
        case(as_json({"user_id": 1}), ["body", "user_id"], "only-user_id"),
        case(as_json({"is_completed": "yes"}), ["body", "is_completed"], "completed-string"),
        case(as_json({"is_completed": "true"}), ["body", "is_completed"], "completed-true-text"),
        case(as_json({"is_completed": 1}), ["body", "is_completed"], "completed-1"),
        case(as_json({"is_completed": 0}), ["body", "is_completed"], "completed-0"),
        case(as_json({"is_completed": None}), ["body", "is_completed"], "completed-null"),
        case(as_json({"description": None}), ["body", "description"], "only-desc-null"),
    ],
)
async def test_update_with_a_bad_body_is_422_and_changes_nothing(api, user_id, payload, loc):
    task = await api.create(user_id, "unchanged", description="as before")
    path = f"/api/{user_id}/tasks/{task['id']}"
    unprocessable(await send(api, "PUT", path, user_id, payload), loc)
    assert body(await api.request("GET", path, user=user_id)) == task


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        # Whatever is wrong with the body as a whole is wrong here too; an empty one toggles.
        *(bad for bad in BAD_BODIES if bad.values[1] == ["body"] and bad.id != "empty"),
        case(as_json({}), ["body", "is_completed"], "empty-object"),
        case(as_json({"is_completed": True, "title": "x"}), ["body", "title"], "title-too"),
        case(as_json({"done": True}), ["body", "is_completed"], "other-field"),
        case(as_json({"is_completed": "true"}), ["body", "is_completed"], "completed-text"),
        case(as_json({"is_completed": 1}), ["body", "is_completed"], "completed-1"),
        case(as_json({"is_completed": 0}), ["body", "is_completed"], "completed-0"),
        case(as_json({"is_completed": None}), ["body", "is_completed"], "completed-null"),
        case(as_json({"is_completed": [True]}), ["body", "is_completed"], "completed-array"),
    ],
)
async def test_complete_with_a_bad_body_is_422_and_changes_nothing(api, user_id, payload, loc):
    task = await api.create(user_id, "unchanged")
    path = f"/api/{user_id}/tasks/{task['id']}"
    unprocessable(await send(api, "PATCH", path + "/complete", user_id, payload), loc)
    assert body(await api.request("GET", path, user=user_id)) == task


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("q=%00", "q"),
        ("q=milk%00", "q"),
        ("q=%FF", "q"),
        ("q=%ED%A0%80", "q"),
        ("q=%C0%AF", "q"),
        ("sort=%00", "sort"),
        ("completed=%FF", "completed"),
        ("limit=%00", "limit"),
        ("cursor=%00", "cursor"),
        ("cursor=%FF", "cursor"),
    ],
)
async def test_list_query_postgres_cannot_take_is_422(api, user_id, query, name):
    await api.create(user_id, "milk")
    response = await api.request("GET", f"/api/{user_id}/tasks?{query}", user=user_id)
    unprocessable(response, ["query", name])


@pytest.mark.parametrize(
    "task_id",
    ["%00", "1%00", "%FF", "%ED%A0%80", "9" * 1000, "1%2F2", "%20", "1%20", "%2B1", "1e3", "0x1"],
)
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PUT", ""), ("DELETE", ""), ("PATCH", "/complete")],
)
async def test_odd_task_id_in_the_path_is_404(api, user_id, method, suffix, task_id):
    await api.create(user_id, "t")
    payload = {"title": "x"} if method == "PUT" else None
    response = await api.request(
        method, f"/api/{user_id}/tasks/{task_id}{suffix}", user=user_id, json=payload
    )
    assert response.code == 404, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    assert body(response)["status"] == 404


@pytest.mark.parametrize(
    "content_type",
    [";;;", "application/", "json", "application/json/x", "application/json, text/plain", "*/*"],
)
async def test_malformed_content_type_is_415(api, user_id, content_type):
    response = await api.request(
        "POST",
        f"/api/{user_id}/tasks",
        user=user_id,
        body=as_json({"title": "x"}),
        headers={"Content-Type": content_type},
    )
    assert response.code == 415, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    assert body(response)["status"] == 415
