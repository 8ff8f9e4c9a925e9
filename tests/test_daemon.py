"""CONTRACT §7 under a service manager: READY=1 / STOPPING=1 on $NOTIFY_SOCKET, a SIGTERM that
drains the requests in flight, and worker processes sharing the port and the pool budget.

The real `taskd serve` runs in a subprocess on a database of its own; the test plays systemd.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import SECRET, make_token, process_stat
from live import START_TIMEOUT, STOP_TIMEOUT, Process, free_port, request, taskd

WORKER_SERVES = re.compile(r"worker \d+ \(pid (\d+)\) serves")
IN_FLIGHT = re.compile(r"^taskd_http_requests_in_flight (\S+)$", re.MULTILINE)


class NotifySocket:
    """The service manager's end of sd_notify: a datagram socket, by path or abstract name."""

    def __init__(self, address: str, sock: socket.socket) -> None:
        self.address = address
        self.sock = sock

    def receive(self, timeout: float = START_TIMEOUT) -> list[str]:
        """The next notification, as its `KEY=VALUE` lines."""
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode().splitlines()

    def assert_silent(self, seconds: float) -> None:
        self.sock.settimeout(seconds)
        with pytest.raises(TimeoutError):
            self.sock.recv(4096)


def bind_notify_socket(kind: str, directory: Path) -> NotifySocket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "abstract":
        name = f"taskd-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        return NotifySocket("@" + name, sock)
    path = directory / "notify"
    sock.bind(str(path))
    return NotifySocket(str(path), sock)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    notify = bind_notify_socket("path", tmp_path)
    yield notify
    notify.sock.close()


@pytest.fixture
def fresh_env(environ: dict[str, str], create_database: Any) -> dict[str, str]:
    """A configuration on a database of this test's own (migrated by `serve --migrate`)."""
    return {**environ, "DATABASE_URL": create_database(), "BETTER_AUTH_SECRET": SECRET}


def start_daemon(spawn: Any, env: dict[str, str], notify: NotifySocket, **settings: str) -> Any:
    port = free_port()
    env = {**env, "NOTIFY_SOCKET": notify.address, "API_PORT": str(port), **settings}
    process = spawn("serve", "--migrate", env=env)
    process.base_url = f"http://127.0.0.1:{port}"
    process.port = port
    return process


def log_entries(process: Process) -> list[dict[str, Any]]:
    return [json.loads(line) for line in list(process.stderr) if line.startswith("{")]


def list_served_by(process: Process) -> list[int]:
    """The worker pid of each list request in the access log."""
    return [
        entry["pid"]
        for entry in log_entries(process)
        if entry.get("route") == "/api/{user_id}/tasks"
    ]


def worker_pids(process: Process) -> set[int]:
    return {
        int(match.group(1))
        for entry in log_entries(process)
        if (match := WORKER_SERVES.search(entry["msg"]))
    }


def wait_for_workers(process: Process, count: int) -> set[int]:
    """The pids of the workers that said they serve, once there are `count` of them."""
    wait_until(lambda: len(worker_pids(process)) == count, what=f"{count} workers")
    return worker_pids(process)


def pool_connections(database_url: str) -> dict[str, int]:
    """Open connections of taskd pools to this database, by application_name (`taskd[pid]`)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'taskd[%%'"
            " GROUP BY application_name"
        ).fetchall()
    return {name: count for name, count in rows}


def parent_of(pid: int) -> int:
    return int(process_stat(pid)[1])


def connection_refused(port: int) -> bool:
    """Whether nothing listens on `port`. A connection reset is a listener that accepted the
    connection into its backlog as it closed: not refused yet, ask again."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False


