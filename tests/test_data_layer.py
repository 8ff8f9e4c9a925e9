"""The data layer on its own (CONTRACT §4, STYLE rules 3-4, 7): user-bound functions and
queries, the query loader's rules, and the migrations against a real PostgreSQL."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from conftest import connect, insert_by_hand, new_user_id, process_stat

from taskd import migrate
from taskd.db import idempotency, tasks, users
from taskd.db.queries import QueryLoadError, load_queries, parse_queries

# Every migration the package ships, in the order they apply.
MIGRATIONS = sorted(
    path.name.removesuffix(".sql")
    for path in migrate.MIGRATIONS_DIR.glob("*.sql")
    if not path.name.endswith(".rollback.sql")
)
# RFC 9110 §8.8.3: a strong entity-tag is a quoted string of visible characters other than DQUOTE.
STRONG_ETAG = re.compile(r'"[\x21\x23-\x7e]+"')


async def user_rows(conn: psycopg.AsyncConnection[Any], user: int) -> list[tuple[Any, ...]]:
    cursor = await conn.execute("SELECT id FROM users WHERE id = %s", [user])
    return await cursor.fetchall()


# The data functions


async def test_create_task_provisions_its_user_and_returns_the_task(database_url, user_id):
    async with await connect(database_url) as conn:
        created = await tasks.create_task(
            conn, user_id=user_id, title="write tests", description="all of them"
        )
        task = orjson.loads(created.json)
        assert task == {
            "id": created.id,
            "title": "write tests",
            "description": "all of them",
            "is_completed": False,
            "created_at": task["created_at"],
            "updated_at": task["created_at"],
            "user_id": user_id,
        }
        assert STRONG_ETAG.fullmatch(created.etag), created.etag
        assert await user_rows(conn, user_id) == [(user_id,)]


async def test_a_writes_statements_commit_together_or_not_at_all(database_url, user_id):
    """A create takes the user's next version, then inserts: when the insert fails (here on the
    table's CHECK of a blank title), the version stays untaken, as if nothing was sent."""
    async with await connect(database_url) as conn:
        await tasks.create_task(conn, user_id=user_id, title="first", description="")
        with pytest.raises(psycopg.errors.CheckViolation):
            await tasks.create_task(conn, user_id=user_id, title="", description="")
        cursor = await conn.execute("SELECT version FROM users WHERE id = %s", [user_id])
        assert await cursor.fetchone() == (1,)
        second = await tasks.create_task(conn, user_id=user_id, title="second", description="")
    assert second.version == 2


async def test_get_task_sees_only_its_users_task(database_url, user_id):
    other = new_user_id()
    async with await connect(database_url) as conn:
        created = await tasks.create_task(conn, user_id=user_id, title="mine", description="")
        assert await tasks.get_task(conn, user_id=user_id, task_id=created.id) == created
        assert await tasks.get_task(conn, user_id=other, task_id=created.id) is None
        assert await tasks.get_task(conn, user_id=user_id, task_id=created.id + 10**12) is None


async def test_task_exists_only_for_its_user(database_url, user_id):
    async with await connect(database_url) as conn:
        created = await tasks.create_task(conn, user_id=user_id, title="mine", description="")
        assert await tasks.task_exists(conn, user_id=user_id, task_id=created.id) is True
        assert await tasks.task_exists(conn, user_id=new_user_id(), task_id=created.id) is False


async def test_update_task_changes_the_given_fields_of_its_users_task_only(database_url, user_id):
    async with await connect(database_url) as conn:
        created = await tasks.create_task(conn, user_id=user_id, title="before", description="kept")
        task_id = created.id

        assert (
            await tasks.update_task(conn, user_id=new_user_id(), task_id=task_id, title="stolen")
            is None
        )
        assert await tasks.get_task(conn, user_id=user_id, task_id=task_id) == created

        updated = await tasks.update_task(
            conn, user_id=user_id, task_id=task_id, title="after", is_completed=True
        )
        assert updated is not None
        before, after = orjson.loads(created.json), orjson.loads(updated.json)
        assert after == {
            **before,
            "title": "after",
            "is_completed": True,
            "updated_at": after["updated_at"],
        }
        assert after["updated_at"] > before["updated_at"]
        assert updated.etag != created.etag
        assert await tasks.get_task(conn, user_id=user_id, task_id=task_id) == updated


