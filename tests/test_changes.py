"""The change feed, GET /api/{user_id}/tasks/changes (CONTRACT §8)."""

from __future__ import annotations

import asyncio
import base64
import random
import re
import time
from typing import Any

import orjson
import psycopg
import pytest
from conftest import body, connect, new_user_id

from taskd.changes import FeedToken
from taskd.db import tasks as db

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def poll(api, user, since=None, limit=None) -> dict[str, Any]:
    params = []
    if since is not None:
        params.append(f"since={since}")
    if limit is not None:
        params.append(f"limit={limit}")
    query = "?" + "&".join(params) if params else ""
    response = await api.request("GET", f"/api/{user}/tasks/changes{query}", user=user)
    assert response.code == 200, response.body
    assert response.headers["Content-Type"] == "application/json"
    feed = body(response)
    assert set(feed) == {"tasks", "deleted", "next", "has_more"}
    return feed


async def drain(api, user, since=None, limit=None) -> tuple[list[dict], list[dict], str]:
    """Every page until has_more is false: (tasks, deleted, next token)."""
    tasks: list[dict] = []
    deleted: list[dict] = []
    while True:
        feed = await poll(api, user, since, limit)
        tasks += feed["tasks"]
        deleted += feed["deleted"]
        since = feed["next"]
        if not feed["has_more"]:
            return tasks, deleted, since


async def all_tasks(api, user) -> dict[int, dict]:
    response = await api.request("GET", f"/api/{user}/tasks", user=user)
    return {task["id"]: task for task in body(response)}


async def test_a_new_user_starts_with_an_empty_feed(api, user_id):
    feed = await poll(api, user_id)
    assert feed["tasks"] == []
    assert feed["deleted"] == []
    assert feed["has_more"] is False
    assert isinstance(feed["next"], str) and feed["next"]


async def test_without_since_the_feed_starts_from_the_beginning(api, user_id):
    first = await api.create(user_id, "first")
    second = await api.create(user_id, "second")
    feed = await poll(api, user_id)
    assert feed["tasks"] == [first, second]
    assert feed["deleted"] == []


async def test_polling_with_next_when_nothing_changed_returns_nothing(api, user_id):
    await api.create(user_id, "t")
    feed = await poll(api, user_id)
    again = await poll(api, user_id, feed["next"])
    assert again["tasks"] == [] and again["deleted"] == [] and again["has_more"] is False
    once_more = await poll(api, user_id, again["next"])
    assert once_more["tasks"] == [] and once_more["deleted"] == []


async def test_updates_toggles_and_creates_since_the_token_are_reported(api, user_id):
    kept = await api.create(user_id, "kept")
    edited = await api.create(user_id, "edited")
    toggled = await api.create(user_id, "toggled")
    since = (await poll(api, user_id))["next"]
    put = await api.request(
        "PUT", f"/api/{user_id}/tasks/{edited['id']}", user=user_id, json={"title": "new"}
    )
    patch = await api.request(
        "PATCH", f"/api/{user_id}/tasks/{toggled['id']}/complete", user=user_id
    )
    created = await api.create(user_id, "created")
    feed = await poll(api, user_id, since)
    assert feed["tasks"] == [body(put), body(patch), created]
    assert kept["id"] not in {task["id"] for task in feed["tasks"]}


async def test_deletions_since_the_token_are_reported_with_their_time(api, user_id):
    task = await api.create(user_id, "doomed")
    since = (await poll(api, user_id))["next"]
    before = time.time()
    response = await api.request("DELETE", f"/api/{user_id}/tasks/{task['id']}", user=user_id)
    assert response.code == 204
    feed = await poll(api, user_id, since)
    assert feed["tasks"] == []
    assert [entry["id"] for entry in feed["deleted"]] == [task["id"]]
    assert set(feed["deleted"][0]) == {"id", "deleted_at"}
    assert TIMESTAMP.match(feed["deleted"][0]["deleted_at"])
    assert feed["deleted"][0]["deleted_at"] >= time.strftime("%Y-%m-%dT%H:%M", time.gmtime(before))


async def test_a_feed_from_the_beginning_leaves_out_deletions(api, user_id):
    gone = await api.create(user_id, "gone")
    await api.request("DELETE", f"/api/{user_id}/tasks/{gone['id']}", user=user_id)
    kept = await api.create(user_id, "kept")
    feed = await poll(api, user_id)
    assert feed["tasks"] == [kept]
    assert feed["deleted"] == []


