"""The list endpoint's query parameters and keyset pagination (CONTRACT §2)."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
import pytest
from conftest import Api, body, insert_by_hand
from tornado.httpclient import HTTPResponse

SORTS = ["created_at", "-created_at", "updated_at", "-updated_at", "title", "-title"]
LINK = re.compile(r'^<([^>]+)>; rel="next"$')
MAX_PAGES = 100


def page_of(response: HTTPResponse) -> list[dict[str, Any]]:
    assert response.code == 200, response.body
    assert response.headers["Content-Type"] == "application/json"
    tasks: list[dict[str, Any]] = body(response)
    assert isinstance(tasks, list)
    return tasks


def ids(tasks: list[dict[str, Any]]) -> list[int]:
    return [task["id"] for task in tasks]


def next_link(response: HTTPResponse) -> str | None:
    """The path and query of the `rel="next"` link, or None on the last page."""
    link = response.headers.get("Link")
    if link is None:
        return None
    match = LINK.match(link)
    assert match, link
    target = urlsplit(match.group(1))
    return f"{target.path}?{target.query}"


def cursor_of(link: str) -> str:
    (cursor,) = parse_qs(urlsplit(link).query)["cursor"]
    return cursor


async def listing(api: Api, user: int, **params: Any) -> HTTPResponse:
    query = urlencode(params)
    return await api.request("GET", f"/api/{user}/tasks?{query}", user=user)


async def walk(api: Api, user: int, path: str) -> list[list[dict[str, Any]]]:
    """Every page from `path` on, following `Link: rel="next"` until there is none."""
    pages = []
    next_path: str | None = path
    for _ in range(MAX_PAGES):
        assert next_path is not None
        response = await api.request("GET", next_path, user=user)
        pages.append(page_of(response))
        next_path = next_link(response)
        if next_path is None:
            return pages
        assert next_path.startswith(f"/api/{user}/tasks?")
    raise AssertionError(f"more than {MAX_PAGES} pages")


def unprocessable_query(response: HTTPResponse, name: str) -> None:
    assert response.code == 422, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = body(response)
    assert set(problem) == {"type", "title", "status", "detail", "errors"}
    assert problem["status"] == 422
    assert problem["errors"][0]["loc"] == ["query", name]
    assert set(problem["errors"][0]) == {"loc", "msg", "type"}


async def toggle(api: Api, user: int, task: dict[str, Any]) -> dict[str, Any]:
    response = await api.request("PATCH", f"/api/{user}/tasks/{task['id']}/complete", user=user)
    assert response.code == 200, response.body
    toggled: dict[str, Any] = body(response)
    return toggled


async def touch(api: Api, user: int, task: dict[str, Any]) -> None:
    response = await api.request(
        "PUT", f"/api/{user}/tasks/{task['id']}", user=user, json={"description": "touched"}
    )
    assert response.code == 200, response.body


async def insert_at_one_moment(pool: Any, user: int, count: int) -> None:
    """`count` tasks with the same title, created_at and updated_at: ties only ids can break."""
    async with pool.connection() as conn:
        await conn.execute(
            insert_by_hand("SELECT 'same', now(), now() FROM generate_series(1, %(count)s)"),
            {"user": user, "count": count},
        )


# --- completed


async def test_completed_true_lists_only_completed_tasks(api, user_id):
    tasks = [await api.create(user_id, f"task {n}") for n in range(4)]
    done = [await toggle(api, user_id, tasks[1]), await toggle(api, user_id, tasks[3])]
    assert page_of(await listing(api, user_id, completed="true")) == done[::-1]


async def test_completed_false_lists_only_open_tasks(api, user_id):
    tasks = [await api.create(user_id, f"task {n}") for n in range(4)]
    await toggle(api, user_id, tasks[1])
    await toggle(api, user_id, tasks[3])
    assert page_of(await listing(api, user_id, completed="false")) == [tasks[2], tasks[0]]


# --- q


async def test_q_matches_title_or_description_case_insensitively(api, user_id):
    in_title = await api.create(user_id, "Buy MILK")
    in_description = await api.create(user_id, "Errands", description="the Milkman comes")
    await api.create(user_id, "Walk the dog", description="mil k")
    for q in ("milk", "MILK", "mIlK"):
        tasks = page_of(await listing(api, user_id, q=q))
        assert tasks == [in_description, in_title], q


async def test_q_percent_is_literal(api, user_id):
    percent = await api.create(user_id, "100%")
    await api.create(user_id, "100 percent")
    await api.create(user_id, "1000")
    assert page_of(await listing(api, user_id, q="%")) == [percent]
    assert page_of(await listing(api, user_id, q="0%")) == [percent]


async def test_q_underscore_is_literal(api, user_id):
    underscore = await api.create(user_id, "a_b")
    await api.create(user_id, "ab")
    await api.create(user_id, "axb")
    assert page_of(await listing(api, user_id, q="_")) == [underscore]
    assert page_of(await listing(api, user_id, q="a_b")) == [underscore]


async def test_q_backslash_is_literal(api, user_id):
    backslash = await api.create(user_id, "back\\slash")
    await api.create(user_id, "backslash")
    assert page_of(await listing(api, user_id, q="\\")) == [backslash]
    assert page_of(await listing(api, user_id, q="k\\s")) == [backslash]


async def test_q_that_matches_nothing_is_an_empty_array(api, user_id):
    await api.create(user_id, "something")
    response = await listing(api, user_id, q="nothing like it")
    assert page_of(response) == []
    assert "Link" not in response.headers


async def test_q_combines_with_completed(api, user_id):
    open_match = await api.create(user_id, "report draft")
    done_match = await toggle(api, user_id, await api.create(user_id, "report final"))
    await toggle(api, user_id, await api.create(user_id, "other"))
    assert page_of(await listing(api, user_id, q="REPORT", completed="true")) == [done_match]
    assert page_of(await listing(api, user_id, q="report", completed="false")) == [open_match]


# --- sort


async def test_default_sort_is_newest_created_first(api, user_id):
    tasks = [await api.create(user_id, title) for title in ("b", "c", "a")]
    await touch(api, user_id, tasks[0])
    assert ids(page_of(await listing(api, user_id))) == ids(tasks[::-1])


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("created_at", ["c", "a1", "b", "a2"]),
        ("-created_at", ["a2", "b", "a1", "c"]),
        ("updated_at", ["a1", "a2", "c", "b"]),
        ("-updated_at", ["b", "c", "a2", "a1"]),
        ("title", ["a1", "a2", "b", "c"]),
        ("-title", ["c", "b", "a2", "a1"]),
    ],
)
async def test_sort_orders_the_list(api, user_id, sort, order):
    # Created in the order c, a1, b, a2; then c and b are updated, so every sort differs.
    tasks = {}
    for name in ("c", "a1", "b", "a2"):
        tasks[name] = await api.create(user_id, name[0])
    await touch(api, user_id, tasks["c"])
    await touch(api, user_id, tasks["b"])
    listed = page_of(await listing(api, user_id, sort=sort))
    assert ids(listed) == [tasks[name]["id"] for name in order]


@pytest.mark.parametrize("sort", SORTS)
async def test_ties_are_broken_by_id_across_pages(api, user_id, pool, sort):
    await insert_at_one_moment(pool, user_id, 5)
    pages = await walk(api, user_id, f"/api/{user_id}/tasks?sort={sort}&limit=2")
    walked = [task_id for page in pages for task_id in ids(page)]
    ascending = sorted(walked)
    assert len(set(walked)) == 5
    assert walked == (ascending[::-1] if sort.startswith("-") else ascending)


# --- limit


async def test_limit_caps_the_page(api, user_id):
    tasks = [await api.create(user_id, f"task {n}") for n in range(3)]
    assert page_of(await listing(api, user_id, limit=1)) == [tasks[2]]
    assert page_of(await listing(api, user_id, limit=2)) == [tasks[2], tasks[1]]


async def test_limit_defaults_to_1000(api, user_id, pool):
    async with pool.connection() as conn:
        await conn.execute(
            insert_by_hand(
                "SELECT 'bulk ' || n, now() - n * interval '1 second', now()"
                " FROM generate_series(1, 1001) AS n"
            ),
            {"user": user_id},
        )
    first = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
    assert [task["title"] for task in page_of(first)] == [f"bulk {n}" for n in range(1, 1001)]
    link = next_link(first)
    assert link is not None
    last = await api.request("GET", link, user=user_id)
    assert [task["title"] for task in page_of(last)] == ["bulk 1001"]
    assert "Link" not in last.headers
    assert len(page_of(await listing(api, user_id, limit=1000))) == 1000


# --- invalid values


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("completed", "yes"),
        ("completed", "1"),
        ("completed", "TRUE"),
        ("completed", ""),
        ("sort", "id"),
        ("sort", "CREATED_AT"),
        ("sort", "--title"),
        ("sort", "title,id"),
        ("sort", "-"),
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "-1"),
        ("limit", "+5"),
        ("limit", "abc"),
        ("limit", "1.5"),
        ("limit", "1e3"),
        ("limit", " 5"),
        ("limit", "\u0665"),  # ARABIC-INDIC DIGIT FIVE: a digit, but not 0-9
        ("limit", "99999999999999999999"),
        ("limit", ""),
        ("cursor", "garbage"),
        ("cursor", "!!!!"),
        ("cursor", "é"),
    ],
)
async def test_invalid_parameter_is_422_naming_it(api, user_id, name, value):
    await api.create(user_id, "t")
    unprocessable_query(await listing(api, user_id, **{name: value}), name)


def forged(*parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        base64.urlsafe_b64encode(b"not json").decode(),
        forged(),
        forged("-created_at", "2026-01-01T00:00:00+00:00"),
        forged("-created_at", "not a time", 1),
        forged("-created_at", "2026-01-01T00:00:00", 1),
        forged("-created_at", "2026-01-01T00:00:00+00:00", 0),
        forged("-created_at", "2026-01-01T00:00:00+00:00", -1),
        forged("-created_at", "2026-01-01T00:00:00+00:00", 2**63),
        forged("-created_at", "2026-01-01T00:00:00+00:00", 1.5),
        forged("-created_at", "2026-01-01T00:00:00+00:00", "1"),
        forged("-created_at", 1767225600, 1),
        forged("-created_at", None, 1),
        forged("-created_at", "2026-01-01T00:00:00+00:00", 1, "extra"),
        base64.urlsafe_b64encode(b'{"sort": "-created_at"}').decode(),
    ],
)
async def test_forged_cursor_is_422_naming_cursor(api, user_id, cursor):
    await api.create(user_id, "t")
    unprocessable_query(await listing(api, user_id, cursor=cursor), "cursor")


@pytest.mark.parametrize(("issued_for", "used_with"), [("title", "-title"), ("created_at", None)])
async def test_cursor_from_another_sort_is_422_naming_cursor(api, user_id, issued_for, used_with):
    for n in range(3):
        await api.create(user_id, f"task {n}")
    link = next_link(await listing(api, user_id, sort=issued_for, limit=1))
    assert link is not None
    params = {"cursor": cursor_of(link)}
    if used_with is not None:
        params["sort"] = used_with
    unprocessable_query(await listing(api, user_id, **params), "cursor")


# --- keyset pagination


async def make_mixed_tasks(api: Api, user: int) -> list[dict[str, Any]]:
    """Seven tasks with repeated titles, some completed, some matching only by description."""
    specs = [
        ("apple pie", "", True),
        ("Banana", "", False),
        ("cherry", "with APPLE sauce", False),
        ("apple pie", "", False),
        ("date", "", True),
        ("Apple juice", "", True),
        ("elder", "", False),
    ]
    tasks = []
    for title, description, completed in specs:
        task = await api.create(user, title, description=description)
        tasks.append(await toggle(api, user, task) if completed else task)
    await touch(api, user, tasks[0])
    await touch(api, user, tasks[4])
    return tasks


FILTERS: list[dict[str, str]] = [
    {},
    {"completed": "true"},
    {"completed": "false"},
    {"q": "apple"},
    {"completed": "false", "q": "APPLE"},
]


def matches(task: dict[str, Any], filters: dict[str, str]) -> bool:
    if "completed" in filters and task["is_completed"] != (filters["completed"] == "true"):
        return False
    text = (task["title"] + "\n" + task["description"]).lower()
    return filters.get("q", "").lower() in text


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: urlencode(f) or "no-filter")
@pytest.mark.parametrize("sort", SORTS)
async def test_pages_hold_every_task_exactly_once_in_order(api, user_id, sort, filters):
    tasks = await make_mixed_tasks(api, user_id)
    whole = ids(page_of(await listing(api, user_id, sort=sort, **filters)))
    assert sorted(whole) == sorted(task["id"] for task in tasks if matches(task, filters))
    query = urlencode({"sort": sort, "limit": 2, **filters})
    pages = await walk(api, user_id, f"/api/{user_id}/tasks?{query}")
    assert [len(page) for page in pages[:-1]] == [2] * (len(pages) - 1)
    assert 1 <= len(pages[-1]) <= 2
    assert [task_id for page in pages for task_id in ids(page)] == whole


@pytest.mark.parametrize(("count", "limit", "pages"), [(4, 2, 2), (4, 4, 1), (4, 3, 2), (1, 1, 1)])
async def test_no_link_on_the_last_page(api, user_id, count, limit, pages):
    for n in range(count):
        await api.create(user_id, f"task {n}")
    walked = await walk(api, user_id, f"/api/{user_id}/tasks?limit={limit}")
    assert len(walked) == pages
    assert sum(len(page) for page in walked) == count


async def test_link_header_has_rel_next_and_a_cursor(api, user_id):
    for n in range(3):
        await api.create(user_id, f"task {n}")
    response = await listing(api, user_id, limit=1, q="task", completed="false")
    assert LINK.match(response.headers["Link"])
    link = next_link(response)
    assert link is not None
    assert cursor_of(link)


async def page_while_inserting(
    api: Api, user: int, sort: str
) -> tuple[list[int], list[int], list[int]]:
    """Five tasks walked two at a time with a new task created after each page but the last.

    Returns the ids of the unpaged list before any insert, of the walk, and of the new tasks.
    """
    for title in ("m1", "m2", "m3", "m4", "m5"):
        await api.create(user, title)
    before = ids(page_of(await listing(api, user, sort=sort)))
    new_titles = iter(["a-new", "z-new", "n-new"])
    inserted: list[int] = []
    walked: list[int] = []
    path: str | None = f"/api/{user}/tasks?sort={sort}&limit=2"
    for _ in range(MAX_PAGES):
        assert path is not None
        response = await api.request("GET", path, user=user)
        walked += ids(page_of(response))
        path = next_link(response)
        if path is None:
            return before, walked, inserted
        if len(inserted) < 3:
            inserted.append((await api.create(user, next(new_titles)))["id"])
    raise AssertionError(f"more than {MAX_PAGES} pages")


async def test_newest_first_paging_is_stable_under_concurrent_inserts(api, user_id):
    before, walked, inserted = await page_while_inserting(api, user_id, "-created_at")
    assert len(inserted) == 2
    assert walked == before


async def test_oldest_first_paging_is_stable_under_concurrent_inserts(api, user_id):
    before, walked, inserted = await page_while_inserting(api, user_id, "created_at")
    assert len(inserted) == 3
    assert walked == before + inserted


async def test_title_paging_is_stable_under_concurrent_inserts(api, user_id):
    before, walked, inserted = await page_while_inserting(api, user_id, "title")
    assert len(walked) == len(set(walked))
    assert [task_id for task_id in walked if task_id not in inserted] == before