async def test_toggle_task_flips_its_users_task_only(database_url, user_id):
    async with await connect(database_url) as conn:
        created = await tasks.create_task(conn, user_id=user_id, title="toggle", description="")
        assert await tasks.toggle_task(conn, user_id=new_user_id(), task_id=created.id) is None
        assert await tasks.get_task(conn, user_id=user_id, task_id=created.id) == created

        toggled = await tasks.toggle_task(conn, user_id=user_id, task_id=created.id)
        assert toggled is not None
        assert orjson.loads(toggled.json)["is_completed"] is True
        toggled = await tasks.toggle_task(conn, user_id=user_id, task_id=created.id)
        assert toggled is not None
        assert orjson.loads(toggled.json)["is_completed"] is False


async def test_delete_task_deletes_its_users_task_only(database_url, user_id):
    async with await connect(database_url) as conn:
        created = await tasks.create_task(conn, user_id=user_id, title="doomed", description="")
        assert await tasks.delete_task(conn, user_id=new_user_id(), task_id=created.id) is None
        assert await tasks.get_task(conn, user_id=user_id, task_id=created.id) == created

        deleted_at = await tasks.delete_task(conn, user_id=user_id, task_id=created.id)
        assert created.version is not None and deleted_at == created.version + 1
        assert await tasks.get_task(conn, user_id=user_id, task_id=created.id) is None
        assert await tasks.delete_task(conn, user_id=user_id, task_id=created.id) is None


async def test_every_change_gives_the_task_a_new_etag(database_url, user_id):
    async with await connect(database_url) as conn:
        created = await tasks.create_task(conn, user_id=user_id, title="t", description="")
        versions = [created]
        for _ in range(3):
            changed = await tasks.update_task(
                conn, user_id=user_id, task_id=created.id, title="t", is_completed=False
            )
            assert changed is not None
            versions.append(changed)
        toggled = await tasks.toggle_task(conn, user_id=user_id, task_id=created.id)
        assert toggled is not None
        versions.append(toggled)
        assert len({version.etag for version in versions}) == len(versions)
        other = await tasks.create_task(conn, user_id=user_id, title="t", description="")
        assert other.etag not in {version.etag for version in versions}


async def test_writes_happen_only_when_the_etag_is_one_if_match_names(database_url, user_id):
    async with await connect(database_url) as conn:
        created = await tasks.create_task(conn, user_id=user_id, title="t", description="")
        task_id = created.id
        stale = ['"not-a-version"', 'W/"also-not"']

        assert (
            await tasks.update_task(
                conn, user_id=user_id, task_id=task_id, if_match=stale, title="x"
            )
            is None
        )
        assert await tasks.toggle_task(conn, user_id=user_id, task_id=task_id, if_match=[]) is None
        assert (
            await tasks.delete_task(conn, user_id=user_id, task_id=task_id, if_match=stale) is None
        )
        assert await tasks.get_task(conn, user_id=user_id, task_id=task_id) == created

        updated = await tasks.update_task(
            conn, user_id=user_id, task_id=task_id, if_match=[*stale, created.etag], title="x"
        )
        assert updated is not None
        toggled = await tasks.toggle_task(
            conn, user_id=user_id, task_id=task_id, if_match=[created.etag]
        )
        assert toggled is None
        toggled = await tasks.toggle_task(
            conn, user_id=user_id, task_id=task_id, if_match=[updated.etag]
        )
        assert toggled is not None
        assert (
            await tasks.delete_task(conn, user_id=user_id, task_id=task_id, if_match=[updated.etag])
            is None
        )
        assert (
            await tasks.delete_task(conn, user_id=user_id, task_id=task_id, if_match=[toggled.etag])
            is not None
        )


async def test_if_match_of_another_users_task_matches_nothing(database_url, user_id):
    async with await connect(database_url) as conn:
        theirs = await tasks.create_task(conn, user_id=user_id, title="t", description="")
        intruder = new_user_id()
        assert (
            await tasks.update_task(
                conn, user_id=intruder, task_id=theirs.id, if_match=[theirs.etag], title="x"
            )
            is None
        )
        assert (
            await tasks.delete_task(
                conn, user_id=intruder, task_id=theirs.id, if_match=[theirs.etag]
            )
            is None
        )
        assert await tasks.get_task(conn, user_id=user_id, task_id=theirs.id) == theirs


