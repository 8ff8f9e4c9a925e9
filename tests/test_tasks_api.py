"""The six task endpoints of CONTRACT §2: status codes, headers and bodies."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from conftest import Api, body, make_token, new_user_id
from tornado.httpclient import HTTPResponse
from tornado.tcpclient import TCPClient

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
TASK_KEYS = {"id", "title", "description", "is_completed", "created_at", "updated_at", "user_id"}
PROBLEM_KEYS = {"type", "title", "status", "detail"}
MAX_BODY = 64 * 1024
LIST_METHODS = {"GET", "POST", "OPTIONS"}
ITEM_METHODS = {"GET", "PUT", "DELETE", "OPTIONS"}
COMPLETE_METHODS = {"PATCH", "OPTIONS"}
# Ids that cannot name a task of this user: unknown, not a number, not positive, past 2**63-1.
MISSING_IDS = [
    "9223372036854775807",
    "abc",
    "0",
    "-1",
    "1.5",
    "9223372036854775808",
    "99999999999999999999",
]


def moment(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def assert_task(task: dict[str, Any], user: int) -> None:
    """The Task shape of CONTRACT §2: exactly these keys, these types, UTC timestamps."""
    assert set(task) == TASK_KEYS
    assert isinstance(task["id"], int) and task["id"] > 0
    assert task["user_id"] == user
    assert isinstance(task["title"], str)
    assert isinstance(task["description"], str)
    assert isinstance(task["is_completed"], bool)
    assert TIMESTAMP.match(task["created_at"]), task["created_at"]
    assert TIMESTAMP.match(task["updated_at"]), task["updated_at"]
    assert moment(task["created_at"]) <= moment(task["updated_at"])


def json_of(response: HTTPResponse, status: int) -> Any:
    assert response.code == status, response.body
    assert response.headers["Content-Type"] == "application/json"
    return body(response)


def problem(response: HTTPResponse, status: int) -> dict[str, Any]:
    """The RFC 9457 body of an error response, after checking its media type and keys."""
    assert response.code == status, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    data: dict[str, Any] = body(response)
    assert set(data) == (PROBLEM_KEYS | {"errors"} if status == 422 else PROBLEM_KEYS)
    assert data["status"] == status
    assert isinstance(data["type"], str) and data["type"]
    assert isinstance(data["title"], str) and data["title"]
    assert isinstance(data["detail"], str) and data["detail"]
    return data


def unprocessable(response: HTTPResponse) -> list[dict[str, Any]]:
    """The `errors` of a 422 problem: each exactly {loc, msg, type}."""
    errors: list[dict[str, Any]] = problem(response, 422)["errors"]
    assert errors
    for error in errors:
        assert set(error) == {"loc", "msg", "type"}
        assert isinstance(error["loc"], list) and error["loc"]
        assert isinstance(error["msg"], str) and error["msg"]
        assert isinstance(error["type"], str) and error["type"]
    return errors


def allowed(response: HTTPResponse) -> set[str]:
    return {method.strip() for method in response.headers["Allow"].split(",")}


async def get_task(api: Api, user: int, task_id: int) -> dict[str, Any]:
    task: dict[str, Any] = json_of(
        await api.request("GET", f"/api/{user}/tasks/{task_id}", user=user), 200
    )
    return task


async def list_tasks(api: Api, user: int) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = json_of(
        await api.request("GET", f"/api/{user}/tasks", user=user), 200
    )
    return tasks


async def raw_exchange(api: Api, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes exactly as given (Tornado's client adds a Content-Type to every POST)."""
    client = TCPClient()
    try:
        stream = await client.connect("127.0.0.1", api.client.get_http_port())
        await stream.write(request)
        response = await stream.read_until_close()
    finally:
        client.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, payload


def chunks(data: bytes, size: int = 8192) -> Any:
    """A body_producer that sends `data` with chunked transfer encoding."""

    async def produce(write: Any) -> None:
        for start in range(0, len(data), size):
            await write(data[start : start + size])

    return produce


