"""A fresh database per target on the benchmark's PostgreSQL, always dropped afterwards."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from harness.commands import program, run

# No psqlrc, quiet, unaligned tuples only, and stop at the first error.
PSQL_OPTIONS = ("--no-psqlrc", "--quiet", "--no-align", "--tuples-only", "--set=ON_ERROR_STOP=1")


def _psql(url: str, sql: str) -> str:
    command = [program("psql"), *PSQL_OPTIONS, f"--dbname={url}", f"--command={sql}"]
    return run(command).stdout.strip()


def run_script(url: str, sql: str) -> None:
    """Run several statements, sent on stdin (a seed's data is too long for an argument)."""
    command = [program("psql"), *PSQL_OPTIONS, f"--dbname={url}", "--file=-"]
    run(command, input=sql)


def server_version(admin_url: str) -> str:
    return _psql(admin_url, "SHOW server_version")


def busy_sessions(database_url: str) -> int:
    """The database's other client sessions that are running a query or hold a transaction."""
    return int(
        _psql(
            database_url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            " AND state <> 'idle'",
        )
    )


def other_database_backends(database_url: str) -> list[int]:
    """The pids of the client sessions of every other database on the server."""
    sql = (
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND datname IS DISTINCT FROM current_database()"
    )
    return [int(pid) for pid in _psql(database_url, sql).split()]


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """Create `bench_<random>` and yield its URL; drop it (and its sessions) on the way out."""
    name = f"bench_{secrets.token_hex(6)}"
    _psql(admin_url, f"CREATE DATABASE {name}")
    try:
        yield _with_database(admin_url, name)
    finally:
        _psql(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