async def test_list_tasks_returns_its_users_tasks_only(database_url, user_id):
    other = new_user_id()
    async with await connect(database_url) as conn:
        mine = [
            (await tasks.create_task(conn, user_id=user_id, title=f"mine {n}", description="")).id
            for n in range(3)
        ]
        for n in range(2):
            await tasks.create_task(conn, user_id=other, title=f"theirs {n}", description="")

        page = await tasks.list_tasks(conn, user_id=user_id, limit=1000)
        listed = orjson.loads(page.json)
        assert [task["id"] for task in listed] == mine[::-1]
        assert {task["user_id"] for task in listed} == {user_id}
        assert page.next_after is None

        first = await tasks.list_tasks(conn, user_id=user_id, sort="title", limit=2)
        assert [task["id"] for task in orjson.loads(first.json)] == mine[:2]
        assert first.next_after is not None
        rest = await tasks.list_tasks(
            conn, user_id=user_id, sort="title", after=first.next_after, limit=2
        )
        assert [task["id"] for task in orjson.loads(rest.json)] == mine[2:]
        assert rest.next_after is None

        nobody = await tasks.list_tasks(conn, user_id=new_user_id(), limit=1000)
        assert nobody.json == b"[]"
        assert nobody.next_after is None


async def prepared_plans(pool: Any, settings: Any, user_id: Any) -> list[tuple[str, int, int]]:
    """(statement, generic plans, custom plans) of the prepared task queries on one connection
    of `pool`, after lists and gets of a task of `user_id` well past the prepare threshold."""
    async with pool.connection() as conn:
        created = await tasks.create_task(conn, user_id=user_id, title="planned", description="")
        for _ in range(settings.prepare_threshold + 5):
            await tasks.list_tasks(conn, user_id=user_id, limit=1000)
            await tasks.get_task(conn, user_id=user_id, task_id=created.id)
        cursor = await conn.execute(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE '%%FROM tasks%%'"
        )
        return await cursor.fetchall()


@pytest.mark.direct_postgres(
    "PgBouncer's sessions refuse the prepared statements whose plans this test reads"
)
@pytest.mark.not_on_citus("Citus plans distributed queries from their parameters' values")
async def test_the_pools_prepared_queries_keep_one_generic_plan(pool, settings, user_id):
    """PostgreSQL's own choice (plan_cache_mode = auto) plans taskd's list query afresh on every
    run, as its custom plans look cheaper; the pool's connections plan it once."""
    plans = await prepared_plans(pool, settings, user_id)
    assert len(plans) >= 2, plans
    for statement, generic_plans, custom_plans in plans:
        assert (generic_plans > 0, custom_plans) == (True, 0), statement


@pytest.mark.citus_only("the pool's plan_cache_mode on a Citus coordinator")
async def test_on_citus_the_pools_queries_are_planned_with_their_values(pool, settings, user_id):
    """Under a generic plan Citus could not plan the list ("could not create distributed plan"):
    on its coordinator the pool leaves plan_cache_mode as it was, and PostgreSQL plans the list
    with its values."""
    plans = await prepared_plans(pool, settings, user_id)
    lists = [plan for plan in plans if "string_agg" in plan[0]]
    assert lists, plans
    for statement, _generic_plans, custom_plans in lists:
        assert custom_plans > 0, statement


@pytest.mark.direct_postgres("PgBouncer may run each statement in another server process")
@pytest.mark.not_on_citus(
    "a worker node's process builds a page, and the pool configures only the coordinator's"
)
async def test_a_pool_connections_server_process_keeps_a_1000_task_pages_memory(pool, user_id):
    """glibc's malloc gives the free top of a heap back to the kernel beyond a threshold that
    starts low, and a backend faulted a 1000-task page's 3 MB back in on every list (689 page
    faults a list here, before). The pool's connections raise the threshold when they connect."""
    titles = "SELECT 'a task of a long list ' || repeat('x', 300), now(), now()"
    async with pool.connection() as conn:
        await conn.execute(
            insert_by_hand(f"{titles} FROM generate_series(1, 1000)"), {"user": user_id}
        )
        backend = conn.info.backend_pid
        cmdline = Path(f"/proc/{backend}/cmdline")
        if not cmdline.exists() or b"postgres" not in cmdline.read_bytes():
            pytest.skip("the test's PostgreSQL server runs on another machine")
        await tasks.list_tasks(conn, user_id=user_id, limit=1000)
        before = int(process_stat(backend)[7])
        for _ in range(5):
            page = await tasks.list_tasks(conn, user_id=user_id, limit=1000)
        faults_per_list = (int(process_stat(backend)[7]) - before) / 5
    assert len(page.json) > 400_000
    assert faults_per_list < 50