def padded(document: dict[str, Any], size: int) -> bytes:
    """A JSON document grown to exactly `size` bytes with insignificant whitespace."""
    text = orjson.dumps(document)
    return text[:-1] + b" " * (size - len(text)) + b"}"


# --- POST /api/{user_id}/tasks


async def test_create_answers_201_with_location_and_the_task(api, user_id):
    before = datetime.now(UTC)
    response = await api.request(
        "POST",
        f"/api/{user_id}/tasks",
        user=user_id,
        json={"title": "Buy milk", "description": "2 litres"},
    )
    task = json_of(response, 201)
    assert_task(task, user_id)
    assert response.headers["Location"] == f"/api/{user_id}/tasks/{task['id']}"
    assert task == {
        "id": task["id"],
        "title": "Buy milk",
        "description": "2 litres",
        "is_completed": False,
        "created_at": task["created_at"],
        "updated_at": task["updated_at"],
        "user_id": user_id,
    }
    slack = timedelta(seconds=60)
    assert before - slack <= moment(task["created_at"]) <= datetime.now(UTC) + slack


async def test_created_task_is_served_at_its_location(api, user_id):
    response = await api.request("POST", f"/api/{user_id}/tasks", user=user_id, json={"title": "x"})
    created = json_of(response, 201)
    fetched = await api.request("GET", response.headers["Location"], user=user_id)
    assert json_of(fetched, 200) == created


async def test_create_stores_the_title_stripped(api, user_id):
    task = await api.create(user_id, " \t Buy milk \n ")
    assert task["title"] == "Buy milk"
    assert (await get_task(api, user_id, task["id"]))["title"] == "Buy milk"


async def test_create_description_defaults_to_empty(api, user_id):
    task = await api.create(user_id, "no description")
    assert task["description"] == ""


async def test_create_keeps_the_description_as_sent(api, user_id):
    task = await api.create(user_id, "t", description="  two\nlines  ")
    assert task["description"] == "  two\nlines  "


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/json;charset=UTF-8", "Application/JSON"],
)
async def test_create_accepts_json_with_parameters_and_any_case(api, user_id, content_type):
    response = await api.request(
        "POST",
        f"/api/{user_id}/tasks",
        user=user_id,
        body=orjson.dumps({"title": "charset"}),
        headers={"Content-Type": content_type},
    )
    assert json_of(response, 201)["title"] == "charset"


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("x" * 500, "x" * 500),
        ("   " + "x" * 500 + "\n\t ", "x" * 500),
        ("é" * 500, "é" * 500),
        ("😀" * 500, "😀" * 500),
    ],
    ids=["ascii", "surrounded-by-spaces", "two-byte", "four-byte"],
)
async def test_title_of_500_characters_is_accepted(api, user_id, sent, stored):
    task = await api.create(user_id, sent)
    assert task["title"] == stored
    assert (await get_task(api, user_id, task["id"]))["title"] == stored


@pytest.mark.parametrize("description", ["d" * 5000, "😀" * 5000], ids=["ascii", "four-byte"])
async def test_description_of_5000_characters_is_accepted(api, user_id, description):
    task = await api.create(user_id, "t", description=description)
    assert task["description"] == description
    assert (await get_task(api, user_id, task["id"]))["description"] == description


@pytest.mark.parametrize(
    "text",
    [
        'He said "hi" \\ / </script>',
        "tab\tnew\nline\rcarriage",
        "controls \u0001\u001f\u007f end",
        "separators \u2028\u2029 end",
        "emoji 😀 and ünïcödé",
    ],
    ids=["quotes-backslash", "whitespace-escapes", "controls", "line-separators", "unicode"],
)
async def test_text_round_trips_exactly(api, user_id, text):
    task = await api.create(user_id, text, description=text)
    assert (task["title"], task["description"]) == (text, text)
    fetched = await get_task(api, user_id, task["id"])
    assert (fetched["title"], fetched["description"]) == (text, text)


# --- GET /api/{user_id}/tasks


async def test_list_of_a_new_user_is_an_empty_array(api, user_id):
    response = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
    assert json_of(response, 200) == []
    assert "Link" not in response.headers


