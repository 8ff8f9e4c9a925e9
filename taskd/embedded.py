"""The embedded default: a PostgreSQL that taskd starts itself in its data directory.

The `pgserver` package ships the PostgreSQL binaries as a wheel, so a fresh machine needs no
system PostgreSQL. The server is stopped when the process that started it exits; the data stays
in `TASKD_DATA_DIR/postgres` for the next start.
"""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path

import psycopg

DATABASE = "taskd"


def start(data_dir: str) -> str:
    """Start (or attach to) the embedded server and return the URL of its `taskd` database."""
    # Imported here: only the embedded default needs them.
    import platformdirs

    with warnings.catch_warnings():
        # pgserver's import asks platformdirs for a runtime directory (its lock file lives there).
        # Without XDG_RUNTIME_DIR (containers, ssh sessions without logind) platformdirs warns and
        # falls back to /run/user/<uid> or a private /tmp/runtime-<uid>, which serve pgserver
        # just as well: the warning asks nothing of the user. (Before its RuntimeDirWarning,
        # platformdirs fell back silently.)
        runtime_dir_warning = getattr(platformdirs, "RuntimeDirWarning", None)
        if runtime_dir_warning is not None:
            warnings.simplefilter("ignore", runtime_dir_warning)
        from pgserver.postgres_server import get_server

    pgdata = Path(data_dir).absolute() / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if not exists:
            conn.execute(f"CREATE DATABASE {DATABASE}")
    return str(server.get_uri(DATABASE))


def dev_secret(data_dir: str) -> str:
    """The development secret kept in the data directory, generated on first use."""
    path = Path(data_dir) / "dev-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