async def test_provision_user_is_idempotent(database_url, user_id):
    async with await connect(database_url) as conn:
        assert await user_rows(conn, user_id) == []
        await users.provision_user(conn, user_id=user_id)
        await users.provision_user(conn, user_id=user_id)
        assert await user_rows(conn, user_id) == [(user_id,)]


async def test_create_task_once_creates_one_task_per_key_and_user(database_url, user_id):
    async with await connect(database_url) as conn:

        async def create(user: int, fingerprint: bytes) -> tasks.RenderedTask | None:
            return await idempotency.create_task_once(
                conn, user_id=user, key="k", fingerprint=fingerprint, title="t", description=""
            )

        first = await create(user_id, b"body")
        assert first is not None
        assert await user_rows(conn, user_id) == [(user_id,)]
        assert await create(user_id, b"body") == first
        assert await create(user_id, b"another body") is None
        theirs = await create(new_user_id(), b"body")
        assert theirs is not None and theirs.id != first.id
        page = await tasks.list_tasks(conn, user_id=user_id, limit=10)
        assert orjson.loads(page.json) == [orjson.loads(first.json)]


def _public_data_functions() -> list[Callable[..., Any]]:
    return [
        function
        for module in (tasks, users, idempotency)
        for name, function in vars(module).items()
        if not name.startswith("_")
        and (inspect.iscoroutinefunction(function) or name.endswith("_write"))
        and function.__module__ == module.__name__
    ]


def test_every_data_function_takes_user_id_as_a_required_keyword():
    functions = _public_data_functions()
    assert {function.__name__ for function in functions} >= {
        "create_task",
        "get_task",
        "update_task",
        "toggle_task",
        "delete_task",
        "task_exists",
        "list_tasks",
        "provision_user",
        "create_task_once",
        "create_write",
        "update_write",
        "toggle_write",
        "delete_write",
        "run_write",
        "run_writes",
    }
    for function in functions:
        parameter = inspect.signature(function).parameters.get("user_id")
        assert parameter is not None, function.__name__
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, function.__name__
        assert parameter.default is inspect.Parameter.empty, function.__name__


@pytest.mark.parametrize(
    "call",
    [
        lambda conn: tasks.create_task(conn, title="t", description=""),
        lambda conn: tasks.get_task(conn, task_id=1),
        lambda conn: tasks.update_task(conn, task_id=1, title="t"),
        lambda conn: tasks.toggle_task(conn, task_id=1),
        lambda conn: tasks.delete_task(conn, task_id=1),
        lambda conn: tasks.task_exists(conn, task_id=1),
        lambda conn: tasks.list_tasks(conn, limit=10),
        lambda conn: users.provision_user(conn),
        lambda conn: idempotency.create_task_once(
            conn, key="k", fingerprint=b"", title="t", description=""
        ),
        lambda conn: tasks.get_task(conn, 1, task_id=1),
        lambda conn: users.provision_user(conn, 1),
    ],
    ids=[
        "create_task",
        "get_task",
        "update_task",
        "toggle_task",
        "delete_task",
        "task_exists",
        "list_tasks",
        "provision_user",
        "create_task_once",
        "get_task positional",
        "provision_user positional",
    ],
)
def test_calling_a_data_function_without_the_user_id_keyword_raises_type_error(call):
    with pytest.raises(TypeError, match=r"user_id|positional"):
        call(None)


# The query loader


def test_a_query_that_does_not_bind_user_id_is_refused_naming_it():
    text = """
-- name: get_task
SELECT * FROM tasks WHERE user_id = %(user_id)s AND id = %(task_id)s;

-- name: leaky_lookup
-- Mentions user_id but does not bind it.
SELECT * FROM tasks WHERE id = %(task_id)s AND user_id IS NOT NULL;
"""
    with pytest.raises(QueryLoadError, match="leaky_lookup"):
        parse_queries(text)


@pytest.mark.parametrize(
    "where",
    [
        "WHERE id = %(task_id)s -- AND user_id = %(user_id)s",
        "WHERE id = %(task_id)s /* AND user_id = %(user_id)s */",
    ],
)
def test_a_user_id_named_only_in_a_comment_does_not_count(where):
    text = f"-- name: commented_out\nSELECT title FROM tasks {where};\n"
    with pytest.raises(QueryLoadError, match="commented_out"):
        parse_queries(text)


