"""Idempotency-Key on POST (CONTRACT §8): a retried create returns the original task and 201
instead of creating a second one, also when the two requests race; another body is a 422."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from concurrency import race
from conftest import Api, body, make_token, new_user_id
from test_changes import poll
from test_tasks_api import json_of, list_tasks, unprocessable
from tornado.httpclient import HTTPResponse
from tornado.httputil import HTTPHeaders

from taskd.config import Settings

KEY = "Idempotency-Key"
RACERS = 8


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A connection for every racer, so all of them can wait at the database at once.
    return settings.replace(pool_max=RACERS + 2)


async def post(api: Api, user: int, payload: Any, key: str | None = None) -> HTTPResponse:
    headers = {} if key is None else {KEY: key}
    return await api.request("POST", f"/api/{user}/tasks", user=user, json=payload, headers=headers)


def created(response: HTTPResponse) -> tuple[dict[str, Any], str, str]:
    """The task a 201 carries, with its Location and ETag."""
    task = json_of(response, 201)
    return task, response.headers["Location"], response.headers["ETag"]


def assert_header_refused(response: HTTPResponse) -> None:
    errors = unprocessable(response)
    assert errors[0]["loc"] == ["header", KEY]


async def stored_keys(database_url: str, user: int) -> list[str]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT key FROM idempotency_keys WHERE user_id = %s ORDER BY key", [user]
        )
        return [key for (key,) in await cursor.fetchall()]


async def age_keys(database_url: str, user: int, age: str) -> None:
    """Make every key of `user` look first used `age` ago (a PostgreSQL interval)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE idempotency_keys SET created_at = now() - %s::interval WHERE user_id = %s",
            [age, user],
        )


# --- Retries


async def test_a_retry_with_the_same_key_and_body_returns_the_original_201(api, user_id):
    first = created(await post(api, user_id, {"title": "once", "description": "d"}, "k-1"))
    again = await post(api, user_id, {"title": "once", "description": "d"}, "k-1")
    assert created(again) == first
    assert await list_tasks(api, user_id) == [first[0]]


async def test_a_body_that_asks_for_the_same_task_is_the_same_request(api, user_id):
    first = created(await post(api, user_id, {"title": "milk"}, "k-1"))
    again = await post(api, user_id, {"title": "  milk \n", "description": ""}, "k-1")
    assert created(again) == first
    assert await list_tasks(api, user_id) == [first[0]]


@pytest.mark.parametrize(
    "other",
    [{"title": "else"}, {"title": "once", "description": "d"}, {"title": "Once"}],
    ids=["title", "description", "title-case"],
)
async def test_the_same_key_with_another_body_is_422_naming_the_header(api, user_id, other):
    first = created(await post(api, user_id, {"title": "once"}, "k-1"))
    assert_header_refused(await post(api, user_id, other, "k-1"))
    assert await list_tasks(api, user_id) == [first[0]]
    assert created(await post(api, user_id, {"title": "once"}, "k-1")) == first


async def test_a_retry_returns_the_original_answer_even_after_a_change_or_delete(api, user_id):
    first = created(await post(api, user_id, {"title": "original"}, "k-1"))
    path = first[1]
    changed = await api.request("PUT", path, user=user_id, json={"title": "changed"})
    assert json_of(changed, 200)["title"] == "changed"
    assert created(await post(api, user_id, {"title": "original"}, "k-1")) == first

    assert (await api.request("DELETE", path, user=user_id)).code == 204
    assert created(await post(api, user_id, {"title": "original"}, "k-1")) == first
    assert await list_tasks(api, user_id) == []


async def test_a_replayed_create_is_no_change_in_the_feed(api, user_id):
    first = created(await post(api, user_id, {"title": "once"}, "k-1"))
    since = (await poll(api, user_id))["next"]
    assert created(await post(api, user_id, {"title": "once"}, "k-1")) == first
    feed = await poll(api, user_id, since)
    assert (feed["tasks"], feed["deleted"]) == ([], [])


async def test_keys_are_per_user(api, user_id):
    other = new_user_id()
    mine = created(await post(api, user_id, {"title": "same"}, "shared"))
    theirs = created(await post(api, other, {"title": "same"}, "shared"))
    assert mine[0]["id"] != theirs[0]["id"]
    assert (mine[0]["user_id"], theirs[0]["user_id"]) == (user_id, other)
    assert created(await post(api, other, {"title": "same"}, "shared")) == theirs
    assert_header_refused(await post(api, other, {"title": "different"}, "shared"))


async def test_different_keys_and_no_key_each_create_a_task(api, user_id):
    ids = {
        created(await post(api, user_id, {"title": "same"}, key))[0]["id"]
        for key in ["a", "b", None, None]
    }
    assert len(ids) == 4
    assert len(await list_tasks(api, user_id)) == 4


async def test_a_refused_body_does_not_use_up_the_key(api, user_id):
    unprocessable(await post(api, user_id, {"title": ""}, "k-1"))
    first = created(await post(api, user_id, {"title": "valid"}, "k-1"))
    assert created(await post(api, user_id, {"title": "valid"}, "k-1")) == first
    assert await list_tasks(api, user_id) == [first[0]]


# --- The header


