"""Settings: one table of (variable, default, parser, help) feeds the CLI, validation and docs.

Every value comes from the environment, a command-line flag overrides it, and a bad value is a
`ConfigError` whose message names the variable (the CLI prints it on one line, exit status 2).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from taskd.user_ids import INTEGER, KINDS

# Proxies commonly close a response that has been silent for 30 to 60 s; an event stream says
# something at least this often.
MAX_HEARTBEAT_SECONDS = 15.0


class ConfigError(Exception):
    """A setting has a bad value; the message starts with the variable's name."""


def _text(value: str) -> str:
    return value


def _optional_text(value: str) -> str | None:
    return value or None


def _int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"must be an integer, got {value!r}") from None
        if number < low or (high is not None and number > high):
            bounds = f"between {low} and {high}" if high is not None else f">= {low}"
            raise ValueError(f"must be {bounds}, got {number}")
        return number

    return parse


def _positive_seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"must be a number of seconds, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise ValueError(f"must be a positive number of seconds, got {value!r}")
    return number


def _heartbeat_seconds(value: str) -> float:
    number = _positive_seconds(value)
    if number > MAX_HEARTBEAT_SECONDS:
        raise ValueError(f"must be at most {MAX_HEARTBEAT_SECONDS:g} seconds, got {value!r}")
    return number


def _origins(value: str) -> tuple[str, ...]:
    origins = tuple(origin.strip().rstrip("/") for origin in value.split(",") if origin.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ValueError(f"origins must start with http:// or https://, got {origin!r}")
    return origins


def _database_url(value: str) -> str | None:
    if not value:
        return None
    if not value.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise ValueError("must be a postgresql:// URL")
    return value


def _secret(value: str) -> str | None:
    if not value:
        return None
    if len(value.encode()) < 32:
        raise ValueError("must be at least 32 bytes long")
    return value


def _http_url(value: str) -> str | None:
    if not value:
        return None
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed "[" of an IPv6 address
        valid = False
    if not valid:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value


def _prepare_threshold(value: str) -> int | None:
    if value.lower() in ("", "none", "off"):
        return None
    return _int_at_least(0)(value)


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return value.lower()

    return parse


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "taskd")


@dataclass(frozen=True)
class Option:
    field: str
    env: str
    flag: str
    default: str | Callable[[], str]
    parse: Callable[[str], Any]
    help: str
    secret: bool = False