def test_fragments_are_substituted_into_queries():
    text = """
-- fragment: columns
id, title

-- name: get_task
SELECT {columns} FROM tasks WHERE user_id = %(user_id)s AND id = %(task_id)s;
"""
    queries = parse_queries(text)
    assert list(queries) == ["get_task"]
    query = queries["get_task"]
    assert (
        query.sql == "SELECT id, title FROM tasks WHERE user_id = %(user_id)s AND id = %(task_id)s"
    )
    assert query.params == {"user_id", "task_id"}


def test_user_id_bound_through_a_fragment_counts():
    text = """
-- fragment: mine
user_id = %(user_id)s

-- name: count_tasks
SELECT count(*) FROM tasks WHERE {mine};
"""
    assert parse_queries(text)["count_tasks"].params == {"user_id"}


def test_a_fragment_includes_the_fragments_above_it():
    text = """
-- fragment: version
updated_at

-- fragment: current
%(version)s = {version}

-- name: touch_task
UPDATE tasks SET title = title WHERE user_id = %(user_id)s AND {current};
"""
    query = parse_queries(text)["touch_task"]
    assert query.sql == (
        "UPDATE tasks SET title = title WHERE user_id = %(user_id)s AND %(version)s = updated_at"
    )
    assert query.params == {"user_id", "version"}


@pytest.mark.parametrize("kind", ["name", "fragment"])
def test_a_name_defined_twice_is_refused(kind):
    text = f"""
-- {kind}: twice
SELECT 1 FROM tasks WHERE user_id = %(user_id)s;

-- {kind}: twice
SELECT 2 FROM tasks WHERE user_id = %(user_id)s;
"""
    with pytest.raises(QueryLoadError, match="twice"):
        parse_queries(text)


@pytest.mark.parametrize("kind", ["name", "fragment"])
def test_an_empty_block_is_refused(kind):
    text = f"""
-- {kind}: hollow
-- only a comment, and a lone semicolon
;

-- name: get_task
SELECT 1 FROM tasks WHERE user_id = %(user_id)s;
"""
    with pytest.raises(QueryLoadError, match="hollow"):
        parse_queries(text)


def test_binding_a_query_requires_user_id():
    query = parse_queries("-- name: q\nSELECT 1 WHERE %(user_id)s > 0;")["q"]
    assert query.bind(user_id=7, task_id=3) == {"user_id": 7, "task_id": 3}
    with pytest.raises(TypeError):
        query.bind(task_id=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        (
            "tasks.sql",
            {
                "take_next_version",
                "insert_task",
                "get_task",
                "task_exists",
                "update_task",
                "toggle_task",
                "take_version_for_delete",
                "insert_tombstone",
                "delete_task",
                "list_tasks",
                "tasks_changed_since",
                "task_changes",
            },
        ),
        ("users.sql", {"provision_user"}),
        (
            "idempotency_keys.sql",
            {
                "forget_expired_idempotency_keys",
                "claim_idempotency_key",
                "record_idempotent_task",
                "get_idempotency_key",
            },
        ),
    ],
)
def test_every_shipped_query_binds_user_id(filename, expected):
    queries = load_queries(filename)
    assert set(queries) >= expected
    for name, query in queries.items():
        assert "%(user_id)s" in query.sql, name
        assert "user_id" in query.params, name


# Migrations


def _table_names(conn: psycopg.Connection[Any]) -> set[str]:
    """The tables and views in public, less those of an extension (Citus puts views there)."""
    rows = conn.execute(
        "SELECT relname FROM pg_class AS c"
        " WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v')"
        " AND NOT EXISTS (SELECT FROM pg_depend"
        "     WHERE classid = 'pg_class'::regclass AND objid = c.oid AND deptype = 'e')"
    ).fetchall()
    return {name for (name,) in rows if "yoyo" not in name}


def _columns(conn: psycopg.Connection[Any], table: str) -> dict[str, tuple[Any, ...]]:
    rows = conn.execute(
        """
        SELECT column_name, data_type, character_maximum_length, is_nullable, column_default,
               is_identity
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = %s
        """,
        [table],
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def _constraints(conn: psycopg.Connection[Any], table: str, kind: str) -> list[str]:
    rows = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = %s",
        [table, kind],
    ).fetchall()
    return [definition for (definition,) in rows]


def _indexes(conn: psycopg.Connection[Any], table: str) -> list[tuple[bool, list[str]]]:
    """(unique, columns in order) of every index on `table`."""
    rows = conn.execute(
        """
        SELECT i.indisunique,
               array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                     ORDER BY k.n)
        FROM pg_index i WHERE i.indrelid = %s::regclass
        """,
        [table],
    ).fetchall()
    return [(unique, list(columns)) for unique, columns in rows]