async def test_list_returns_every_task_of_the_user_newest_first(api, user_id):
    created = [await api.create(user_id, f"task {n}") for n in range(3)]
    assert await list_tasks(api, user_id) == created[::-1]


# --- GET /api/{user_id}/tasks/{id}


async def test_get_returns_the_task(api, user_id):
    created = await api.create(user_id, "read me", description="details")
    response = await api.request("GET", f"/api/{user_id}/tasks/{created['id']}", user=user_id)
    task = json_of(response, 200)
    assert_task(task, user_id)
    assert task == created


# --- PUT /api/{user_id}/tasks/{id}


@pytest.mark.parametrize(
    "changes",
    [
        {"title": "new title"},
        {"description": "new description"},
        {"is_completed": True},
        {"title": "all", "description": "three", "is_completed": True},
    ],
    ids=["title", "description", "is_completed", "all"],
)
async def test_put_changes_only_the_fields_given(api, user_id, changes):
    created = await api.create(user_id, "old title", description="old description")
    response = await api.request(
        "PUT", f"/api/{user_id}/tasks/{created['id']}", user=user_id, json=changes
    )
    task = json_of(response, 200)
    assert_task(task, user_id)
    assert task == {**created, **changes, "updated_at": task["updated_at"]}
    assert moment(task["updated_at"]) > moment(created["updated_at"])
    assert await get_task(api, user_id, created["id"]) == task


async def test_put_stores_the_title_stripped(api, user_id):
    created = await api.create(user_id, "old")
    response = await api.request(
        "PUT", f"/api/{user_id}/tasks/{created['id']}", user=user_id, json={"title": "  new \n"}
    )
    assert json_of(response, 200)["title"] == "new"


async def test_put_can_mark_a_task_not_completed(api, user_id):
    created = await api.create(user_id, "t")
    path = f"/api/{user_id}/tasks/{created['id']}"
    await api.request("PUT", path, user=user_id, json={"is_completed": True})
    response = await api.request("PUT", path, user=user_id, json={"is_completed": False})
    assert json_of(response, 200)["is_completed"] is False


async def test_every_put_moves_updated_at_forward_and_keeps_created_at(api, user_id):
    created = await api.create(user_id, "t")
    path = f"/api/{user_id}/tasks/{created['id']}"
    stamps = [created["updated_at"]]
    for n in range(3):
        task = json_of(await api.request("PUT", path, user=user_id, json={"title": f"v{n}"}), 200)
        assert task["created_at"] == created["created_at"]
        stamps.append(task["updated_at"])
    assert [moment(stamp) for stamp in stamps] == sorted({moment(stamp) for stamp in stamps})


