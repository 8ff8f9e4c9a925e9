"""End-to-end tests of the `taskd` command: the installed console script, run in subprocesses.

Every process a test starts is stopped in a fixture teardown, and every wait has a timeout.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import pty
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from conftest import SECRET, make_token
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from live import (
    COMMAND_TIMEOUT,
    LISTENING,
    START_TIMEOUT,
    STOP_TIMEOUT,
    TASKD,
    Process,
    free_port,
    request,
    stop,
    taskd,
)

from taskd import migrate
from taskd.migrate import MIGRATIONS_DIR


def migration_ids() -> list[str]:
    """The ids of the migrations the installed package ships, in the order yoyo applies them."""
    return sorted(
        path.name.removesuffix(".sql")
        for path in MIGRATIONS_DIR.glob("*.sql")
        if not path.name.endswith(".rollback.sql")
    )


def migrations_summary(ids: list[str]) -> re.Pattern[str]:
    """The one line that sums up applying all of `ids`."""
    return re.compile(
        rf"applied {len(ids)} migrations \({re.escape(ids[0])} to {re.escape(ids[-1])}\) "
        r"in \d+\.\d s"
    )


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stderr.strip().splitlines()


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = stderr_lines(result)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def table_exists(database_url: str, table: str) -> bool:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"public.{table}"]).fetchone()
    assert row is not None
    return bool(row[0])


# --- taskd migrate -------------------------------------------------------------------------


def test_migrate_applies_then_reports_nothing_pending(
    create_database: Any, environ: dict[str, str], workdir: Path
) -> None:
    url = create_database()
    env = {**environ, "DATABASE_URL": url}
    ids = migration_ids()
    assert ids, f"no migrations in {MIGRATIONS_DIR}"

    first = taskd("migrate", env=env, cwd=workdir)
    assert first.returncode == 0, first.stderr
    assert migrations_summary(ids).fullmatch(first.stdout.strip()), first.stdout
    assert first.stderr == ""  # yoyo's line per migration step is not passed on
    assert table_exists(url, "users")
    assert table_exists(url, "tasks")

    again = taskd("migrate", env=env, cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "schema up to date"


def test_the_migrations_summary_names_one_or_two_in_full() -> None:
    assert migrate.summary(["0008.x"], 0.04) == "applied 1 migration (0008.x) in 0.0 s"
    two = migrate.summary(["0008.x", "0009.y"], 1.26)
    assert two == "applied 2 migrations (0008.x and 0009.y) in 1.3 s"
    assert migrate.summary([], 0) == "schema up to date"


def test_migrate_rollback_undoes_one_migration_at_a_time(
    create_database: Any, environ: dict[str, str], workdir: Path
) -> None:
    url = create_database()
    env = {**environ, "DATABASE_URL": url}
    assert taskd("migrate", env=env, cwd=workdir).returncode == 0
    ids = migration_ids()

    for undone in reversed(ids):
        result = taskd("migrate", "--rollback", env=env, cwd=workdir)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"rolled back {undone}"
        if undone == "0002.create-tasks":
            assert not table_exists(url, "tasks")
            assert table_exists(url, "users")
    assert not table_exists(url, "tasks")
    assert not table_exists(url, "users")

    nothing = taskd("migrate", "--rollback", env=env, cwd=workdir)
    assert nothing.returncode == 0, nothing.stderr
    assert nothing.stdout.strip() == "nothing to roll back"

    reapplied = taskd("migrate", env=env, cwd=workdir)
    assert migrations_summary(ids).fullmatch(reapplied.stdout.strip()), reapplied.stdout
    assert table_exists(url, "tasks")


def test_migrate_database_url_flag_overrides_the_environment(
    create_database: Any, environ: dict[str, str], workdir: Path
) -> None:
    from_env, from_flag = create_database(), create_database()
    env = {**environ, "DATABASE_URL": from_env}

    result = taskd("migrate", "--database-url", from_flag, env=env, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert migrations_summary(migration_ids()).fullmatch(result.stdout.strip()), result.stdout
    assert table_exists(from_flag, "tasks")
    assert not table_exists(from_env, "tasks")
    assert not table_exists(from_env, "users")


def test_migrate_with_only_the_flag(
    create_database: Any, environ: dict[str, str], workdir: Path
) -> None:
    url = create_database()
    result = taskd("migrate", "--database-url", url, env=environ, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert table_exists(url, "tasks")
    assert not (Path(environ["TASKD_DATA_DIR"]) / "postgres").exists()


# --- taskd serve on an external database ---------------------------------------------------


def test_serve_refuses_pending_migrations(
    create_database: Any, environ: dict[str, str], workdir: Path
) -> None:
    url = create_database()
    env = {**environ, "DATABASE_URL": url, "BETTER_AUTH_SECRET": SECRET}

    result = taskd("serve", "--port", "0", env=env, cwd=workdir)
    assert result.returncode != 0
    line = assert_one_line_error(result, "pending migration")
    assert "taskd migrate" in line
    assert not table_exists(url, "users")


def test_serve_migrate_serves_and_stops_cleanly_on_sigterm(
    create_database: Any, environ: dict[str, str], workdir: Path, spawn: Any
) -> None:
    url = create_database()
    env = {**environ, "DATABASE_URL": url, "BETTER_AUTH_SECRET": SECRET}
    server = spawn("serve", "--migrate", "--port", "0", env=env)
    base_url = server.base_url()
    assert table_exists(url, "tasks")

    minted = taskd("token", "--user-id", "5", env=env, cwd=workdir)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()

    status, _, body = request("GET", f"{base_url}/api/5/tasks", token=token)
    assert (status, json.loads(body)) == (200, [])

    status, headers, body = request(
        "POST", f"{base_url}/api/5/tasks", token=token, json_body={"title": "from the CLI test"}
    )
    assert status == 201, body
    task = json.loads(body)
    assert task["title"] == "from the CLI test"
    assert task["user_id"] == 5
    assert headers["Location"].endswith(f"/api/5/tasks/{task['id']}")

    status, _, body = request("GET", f"{base_url}/api/5/tasks", token=token)
    assert (status, json.loads(body)) == (200, [task])

    status, _, _ = request("GET", f"{base_url}/api/5/tasks")
    assert status == 401

    assert server.terminate() == 0, server.output()
    assert token not in server.output()


def test_serve_port_flag_overrides_a_bad_environment_value(
    external_env: dict[str, str], spawn: Any
) -> None:
    server = spawn("serve", "--port", "0", env={**external_env, "API_PORT": "70000"})
    base_url = server.base_url()
    status, _, _ = request("GET", f"{base_url}/api/3/tasks", token=make_token(3))
    assert status == 200
    assert server.terminate() == 0, server.output()


def test_serve_port_flag_overrides_the_environment(
    external_env: dict[str, str], spawn: Any
) -> None:
    env_port, flag_port = free_port(), free_port()
    server = spawn(
        "serve", "--port", str(flag_port), env={**external_env, "API_PORT": str(env_port)}
    )
    assert server.base_url() == f"http://127.0.0.1:{flag_port}"
    assert server.terminate() == 0, server.output()


def test_serve_takes_the_port_from_the_environment(
    external_env: dict[str, str], spawn: Any
) -> None:
    port = free_port()
    server = spawn("serve", env={**external_env, "API_PORT": str(port)})
    assert server.base_url() == f"http://127.0.0.1:{port}"
    status, _, _ = request("GET", f"http://127.0.0.1:{port}/api/3/tasks", token=make_token(3))
    assert status == 200
    assert server.terminate() == 0, server.output()


# --- configuration errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TASKD_POOL_MAX", "abc"),
        ("API_PORT", "70000"),
        ("BETTER_AUTH_SECRET", "short"),
        ("TASKD_WORKERS", "0"),
        ("TASKD_LOG_FORMAT", "fancy"),
    ],
)
def test_serve_bad_setting_is_a_one_line_error(
    external_env: dict[str, str], workdir: Path, variable: str, value: str
) -> None:
    # If the value were accepted, the server would listen on a free port until the timeout.
    env = {**external_env, "API_PORT": "0", variable: value}
    result = taskd("serve", env=env, cwd=workdir, timeout=20)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result, variable)
    assert result.stdout == ""


def test_serve_bad_flag_value_names_the_setting(
    external_env: dict[str, str], workdir: Path
) -> None:
    args = ("serve", "--port", "0", "--workers", "0")
    result = taskd(*args, env=external_env, cwd=workdir, timeout=20)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result, "TASKD_WORKERS")


def test_serve_without_a_secret_or_a_jwks_url_on_an_external_database(
    environ: dict[str, str], database_url: str, workdir: Path
) -> None:
    env = {**environ, "DATABASE_URL": database_url, "API_PORT": "0"}
    result = taskd("serve", env=env, cwd=workdir, timeout=20)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result, "BETTER_AUTH_SECRET", "TASKD_JWKS_URL")
    assert result.stdout == ""


def test_serve_with_only_a_jwks_url_refuses_hs256_and_is_503_while_the_jwks_is_down(
    environ: dict[str, str], database_url: str, spawn: Any
) -> None:
    jwks_url = f"http://127.0.0.1:{free_port()}/api/auth/jwks"  # nothing listens there
    env = {**environ, "DATABASE_URL": database_url, "TASKD_JWKS_URL": jwks_url}
    server = spawn("serve", "--port", "0", env=env)
    base_url = server.base_url()

    status, _, _ = request("GET", f"{base_url}/api/3/tasks", token=make_token(3))
    assert status == 401

    claims = {"sub": "3", "exp": int(time.time()) + 900}
    eddsa = jwt.encode(claims, Ed25519PrivateKey.generate(), "EdDSA", headers={"kid": "k1"})
    status, headers, _ = request("GET", f"{base_url}/api/3/tasks", token=eddsa)
    assert status == 503
    assert headers["Retry-After"] == "2"
    assert server.terminate() == 0, server.output()


# --- taskd token ---------------------------------------------------------------------------


def test_token_is_an_hs256_jwt_for_the_user(external_env: dict[str, str], workdir: Path) -> None:
    before = time.time()
    result = taskd("token", "--user-id", "42", "--ttl", "600", env=external_env, cwd=workdir)
    after = time.time()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    token = lines[0]

    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "42"
    assert int(before) + 600 <= claims["exp"] <= after + 600
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, SECRET + "-other", algorithms=["HS256"])


def test_token_default_ttl_is_an_hour(external_env: dict[str, str], workdir: Path) -> None:
    before = time.time()
    result = taskd("token", "--user-id", "7", env=external_env, cwd=workdir)
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "7"
    assert abs(claims["exp"] - (before + 3600)) <= 5


def test_token_without_a_secret_on_an_external_database(
    environ: dict[str, str], database_url: str, workdir: Path
) -> None:
    env = {**environ, "DATABASE_URL": database_url}
    result = taskd("token", "--user-id", "5", env=env, cwd=workdir)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result, "BETTER_AUTH_SECRET")
    assert result.stdout == ""


# --- the embedded default ------------------------------------------------------------------


def processes_mentioning(text: str) -> list[int]:
    """Ids of the running processes whose command line contains `text`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def embedded_data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir whose embedded PostgreSQL, if a failed test leaves it running, is stopped."""
    data_dir = tmp_path / "embedded"
    yield data_dir
    pidfile = data_dir / "postgres" / "postmaster.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text().split()[0])
    if pid not in processes_mentioning(str(data_dir)):
        return
    os.kill(pid, signal.SIGINT)  # fast shutdown
    deadline = time.monotonic() + STOP_TIMEOUT
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def curl_lines(server: Process) -> list[list[str]]:
    """The printed `curl` commands (GET, then POST), as argument lists."""
    server.wait_for(server.stdout, re.compile(r"^\s*curl .*-d "))
    return [shlex.split(line) for line in server.stdout if line.strip().startswith("curl ")]


def run_curl(argv: list[str]) -> tuple[int, Any]:
    """Runs a printed curl command unchanged, plus options that only report the status."""
    result = subprocess.run(
        [*argv, "--silent", "--show-error", "--write-out", "\n%{http_code}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    body, _, status = result.stdout.rpartition("\n")
    return int(status), json.loads(body)


def test_embedded_default_serves_and_keeps_its_data(
    environ: dict[str, str], embedded_data_dir: Path, spawn: Any
) -> None:
    env = {**environ, "TASKD_DATA_DIR": str(embedded_data_dir)}
    pgdata = str(embedded_data_dir / "postgres")

    first = spawn("serve", "--port", "0", env=env)
    base_url = first.base_url()
    get_tasks, post_task = curl_lines(first)
    assert get_tasks[-1] == post_task[-1] == f"{base_url}/api/1/tasks"
    status, tasks = run_curl(get_tasks)
    assert (status, tasks) == (200, [])
    status, task = run_curl(post_task)
    assert status == 201, task
    assert task["title"] == "Try taskd"

    token = next(arg for arg in get_tasks if arg.startswith("Authorization: Bearer "))
    token = token.removeprefix("Authorization: Bearer ")
    secret = (embedded_data_dir / "dev-secret").read_text().strip()
    assert len(secret.encode()) >= 32
    assert jwt.decode(token, secret, algorithms=["HS256"])["sub"] == "1"
    assert processes_mentioning(pgdata), "the embedded PostgreSQL is not running"

    assert first.terminate() == 0, first.output()
    assert processes_mentioning(pgdata) == [], "the embedded PostgreSQL outlived taskd"
    # stderr is no terminal here: every line is JSON, a third party's warning included.
    entries = [json.loads(line) for line in first.stderr]
    assert migrations_summary(migration_ids()).fullmatch(entries[0]["msg"]), entries[0]

    second = spawn("serve", "--port", "0", env=env)
    base_url = second.base_url()
    curl_lines(second)
    status, _, body = request("GET", f"{base_url}/api/1/tasks", token=token)
    assert status == 200, body
    assert json.loads(body) == [task]
    assert (embedded_data_dir / "dev-secret").read_text().strip() == secret

    assert second.terminate() == 0, second.output()
    assert processes_mentioning(pgdata) == []


# --- what a first run shows on a terminal --------------------------------------------------

SCREEN_COLUMNS, SCREEN_ROWS = 80, 24
POST_CURL = re.compile(r"^  curl .* -d .*/api/1/tasks\n", re.MULTILINE)
TEXT_LOG_LINE = re.compile(r"\d\d:\d\d:\d\d (INFO|WARNING|ERROR) +[\w.]+: .+")
TEXT_ACCESS_LINE = re.compile(
    r"INFO +taskd\.access: GET [/\w.{}]+ 200 \(\d+\.\d ms, request [0-9a-f]{32}\)$", re.MULTILINE
)
JWT_LINE = re.compile(r"  eyJ[\w-]+\.[\w-]+\.[\w-]+")


class Terminal:
    """A `taskd` writing stdout and stderr to a pseudo-terminal, as in a shell's `make run`;
    a thread reads everything it shows."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str], cwd: Path) -> None:
        self._master, slave = pty.openpty()
        self.popen = subprocess.Popen(
            [str(TASKD), *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        self._shown = b""
        self._closed = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the last process holding the terminal has exited
                chunk = b""
            with self._changed:
                self._shown += chunk
                self._closed = not chunk
                self._changed.notify_all()
            if not chunk:
                return

    def text(self) -> str:
        """What the terminal showed so far, lines ending in "\\n" (a terminal writes "\\r\\n")."""
        with self._changed:
            return self._shown.decode(errors="replace").replace("\r\n", "\n")

    def wait_for(self, pattern: re.Pattern[str]) -> re.Match[str]:
        deadline = time.monotonic() + START_TIMEOUT
        with self._changed:
            while not (match := pattern.search(self.text())):
                if self._closed:
                    pytest.fail(f"taskd exited ({self.popen.wait()}) first:\n{self.text()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"nothing matching {pattern.pattern!r}:\n{self.text()}")
                self._changed.wait(min(remaining, 0.5))
            return match

    def close(self) -> None:
        stop(self.popen)
        self._reader.join(timeout=STOP_TIMEOUT)
        os.close(self._master)


@pytest.fixture
def terminal(workdir: Path) -> Iterator[Any]:
    """A factory of `taskd` processes on pseudo-terminals, all stopped at teardown."""
    started: list[Terminal] = []

    def start(*args: str, env: dict[str, str]) -> Terminal:
        started.append(Terminal(args, env, workdir))
        return started[-1]

    yield start
    for process in started:
        process.close()


def first_screen(text: str) -> list[str]:
    """The lines a terminal of 80 x 24 shows before it scrolls, long lines wrapped."""
    shown, rows = [], 0
    for line in text.splitlines():
        rows += max(1, math.ceil(len(line) / SCREEN_COLUMNS))
        if rows > SCREEN_ROWS:
            break
        shown.append(line)
    return shown


def test_a_first_run_on_a_terminal_shows_the_whole_banner_on_the_first_screen(
    environ: dict[str, str], embedded_data_dir: Path, terminal: Any
) -> None:
    env = {**environ, "TASKD_DATA_DIR": str(embedded_data_dir)}
    env.pop("XDG_RUNTIME_DIR", None)  # as in containers and ssh sessions: platformdirs warns
    shown = terminal("serve", "--port", "0", env=env)
    base_url = shown.wait_for(LISTENING).group(1)
    shown.wait_for(POST_CURL)
    text = shown.text()

    screen = first_screen(text)
    serving = f"taskd is serving {base_url} on the embedded PostgreSQL in {embedded_data_dir}"
    assert serving in screen, text
    assert f"  API documentation  {base_url}/docs" in screen, text
    assert f"  OpenAPI document   {base_url}/openapi.json" in screen, text
    [token_line] = [line for line in screen if JWT_LINE.fullmatch(line)]
    get_tasks, post_task = [line for line in screen if line.startswith("  curl ")]
    assert token_line.strip() in get_tasks and token_line.strip() in post_task
    assert POST_CURL.match(post_task + "\n"), text  # the banner's last line is on the screen too
    assert "warning" not in text.lower(), text

    # The logs before the banner are lines for people: the migrations summed up in one.
    logged = text[: text.index(serving)].strip().splitlines()
    assert all(TEXT_LOG_LINE.fullmatch(line) for line in logged), text
    assert migrations_summary(migration_ids()).search(logged[0]), text
    assert logged[-1].endswith(f"INFO    taskd: listening on {base_url}")

    # What the banner points at is there, and a request is logged for people too.
    for path in ("/docs", "/openapi.json"):
        status, _, _ = request("GET", base_url + path)
        assert status == 200, path
    assert TEXT_ACCESS_LINE.search(shown.wait_for(re.compile(r".*GET /openapi.json.*\n")).group())


@pytest.mark.parametrize("on_a_terminal", [True, False])
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_log_format_setting_chooses_text_or_json_whatever_stderr_is(
    create_database: Any,
    environ: dict[str, str],
    spawn: Any,
    terminal: Any,
    on_a_terminal: bool,
    log_format: str,
) -> None:
    url = create_database()
    env = {
        **environ,
        "DATABASE_URL": url,
        "BETTER_AUTH_SECRET": SECRET,
        "TASKD_LOG_FORMAT": log_format,
    }
    if on_a_terminal:
        shown = terminal("serve", "--migrate", "--port", "0", env=env)
        base_url = shown.wait_for(LISTENING).group(1)
        status, _, _ = request("GET", f"{base_url}/api/3/tasks", token=make_token(3))
        shown.wait_for(re.compile(r"GET /api/\{user_id\}/tasks 200.*\n"))
        lines = shown.text().splitlines()
    else:
        server = spawn("serve", "--migrate", "--port", "0", env=env)
        base_url = server.base_url()
        status, _, _ = request("GET", f"{base_url}/api/3/tasks", token=make_token(3))
        server.wait_for(server.stderr, re.compile(r"GET /api/\{user_id\}/tasks 200"))
        lines = server.stderr
    assert status == 200
    assert len(lines) == 3, lines  # the migrations, where it listens, the request
    if log_format == "json":
        entries = [json.loads(line) for line in lines]
        assert migrations_summary(migration_ids()).fullmatch(entries[0]["msg"])
        assert entries[1]["msg"] == f"listening on {base_url}"
        assert set(entries[2]) == {
            *("ts", "level", "logger", "pid", "msg"),
            *("method", "route", "status", "duration_ms", "request_id"),
        }
    else:
        assert all(TEXT_LOG_LINE.fullmatch(line) for line in lines), lines
        assert migrations_summary(migration_ids()).search(lines[0])
        assert TEXT_ACCESS_LINE.search(lines[2]), lines


# --- python -m taskd -----------------------------------------------------------------------


def test_python_dash_m_version(environ: dict[str, str], workdir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "taskd", "--version"],
        env=environ,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"taskd {importlib.metadata.version('taskd')}"
    script = taskd("--version", env=environ, cwd=workdir)
    assert script.stdout == result.stdout