def test_pending_lists_every_migration_on_a_fresh_database(create_database):
    url = create_database()
    assert migrate.pending(url) == MIGRATIONS
    assert migrate.apply(url) == MIGRATIONS
    assert migrate.pending(url) == []
    assert migrate.apply(url) == []


def test_migrations_create_the_contract_schema(create_database):
    url = create_database()
    migrate.apply(url)
    with psycopg.connect(url, autocommit=True) as conn:
        tables = _table_names(conn)
        assert {"users", "tasks"} <= tables
        for table in tables - {"users"}:  # ready to distribute by user_id (CONTRACT §4)
            assert _constraints(conn, table, "p")[0].startswith("PRIMARY KEY (user_id, "), table
        users_columns = _columns(conn, "users")
        assert users_columns["id"][:3] == ("bigint", None, "NO")
        assert users_columns["created_at"][0] == "timestamp with time zone"
        assert _constraints(conn, "users", "p") == ["PRIMARY KEY (id)"]

        columns = _columns(conn, "tasks")
        assert set(columns) >= {
            "id",
            "user_id",
            "title",
            "description",
            "is_completed",
            "created_at",
            "updated_at",
        }
        assert columns["id"][0] == "bigint"
        assert columns["id"][4] == "YES"
        assert columns["user_id"][:3] == ("bigint", None, "NO")
        assert columns["title"][:3] == ("character varying", 500, "NO")
        assert columns["description"][:4] == (
            "character varying",
            5000,
            "NO",
            "''::character varying",
        )
        assert columns["is_completed"][:4] == ("boolean", None, "NO", "false")
        for name in ("created_at", "updated_at"):
            assert columns[name][:3] == ("timestamp with time zone", None, "NO"), name

        assert _constraints(conn, "tasks", "p") == ["PRIMARY KEY (user_id, id)"]
        assert _constraints(conn, "tasks", "f") == [
            "FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE"
        ]
        indexes = _indexes(conn, "tasks")
        assert any(columns[:2] == ["user_id", "created_at"] for _, columns in indexes), indexes
        # Distributable by user_id: every unique index on tasks includes it.
        assert all("user_id" in columns for unique, columns in indexes if unique), indexes


def test_idempotency_keys_are_keyed_by_user_first(create_database):
    url = create_database()
    migrate.apply(url)
    with psycopg.connect(url, autocommit=True) as conn:
        columns = _columns(conn, "idempotency_keys")
        assert set(columns) == {
            "user_id",
            "key",
            "fingerprint",
            "task_id",
            "task_etag",
            "task_json",
            "created_at",
        }
        assert columns["key"][:3] == ("character varying", 255, "NO")
        assert columns["created_at"][:3] == ("timestamp with time zone", None, "NO")
        assert _constraints(conn, "idempotency_keys", "p") == ["PRIMARY KEY (user_id, key)"]
        assert _constraints(conn, "idempotency_keys", "f") == [
            "FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE"
        ]
        indexes = _indexes(conn, "idempotency_keys")
        assert (False, ["user_id", "created_at"]) in indexes, indexes
        assert all(columns[0] == "user_id" for _, columns in indexes), indexes


def test_deleting_a_user_deletes_their_tasks(create_database):
    url = create_database()
    migrate.apply(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (id) VALUES (1), (2)")
        conn.execute(
            "INSERT INTO tasks (user_id, title, version)"
            " VALUES (1, 'a', 1), (1, 'b', 2), (2, 'c', 1)"
        )
        conn.execute("DELETE FROM users WHERE id = 1")
        rows = conn.execute("SELECT user_id, title FROM tasks ORDER BY title").fetchall()
        assert rows == [(2, "c")]


def test_rolling_back_every_migration_leaves_no_tables_and_apply_works_again(create_database):
    url = create_database()
    migrate.apply(url)
    for applied in reversed(range(len(MIGRATIONS))):
        assert migrate.rollback(url) == MIGRATIONS[applied]
        assert migrate.pending(url) == MIGRATIONS[applied:]
    assert migrate.rollback(url) is None
    with psycopg.connect(url, autocommit=True) as conn:
        assert _table_names(conn) == set()

    assert migrate.apply(url) == MIGRATIONS
    with psycopg.connect(url, autocommit=True) as conn:
        assert {"users", "tasks"} <= _table_names(conn)
        assert _constraints(conn, "tasks", "p") == ["PRIMARY KEY (user_id, id)"]
