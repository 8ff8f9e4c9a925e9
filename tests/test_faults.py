"""Database faults (issue 5): the connection cut or silenced, PostgreSQL restarted, clients gone.

Throughout, clients keep creating tasks. While the database is out every request is answered, 503
with Retry-After within about the deadline (no hang, no 500), /readyz says 503 and /healthz 200.
Once it is back, requests succeed again within 5 s without restarting taskd. No write answered 201
is lost, and the pool ends idle, with no connection left over on the server.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pgserver
import psycopg
import pytest
from conftest import make_token
from faultproxy import CutMode, FaultProxy

from taskd import migrate
from taskd.config import Settings
from taskd.db.pool import RECONNECT_SECONDS, SILENCE_GRACE_SECONDS

DB_TIMEOUT = 1.0
POOL_MAX = 4
WRITERS = 6
RECOVERY_SECONDS = 5.0
# Answered within the deadline, plus the grace given to a silent server, plus slack for a busy
# machine.
ANSWER_SECONDS = DB_TIMEOUT + SILENCE_GRACE_SECONDS + 2.0
# Long enough for every writer to meet the outage, even where it takes the grace to notice;
# twice that, as the writers are one user's, so one batch at a time: one sent just after the
# first was answered goes silent too, and must be answered (503) before the database is back.
# (How long the first waits depends on how many connections the pool had grown to.)
OUTAGE_SECONDS = 2 * (DB_TIMEOUT + SILENCE_GRACE_SECONDS) + 0.5
SETTLE_SECONDS = 5.0

T = TypeVar("T")


@pytest.fixture(scope="module")
def direct_url(create_database: Any) -> str:
    """This module's own migrated database, reached directly: the tests' view of the truth."""
    url: str = create_database()
    migrate.apply(url)
    return url


@pytest.fixture
def proxy(direct_url: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(direct_url)
    yield proxy
    proxy.close()


@pytest.fixture
def database_url(proxy: FaultProxy) -> str:
    """taskd reaches the database through the proxy."""
    return proxy.url()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(db_timeout=DB_TIMEOUT, pool_max=POOL_MAX, pool_min=2)


@pytest.fixture
def load(api: Any, user_id: int, io_loop: Any) -> Iterator[WriteLoad]:
    """Writers for the test to start; stopped at the end whatever happened."""
    load = WriteLoad(api, user_id)
    yield load
    io_loop.run_sync(load.stop)


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    status: int
    retry_after: str | None
    task_id: int | None


class WriteLoad:
    """Clients creating tasks back to back; every answer is kept."""

    def __init__(self, api: Any, user: int) -> None:
        self.api = api
        self.user = user
        self.outcomes: list[Outcome] = []
        self._stopping = False
        self._clients: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._clients = [asyncio.ensure_future(self._client()) for _ in range(WRITERS)]

    async def _client(self) -> None:
        while not self._stopping:
            started = time.monotonic()
            response = await self.api.request(
                "POST", f"/api/{self.user}/tasks", user=self.user, json={"title": "load"}
            )
            created = response.code == 201
            self.outcomes.append(
                Outcome(
                    started=started,
                    ended=time.monotonic(),
                    status=response.code,
                    retry_after=response.headers.get("Retry-After"),
                    task_id=orjson.loads(response.body)["id"] if created else None,
                )
            )

    async def first_success_after(self, moment: float) -> float:
        """When the first 201 after `moment` arrived; fails past twice the promised time."""
        deadline = moment + 2 * RECOVERY_SECONDS
        while time.monotonic() < deadline:
            ended = [o.ended for o in self.outcomes if o.status == 201 and o.ended >= moment]
            if ended:
                return min(ended)
            await asyncio.sleep(0.02)
        pytest.fail(f"no request succeeded within {2 * RECOVERY_SECONDS} s")

    async def stop(self) -> list[Outcome]:
        self._stopping = True
        await asyncio.gather(*self._clients)
        return self.outcomes


async def eventually(
    observe: Callable[[], T], expected: Callable[[T], bool], seconds: float = SETTLE_SECONDS
) -> None:
    """Wait until what `observe()` returns is `expected`; fail showing the last observation."""
    deadline = time.monotonic() + seconds
    while not expected(seen := observe()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert expected(seen), seen


def app_backends(direct_url: str) -> list[str]:
    """The states of this process's taskd connections, as the server sees them."""
    with psycopg.connect(direct_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT state FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            [f"taskd[{os.getpid()}]"],
        ).fetchall()
    return [state for (state,) in rows]


