"""Conditional requests (CONTRACT §8, RFC 9110 §13): a strong ETag on every task response,
If-None-Match on GET (304), If-Match on PUT, PATCH and DELETE (412), atomic with the write."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from concurrency import race
from conftest import Api, new_user_id
from test_changes import poll
from test_tasks_api import json_of, problem
from tornado.httpclient import HTTPResponse

from taskd.config import Settings

# RFC 9110 §8.8.3: a strong entity-tag is a quoted string of visible characters other than DQUOTE.
STRONG_ETAG = re.compile(r'"[\x21\x23-\x7e]*"')
RACERS = 8


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A connection for every racer, so all of them can wait at the database at once.
    return settings.replace(pool_max=RACERS + 2)


def etag_of(response: HTTPResponse) -> str:
    etag: str = response.headers["ETag"]
    assert STRONG_ETAG.fullmatch(etag), etag
    return etag


async def fetch(api: Api, user: int, task_id: int, **headers: str) -> HTTPResponse:
    return await api.request("GET", f"/api/{user}/tasks/{task_id}", user=user, headers=headers)


async def current_etag(api: Api, user: int, task_id: int) -> str:
    response = await fetch(api, user, task_id)
    assert response.code == 200, response.body
    return etag_of(response)


async def put(api: Api, user: int, task_id: int, payload: Any, **headers: str) -> HTTPResponse:
    return await api.request(
        "PUT", f"/api/{user}/tasks/{task_id}", user=user, json=payload, headers=headers
    )


# A write of each kind If-Match guards: (method, path suffix, body, success status).
WRITES = [
    ("PUT", "", {"title": "changed"}, 200),
    ("PATCH", "/complete", None, 200),
    ("PATCH", "/complete", {"is_completed": True}, 200),
    ("DELETE", "", None, 204),
]
WRITE_IDS = ["PUT", "PATCH-toggle", "PATCH-set", "DELETE"]


async def write(
    api: Api, user: int, task_id: int, method: str, suffix: str, payload: Any, **headers: str
) -> HTTPResponse:
    return await api.request(
        method, f"/api/{user}/tasks/{task_id}{suffix}", user=user, json=payload, headers=headers
    )


# --- ETag


async def test_every_task_response_carries_the_strong_etag_of_that_version(api, user_id):
    created = await api.request("POST", f"/api/{user_id}/tasks", user=user_id, json={"title": "t"})
    task = json_of(created, 201)
    versions = [etag_of(created)]
    assert etag_of(await fetch(api, user_id, task["id"])) == versions[-1]

    path = f"/api/{user_id}/tasks/{task['id']}"
    for method, suffix, payload in [
        ("PUT", "", {"title": "renamed"}),
        ("PATCH", "/complete", None),
        ("PUT", "", {"is_completed": False}),
    ]:
        response = await api.request(method, path + suffix, user=user_id, json=payload)
        assert response.code == 200, response.body
        versions.append(etag_of(response))
        fetched = await fetch(api, user_id, task["id"])
        assert etag_of(fetched) == versions[-1]
        assert fetched.body == response.body
    assert len(set(versions)) == len(versions)


async def test_tasks_alike_in_every_field_have_different_etags(api, user_id):
    etags = set()
    for _ in range(3):
        response = await api.request(
            "POST", f"/api/{user_id}/tasks", user=user_id, json={"title": "same"}
        )
        etags.add(etag_of(response))
    assert len(etags) == 3


async def test_a_list_has_no_etag_and_ignores_if_none_match(api, user_id):
    await api.create(user_id, "t")
    response = await api.request(
        "GET", f"/api/{user_id}/tasks", user=user_id, headers={"If-None-Match": "*"}
    )
    assert len(json_of(response, 200)) == 1
    assert "ETag" not in response.headers


# --- If-None-Match on GET


@pytest.mark.parametrize(
    "header",
    ["{etag}", "W/{etag}", '"other", {etag}', ' ,"other" ,  {etag} , ', "*"],
    ids=["exact", "weak", "listed", "list-with-spaces-and-empty-elements", "star"],
)
async def test_get_whose_if_none_match_names_the_current_version_is_304(api, user_id, header):
    task = await api.create(user_id, "t")
    etag = await current_etag(api, user_id, task["id"])
    response = await fetch(api, user_id, task["id"], **{"If-None-Match": header.format(etag=etag)})
    assert response.code == 304
    assert response.body == b""
    assert response.headers["ETag"] == etag
    assert "Content-Type" not in response.headers


@pytest.mark.parametrize(
    "header",
    ['"other"', 'W/"other"', "{bare}", '"unterminated', "{etag} {etag}", ""],
    ids=["other", "weak-other", "unquoted", "unterminated", "no-comma", "empty"],
)
async def test_get_whose_if_none_match_names_another_version_is_200(api, user_id, header):
    task = await api.create(user_id, "t")
    etag = await current_etag(api, user_id, task["id"])
    value = header.format(etag=etag, bare=etag.strip('"'))
    response = await fetch(api, user_id, task["id"], **{"If-None-Match": value})
    assert json_of(response, 200) == task
    assert response.headers["ETag"] == etag


async def test_get_after_a_change_is_200_with_the_new_version(api, user_id):
    task = await api.create(user_id, "t")
    old = await current_etag(api, user_id, task["id"])
    changed = await put(api, user_id, task["id"], {"title": "new"})
    response = await fetch(api, user_id, task["id"], **{"If-None-Match": old})
    assert json_of(response, 200) == json_of(changed, 200)
    assert etag_of(response) == etag_of(changed) != old


async def test_if_none_match_on_a_task_that_does_not_exist_is_404(api, user_id):
    theirs = await api.create(new_user_id(), "not yours")
    for task_id in (theirs["id"], 2**63 - 1):
        problem(await fetch(api, user_id, task_id, **{"If-None-Match": "*"}), 404)


# --- If-Match on PUT, PATCH .../complete and DELETE


@pytest.mark.parametrize(("method", "suffix", "payload", "success"), WRITES, ids=WRITE_IDS)
@pytest.mark.parametrize(
    "header", ["{etag}", '"other", {etag}', "*"], ids=["current", "listed", "star"]
)
async def test_write_whose_if_match_names_the_current_version_succeeds(
    api, user_id, method, suffix, payload, success, header
):
    task = await api.create(user_id, "t")
    etag = await current_etag(api, user_id, task["id"])
    response = await write(
        api, user_id, task["id"], method, suffix, payload, **{"If-Match": header.format(etag=etag)}
    )
    assert response.code == success, response.body
    after = await fetch(api, user_id, task["id"])
    if method == "DELETE":
        problem(after, 404)
    else:
        assert etag_of(response) == etag_of(after) != etag
        assert response.body == after.body


@pytest.mark.parametrize(("method", "suffix", "payload", "success"), WRITES, ids=WRITE_IDS)
@pytest.mark.parametrize(
    "header",
    ["{stale}", "W/{etag}", '"other"', "{bare}", '"unterminated', "{etag} {etag}", "*, {etag}"],
    ids=["stale", "weak", "other", "unquoted", "unterminated", "no-comma", "star-and-tag"],
)
async def test_write_whose_if_match_names_no_current_version_is_412(
    api, user_id, method, suffix, payload, success, header
):
    task = await api.create(user_id, "t")
    stale = await current_etag(api, user_id, task["id"])
    await put(api, user_id, task["id"], {"description": "moved on"})
    before = await fetch(api, user_id, task["id"])
    etag = etag_of(before)
    value = header.format(stale=stale, etag=etag, bare=etag.strip('"'))

    response = await write(api, user_id, task["id"], method, suffix, payload, **{"If-Match": value})
    assert problem(response, 412)["title"] == "Precondition Failed"
    after = await fetch(api, user_id, task["id"])
    assert (after.code, after.body, etag_of(after)) == (200, before.body, etag)


@pytest.mark.parametrize("name", ["If-Match", "If-None-Match"])
async def test_a_long_malformed_precondition_is_answered_at_once(api, user_id, name):
    task = await api.create(user_id, "t")
    # Blanks and commas that a backtracking parser would try to split every possible way.
    value = "  ,  " * 4000 + "x"
    started = time.monotonic()
    if name == "If-Match":
        response = await put(api, user_id, task["id"], {"title": "x"}, **{name: value})
        problem(response, 412)
    else:
        assert json_of(await fetch(api, user_id, task["id"], **{name: value}), 200) == task
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(("method", "suffix", "payload", "success"), WRITES, ids=WRITE_IDS)
@pytest.mark.parametrize("header", ["*", '"whatever"'], ids=["star", "tag"])
async def test_write_with_if_match_to_a_task_that_does_not_exist_is_404(
    api, user_id, method, suffix, payload, success, header
):
    theirs = await api.create(new_user_id(), "not yours")
    deleted = await api.create(user_id, "deleted")
    await api.request("DELETE", f"/api/{user_id}/tasks/{deleted['id']}", user=user_id)
    for task_id in (theirs["id"], deleted["id"], 2**63 - 1):
        response = await write(
            api, user_id, task_id, method, suffix, payload, **{"If-Match": header}
        )
        problem(response, 404)
    assert json_of(await fetch(api, theirs["user_id"], theirs["id"]), 200) == theirs


async def test_delete_with_the_etag_of_a_deleted_task_is_404(api, user_id):
    task = await api.create(user_id, "t")
    etag = await current_etag(api, user_id, task["id"])
    path = f"/api/{user_id}/tasks/{task['id']}"
    assert (await api.request("DELETE", path, user=user_id, headers={"If-Match": etag})).code == 204
    problem(await api.request("DELETE", path, user=user_id, headers={"If-Match": etag}), 404)


@pytest.mark.parametrize(
    ("method", "suffix", "bad_body"),
    [("PUT", "", {"title": ""}), ("PATCH", "/complete", {"is_completed": "yes"})],
    ids=["PUT", "PATCH-complete"],
)
async def test_a_stale_if_match_outranks_a_bad_body(api, user_id, method, suffix, bad_body):
    task = await api.create(user_id, "t")
    stale = await current_etag(api, user_id, task["id"])
    await put(api, user_id, task["id"], {"title": "moved on"})
    etag = await current_etag(api, user_id, task["id"])

    for task_id, if_match, status in [
        (task["id"], stale, 412),
        (task["id"], etag, 422),
        (2**63 - 1, stale, 404),
    ]:
        response = await write(
            api, user_id, task_id, method, suffix, bad_body, **{"If-Match": if_match}
        )
        problem(response, status)
    assert await current_etag(api, user_id, task["id"]) == etag


async def test_a_stale_if_match_does_not_outrank_401_or_403(api, user_id):
    task = await api.create(user_id, "t")
    path = f"/api/{user_id}/tasks/{task['id']}"
    stale = {"If-Match": '"stale"'}
    problem(await api.request("PUT", path, json={"title": "x"}, headers=stale), 401)
    problem(
        await api.request("PUT", path, user=new_user_id(), json={"title": "x"}, headers=stale), 403
    )


async def test_a_refused_write_is_no_change_in_the_feed(api, user_id):
    task = await api.create(user_id, "t")
    since = (await poll(api, user_id))["next"]
    for method, suffix, payload, _ in WRITES:
        stale = {"If-Match": '"stale"'}
        problem(await write(api, user_id, task["id"], method, suffix, payload, **stale), 412)
    feed = await poll(api, user_id, since)
    assert (feed["tasks"], feed["deleted"]) == ([], [])

    etag = await current_etag(api, user_id, task["id"])
    deleted = await write(api, user_id, task["id"], "DELETE", "", None, **{"If-Match": etag})
    assert deleted.code == 204
    feed = await poll(api, user_id, since)
    assert [gone["id"] for gone in feed["deleted"]] == [task["id"]]


# --- Atomicity: the version is checked in the same statement as the write


@pytest.mark.parametrize(
    ("method", "suffix", "payload", "losers"),
    [
        ("PUT", "", {"title": "mine"}, 412),
        ("PATCH", "/complete", None, 412),
        ("PATCH", "/complete", {"is_completed": True}, 412),
        # The winner deleted the task: for the others it does not exist any more.
        ("DELETE", "", None, 404),
    ],
    ids=WRITE_IDS,
)
async def test_concurrent_writes_with_the_same_if_match_let_exactly_one_through(
    api, app, user_id, database_url, method, suffix, payload, losers
):
    task = await api.create(user_id, "contended")
    etag = await current_etag(api, user_id, task["id"])
    responses = await race(
        database_url,
        "SELECT 1 FROM tasks WHERE user_id = %s AND id = %s FOR UPDATE",
        [user_id, task["id"]],
        [
            write(api, user_id, task["id"], method, suffix, payload, **{"If-Match": etag})
            for _ in range(RACERS)
        ],
        batched=lambda: app.settings["writes"].unanswered(user_id),
    )
    codes = sorted(response.code for response in responses)
    winners = [response for response in responses if response.code < 300]
    assert codes == sorted([winners[0].code] + [losers] * (RACERS - 1)), codes
    after = await fetch(api, user_id, task["id"])
    if method == "DELETE":
        problem(after, 404)
        return
    assert (after.body, etag_of(after)) == (winners[0].body, etag_of(winners[0]))
    if method == "PATCH":
        # Toggled (or set) once: no second toggle undid the first.
        assert json_of(after, 200)["is_completed"] is True
