"""CONTRACT §6: `taskd smoke --url URL` against a live server: PASS/FAIL lines, a summary, an exit
status, a --json report, and nothing left behind."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import USER_IDS, make_token, new_user_id
from live import free_port, taskd

from taskd.smoke import DEFAULT_USER_IDS, another_user


def expected_lines(user: int | str) -> list[str]:
    """Patterns of the 13 step lines, in order: every endpoint, and 401/401/403/404."""
    tasks = f"/api/{user}/tasks"
    item = tasks + r"/\d+"
    return [
        r"PASS  liveness: GET /healthz -> 200",
        r"PASS  readiness: GET /readyz -> 200",
        rf"PASS  a request without a token is refused: GET {tasks} -> 401",
        rf"PASS  a forged token is refused: GET {tasks} -> 401",
        rf"PASS  another user's tasks are forbidden: GET /api/{another_user(user)}/tasks -> 403",
        rf"PASS  create a task: POST {tasks} -> 201",
        rf"PASS  list finds it: GET {tasks}\?q=taskd\+smoke\+\w+ -> 200",
        rf"PASS  get it: GET {item} -> 200",
        rf"PASS  live updates push a change: GET {tasks}/events -> 200",
        rf"PASS  update it: PUT {item} -> 200",
        rf"PASS  toggle its completion: PATCH {item}/complete -> 200",
        rf"PASS  delete it: DELETE {item} -> 204",
        rf"PASS  it is gone: GET {item} -> 404",
    ]


@pytest.fixture
def server(spawn: Any, external_env: dict[str, str]) -> str:
    """The base URL of a running `taskd serve` on the test database."""
    process = spawn("serve", "--port", "0", env=external_env)
    return str(process.base_url())


def tasks_of(database_url: str, user_id: int) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM tasks WHERE user_id = %s", [user_id]).fetchone()
    assert row is not None
    return int(row[0])


def step_lines(stdout: str) -> tuple[list[str], str]:
    *steps, summary = stdout.strip().splitlines()
    return steps, summary


def test_smoke_passes_every_step_and_leaves_nothing_behind(
    server, external_env, workdir: Path
) -> None:
    user = DEFAULT_USER_IDS[USER_IDS]
    before = tasks_of(external_env["DATABASE_URL"], user)
    result = taskd("smoke", "--url", server, env=external_env, cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    steps, summary = step_lines(result.stdout)
    patterns = expected_lines(user)
    assert len(steps) == len(patterns), result.stdout
    for line, pattern in zip(steps, patterns, strict=True):
        assert re.fullmatch(pattern + r" \[\d+ ms\]", line), (line, pattern)
    assert summary == f"PASS: 13 passed, 0 failed against {server} as user {user}"
    assert tasks_of(external_env["DATABASE_URL"], user) == before


def test_smoke_json_report(server, external_env, workdir: Path) -> None:
    user = new_user_id()
    result = taskd(
        "smoke", "--url", server, "--user-id", str(user), "--json", env=external_env, cwd=workdir
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] is True
    assert report["url"] == server
    assert report["user_id"] == user
    assert report["summary"] == {"passed": 13, "failed": 0}
    assert [step["passed"] for step in report["steps"]] == [True] * 13
    first = report["steps"][0]
    assert set(first) == {"name", "method", "path", "expected", "status", "passed", "detail", "ms"}
    assert (first["method"], first["path"], first["status"]) == ("GET", "/healthz", 200)
    assert tasks_of(external_env["DATABASE_URL"], user) == 0


def test_smoke_takes_a_token_and_its_user(server, environ, workdir: Path) -> None:
    # No secret and no database configured: the token (and the kind of its user id) is all the
    # smoke test needs.
    token = make_token(88)
    env = {**environ, "TASKD_USER_IDS": USER_IDS}
    result = taskd("smoke", "--url", server, "--token", token, env=env, cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("as user 88")
    assert token not in result.stdout + result.stderr


def test_smoke_with_the_wrong_secret_fails(server, external_env, workdir: Path) -> None:
    env = {**external_env, "BETTER_AUTH_SECRET": "not-the-server-secret-" + "n" * 20}
    result = taskd("smoke", "--url", server, "--user-id", "5", env=env, cwd=workdir)
    assert result.returncode == 1
    steps, summary = step_lines(result.stdout)
    failed = [line for line in steps if line.startswith("FAIL  ")]
    assert [line.split(":")[0] for line in failed] == [
        "FAIL  another user's tasks are forbidden",
        "FAIL  create a task",
    ]
    assert "-> 401 (expected 201): The token's signature is invalid." in failed[1]
    assert summary.startswith("FAIL: 4 passed, 2 failed")

    report = json.loads(taskd("smoke", "--url", server, "--json", env=env, cwd=workdir).stdout)
    assert report["passed"] is False
    assert report["summary"] == {"passed": 4, "failed": 2}


def test_smoke_against_nothing_fails_with_no_response(environ, workdir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = taskd("smoke", "--url", url, "--token", make_token(3), env=environ, cwd=workdir)
    assert result.returncode == 1
    steps, summary = step_lines(result.stdout)
    assert steps and all("-> no response" in line for line in steps)
    assert summary.startswith("FAIL: 0 passed")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--url", "ftp://example.test"], "--url"),
        (["--url", "http://127.0.0.1:9", "--token", "not-a-jwt"], "--token"),
        (["--url", "http://127.0.0.1:9", "--user-id", "0"], "--user-id"),
    ],
)
def test_smoke_usage_errors_are_one_line(environ, workdir: Path, args, needle) -> None:
    result = taskd("smoke", *args, env=environ, cwd=workdir)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