def wait_until(condition: Any, timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_ready_is_notified_once_healthz_answers_and_stopping_on_sigterm(
    fresh_env, spawn, tmp_path, kind
):
    notify = bind_notify_socket(kind, tmp_path)
    try:
        server = start_daemon(spawn, fresh_env, notify)
        assert notify.receive() == ["READY=1"]
        status, _, body = request("GET", f"{server.base_url}/healthz", timeout=2)
        assert (status, body) == (200, b'{"status":"ok"}')

        server.popen.send_signal(signal.SIGTERM)
        assert notify.receive(STOP_TIMEOUT) == ["STOPPING=1"]
        assert server.popen.wait(timeout=STOP_TIMEOUT) == 0, server.output()
    finally:
        notify.sock.close()


def test_workers_share_the_port_and_the_pool_budget_and_ready_waits_for_all(
    fresh_env, spawn, notify_socket
):
    database_url = fresh_env["DATABASE_URL"]
    server = start_daemon(
        spawn, fresh_env, notify_socket, TASKD_WORKERS="2", TASKD_POOL_MAX="4", TASKD_POOL_MIN="2"
    )
    assert notify_socket.receive() == ["READY=1"]
    # READY=1 came once both workers had opened their pools (2 connections each, pool_min).
    at_ready = pool_connections(database_url)
    pids = wait_for_workers(server, 2)
    assert all(parent_of(pid) == server.popen.pid for pid in pids)
    assert at_ready == {f"taskd[{pid}]": 2 for pid in pids}

    user = 7
    token = make_token(user)
    highest = 0

    def sample_connections() -> None:
        nonlocal highest
        while not done.is_set():
            highest = max(highest, sum(pool_connections(database_url).values()))

    done = threading.Event()
    sampler = threading.Thread(target=sample_connections)
    sampler.start()
    try:
        with ThreadPoolExecutor(max_workers=16) as executor:
            statuses = list(
                executor.map(
                    lambda _: request("GET", f"{server.base_url}/api/{user}/tasks", token=token)[0],
                    range(60),
                )
            )
    finally:
        done.set()
        sampler.join()
    assert statuses == [200] * 60
    assert highest <= 4, "the workers' pools together stay within TASKD_POOL_MAX"

    # Both workers answered, and /metrics (from either) adds up what each counted.
    assert set(list_served_by(server)) == pids
    counted = 'taskd_http_requests_total{method="GET",route="/api/{user_id}/tasks",status="200"}'

    def metrics_count() -> float:
        _, _, text = request("GET", f"{server.base_url}/metrics")
        line = next(line for line in text.decode().splitlines() if line.startswith(counted))
        return float(line.rpartition(" ")[2])

    wait_until(lambda: metrics_count() == 60, what="/metrics to count 60 requests")
    notify_socket.assert_silent(0.2)  # READY=1 was sent once

    server.popen.send_signal(signal.SIGTERM)
    assert notify_socket.receive(STOP_TIMEOUT) == ["STOPPING=1"]
    assert server.popen.wait(timeout=STOP_TIMEOUT) == 0, server.output()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert pool_connections(database_url) == {}


def test_a_burst_of_new_connections_is_spread_across_the_workers(fresh_env, spawn, notify_socket):
    """Each worker has its own accept queue: with one queue for all, the first worker to wake
    took most of a burst (86 of 100 seen) while the other idled."""
    server = start_daemon(spawn, fresh_env, notify_socket, TASKD_WORKERS="2")
    assert notify_socket.receive() == ["READY=1"]
    pids = wait_for_workers(server, 2)
    host, port = server.base_url.removeprefix("http://").split(":")
    connections = [socket.create_connection((host, int(port))) for _ in range(100)]
    token = make_token(7)
    for conn in connections:
        conn.sendall(
            f"GET /api/7/tasks HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
    for conn in connections:
        with conn, conn.makefile("rb") as response:
            assert response.readline().startswith(b"HTTP/1.1 200")
            response.read()

    wait_until(lambda: len(list_served_by(server)) == 100, what="100 access-log lines")
    counts = {pid: list_served_by(server).count(pid) for pid in pids}
    assert min(counts.values()) >= 25, counts
    server.popen.send_signal(signal.SIGTERM)
    assert server.popen.wait(timeout=STOP_TIMEOUT) == 0, server.output()


def test_a_crashed_worker_is_replaced(fresh_env, spawn, notify_socket):
    server = start_daemon(spawn, fresh_env, notify_socket, TASKD_WORKERS="2")
    assert notify_socket.receive() == ["READY=1"]
    first, second = sorted(wait_for_workers(server, 2))
    os.kill(first, signal.SIGKILL)
    [replacement] = wait_for_workers(server, 3) - {first, second}
    assert parent_of(replacement) == server.popen.pid
    for _ in range(10):
        assert request("GET", f"{server.base_url}/healthz")[0] == 200
    notify_socket.assert_silent(0.2)

    server.popen.send_signal(signal.SIGTERM)
    assert server.popen.wait(timeout=STOP_TIMEOUT) == 0, server.output()


def in_flight(base_url: str) -> float:
    _, _, text = request("GET", f"{base_url}/metrics")
    match = IN_FLIGHT.search(text.decode())
    assert match is not None
    return float(match.group(1))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_lets_every_request_in_flight_finish(fresh_env, spawn, notify_socket, workers):
    """25 updates wait on a row lock and 25 creations are still sending their bodies when
    SIGTERM arrives: all 50 get complete responses, new connections are refused, exit 0."""
    server = start_daemon(
        spawn,
        fresh_env,
        notify_socket,
        TASKD_WORKERS=workers,
        TASKD_POOL_MAX="60",
        TASKD_DB_TIMEOUT="30",
    )
    assert notify_socket.receive() == ["READY=1"]
    user = 11
    token = make_token(user)
    status, _, created = request(
        "POST", f"{server.base_url}/api/{user}/tasks", token=token, json_body={"title": "lock me"}
    )
    assert status == 201
    task = json.loads(created)

    with psycopg.connect(fresh_env["DATABASE_URL"]) as blocker:
        blocker.execute(
            "SELECT 1 FROM tasks WHERE user_id = %s AND id = %s FOR UPDATE", [user, task["id"]]
        )
        with ThreadPoolExecutor(max_workers=25) as executor:
            updates = [
                executor.submit(
                    request,
                    "PUT",
                    f"{server.base_url}/api/{user}/tasks/{task['id']}",
                    token=token,
                    json_body={"title": f"update {n}"},
                    timeout=STOP_TIMEOUT,
                )
                for n in range(25)
            ]
            uploads = []
            for n in range(25):
                body = json.dumps({"title": f"upload {n}", "description": "x" * 2000}).encode()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                conn.putrequest("POST", f"/api/{user}/tasks")
                conn.putheader("Authorization", f"Bearer {token}")
                conn.putheader("Content-Type", "application/json")
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders()
                conn.send(body[:1000])
                uploads.append((conn, body))

            wait_until(lambda: in_flight(server.base_url) >= 50, what="50 requests in flight")
            server.popen.send_signal(signal.SIGTERM)
            assert notify_socket.receive(STOP_TIMEOUT) == ["STOPPING=1"]
            wait_until(lambda: connection_refused(server.port), what="the port to refuse")

            for conn, body in uploads:
                conn.send(body[1000:])
            blocker.rollback()

            for conn, body in uploads:
                response = conn.getresponse()
                sent = json.loads(body)
                got = json.loads(response.read())
                assert response.status == 201
                assert (got["title"], got["description"]) == (sent["title"], sent["description"])
                conn.close()
            for update in updates:
                status, _, updated = update.result(timeout=STOP_TIMEOUT)
                assert status == 200
                assert json.loads(updated)["title"].startswith("update ")

    assert server.popen.wait(timeout=STOP_TIMEOUT) == 0, server.output()
    assert "cut off" not in server.output()


class KeepAlive:
    """A raw keep-alive connection, kept open between requests as a load balancer keeps its
    connections to a backend."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=STOP_TIMEOUT)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except OSError:  # closed by the drain already
            return False
        return True

    def response(self) -> tuple[int, dict[str, str], bytes] | None:
        """The next response, whole; None when the connection closed before one began."""
        try:
            status_line = self.file.readline()
        except ConnectionResetError:
            return None
        if not status_line:
            return None
        headers = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.file.read(int(headers.get("content-length", "0")))
        assert len(body) == int(headers.get("content-length", "0")), "a response cut short"
        return int(status_line.split()[1]), headers, body

    def close(self) -> None:
        self.file.close()
        self.sock.close()


DRAIN_ROUNDS = 10
IDLE_CONNECTIONS = 20
# The writes go out one by one over the drain's first milliseconds, so that some arrive while
# it deals with the idle connections, whenever that is.
WRITE_INTERVAL = 0.0005


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_drain_cuts_off_no_request_that_arrives_on_an_idle_keep_alive_connection(
    fresh_env, spawn, notify_socket, workers
):
    """10 stops per worker count, each with 20 idle keep-alive connections that send a write in
    the first milliseconds after SIGTERM: each write is answered in full (with Connection:
    close) or not started at all, and no drain says it cut anything off."""
    user = 13
    token = make_token(user)
    answered = not_started = 0
    for round_ in range(DRAIN_ROUNDS):
        server = start_daemon(spawn, fresh_env, notify_socket, TASKD_WORKERS=workers)
        assert notify_socket.receive() == ["READY=1"]
        clients = [KeepAlive(server.port) for _ in range(IDLE_CONNECTIONS)]
        for client in clients:
            assert client.send(b"GET /healthz HTTP/1.1\r\nHost: taskd\r\n\r\n")
            response = client.response()
            assert response is not None and response[0] == 200

        titles = [f"round {round_} write {n}" for n in range(IDLE_CONNECTIONS)]
        server.popen.send_signal(signal.SIGTERM)
        for client, title in zip(clients, titles, strict=True):
            body = json.dumps({"title": title}).encode()
            client.send(
                f"POST /api/{user}/tasks HTTP/1.1\r\nHost: taskd\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(WRITE_INTERVAL)
        created = set()
        for client in clients:
            response = client.response()
            client.close()
            if response is None:
                not_started += 1
                continue
            status, headers, body = response
            # `Connection: close` marks an answer given during the drain. A write that a worker
            # served whole before SIGTERM reached it (the supervisor forwards the signal) has
            # none; the drain then closes its connection as idle, after the answer.
            assert status == 201 and headers.get("connection") in ("close", None), body
            created.add(json.loads(body)["title"])
            answered += 1
        assert server.popen.wait(timeout=STOP_TIMEOUT) == 0, server.output()
        assert notify_socket.receive(STOP_TIMEOUT) == ["STOPPING=1"]
        assert "cut off" not in server.output()

        with psycopg.connect(fresh_env["DATABASE_URL"]) as conn:
            rows = conn.execute(
                "SELECT title FROM tasks WHERE user_id = %s AND title LIKE %s",
                [user, f"round {round_} %"],
            ).fetchall()
        assert {title for (title,) in rows} == created, "a write committed without an answer"
    assert answered + not_started == DRAIN_ROUNDS * IDLE_CONNECTIONS


def running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting for whoever adopted it to reap it does not)."""
    try:
        state = process_stat(pid)[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_workers_stop_when_their_supervisor_is_killed(fresh_env, spawn, notify_socket):
    """kill -9 leaves the supervisor no chance to forward anything: its workers stop by
    themselves, within about a second, and the port is free for the next generation."""
    server = start_daemon(spawn, fresh_env, notify_socket, TASKD_WORKERS="2")
    assert notify_socket.receive() == ["READY=1"]
    pids = wait_for_workers(server, 2)
    idle = KeepAlive(server.port)
    assert idle.send(b"GET /healthz HTTP/1.1\r\nHost: taskd\r\n\r\n")
    assert idle.response() is not None

    server.popen.kill()
    server.popen.wait(timeout=STOP_TIMEOUT)
    started = time.monotonic()
    try:
        wait_until(lambda: not any(running(pid) for pid in pids), timeout=2, what="the workers")
        assert connection_refused(server.port)
        assert idle.response() is None  # its connection was closed, not left to an orphan
        idle.close()
        stopped_after = time.monotonic() - started
        assert stopped_after < 2, stopped_after
    finally:
        for pid in pids:  # orphans would keep the port and the database busy
            if running(pid):
                os.kill(pid, signal.SIGKILL)

    successor = spawn(
        "serve", "--migrate", env={**fresh_env, "API_PORT": str(server.port), "TASKD_WORKERS": "2"}
    )
    assert request("GET", f"{successor.base_url()}/healthz")[0] == 200


def test_serve_refuses_to_bind_beside_a_generation_still_serving(
    fresh_env, spawn, notify_socket, workdir
):
    """SO_REUSEPORT would let a second taskd bind the port its old generation still serves, and
    both would answer: the second one says so and exits 1 instead."""
    server = start_daemon(spawn, fresh_env, notify_socket, TASKD_WORKERS="2")
    assert notify_socket.receive() == ["READY=1"]
    for workers in ("2", "1"):
        env = {**fresh_env, "API_PORT": str(server.port), "TASKD_WORKERS": workers}
        second = taskd("serve", env=env, cwd=workdir, timeout=STOP_TIMEOUT)
        assert second.returncode == 1, second.stderr
        assert second.stderr.splitlines()[-1] == (
            f"taskd: error: 127.0.0.1:{server.port} is already in use: is an older taskd still"
            " serving there? Stop it first (or choose another API_PORT)"
        )
    assert request("GET", f"{server.base_url}/healthz")[0] == 200
    server.popen.send_signal(signal.SIGTERM)
    assert server.popen.wait(timeout=STOP_TIMEOUT) == 0, server.output()
