"""CONTRACT §3: a deployment of text user ids (Better Auth's default), chosen when its database is
first migrated and recorded there, and checked against the configuration at every start.

The API tests here run on a database of this module's own, migrated for text ids, whatever the
run's kind (TASKD_TEST_USER_IDS); the whole API suite runs on text ids too in CI (.ci/run).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import psycopg
import pytest
from conftest import SECRET, body, make_token, new_text_user_id, through_pgbouncer
from live import request, taskd

from taskd import migrate, openapi
from taskd.app import make_app
from taskd.config import ConfigError, Settings
from taskd.user_ids import INTEGER, TEXT

# Mixed case and digits, as Better Auth's generateId() makes them (its README's example).
BETTER_AUTH_ID = "CBDEuKvEi65EO42sDlNYT4slTxq7hCtQ"
TEXT_REFUSAL = "The token's sub must be 1 to 64 ASCII letters and digits."


@pytest.fixture(scope="module")
def text_database_url(create_database: Any) -> str:
    url: str = create_database()
    migrate.apply(url, TEXT)
    return url


@pytest.fixture
def database_url(text_database_url: str) -> str:
    return through_pgbouncer(text_database_url)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(user_ids=TEXT)


@pytest.fixture
def user_id() -> str:
    return new_text_user_id()


def column_types(database_url: str) -> dict[str, str]:
    """Every column that holds a user id, by table.column, with its type."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public'"
            "   AND (column_name = 'user_id' OR (table_name = 'users' AND column_name = 'id'))"
        ).fetchall()
    return dict(rows)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# --- the API with text ids -------------------------------------------------------------------


async def test_every_body_names_the_user_as_a_json_string(api, user_id):
    tasks = f"/api/{user_id}/tasks"
    created = await api.request(
        "POST", tasks, user=user_id, json={"title": "t"}, headers={"Idempotency-Key": "k"}
    )
    assert created.code == 201, created.body
    task = body(created)
    assert task["user_id"] == user_id
    assert f'"user_id":"{user_id}"'.encode() in created.body
    assert created.headers["Location"] == f"{tasks}/{task['id']}"
    item = created.headers["Location"]

    retried = await api.request(
        "POST", tasks, user=user_id, json={"title": "t"}, headers={"Idempotency-Key": "k"}
    )
    assert (retried.code, body(retried)) == (201, task)
    assert body(await api.request("GET", item, user=user_id)) == task
    assert body(await api.request("GET", tasks, user=user_id)) == [task]
    updated = body(await api.request("PUT", item, user=user_id, json={"title": "u"}))
    assert (updated["title"], updated["user_id"]) == ("u", user_id)
    completed = body(await api.request("PATCH", f"{item}/complete", user=user_id))
    assert (completed["is_completed"], completed["user_id"]) == (True, user_id)
    feed = body(await api.request("GET", f"{tasks}/changes", user=user_id))
    assert feed["tasks"] == [completed]

    deleted = await api.request("DELETE", item, user=user_id)
    assert deleted.code == 204
    changes = body(await api.request("GET", f"{tasks}/changes?since={feed['next']}", user=user_id))
    assert [gone["id"] for gone in changes["deleted"]] == [task["id"]]


@pytest.mark.parametrize(
    "sub", [BETTER_AUTH_ID, "a", "7", "Z" * 64, "0123456789abcdefghijklmnopqrstuvwxyzABCDEF"]
)
async def test_a_sub_of_letters_and_digits_is_a_user(api, sub):
    response = await api.request("GET", f"/api/{sub}/tasks", token=make_token(sub))
    assert (response.code, body(response)) == (200, [])


@pytest.mark.parametrize(
    "sub",
    [
        "",
        "a" * 65,
        "abc-def",
        "abc_def",
        "abc.def",
        "abc def",
        " abc",
        "abc\n",
        "ab/c",
        "ab%2Fc",
        "\u00e9t\u00e9",
        "\uff21",  # a fullwidth letter
        "\u0667",  # an Arabic-Indic digit
    ],
)
async def test_a_sub_outside_the_alphabet_or_the_length_is_401(api, sub):
    response = await api.request("GET", "/api/abc/tasks", token=make_token(sub))
    assert response.code == 401
    assert body(response)["detail"] == TEXT_REFUSAL
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="taskd"')


@pytest.mark.parametrize("sub", [42, ["abc"], {"id": "abc"}])
async def test_a_sub_that_is_no_json_string_is_401(api, sub):
    # PyJWT refuses it first ("The token is invalid."), whatever the deployment's ids.
    response = await api.request("GET", "/api/42/tasks", token=make_token("42", sub=sub))
    assert response.code == 401