async def test_a_task_created_then_deleted_since_the_token_is_reported_deleted(api, user_id):
    since = (await poll(api, user_id))["next"]
    task = await api.create(user_id, "brief")
    await api.request("DELETE", f"/api/{user_id}/tasks/{task['id']}", user=user_id)
    feed = await poll(api, user_id, since)
    assert feed["tasks"] == []
    assert [entry["id"] for entry in feed["deleted"]] == [task["id"]]


async def test_limit_pages_the_feed_and_every_change_comes_exactly_once(api, user_id):
    created = [await api.create(user_id, f"t{n}") for n in range(7)]
    pages = []
    since = None
    while True:
        feed = await poll(api, user_id, since, limit=3)
        pages.append(feed)
        since = feed["next"]
        if not feed["has_more"]:
            break
    assert [len(page["tasks"]) for page in pages] == [3, 3, 1]
    assert [task for page in pages for task in page["tasks"]] == created
    after = await poll(api, user_id, since)
    assert after["tasks"] == [] and after["deleted"] == []


async def test_changes_made_while_paging_come_in_the_next_poll(api, user_id):
    created = [await api.create(user_id, f"t{n}") for n in range(4)]
    first = await poll(api, user_id, limit=2)
    assert first["has_more"] is True
    edited = await api.request(
        "PUT", f"/api/{user_id}/tasks/{created[0]['id']}", user=user_id, json={"title": "e"}
    )
    newcomer = await api.create(user_id, "newcomer")
    await api.request("DELETE", f"/api/{user_id}/tasks/{created[3]['id']}", user=user_id)
    rest, deleted, since = await drain(api, user_id, first["next"], limit=2)
    seen = {task["id"] for task in first["tasks"] + rest}
    assert seen <= {task["id"] for task in created}
    later, later_deleted, _ = await drain(api, user_id, since)
    assert body(edited) in later and newcomer in later
    assert created[3]["id"] in {entry["id"] for entry in deleted + later_deleted}


async def test_a_write_that_commits_late_is_reported_and_nothing_overtakes_it(
    api, user_id, database_url
):
    """The gap a sequence-based feed has: a number taken early, committed after a later one.
    Here the late transaction holds the user's next version until it commits: a poll meanwhile
    reports nothing and does not move past it, and the write behind it takes the version after
    it, so both are reported in the order they committed."""
    await api.create(user_id, "provision the user")
    since = (await poll(api, user_id))["next"]
    async with await psycopg.AsyncConnection.connect(database_url) as slow:
        late = await db.create_task(slow, user_id=user_id, title="late", description="")
        behind = asyncio.ensure_future(api.create(user_id, "behind"))
        await asyncio.sleep(0.2)
        assert not behind.done()
        feed = await poll(api, user_id, since)
        assert feed["tasks"] == [] and feed["has_more"] is False
        await slow.commit()
    behind_id = (await behind)["id"]
    feed = await poll(api, user_id, feed["next"])
    assert [task["id"] for task in feed["tasks"]] == [late.id, behind_id]
    assert (await poll(api, user_id, feed["next"]))["tasks"] == []


async def test_a_late_update_and_a_late_delete_are_still_reported(api, user_id, database_url):
    edited = await api.create(user_id, "edited late")
    deleted = await api.create(user_id, "deleted late")
    since = (await poll(api, user_id))["next"]
    async with await psycopg.AsyncConnection.connect(database_url) as slow:
        await db.update_task(slow, user_id=user_id, task_id=edited["id"], title="late edit")
        await db.delete_task(slow, user_id=user_id, task_id=deleted["id"])
        feed = await poll(api, user_id, since)
        assert feed["tasks"] == [] and feed["deleted"] == []
        await slow.commit()
    feed = await poll(api, user_id, feed["next"])
    assert [(task["id"], task["title"]) for task in feed["tasks"]] == [(edited["id"], "late edit")]
    assert [entry["id"] for entry in feed["deleted"]] == [deleted["id"]]