async def test_put_accepts_json_with_charset(api, user_id):
    created = await api.create(user_id, "t")
    response = await api.request(
        "PUT",
        f"/api/{user_id}/tasks/{created['id']}",
        user=user_id,
        body=orjson.dumps({"title": "charset"}),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert json_of(response, 200)["title"] == "charset"


# --- DELETE /api/{user_id}/tasks/{id}


async def test_delete_answers_204_with_an_empty_body_and_the_task_is_gone(api, user_id):
    kept = await api.create(user_id, "kept")
    doomed = await api.create(user_id, "doomed")
    path = f"/api/{user_id}/tasks/{doomed['id']}"
    response = await api.request("DELETE", path, user=user_id)
    assert response.code == 204
    assert response.body == b""
    problem(await api.request("GET", path, user=user_id), 404)
    problem(await api.request("DELETE", path, user=user_id), 404)
    assert await list_tasks(api, user_id) == [kept]


# --- PATCH /api/{user_id}/tasks/{id}/complete


@pytest.mark.parametrize(
    "steps",
    [
        [(None, True), (None, False), (None, True)],
        [(True, True), (True, True), (False, False), (False, False), (True, True)],
    ],
    ids=["no-body-toggles", "body-sets"],
)
async def test_complete_toggles_without_a_body_and_sets_with_one(api, user_id, steps):
    created = await api.create(user_id, "toggle me", description="d")
    path = f"/api/{user_id}/tasks/{created['id']}/complete"
    previous = created
    for sent, expected in steps:
        payload = None if sent is None else {"is_completed": sent}
        task = json_of(await api.request("PATCH", path, user=user_id, json=payload), 200)
        assert_task(task, user_id)
        assert task == {**created, "is_completed": expected, "updated_at": task["updated_at"]}
        assert moment(task["updated_at"]) > moment(previous["updated_at"])
        assert await get_task(api, user_id, created["id"]) == task
        previous = task


@pytest.mark.parametrize(
    ("payload", "content_type", "completed"),
    [
        (b'{"is_completed": false}', "application/json; charset=utf-8", False),
        (b"", "application/json", True),
    ],
    ids=["json-with-charset-sets", "empty-json-toggles"],
)
async def test_complete_reads_its_body_like_other_bodies(
    api, user_id, payload, content_type, completed
):
    created = await api.create(user_id, "t")
    response = await api.request(
        "PATCH",
        f"/api/{user_id}/tasks/{created['id']}/complete",
        user=user_id,
        body=payload,
        headers={"Content-Type": content_type},
    )
    assert json_of(response, 200)["is_completed"] is completed


# --- 404


@pytest.mark.parametrize("task_id", MISSING_IDS)
@pytest.mark.parametrize(
    ("method", "suffix", "payload"),
    [
        ("GET", "", None),
        ("PUT", "", {"title": "x"}),
        ("DELETE", "", None),
        ("PATCH", "/complete", None),
    ],
    ids=["GET", "PUT", "DELETE", "PATCH-complete"],
)
async def test_task_that_does_not_exist_is_404(api, user_id, method, suffix, payload, task_id):
    await api.create(user_id, "the only task")
    response = await api.request(
        method, f"/api/{user_id}/tasks/{task_id}{suffix}", user=user_id, json=payload
    )
    problem(response, 404)


async def test_deleted_task_is_404_on_every_method(api, user_id):
    task = await api.create(user_id, "t")
    path = f"/api/{user_id}/tasks/{task['id']}"
    await api.request("DELETE", path, user=user_id)
    problem(await api.request("GET", path, user=user_id), 404)
    problem(await api.request("PUT", path, user=user_id, json={"title": "x"}), 404)
    problem(await api.request("DELETE", path, user=user_id), 404)
    problem(await api.request("PATCH", path + "/complete", user=user_id), 404)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api",
        "/api/{user}",
        "/api/{user}/task",
        "/api/{user}/tasks/",
        "/api/{user}/tasks/1/complete/",
        "/api/{user}/tasks/1/done",
        "/api/{user}/tasks/1/complete/extra",
        "/nothing/here",
    ],
)
async def test_unknown_route_is_404_problem(api, user_id, method, path):
    payload = {"title": "x"} if method in ("POST", "PUT", "PATCH") else None
    response = await api.request(method, path.format(user=user_id), user=user_id, json=payload)
    problem(response, 404)


# --- 405


@pytest.mark.parametrize(
    ("method", "suffix", "allow"),
    [
        ("PUT", "", LIST_METHODS),
        ("DELETE", "", LIST_METHODS),
        ("PATCH", "", LIST_METHODS),
        ("POST", "/{id}", ITEM_METHODS),
        ("PATCH", "/{id}", ITEM_METHODS),
        ("GET", "/{id}/complete", COMPLETE_METHODS),
        ("POST", "/{id}/complete", COMPLETE_METHODS),
        ("PUT", "/{id}/complete", COMPLETE_METHODS),
        ("DELETE", "/{id}/complete", COMPLETE_METHODS),
    ],
)
async def test_wrong_method_is_405_with_allow(api, user_id, method, suffix, allow):
    task = await api.create(user_id, "t")
    payload = {"title": "x"} if method in ("POST", "PUT", "PATCH") else None
    path = f"/api/{user_id}/tasks" + suffix.format(id=task["id"])
    response = await api.request(method, path, user=user_id, json=payload)
    problem(response, 405)
    assert allowed(response) == allow
    assert await list_tasks(api, user_id) == [task]