async def assert_no_leak(pool: Any, direct_url: str) -> None:
    """The pool is back to idle, and the server holds no more than its connections, all idle."""

    def pool_idle(stats: dict[str, int]) -> bool:
        return (
            stats.get("requests_waiting", 0) == 0
            and 0 < stats["pool_available"] == stats["pool_size"] <= POOL_MAX
        )

    def server_idle(states: list[str]) -> bool:
        return 0 < len(states) <= POOL_MAX and set(states) == {"idle"}

    await eventually(pool.get_stats, pool_idle)
    await eventually(lambda: app_backends(direct_url), server_idle)


def stored_task_ids(direct_url: str, user: int) -> set[int]:
    with psycopg.connect(direct_url) as conn:
        rows = conn.execute("SELECT id FROM tasks WHERE user_id = %s", [user]).fetchall()
    return {task_id for (task_id,) in rows}


async def assert_probes_during_outage(api: Any) -> None:
    started = time.monotonic()
    ready, health = await asyncio.gather(
        api.request("GET", "/readyz"), api.request("GET", "/healthz")
    )
    assert time.monotonic() - started < ANSWER_SECONDS
    assert ready.code == 503, ready.body
    assert ready.headers["Retry-After"].isdigit()
    assert health.code == 200, health.body


class Outage:
    """An outage under the write load, then every promise about it checked on what was seen."""

    def __init__(self, api: Any, pool: Any, load: WriteLoad, direct_url: str, record: Any) -> None:
        self.api = api
        self.pool = pool
        self.load = load
        self.direct_url = direct_url
        self.record = record

    async def __call__(
        self,
        take_down: Callable[[], object],
        bring_back: Callable[[], object],
        seconds: float = OUTAGE_SECONDS,
    ) -> None:
        """`take_down` and `bring_back` the database (blocking calls, run off the loop)."""
        loop = asyncio.get_running_loop()
        self.load.start()
        await asyncio.sleep(0.5)
        await loop.run_in_executor(None, take_down)
        down = time.monotonic()
        await asyncio.sleep(seconds)
        await assert_probes_during_outage(self.api)
        back = time.monotonic()
        await loop.run_in_executor(None, bring_back)
        up = time.monotonic()
        recovered = await self.load.first_success_after(back)
        await asyncio.sleep(0.5)
        outcomes = await self.load.stop()
        await self._judge(outcomes, down=down, back=back, up=up, recovered=recovered)

    async def _judge(
        self, outcomes: list[Outcome], *, down: float, back: float, up: float, recovered: float
    ) -> None:
        """The database went `down`, was brought `back`, accepted again when `up`; the first
        201 after that came when `recovered`."""
        assert {o.status for o in outcomes} <= {201, 503}
        unavailable = [o for o in outcomes if o.status == 503]
        assert all(o.retry_after is not None and o.retry_after.isdigit() for o in unavailable)
        slowest = max(o.ended - o.started for o in outcomes)
        assert slowest < ANSWER_SECONDS
        during = [o for o in outcomes if o.started >= down and o.ended <= back]
        assert len(during) >= WRITERS and all(o.status == 503 for o in during)
        # Measured from when the database accepts again (a started server may take a while).
        recovery = max(0.0, recovered - up)
        assert recovery < RECOVERY_SECONDS
        after = [o for o in outcomes if o.started >= recovered]
        assert after and all(o.status == 201 for o in after)
        created = {o.task_id for o in outcomes if o.task_id is not None}
        assert created <= stored_task_ids(self.direct_url, self.load.user)
        ready = await self.api.request("GET", "/readyz")
        assert ready.code == 200, ready.body
        await assert_no_leak(self.pool, self.direct_url)

        self.record("recovery_seconds", round(recovery, 3))
        self.record("slowest_answer_seconds", round(slowest, 3))
        self.record("answered_201", len(created))
        self.record("answered_503", len(unavailable))
        self.record("answered_503_during_outage", len(during))


@pytest.fixture
def outage(api: Any, pool: Any, load: WriteLoad, direct_url: str, record_property: Any) -> Outage:
    return Outage(api, pool, load, direct_url, record_property)


@pytest.mark.parametrize("mode", ["reset", "blackhole"])
async def test_cut_connection_is_503_then_recovers(outage, proxy, mode: CutMode):
    await outage(lambda: proxy.cut(mode), proxy.restore)


async def test_recovers_as_fast_after_an_outage_longer_than_the_pools_own_retries(outage, proxy):
    """psycopg_pool's own retries back off to minutes; past RECONNECT_SECONDS it stops them and
    a waiting request makes it try again, so a long outage does not mean a long recovery."""
    await outage(lambda: proxy.cut("reset"), proxy.restore, seconds=RECONNECT_SECONDS + 2.5)


