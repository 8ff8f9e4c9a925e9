"""Fixtures: a fresh PostgreSQL database per run, a pool per test on the test's own loop.

The server is the one `TASKD_TEST_DATABASE_URL` names (for example the local PostgreSQL at
postgresql://postgres@127.0.0.1:5432/postgres), else an embedded one started for this run.
Each run creates its own database there, migrates it, and drops it at the end.

With `TASKD_TEST_PGBOUNCER_URL` (a PgBouncer in transaction mode in front of that server, as
`make test-pgbouncer` starts one), the app and the tests' own connections reach the database
through PgBouncer: the app with its default settings (it turns prepared statements off itself
when PgBouncer refuses one), the tests' own connections with prepared statements off; creating,
migrating and dropping databases still goes straight to the server (see `through_pgbouncer`).

With `TASKD_TEST_USER_IDS=text` the run's shared database is migrated for text user ids, the app
is configured for them, and every fresh user (`user_id`, `new_user_id()`) has an id as Better
Auth's default generator makes them (CI runs the API tests this way too: .ci/run).

With `TASKD_TEST_CITUS_URL` (a Citus coordinator's maintenance database, as `make test-citus`
takes it), the server is that coordinator: each database is created across the cluster
(tests/citus.py), and the API tests' database is distributed by `taskd migrate --distribute`'s
own `migrate.distribute` after its migrations.
"""

from __future__ import annotations

import os
import secrets
import string
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import citus
import jwt
import orjson
import psycopg
import pytest
from live import CONFIG_VARIABLES, Process
from tornado.httpclient import HTTPResponse
from tornado.testing import bind_unused_port

from taskd import migrate
from taskd.app import make_app
from taskd.config import Settings, load_settings
from taskd.db.pool import make_pool, open_pool
from taskd.server import make_server
from taskd.user_ids import INTEGER, KINDS, TEXT, UserId

SECRET = "test-secret-" + "x" * 32
PGBOUNCER_URL = os.environ.get("TASKD_TEST_PGBOUNCER_URL")
CITUS_URL = os.environ.get("TASKD_TEST_CITUS_URL")
USER_IDS = os.environ.get("TASKD_TEST_USER_IDS", INTEGER)
if USER_IDS not in KINDS:
    raise pytest.UsageError(f"TASKD_TEST_USER_IDS: must be one of {', '.join(KINDS)}")