# --- 413


def body_path(user_id, task, method):
    """The route that takes a body with `method`."""
    return {
        "POST": f"/api/{user_id}/tasks",
        "PUT": f"/api/{user_id}/tasks/{task['id']}",
        "PATCH": f"/api/{user_id}/tasks/{task['id']}/complete",
    }[method]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_body_over_64_kib_is_413(api, user_id, method):
    task = await api.create(user_id, "t")
    path = body_path(user_id, task, method)
    payload = padded({"title": "big"}, MAX_BODY + 1)
    response = await api.request(
        method, path, user=user_id, body=payload, headers={"Content-Type": "application/json"}
    )
    problem(response, 413)
    assert await list_tasks(api, user_id) == [task]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_chunked_body_over_64_kib_is_413(api, user_id, method):
    task = await api.create(user_id, "t")
    path = body_path(user_id, task, method)
    response = await api.client.fetch(
        path,
        method=method,
        body_producer=chunks(padded({"title": "big"}, MAX_BODY + 1)),
        headers={
            "Authorization": f"Bearer {make_token(user_id)}",
            "Content-Type": "application/json",
        },
        raise_error=False,
    )
    assert "Content-Length" not in response.request.headers
    problem(response, 413)
    assert await list_tasks(api, user_id) == [task]


async def test_body_of_exactly_64_kib_is_accepted(api, user_id):
    response = await api.request(
        "POST",
        f"/api/{user_id}/tasks",
        user=user_id,
        body=padded({"title": "just fits"}, MAX_BODY),
        headers={"Content-Type": "application/json"},
    )
    assert json_of(response, 201)["title"] == "just fits"


async def test_chunked_body_under_64_kib_is_accepted(api, user_id):
    response = await api.client.fetch(
        f"/api/{user_id}/tasks",
        method="POST",
        body_producer=chunks(padded({"title": "chunked"}, MAX_BODY), size=1000),
        headers={
            "Authorization": f"Bearer {make_token(user_id)}",
            "Content-Type": "application/json",
        },
        raise_error=False,
    )
    assert json_of(response, 201)["title"] == "chunked"


# --- 415

NOT_JSON = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
]


@pytest.mark.parametrize("content_type", NOT_JSON)
async def test_create_with_a_body_that_is_not_json_is_415(api, user_id, content_type):
    response = await api.request(
        "POST",
        f"/api/{user_id}/tasks",
        user=user_id,
        body=orjson.dumps({"title": "x"}),
        headers={"Content-Type": content_type},
    )
    problem(response, 415)
    assert await list_tasks(api, user_id) == []


async def test_create_without_content_type_is_415(api, user_id):
    payload = orjson.dumps({"title": "x"})
    status, headers, response_body = await raw_exchange(
        api,
        f"POST /api/{user_id}/tasks HTTP/1.1\r\n".encode()
        + b"Host: 127.0.0.1\r\n"
        + b"Authorization: Bearer %s\r\n" % make_token(user_id).encode()
        + b"Content-Length: %d\r\n" % len(payload)
        + b"Connection: close\r\n\r\n"
        + payload,
    )
    assert status == 415
    assert headers["content-type"] == "application/problem+json"
    assert orjson.loads(response_body)["status"] == 415
    assert await list_tasks(api, user_id) == []


@pytest.mark.parametrize("content_type", NOT_JSON)
async def test_update_with_a_body_that_is_not_json_is_415(api, user_id, content_type):
    task = await api.create(user_id, "t")
    response = await api.request(
        "PUT",
        f"/api/{user_id}/tasks/{task['id']}",
        user=user_id,
        body=orjson.dumps({"title": "x"}),
        headers={"Content-Type": content_type},
    )
    problem(response, 415)
    assert await get_task(api, user_id, task["id"]) == task


async def test_update_without_content_type_is_415(api, user_id):
    task = await api.create(user_id, "t")
    response = await api.request(
        "PUT", f"/api/{user_id}/tasks/{task['id']}", user=user_id, body=orjson.dumps({"title": "x"})
    )
    assert "Content-Type" not in response.request.headers
    problem(response, 415)
    assert await get_task(api, user_id, task["id"]) == task