@pytest.mark.parametrize(
    "url_user",
    [
        BETTER_AUTH_ID.lower(),
        BETTER_AUTH_ID.upper(),
        BETTER_AUTH_ID + "0",
        BETTER_AUTH_ID[:-1],
        "0" + BETTER_AUTH_ID,
        f"{BETTER_AUTH_ID}%20",
        "abc-def",
        "a" * 65,
    ],
)
async def test_a_url_user_is_the_exact_string_of_the_sub_else_403(api, url_user):
    token = make_token(BETTER_AUTH_ID)
    response = await api.request("GET", f"/api/{url_user}/tasks", token=token)
    assert response.code == 403
    response = await api.request("GET", f"/api/{BETTER_AUTH_ID}/tasks", token=token)
    assert response.code == 200


async def test_another_text_users_tasks_are_403_and_their_ids_404(api, user_id):
    other = new_text_user_id()
    theirs = await api.create(other, "theirs")
    response = await api.request("GET", f"/api/{other}/tasks/{theirs['id']}", user=user_id)
    assert response.code == 403
    response = await api.request("GET", f"/api/{user_id}/tasks/{theirs['id']}", user=user_id)
    assert response.code == 404


# --- the served document ---------------------------------------------------------------------


def user_id_schemas(document: dict[str, Any]) -> list[Any]:
    """The schema of every user_id the document describes: each path's parameter and
    Task.user_id."""
    schemas = [document["components"]["schemas"]["Task"]["properties"]["user_id"]]
    for item in document["paths"].values():
        for operation in item.values():
            schemas += [p["schema"] for p in operation["parameters"] if p.get("name") == "user_id"]
    return schemas


async def test_the_served_document_types_user_ids_as_strings(api):
    document = body(await api.request("GET", "/openapi.json"))
    schemas = user_id_schemas(document)
    assert len(schemas) > 1
    assert all(
        schema
        == {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9]{1,64}$"}
        for schema in schemas
    )


def test_an_integer_deployments_document_types_user_ids_as_int64(settings, pool):
    app = make_app(settings.replace(user_ids=INTEGER), pool)
    schemas = user_id_schemas(orjson.loads(app.settings["openapi"]))
    assert len(schemas) > 1
    assert all(schema == openapi.ID_SCHEMA for schema in schemas)


# --- the record in the database ----------------------------------------------------------------


def test_every_user_id_column_of_a_text_database_is_text(text_database_url):
    types = column_types(text_database_url)
    assert {
        "users.id",
        "tasks.user_id",
        "task_tombstones.user_id",
        "idempotency_keys.user_id",
    } <= set(types)
    assert set(types.values()) == {"text"}


def test_the_database_itself_refuses_a_user_id_outside_the_grammar(text_database_url):
    with psycopg.connect(text_database_url) as conn:
        for bad in ("abc-def", "", "a" * 65, "\u00e9"):
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute("INSERT INTO users (id) VALUES (%s)", [bad])
            conn.rollback()


def test_a_database_migrated_by_default_has_integer_ids(create_database):
    url = create_database()
    migrate.apply(url)
    assert set(column_types(url).values()) == {"bigint"}


def test_the_choice_is_checked_before_any_later_migration(create_database):
    url = create_database()
    migrate.apply(url, TEXT)
    migrate.check_user_ids(url, TEXT)
    with pytest.raises(ConfigError, match=r"^TASKD_USER_IDS: the database records text user ids"):
        migrate.check_user_ids(url, INTEGER)
    with pytest.raises(ConfigError, match=r"^TASKD_USER_IDS: the database records text user ids"):
        migrate.apply(url, INTEGER)


def test_choosing_text_ids_keeps_the_urls_own_options(create_database):
    url = create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA deployment")
    options = "options=" + quote("-c search_path=deployment")
    # The embedded server's URL has a query already (host=<socket directory>).
    migrate.apply(url + ("&" if "?" in url else "?") + options, TEXT)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = 'deployment.users'::regclass AND attname = 'id'"
        ).fetchone()
    assert row == ("text",)
    assert column_types(url) == {}


def test_text_ids_cannot_be_chosen_once_integer_users_exist(create_database):
    url = create_database()
    migrate.apply(url)
    migrate.rollback(url)  # as a database migrated before text ids existed
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO users (id) VALUES (42)")
    with pytest.raises(ConfigError, match=r"^TASKD_USER_IDS: text user ids can only be chosen"):
        migrate.apply(url, TEXT)
    assert migrate.pending(url) == [migrate.USER_IDS_MIGRATION]
    assert set(column_types(url).values()) == {"bigint"}