OPTIONS: tuple[Option, ...] = (
    Option(
        "database_url",
        "DATABASE_URL",
        "--database-url",
        "",
        _database_url,
        "PostgreSQL URL; unset runs the embedded PostgreSQL in TASKD_DATA_DIR",
    ),
    Option(
        "secret",
        "BETTER_AUTH_SECRET",
        "--secret",
        "",
        _secret,
        "HS256 secret shared with Better Auth (>= 32 bytes); generated for the embedded default",
        secret=True,
    ),
    Option("host", "API_HOST", "--host", "127.0.0.1", _text, "address to listen on"),
    Option("port", "API_PORT", "--port", "8000", _int_at_least(0, 65535), "port to listen on"),
    Option(
        "cors_origins",
        "CORS_ORIGINS",
        "--cors-origins",
        "",
        _origins,
        "comma-separated browser origins allowed to call the API",
    ),
    Option(
        "pool_min", "TASKD_POOL_MIN", "--pool-min", "2", _int_at_least(0), "idle DB connections"
    ),
    Option(
        "pool_max",
        "TASKD_POOL_MAX",
        "--pool-max",
        "20",
        _int_at_least(1),
        "DB connections in total, shared out among the workers",
    ),
    Option(
        "pool_max_waiting",
        "TASKD_POOL_MAX_WAITING",
        "--pool-max-waiting",
        "200",
        _int_at_least(1),
        "requests that may queue for a DB connection before the next gets a 503",
    ),
    Option(
        "db_timeout",
        "TASKD_DB_TIMEOUT",
        "--db-timeout",
        "5",
        _positive_seconds,
        "seconds to wait for a DB connection or a query before answering 503",
    ),
    Option(
        "prepare_threshold",
        "TASKD_PREPARE_THRESHOLD",
        "--prepare-threshold",
        "5",
        _prepare_threshold,
        "executions before psycopg prepares a query; 'none': never (nor after a pooler refuses)",
    ),
    Option(
        "list_cache_mb",
        "TASKD_LIST_CACHE_MB",
        "--list-cache-mb",
        "16",
        _int_at_least(0, 4096),
        "MiB of list pages each worker keeps and brings up to date; 0 keeps none",
    ),
    Option(
        "workers",
        "TASKD_WORKERS",
        "--workers",
        "1",
        _int_at_least(1, 64),
        "server processes sharing the port",
    ),
    Option(
        "drain_timeout",
        "TASKD_DRAIN_TIMEOUT",
        "--drain-timeout",
        "10",
        _positive_seconds,
        "seconds a stopping server gives the requests in flight to finish",
    ),
    Option(
        "listen_url",
        "TASKD_LISTEN_URL",
        "--listen-url",
        "",
        _database_url,
        "PostgreSQL URL of each worker's LISTEN session for live updates: the server itself "
        "(or Citus's coordinator), never PgBouncer in transaction mode; unset: DATABASE_URL",
    ),
    Option(
        "event_streams_max",
        "TASKD_EVENT_STREAMS_MAX",
        "--event-streams-max",
        "1000",
        _int_at_least(1),
        "live-update streams each worker keeps open; past it a new one gets a 429",
    ),
    Option(
        "event_streams_per_user",
        "TASKD_EVENT_STREAMS_PER_USER",
        "--event-streams-per-user",
        "10",
        _int_at_least(1),
        "live-update streams one user may keep open in each worker; past it a 429",
    ),
    Option(
        "event_heartbeat",
        "TASKD_EVENT_HEARTBEAT",
        "--event-heartbeat",
        "15",
        _heartbeat_seconds,
        "seconds between the comment lines that keep a quiet live-update stream open (<= 15)",
    ),
    Option(
        "jwt_leeway",
        "TASKD_JWT_LEEWAY",
        "--jwt-leeway",
        "30",
        _int_at_least(0, 3600),
        "seconds of clock skew allowed on exp/nbf",
    ),
    Option(
        "jwt_issuer",
        "TASKD_JWT_ISSUER",
        "--jwt-issuer",
        "",
        _optional_text,
        "required iss claim (unset: not checked)",
    ),
    Option(
        "jwt_audience",
        "TASKD_JWT_AUDIENCE",
        "--jwt-audience",
        "",
        _optional_text,
        "required aud claim (unset: not checked)",
    ),
    Option(
        "jwks_url",
        "TASKD_JWKS_URL",
        "--jwks-url",
        "",
        _http_url,
        "Better Auth's JWKS (https://app.example.com/api/auth/jwks) for its asymmetric tokens",
    ),
    Option(
        "user_ids",
        "TASKD_USER_IDS",
        "--user-ids",
        INTEGER,
        _one_of(*KINDS),
        "integer or text (Better Auth's default ids): chosen when the database is first "
        "migrated; must then agree with it",
    ),
    Option(
        "log_format",
        "TASKD_LOG_FORMAT",
        "--log-format",
        "auto",
        _one_of("auto", "text", "json"),
        "log lines on stderr: text for people, json for machines, auto: text on a terminal",
    ),
    Option(
        "data_dir",
        "TASKD_DATA_DIR",
        "--data-dir",
        _default_data_dir,
        _text,
        "directory of the embedded PostgreSQL and its development secret",
    ),
)


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    secret: str | None
    host: str
    port: int
    cors_origins: tuple[str, ...]
    pool_min: int
    pool_max: int
    pool_max_waiting: int
    db_timeout: float
    prepare_threshold: int | None
    list_cache_mb: int
    workers: int
    drain_timeout: float
    listen_url: str | None
    event_streams_max: int
    event_streams_per_user: int
    event_heartbeat: float
    jwt_leeway: int
    jwt_issuer: str | None
    jwt_audience: str | None
    jwks_url: str | None
    user_ids: str
    log_format: str
    data_dir: str

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, str | None] | None = None
) -> Settings:
    """Build Settings from the environment, with `overrides` (flag values by field) on top."""
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw = overrides.get(option.field)
        if raw is None:
            raw = environ.get(option.env)
        if raw is None:
            raw = option.default() if callable(option.default) else option.default
        try:
            values[option.field] = option.parse(raw.strip())
        except ValueError as error:
            raise ConfigError(f"{option.env}: {error}") from None
    settings = Settings(**values)
    if settings.pool_max < settings.workers:
        raise ConfigError(
            f"TASKD_POOL_MAX: must be at least TASKD_WORKERS ({settings.workers}), "
            f"got {settings.pool_max}"
        )
    if settings.pool_min > settings.pool_max:
        raise ConfigError(
            f"TASKD_POOL_MIN: must not exceed TASKD_POOL_MAX ({settings.pool_max}), "
            f"got {settings.pool_min}"
        )
    return settings