@pytest.mark.parametrize(
    "key",
    ["x", "k" * 255, "".join(chr(code) for code in range(0x21, 0x7F)), "3f2a-uuid-like,with;marks"],
    ids=["one-character", "255-characters", "every-visible-character", "punctuation"],
)
async def test_a_key_of_1_to_255_visible_ascii_characters_is_accepted(api, user_id, key):
    first = created(await post(api, user_id, {"title": "t"}, key))
    assert created(await post(api, user_id, {"title": "t"}, key)) == first


# (A control character never gets this far: Tornado answers 400 to a header that holds one.)
@pytest.mark.parametrize(
    "key",
    ["", "k" * 256, "two words", "tab\there", "caf\xe9"],
    ids=["empty", "256-characters", "space", "tab", "latin-1"],
)
async def test_a_bad_key_is_422_naming_the_header_and_creates_nothing(api, user_id, key):
    assert_header_refused(await post(api, user_id, {"title": "t"}, key))
    assert await list_tasks(api, user_id) == []


async def test_two_keys_in_one_request_are_422(api, user_id):
    headers = HTTPHeaders(
        {"Authorization": f"Bearer {make_token(user_id)}", "Content-Type": "application/json"}
    )
    headers.add(KEY, "a")
    headers.add(KEY, "b")
    response = await api.client.fetch(
        f"/api/{user_id}/tasks",
        method="POST",
        body=b'{"title": "t"}',
        headers=headers,
        raise_error=False,
    )
    assert_header_refused(response)
    assert await list_tasks(api, user_id) == []


# --- Races


async def racing_posts(
    api: Api, user: int, database_url: str, payloads: list[Any]
) -> tuple[dict[str, Any], list[HTTPResponse]]:
    """POSTs of `payloads`, all with one key, that reach the database together: the user's row
    stays locked until all of them wait for it (each insert refers to it). Returns the task made
    first to provision the user, and the responses."""
    earlier = await api.create(user, "provisions the user")
    responses = await race(
        database_url,
        "SELECT 1 FROM users WHERE id = %s FOR UPDATE",
        [user],
        [post(api, user, payload, "k-race") for payload in payloads],
    )
    return earlier, responses


async def test_concurrent_identical_posts_create_one_task_and_all_get_it(
    api, user_id, database_url
):
    earlier, responses = await racing_posts(
        api, user_id, database_url, [{"title": "raced"}] * RACERS
    )
    answers = [created(response) for response in responses]
    assert all(answer == answers[0] for answer in answers)
    assert await list_tasks(api, user_id) == [answers[0][0], earlier]


async def test_concurrent_posts_with_one_key_and_different_bodies_create_one_task(
    api, user_id, database_url
):
    earlier, responses = await racing_posts(
        api, user_id, database_url, [{"title": f"body {n}"} for n in range(RACERS)]
    )
    winners = [response for response in responses if response.code == 201]
    assert len(winners) == 1, [response.code for response in responses]
    for response in responses:
        if response is not winners[0]:
            assert_header_refused(response)
    assert await list_tasks(api, user_id) == [body(winners[0]), earlier]


# --- How long keys count


async def test_a_key_still_counts_just_before_24_hours(api, user_id, database_url):
    first = created(await post(api, user_id, {"title": "t"}, "k-1"))
    await age_keys(database_url, user_id, "23 hours 59 minutes")
    assert created(await post(api, user_id, {"title": "t"}, "k-1")) == first
    assert_header_refused(await post(api, user_id, {"title": "other"}, "k-1"))


async def test_an_expired_key_no_longer_dedupes(api, user_id, database_url):
    first = created(await post(api, user_id, {"title": "t"}, "k-1"))
    await age_keys(database_url, user_id, "24 hours 1 minute")
    second = created(await post(api, user_id, {"title": "t"}, "k-1"))
    assert second[0]["id"] != first[0]["id"]
    # The key now names the second task, for another 24 hours.
    assert created(await post(api, user_id, {"title": "t"}, "k-1")) == second

    await age_keys(database_url, user_id, "25 hours")
    third = created(await post(api, user_id, {"title": "another body"}, "k-1"))
    assert third[0]["id"] not in {first[0]["id"], second[0]["id"]}
    assert len(await list_tasks(api, user_id)) == 3


async def test_expired_keys_are_deleted_by_later_posts_with_a_key(api, user_id, database_url):
    for n in range(3):
        await post(api, user_id, {"title": "t"}, f"old-{n}")
    await age_keys(database_url, user_id, "25 hours")
    await post(api, user_id, {"title": "t"}, "fresh")
    assert await stored_keys(database_url, user_id) == ["fresh"]


async def test_expired_keys_are_deleted_in_bounded_batches(api, user_id, database_url):
    await api.create(user_id, "provisions the user")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO idempotency_keys (user_id, key, fingerprint, created_at)"
            " SELECT %s, 'old-' || n, '', now() - interval '2 days'"
            " FROM generate_series(1, 150) AS n",
            [user_id],
        )
    await post(api, user_id, {"title": "t"}, "fresh-1")
    assert len(await stored_keys(database_url, user_id)) == 150 - 100 + 1
    await post(api, user_id, {"title": "t"}, "fresh-2")
    assert await stored_keys(database_url, user_id) == ["fresh-1", "fresh-2"]


async def test_another_users_expired_keys_are_left_to_them(api, user_id, database_url):
    other = new_user_id()
    await post(api, other, {"title": "t"}, "theirs")
    await age_keys(database_url, other, "25 hours")
    await post(api, user_id, {"title": "t"}, "mine")
    assert await stored_keys(database_url, other) == ["theirs"]