async def test_concurrent_writes_of_one_user_take_consecutive_versions(api, user_id, database_url):
    """Gap-free: however many writers race, each change takes the next version, once."""
    await api.create(user_id, "first")
    created = await asyncio.gather(*(api.create(user_id, f"racer {n}") for n in range(20)))
    async with await connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT version FROM tasks WHERE user_id = %s ORDER BY version", [user_id]
        )
        versions = [row[0] for row in await cursor.fetchall()]
        cursor = await conn.execute("SELECT version FROM users WHERE id = %s", [user_id])
        (user_version,) = await cursor.fetchone()
    assert versions == list(range(1, 22)) and user_version == 21
    assert {task["id"] for task in created} <= set(await all_tasks(api, user_id))


async def test_a_polling_reader_converges_exactly_under_concurrent_writers(
    api, user_id, database_url
):
    """Writers through the API and through slow transactions that commit out of order, a
    reader polling all the while: the reader's copy ends equal to the database's."""
    rng = random.Random(8725)
    mirror: dict[int, dict] = {}
    stop = asyncio.Event()

    def apply(feed: dict) -> None:
        for task in feed["tasks"]:
            mirror[task["id"]] = task
        for entry in feed["deleted"]:
            mirror.pop(entry["id"], None)

    async def api_writer() -> None:
        for _ in range(40):
            mine = list(await all_tasks(api, user_id))
            action = rng.choice(["create", "create", "update", "toggle", "delete"])
            if action == "create" or not mine:
                await api.create(user_id, f"w{rng.random()}")
            elif action == "update":
                path = f"/api/{user_id}/tasks/{rng.choice(mine)}"
                await api.request("PUT", path, user=user_id, json={"title": f"u{rng.random()}"})
            elif action == "toggle":
                path = f"/api/{user_id}/tasks/{rng.choice(mine)}/complete"
                await api.request("PATCH", path, user=user_id)
            else:
                path = f"/api/{user_id}/tasks/{rng.choice(mine)}"
                await api.request("DELETE", path, user=user_id)

    async def slow_writer() -> None:
        for n in range(6):
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                await db.create_task(conn, user_id=user_id, title=f"slow{n}", description="")
                await asyncio.sleep(rng.uniform(0.01, 0.08))
                await conn.commit()

    async def reader() -> str:
        since = None
        while not stop.is_set():
            feed = await poll(api, user_id, since, limit=rng.choice([3, 10, 1000]))
            apply(feed)
            since = feed["next"]
            await asyncio.sleep(0.005)
        return since

    await api.create(user_id, "seed")
    reading = asyncio.ensure_future(reader())
    await asyncio.gather(api_writer(), api_writer(), slow_writer(), slow_writer())
    stop.set()
    since = await reading
    while True:
        feed = await poll(api, user_id, since)
        apply(feed)
        since = feed["next"]
        if not feed["has_more"]:
            break
    assert mirror == await all_tasks(api, user_id)
    assert len(mirror) > 0


async def test_the_feed_shows_only_the_users_own_changes(api, user_id):
    other = new_user_id()
    await api.create(other, "theirs")
    since = (await poll(api, user_id))["next"]
    await api.create(other, "theirs too")
    assert (await poll(api, user_id))["tasks"] == []
    assert (await poll(api, user_id, since))["tasks"] == []


def raw_token(fields: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(fields)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "since",
    [
        "garbage",
        "!!!",
        "W10",  # [] in base64
        raw_token({"v": 2, "after": [3, None], "at": 0, "upto": [2, 0]}),  # upto before after
        raw_token({"v": 2, "after": [3, None], "at": 0, "upto": [4]}),
        raw_token({"v": 2, "after": [3, None], "at": 0, "upto": 4}),
        raw_token({"v": 2, "after": [3, None], "at": 0, "upto": [4, -1]}),
        raw_token({"v": 2, "after": [-1, None], "at": 0, "upto": None}),
        raw_token({"v": 2, "after": [2**63, None], "at": 0, "upto": None}),
        raw_token({"v": 2, "after": ["1", None], "at": 0, "upto": None}),
        raw_token({"v": 2, "after": [1.5, None], "at": 0, "upto": None}),
        raw_token({"v": 2, "after": [True, None], "at": 0, "upto": None}),
        raw_token({"v": 2, "after": [1, -1], "at": 0, "upto": None}),
        raw_token({"v": 2, "after": [1, 2**63], "at": 0, "upto": None}),
        raw_token({"v": 2, "after": [1, "2"], "at": 0, "upto": None}),
        raw_token({"v": 2, "after": [1], "at": 0, "upto": None}),
        raw_token({"v": 2, "after": 1, "at": 0, "upto": None}),
        raw_token({"v": 2, "after": [1, None], "at": -1, "upto": None}),
        raw_token({"v": 2, "after": [1, None], "at": 2**53, "upto": None}),
        raw_token({"v": 3, "after": [1, None], "at": 0, "upto": None}),
        raw_token({"v": 2, "after": [1, None], "upto": None}),
        raw_token({"v": 2, "after": [1, None], "at": 0, "upto": None, "more": 1}),
        raw_token([1, 2, 3]),
        raw_token("string"),
        "A" * 2000,
    ],
)
async def test_a_since_that_is_not_a_feed_token_is_422_naming_since(api, user_id, since):
    response = await api.request("GET", f"/api/{user_id}/tasks/changes?since={since}", user=user_id)
    assert response.code == 422, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    assert body(response)["errors"][0]["loc"] == ["query", "since"]