async def test_complete_with_a_body_that_is_not_json_is_415(api, user_id):
    task = await api.create(user_id, "t")
    response = await api.request(
        "PATCH",
        f"/api/{user_id}/tasks/{task['id']}/complete",
        user=user_id,
        body=b"done",
        headers={"Content-Type": "text/plain"},
    )
    problem(response, 415)
    assert await get_task(api, user_id, task["id"]) == task


# --- Errors: RFC 9457 problem+json


async def test_422_problem_lists_each_error_with_loc_msg_and_type(api, user_id):
    response = await api.request(
        "POST", f"/api/{user_id}/tasks", user=user_id, json={"title": 5, "colour": "red"}
    )
    errors = unprocessable(response)
    assert sorted(error["loc"] for error in errors) == [["body", "colour"], ["body", "title"]]


async def test_404_problem_has_exactly_type_title_status_detail(api, user_id):
    response = await api.request("GET", f"/api/{user_id}/tasks/1", user=user_id)
    assert problem(response, 404)["status"] == 404


# --- Order of checks: 401 -> 403 -> 404 -> 422


TEXT_PLAIN = {"Content-Type": "text/plain"}


def bad_requests(user: int, task_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    """Requests that, once authenticated, would be a 404, 413, 415 or 422, or even succeed."""
    return [
        ("PUT", f"/api/{user}/tasks/{task_id}", {"json": {"title": ""}}),
        ("PUT", f"/api/{user}/tasks/abc", {"json": {"title": 5}}),
        ("PUT", f"/api/{user}/tasks/0", {"body": b"{", "headers": TEXT_PLAIN}),
        ("GET", f"/api/{user}/tasks/99999999999999999999", {}),
        ("GET", f"/api/{user}/tasks?limit=0&sort=nope", {}),
        ("POST", f"/api/{user}/tasks", {"json": {"title": "x", "user_id": 1}}),
        (
            "POST",
            f"/api/{user}/tasks",
            {"json": {"title": "x"}, "headers": {"Content-Type": "text/x"}},
        ),
        ("POST", f"/api/{user}/tasks", {"body": padded({"title": "x"}, MAX_BODY + 10)}),
        ("DELETE", f"/api/{user}/tasks/-5", {}),
        ("PATCH", f"/api/{user}/tasks/{task_id}/complete", {}),
    ]


async def test_no_token_is_401_whatever_else_is_wrong(api, user_id):
    task = await api.create(user_id, "t")
    for method, path, extra in bad_requests(user_id, task["id"]):
        response = await api.request(method, path, **extra)
        problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await list_tasks(api, user_id) == [task]


async def test_another_users_url_is_403_whatever_else_is_wrong(api, user_id):
    victim = new_user_id()
    task = await api.create(victim, "not yours")
    for method, path, extra in bad_requests(victim, task["id"]):
        problem(await api.request(method, path, user=user_id, **extra), 403)
    assert await list_tasks(api, victim) == [task]


@pytest.mark.parametrize(
    "payload",
    [{}, {"title": ""}, {"title": 5}, {"user_id": 1}, [], "not json"],
    ids=["empty", "blank-title", "int-title", "user_id", "array", "not-json"],
)
@pytest.mark.parametrize(("method", "suffix"), [("PUT", ""), ("PATCH", "/complete")])
async def test_bad_body_on_a_missing_task_is_404_not_422(api, user_id, payload, method, suffix):
    mine = await api.create(user_id, "mine")
    other = await api.create(new_user_id(), "someone else's")
    data = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
    for task_id in ["9223372036854775807", str(other["id"]), "abc", "0"]:
        response = await api.request(
            method,
            f"/api/{user_id}/tasks/{task_id}{suffix}",
            user=user_id,
            body=data,
            headers={"Content-Type": "application/json"},
        )
        problem(response, 404)
    assert await list_tasks(api, user_id) == [mine]
    assert await get_task(api, other["user_id"], other["id"]) == other
