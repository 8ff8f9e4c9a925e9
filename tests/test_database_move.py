"""A taskd database moved to another PostgreSQL server (issue 10, CONTRACT §4).

What a user does to go from the embedded default to production, or to a managed PostgreSQL:
pg_dump the database, pg_restore it into a new server, point taskd at it. Here the new server is
one this test initdb's itself, with the original server's own binaries (pgserver's for the
embedded one, Debian's for a system PostgreSQL), so its transaction counter is far behind the
original's, and the move happens beneath a running app: its connections go through a proxy that
is pointed at the new server, the way a database's address moves to a new host. Sync tokens and
the cached list pages must mean the same there: they are per-user versions, not transaction ids.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from conftest import body
from faultproxy import FaultProxy
from live import free_port
from test_changes import all_tasks, drain, poll

from taskd import migrate

# The original server's transaction counter is at least this far ahead of the new server's.
COUNTER_GAP = 5000


@pytest.fixture(scope="module")
def source_url(create_database: Any) -> str:
    url: str = create_database()
    migrate.apply(url)
    return url


class Cluster:
    """A PostgreSQL server of its own: initdb'd in a temporary directory, listening on a Unix
    socket there, run as the `postgres` system user when the tests run as root (initdb refuses
    root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.home = Path(tempfile.mkdtemp(prefix="taskd-moved-"))
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.home, "postgres")
        self._run("initdb", "--auth=trust", "--username=postgres", f"--pgdata={self.home}/data")
        options = f"-p {self.port} -k {self.home} -c listen_addresses=''"
        log = f"--log={self.home}/server.log"  # not our pipes: the server outlives pg_ctl
        self._run("pg_ctl", f"--pgdata={self.home}/data", log, "--wait", "-o", options, "start")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.home}&port={self.port}"

    def stop(self) -> None:
        self._run("pg_ctl", f"--pgdata={self.home}/data", "--wait", "-m", "fast", "stop")
        shutil.rmtree(self.home)

    def _run(self, program: str, *args: str) -> None:
        command = [*self.as_user, str(self.bindir / program), *args]
        subprocess.run(command, check=True, capture_output=True, cwd=self.home)


def server_bindir(url: str) -> Path:
    """The directory of the programs of the server at `url`: dumps restore best into a server
    of the same build."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT setting FROM pg_config WHERE name = 'BINDIR'").fetchone()
    assert row is not None
    return Path(row[0])


@pytest.fixture(scope="module")
def new_server(source_url: str) -> Iterator[Cluster]:
    cluster = Cluster(server_bindir(source_url))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def proxy(source_url: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(source_url)
    yield proxy
    proxy.close()


@pytest.fixture
def database_url(proxy: FaultProxy) -> str:
    """taskd reaches the database through the proxy, wherever it points."""
    return proxy.url()


def transaction_counter(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


def move(source_url: str, new_server: Cluster, work: Path) -> str:
    """pg_dump the source database, pg_restore it into a database of the same name on the new
    server, and return that database's URL."""
    name = urlsplit(source_url).path.lstrip("/")
    dump = work / "taskd.dump"
    pg_dump = new_server.bindir / "pg_dump"
    subprocess.run(
        [pg_dump, "--format=custom", f"--file={dump}", f"--dbname={source_url}"], check=True
    )
    with psycopg.connect(new_server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = new_server.url(name)
    pg_restore = new_server.bindir / "pg_restore"
    subprocess.run(
        [pg_restore, "--no-owner", "--exit-on-error", f"--dbname={target}", dump], check=True
    )
    return target


async def eventually_listed(api: Any, user: int) -> dict[int, dict]:
    """The user's tasks, once the app's connections have found the new server."""
    for _ in range(100):
        response = await api.request("GET", f"/api/{user}/tasks", user=user)
        if response.code == 200:
            return {task["id"]: task for task in body(response)}
        assert response.code == 503, response.body
        await asyncio.sleep(0.1)
    raise AssertionError("taskd did not reach the new server")


async def test_sync_tokens_and_cached_pages_survive_a_move_to_another_server(
    api, user_id, source_url, new_server, proxy, tmp_path
):
    kept = await api.create(user_id, "kept")
    edited = await api.create(user_id, "edited after the move")
    doomed = await api.create(user_id, "deleted after the move")
    gone = await api.create(user_id, "deleted before the move")
    await api.request("DELETE", f"/api/{user_id}/tasks/{gone['id']}", user=user_id)
    mirror_tasks, _, token = await drain(api, user_id)
    assert {task["id"] for task in mirror_tasks} == {kept["id"], edited["id"], doomed["id"]}
    warm = await all_tasks(api, user_id)  # the page is now cached, and served again from there
    assert await all_tasks(api, user_id) == warm

    with psycopg.connect(source_url, autocommit=True) as conn:
        for _ in range(COUNTER_GAP):
            conn.execute("SELECT pg_current_xact_id()")
    target_url = move(source_url, new_server, tmp_path)
    assert transaction_counter(source_url) - transaction_counter(target_url) >= COUNTER_GAP
    proxy.retarget(target_url)

    # Unchanged since the move: the cached page is the new server's list too.
    assert await eventually_listed(api, user_id) == warm
    renamed = await api.request(
        "PUT", f"/api/{user_id}/tasks/{edited['id']}", user=user_id, json={"title": "renamed"}
    )
    assert renamed.code == 200
    await api.request("DELETE", f"/api/{user_id}/tasks/{doomed['id']}", user=user_id)
    created = await api.create(user_id, "created after the move")

    feed = await poll(api, user_id, token)
    assert feed["tasks"] == [body(renamed), created]
    assert [entry["id"] for entry in feed["deleted"]] == [doomed["id"]]
    assert feed["has_more"] is False
    again = await poll(api, user_id, feed["next"])
    assert again["tasks"] == [] and again["deleted"] == []

    listed = await all_tasks(api, user_id)
    assert set(listed) == {kept["id"], edited["id"], created["id"]}
    assert listed[edited["id"]] == body(renamed)
    with psycopg.connect(target_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, title FROM tasks WHERE user_id = %s ORDER BY id", [user_id]
        ).fetchall()
    assert {task_id: task["title"] for task_id, task in listed.items()} == dict(rows)