async def test_readiness_answers_in_time_when_new_connections_stall(api, pool, proxy):
    """/readyz reads the migration state on a connection of its own, outside the pool: when new
    connections get no answer it is a 503 in time, not a hang; and ready again after."""
    proxy.cut("stall_new")
    started = time.monotonic()
    ready = await api.request("GET", "/readyz")
    assert time.monotonic() - started < ANSWER_SECONDS
    assert ready.code == 503, ready.body
    assert ready.headers["Retry-After"].isdigit()
    proxy.restore()
    ready = await api.request("GET", "/readyz")
    assert ready.code == 200, ready.body


class TestClientsThatLeave:
    """A client that closes its socket while its request waits on the database leaks nothing:
    the request finishes, and its connection goes back to the pool."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.replace(db_timeout=3.0, pool_max=1, pool_min=1)

    async def send_and_leave(
        self, port: int, request: bytes, observe: Callable[[], T], stuck: Callable[[T], bool]
    ) -> None:
        """Send `request`, wait until what `observe()` returns shows it `stuck` on the
        database, and hang up."""
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        await eventually(observe, stuck)
        writer.close()
        await writer.wait_closed()

    async def test_while_waiting_for_a_connection(
        self, api, pool, direct_url, user_id, http_server_port
    ):
        request = http_request("GET", f"/api/{user_id}/tasks", user_id)
        async with pool.connection():
            await self.send_and_leave(
                http_server_port[1],
                request,
                pool.get_stats,
                lambda stats: stats.get("requests_waiting") == 1,
            )
        await assert_no_leak(pool, direct_url)
        after = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
        assert after.code == 200

    async def test_while_its_statement_waits_on_a_lock(
        self, api, pool, direct_url, user_id, http_server_port
    ):
        task = await api.create(user_id, "locked")
        request = http_request(
            "PUT", f"/api/{user_id}/tasks/{task['id']}", user_id, {"title": "changed"}
        )
        async with await psycopg.AsyncConnection.connect(direct_url) as blocker:
            await blocker.execute(
                "SELECT 1 FROM tasks WHERE user_id = %s AND id = %s FOR UPDATE",
                [user_id, task["id"]],
            )
            await self.send_and_leave(
                http_server_port[1],
                request,
                lambda: app_backends(direct_url),
                lambda states: "active" in states,
            )
            await blocker.rollback()
        await assert_no_leak(pool, direct_url)
        after = await api.request("GET", f"/api/{user_id}/tasks/{task['id']}", user=user_id)
        assert after.code == 200
        assert orjson.loads(after.body)["title"] == "changed"


def http_request(method: str, path: str, user: int, payload: Any = None) -> bytes:
    body = orjson.dumps(payload) if payload is not None else b""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {make_token(user)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A PostgreSQL server of this module's own, migrated, that a test may stop and start.

    Not under pytest's base temporary directory: a pytest session started meanwhile (another
    checkout's) makes that private again, and the server's own user could no longer reach it.
    """
    parent = Path(tempfile.mkdtemp(prefix="taskd-restart-"))
    server = pgserver.get_server(parent / "pgdata", cleanup_mode="delete")
    migrate.apply(server.get_uri("postgres"))
    yield server
    server.cleanup()
    parent.rmdir()


class TestPostgresRestart:
    """A real PostgreSQL, owned by this test, stopped and started again under taskd."""

    @pytest.fixture
    def direct_url(self, cluster: Any) -> str:
        url: str = cluster.get_uri("postgres")
        return url

    @pytest.fixture
    def database_url(self, direct_url: str) -> str:
        return direct_url

    @pytest.mark.parametrize("stop_mode", ["fast", "immediate"])
    async def test_restart_is_503_then_recovers(self, outage, cluster, stop_mode):
        await outage(lambda: stop_server(cluster, stop_mode), cluster.ensure_postgres_running)

    async def test_restart_while_idle_costs_no_request(self, api, pool, cluster, user_id):
        """The server closed every idle connection of the pool: the first requests after the
        restart get fresh ones, not errors (nor a wait for the stale ones to be found out)."""
        await api.create(user_id)
        await eventually(pool.get_stats, lambda stats: stats["pool_available"] >= 2)

        def restart() -> None:
            stop_server(cluster, "fast")
            cluster.ensure_postgres_running()

        await asyncio.get_running_loop().run_in_executor(None, restart)
        for _ in range(3):
            started = time.monotonic()
            response = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
            assert response.code == 200, response.body
            assert time.monotonic() - started < DB_TIMEOUT


def stop_server(cluster: Any, mode: str) -> None:
    pgserver.pg_ctl(["-w", "-m", mode, "stop"], pgdata=cluster.pgdata, user=cluster.system_user)