# Better Auth's generateId(): 32 characters of a-z, A-Z and 0-9.
BETTER_AUTH_ID_ALPHABET = string.ascii_letters + string.digits


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "direct_postgres(reason): leans on session state that a transaction pooler does not"
        " keep; skipped when the run goes through PgBouncer (TASKD_TEST_PGBOUNCER_URL)",
    )
    config.addinivalue_line(
        "markers",
        "user_ids(kind): about the ids of one kind of deployment (integer or text); skipped in a"
        " run of the other kind (TASKD_TEST_USER_IDS)",
    )
    config.addinivalue_line(
        "markers",
        "citus_only(reason): needs a Citus cluster; skipped unless TASKD_TEST_CITUS_URL is set",
    )
    config.addinivalue_line(
        "markers",
        "not_on_citus(reason): something Citus does not do; skipped under TASKD_TEST_CITUS_URL",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # marker -> the skip's reason, for the markers whose tests this run skips
    skipped = {
        "direct_postgres": "not through PgBouncer" if PGBOUNCER_URL else None,
        "not_on_citus": "not on Citus" if CITUS_URL else None,
        "citus_only": None if CITUS_URL else "needs Citus (TASKD_TEST_CITUS_URL)",
    }
    for item in items:
        for name, why in skipped.items():
            marker = item.get_closest_marker(name)
            if marker and why:
                item.add_marker(pytest.mark.skip(reason=f"{why}: {marker.args[0]}"))
        kind = item.get_closest_marker("user_ids")
        if kind and kind.args[0] != USER_IDS:
            reason = f"about {kind.args[0]} user ids, and this run has {USER_IDS} ids"
            item.add_marker(pytest.mark.skip(reason=reason))


def _server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = CITUS_URL or os.environ.get("TASKD_TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="delete")
    yield server.get_uri("postgres")


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server's maintenance-database URL."""
    yield from _server_url(tmp_path_factory)


async def connect(database_url: str) -> psycopg.AsyncConnection[Any]:
    """A test's own autocommit connection, configured as the app's is behind a pooler."""
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    if PGBOUNCER_URL:
        conn.prepare_threshold = None
    return conn


# Tasks inserted with SQL as the README's "Writes outside the API" says: the rows that `rows`
# selects as (title, created_at, updated_at), for the user %(user)s (provisioned), under one new
# version of theirs.
_INSERT_BY_HAND = """
WITH bumped AS (
    INSERT INTO users AS known (id, version) VALUES (%(user)s, 1)
    ON CONFLICT (id) DO UPDATE SET version = known.version + 1
    RETURNING version
)
INSERT INTO tasks (user_id, title, created_at, updated_at, version)
SELECT %(user)s, title, created_at, updated_at, bumped.version
FROM bumped, (ROWS) AS rows (title, created_at, updated_at)
"""


def process_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command's name (proc(5)): the state first, the
    parent's pid next, the minor page faults eighth."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def insert_by_hand(rows: str) -> str:
    return _INSERT_BY_HAND.replace("ROWS", rows)


def with_database(url: str, dbname: str) -> str:
    """The same server URL with another database name."""
    return urlsplit(url)._replace(path="/" + dbname).geturl()


@pytest.fixture(scope="session")
def create_database(server_url: str) -> Iterator[Any]:
    """A factory of fresh, empty databases, all dropped when the run ends. On Citus each is
    created across the cluster, with the extension unless `with_citus=False`."""
    created: list[str] = []

    def create(*, with_citus: bool = True) -> str:
        name = f"taskd_test_{uuid.uuid4().hex[:12]}"
        created.append(name)
        if CITUS_URL:
            return citus.create_database(server_url, name, with_citus=with_citus)
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return with_database(server_url, name)

    yield create
    for name in created:
        if CITUS_URL:
            citus.drop_database(server_url, name)
            continue
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def database_url(create_database: Any) -> str:
    """The migrated database shared by this run's API tests (each test uses fresh users)."""
    url: str = create_database()
    migrate.apply(url, USER_IDS)
    if CITUS_URL:
        migrate.distribute(url)
    return through_pgbouncer(url)


def through_pgbouncer(url: str) -> str:
    """The URL the app and the tests use for a database that `create_database` made: through
    PgBouncer when the run has one. Migrations still go straight to the server, as the README
    advises: yoyo's own connection prepares statements whatever TASKD_PREPARE_THRESHOLD says,
    which fails behind PgBouncer ("prepared statement "_pg3_0" already exists")."""
    if not PGBOUNCER_URL:
        return url
    return with_database(PGBOUNCER_URL, urlsplit(url).path.lstrip("/"))


@pytest.fixture
def settings(database_url: str) -> Settings:
    return load_settings(
        environ={
            "DATABASE_URL": database_url,
            "BETTER_AUTH_SECRET": SECRET,
            "TASKD_POOL_MAX": "4",
            "TASKD_USER_IDS": USER_IDS,
        }
    )


class OneConnectionPool:
    """Mixed into a test class: the app's pool has one connection and waits half a second for
    it, so a test that holds `pool.connection()` gets 503s."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.replace(db_timeout=0.5, pool_max=1, pool_min=0)


@pytest.fixture
def pool(io_loop: Any, settings: Settings, database_url: str) -> Iterator[Any]:
    pool = make_pool(settings, database_url)
    io_loop.run_sync(lambda: open_pool(pool, 10))
    yield pool
    io_loop.run_sync(pool.close)


@pytest.fixture
def app(settings: Settings, pool: Any) -> Any:
    return make_app(settings, pool)


def make_token(user_id: int | str, *, secret: str = SECRET, ttl: int = 300, **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"sub": str(user_id), "iat": now, "exp": now + ttl}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, "HS256")


def new_user_id() -> Any:
    """A user id of the run's kind (TASKD_TEST_USER_IDS), int or str (Any: tests do int
    arithmetic on the integer ones)."""
    if USER_IDS == TEXT:
        return new_text_user_id()
    return secrets.randbelow(2**62) + 1


def new_text_user_id() -> str:
    return "".join(secrets.choice(BETTER_AUTH_ID_ALPHABET) for _ in range(32))


@pytest.fixture
def user_id() -> Any:
    """A user no other test has seen, so tests need no cleanup between them."""
    return new_user_id()


class Api:
    """Requests as a client makes them: JSON bodies, a bearer token, no raising on 4xx/5xx."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def request(
        self,
        method: str,
        path: str,
        *,
        user: UserId | None = None,
        token: str | None = None,
        json: Any = None,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> HTTPResponse:
        all_headers = dict(headers or {})
        if token is None and user is not None:
            token = make_token(user)
        if token is not None:
            all_headers.setdefault("Authorization", f"Bearer {token}")
        if json is not None:
            body = orjson.dumps(json)
            all_headers.setdefault("Content-Type", "application/json")
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        response: HTTPResponse = await self.client.fetch(
            path,
            method=method,
            body=body,
            headers=all_headers,
            raise_error=False,
            allow_nonstandard_methods=True,
            follow_redirects=False,
        )
        return response

    async def create(self, user: UserId, title: str = "a task", **fields: Any) -> dict[str, Any]:
        response = await self.request(
            "POST", f"/api/{user}/tasks", user=user, json={"title": title, **fields}
        )
        assert response.code == 201, response.body
        task: dict[str, Any] = orjson.loads(response.body)
        return task


@pytest.fixture
def taskd_port(io_loop: Any, app: Any) -> Iterator[int]:
    """taskd's own HTTP server for `app` (make_server: the drain, the 431, held early answers),
    on a free port, for tests that talk to it over raw sockets."""
    server = make_server(app)
    sock, port = bind_unused_port()
    server.add_sockets([sock])
    yield port
    server.stop()
    io_loop.run_sync(server.close_all_connections)


@pytest.fixture
def api(http_server_client: Any) -> Api:
    return Api(http_server_client)


def body(response: HTTPResponse) -> Any:
    return orjson.loads(response.body)


# --- the installed `taskd` command, run in subprocesses (helpers in live.py) ----------------------


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    """The test's environment with no taskd configuration (the data dir is the test's own)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in CONFIG_VARIABLES and not name.startswith("TASKD_")
    }
    env["TASKD_DATA_DIR"] = str(tmp_path / "taskd-data")
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory outside the checkout, so `python -m taskd` imports the installed package."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path


@pytest.fixture
def spawn(environ: dict[str, str], workdir: Path) -> Iterator[Any]:
    """A factory of `taskd` processes; whatever is still running at teardown is stopped."""
    started: list[Process] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Process:
        process = Process(args, env if env is not None else environ, workdir)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


@pytest.fixture
def external_env(environ: dict[str, str], database_url: str, server_url: str) -> dict[str, str]:
    """A valid configuration on the migrated test database (behind PgBouncer, with the direct
    connection the README says live updates' LISTEN needs there)."""
    env = {
        **environ,
        "DATABASE_URL": database_url,
        "BETTER_AUTH_SECRET": SECRET,
        "TASKD_USER_IDS": USER_IDS,
    }
    if PGBOUNCER_URL:
        env["TASKD_LISTEN_URL"] = direct_url(database_url, server_url)
    return env


def direct_url(database_url: str, server_url: str) -> str:
    """The test database on the server itself, not through PgBouncer: LISTEN needs a session."""
    return with_database(server_url, urlsplit(database_url).path.lstrip("/"))