@pytest.mark.parametrize("limit", ["0", "1001", "x", "-1"])
async def test_a_bad_limit_is_422_naming_limit(api, user_id, limit):
    response = await api.request("GET", f"/api/{user_id}/tasks/changes?limit={limit}", user=user_id)
    assert response.code == 422
    assert body(response)["errors"][0]["loc"] == ["query", "limit"]


async def test_a_token_older_than_the_tombstone_retention_is_410(api, user_id):
    day = 24 * 3600
    stale = FeedToken(after=3, after_id=None, at=int(time.time()) - 31 * day).encode()
    response = await api.request("GET", f"/api/{user_id}/tasks/changes?since={stale}", user=user_id)
    assert response.code == 410, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    assert body(response)["status"] == 410
    await api.create(user_id, "three")
    await api.create(user_id, "versions")
    await api.create(user_id, "deep")
    aging = FeedToken(after=3, after_id=None, at=int(time.time()) - 29 * day).encode()
    assert (await poll(api, user_id, aging))["has_more"] is False


# The tokens of taskd before per-user versions: [snapshot, time, snapshot, time, [xid, id]].
TRANSACTION_ID_TOKENS = [
    raw_token(["1:1:", 1764000000, None, 0, ["0", 0]]),
    raw_token(["742:748:745", int(time.time()), "750:750:", int(time.time()), ["746", 12]]),
]


@pytest.mark.parametrize("since", TRANSACTION_ID_TOKENS, ids=["beginning", "mid-run"])
async def test_a_token_from_before_per_user_versions_is_410(api, user_id, since):
    await api.create(user_id, "t")
    response = await api.request("GET", f"/api/{user_id}/tasks/changes?since={since}", user=user_id)
    assert response.code == 410, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "start again without since" in body(response)["detail"]


async def test_a_token_ahead_of_the_database_is_410(api, user_id):
    """A database restored from an older copy (or a failover that lost writes) does not have
    the changes the token has seen: the client must start again, not miss what comes next."""
    await api.create(user_id, "one")
    ahead = FeedToken(after=5, after_id=None, at=int(time.time())).encode()
    response = await api.request("GET", f"/api/{user_id}/tasks/changes?since={ahead}", user=user_id)
    assert response.code == 410, response.body
    assert "start again without since" in body(response)["detail"]


async def test_tombstones_past_retention_are_forgotten(api, user_id, database_url):
    old = await api.create(user_id, "old")
    await api.request("DELETE", f"/api/{user_id}/tasks/{old['id']}", user=user_id)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE task_tombstones SET deleted_at = now() - interval '31 days' WHERE user_id = %s",
            [user_id],
        )
        recent = await api.create(user_id, "recent")
        await api.request("DELETE", f"/api/{user_id}/tasks/{recent['id']}", user=user_id)
        cursor = await conn.execute(
            "SELECT id FROM task_tombstones WHERE user_id = %s ORDER BY id", [user_id]
        )
        assert [row[0] for row in await cursor.fetchall()] == [recent["id"]]


async def test_the_feed_needs_the_users_own_token(api, user_id):
    path = f"/api/{user_id}/tasks/changes"
    assert (await api.request("GET", path)).code == 401
    assert (await api.request("GET", path, user=new_user_id())).code == 403
    wrong_method = await api.request("DELETE", path, user=user_id)
    assert wrong_method.code == 405
    assert wrong_method.headers["Allow"] == "GET, OPTIONS"
