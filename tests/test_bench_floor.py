"""The benchmark's floor (bench/floor/app.py) does the work it stands for: taskd's data layer for
each request, so that a kept list sees every write and each write changes what taskd's would. A
floor that skipped work would set the bar too low for what it is meant to show."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import direct_url, new_user_id
from live import free_port
from test_bench_interpreters import Unstartable, harness, options

pytestmark = pytest.mark.not_on_citus("the benchmark, and so the floor, runs on plain PostgreSQL")

START_TIMEOUT_S = 30


class Floor:
    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        # Kept alive: the benchmark's clients reuse their connections too.
        self.connection.request(method, path, payload, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        content = response.read()
        return response.status, json.loads(content) if content else None


@pytest.fixture
def floor(database_url: str, server_url: str, tmp_path: Path) -> Iterator[Floor]:
    targets = harness("targets")
    port = free_port()
    launch = targets.Floor(Path(sys.prefix) / "bin" / "taskd").launch(
        direct_url(database_url, server_url), secrets.token_urlsafe(48), port, workers=1
    )
    log = tmp_path / "floor.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            launch.command,
            env={"PATH": os.environ["PATH"], **launch.env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while launch.ready_line not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        client = Floor(port)
        yield client
        client.connection.close()
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.user_ids("integer")  # as the benchmark's users have
def test_the_floor_runs_taskds_data_layer_for_each_request(floor: Floor, database_url: str) -> None:
    user = new_user_id()
    tasks = f"/api/{user}/tasks"
    assert floor.request("GET", tasks) == (200, [])

    status, created = floor.request("POST", tasks, {"title": "First", "description": "d"})
    assert status == 201
    assert (created["title"], created["description"], created["is_completed"]) == (
        "First",
        "d",
        False,
    )
    task = f"{tasks}/{created['id']}"
    assert floor.request("GET", task) == (200, created)
    # The list kept before the create is revalidated, not served as it was.
    assert floor.request("GET", tasks) == (200, [created])

    status, updated = floor.request("PUT", task, {"title": "Edited", "is_completed": True})
    assert (status, updated["title"], updated["is_completed"]) == (200, "Edited", True)
    status, toggled = floor.request("PATCH", f"{task}/complete")
    assert (status, toggled["is_completed"]) == (200, False)
    assert floor.request("GET", tasks) == (200, [toggled])

    assert floor.request("DELETE", task) == (204, None)
    assert floor.request("GET", task) == (404, None)
    assert floor.request("DELETE", task) == (404, None)
    assert floor.request("GET", tasks) == (200, [])

    with psycopg.connect(database_url, autocommit=True) as conn:
        version = conn.execute("SELECT version FROM users WHERE id = %s", (user,)).fetchone()
        tombstones = conn.execute(
            "SELECT count(*) FROM task_tombstones WHERE user_id = %s", (user,)
        ).fetchone()
    # One version per write, as taskd takes them, and the delete's tombstone.
    assert version == (4,)
    assert tombstones == (1,)


def test_a_target_is_measured_only_on_its_data_sets() -> None:
    # The floor's are list-miss and many-users, whose targets are still missed.
    bench = harness("bench")
    python = "3.11.7 /opt/python/bin/python3.11"
    floor_target = Unstartable("floor", python)
    floor_target.data_sets = (harness().MANY_USERS,)
    asked = options((harness().ONE_USER, harness().LIST_MISS))
    # Unstartable fails the test if the benchmark goes on to start it.
    runs = bench.bench_targets([floor_target], asked, wrk="wrk")
    assert runs[0].sets == {}
    assert harness("targets").Floor().data_sets == (harness().LIST_MISS, harness().MANY_USERS)


def _run(target: str, data_set: str, rates: dict[str, tuple[float, float]]) -> Any:
    """A TargetRun of `target` on `data_set`: per scenario (req/s, p95 ms) over 10 s."""
    bench, server, wrk = harness("bench"), harness("server"), harness("wrk")
    memory = server.MemoryPeaks(server.MemoryPeak(1, "parent", 40.0))
    scenarios = {
        name: bench.ScenarioResult(
            wrk.WrkResult(
                requests=int(rate * 10),
                seconds=10.0,
                bytes=0,
                latency_ms={"p50": p95 / 2, "p95": p95, "p99": p95, "max": p95, "mean": p95 / 2},
                socket_errors={},
            ),
            memory,
            foreign_cpu_share=0.0,
            speed_probe_ms=30.0,
        )
        for name, (rate, p95) in rates.items()
    }
    run = bench.SetRun(target, data_set, "now", "shape", 0, scenarios)
    return bench.TargetRun(target, "3.11.7 /opt/python/bin/python3.11", {data_set: run})


def test_the_floor_report_holds_the_floor_to_taskds_targets() -> None:
    many = harness().MANY_USERS
    taskd = _run("taskd", many, {"list": (1500.0, 110.0), "mixed": (900.0, 190.0)})
    floor = _run("floor", many, {"list": (2000.0, 70.0), "mixed": (1000.0, 150.0)})
    reference = _run("reference", many, {"list": (380.0, 350.0), "mixed": (220.0, 800.0)})
    report = harness("report").floor_report(taskd, floor, reference)
    rows = {line.split()[1]: line.split() for line in report.splitlines()[2:4]}
    # list: 2000 / 380 = 5.26x with a p95 of 70 ms, met; taskd made 75% of the floor's rate.
    assert rows["list"][2:4] == ["2000.0", "5.26x"]
    assert rows["list"][7:9] == ["met", "75%"]
    # mixed: 4.55x, but a p95 of 150 ms where 80 is needed.
    assert rows["mixed"][7:9] == ["MISSED", "90%"]
    assert report.splitlines()[-1] == "the floor missed 1 of 2 rows; it had 0 errors"