def test_an_older_database_without_users_can_still_choose_text_ids(create_database):
    url = create_database()
    migrate.apply(url)
    migrate.rollback(url)
    assert migrate.apply(url, TEXT) == [migrate.USER_IDS_MIGRATION]
    assert set(column_types(url).values()) == {"text"}


def test_rolling_back_the_choice_needs_a_database_without_users(create_database):
    url = create_database()
    migrate.apply(url, TEXT)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO users (id) VALUES (%s)", [BETTER_AUTH_ID])
    with pytest.raises(Exception, match="cannot go back to integer ids while it has users"):
        migrate.rollback(url)
    assert set(column_types(url).values()) == {"text"}
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM users")
    assert migrate.rollback(url) == migrate.USER_IDS_MIGRATION
    assert set(column_types(url).values()) == {"bigint"}
    # As migration 0008 left it: tasks render an integer user_id again.
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO users (id, version) VALUES (7, 1)")
        conn.execute("INSERT INTO tasks (user_id, title, version) VALUES (7, 't', 1)")
        (rendered,) = conn.execute("SELECT json FROM tasks").fetchone()
    assert orjson.loads(rendered)["user_id"] == 7


# --- the command line --------------------------------------------------------------------------


def test_migrate_user_ids_text_then_serve_with_text_ids(
    create_database: Any, environ: dict[str, str], workdir: Path, spawn: Any
) -> None:
    url = create_database()
    env = {**environ, "DATABASE_URL": url, "BETTER_AUTH_SECRET": SECRET}
    migrated = taskd("migrate", "--user-ids", "text", env=env, cwd=workdir)
    assert migrated.returncode == 0, migrated.stderr
    assert set(column_types(url).values()) == {"text"}

    text_env = {**env, "TASKD_USER_IDS": "text"}
    minted = taskd("token", "--user-id", BETTER_AUTH_ID, env=text_env, cwd=workdir)
    assert minted.returncode == 0, minted.stderr
    server = spawn("serve", "--port", "0", env=text_env)
    base_url = server.base_url()
    status, _, answer = request(
        "POST",
        f"{base_url}/api/{BETTER_AUTH_ID}/tasks",
        token=minted.stdout.strip(),
        json_body={"title": "text ids"},
    )
    assert status == 201, answer
    assert orjson.loads(answer)["user_id"] == BETTER_AUTH_ID

    smoke = taskd("smoke", "--url", base_url, env=text_env, cwd=workdir)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert server.terminate() == 0, server.output()


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["migrate"]])
def test_a_configuration_that_disagrees_with_the_database_is_a_one_line_error(
    create_database: Any, environ: dict[str, str], workdir: Path, command: list[str]
) -> None:
    url = create_database()
    migrate.apply(url, TEXT)
    env = {**environ, "DATABASE_URL": url, "BETTER_AUTH_SECRET": SECRET}
    result = taskd(*command, env=env, cwd=workdir)
    assert result.returncode == 2
    assert_one_line_error(
        result, "TASKD_USER_IDS: the database records text user ids", "not integer"
    )


def test_serve_migrate_chooses_text_ids_for_a_new_database(
    create_database: Any, environ: dict[str, str], workdir: Path, spawn: Any
) -> None:
    url = create_database()
    env = {**environ, "DATABASE_URL": url, "BETTER_AUTH_SECRET": SECRET}
    server = spawn("serve", "--migrate", "--port", "0", "--user-ids", "text", env=env)
    base_url = server.base_url()
    assert set(column_types(url).values()) == {"text"}
    status, _, _ = request(
        "GET", f"{base_url}/api/{BETTER_AUTH_ID}/tasks", token=make_token(BETTER_AUTH_ID)
    )
    assert status == 200
    assert server.terminate() == 0, server.output()


def test_token_refuses_a_user_id_of_the_other_kind(environ: dict[str, str], workdir: Path) -> None:
    env = {**environ, "BETTER_AUTH_SECRET": SECRET}
    result = taskd("token", "--user-id", BETTER_AUTH_ID, env=env, cwd=workdir)
    assert result.returncode == 2
    assert_one_line_error(result, "--user-id: must be a positive 64-bit integer")
    result = taskd("token", "--user-id", "abc-def", "--user-ids", "text", env=env, cwd=workdir)
    assert result.returncode == 2
    assert_one_line_error(result, "--user-id: must be 1 to 64 ASCII letters and digits")
