"""The `taskd` command: serve, migrate, token, smoke."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence

import jwt
from psycopg_pool import PoolTimeout

from taskd import __version__, daemon, embedded, logs, metrics, migrate, server, smoke
from taskd.auth import issue_token
from taskd.config import OPTIONS, ConfigError, Settings, load_settings
from taskd.user_ids import DESCRIPTIONS, UserId, parse_user_id

EXIT_CONFIG = 2
DEV_TOKEN_USER = 1
DEV_TOKEN_TTL = 24 * 3600

log = logging.getLogger("taskd")

# Which settings each command takes as flags (all of them are read from the environment).
_COMMAND_OPTIONS = {
    "serve": [option.field for option in OPTIONS],
    "migrate": ["database_url", "data_dir", "log_format", "user_ids"],
    "token": ["secret", "database_url", "data_dir", "jwt_issuer", "jwt_audience", "user_ids"],
    "smoke": ["secret", "database_url", "data_dir", "jwt_issuer", "jwt_audience", "user_ids"],
}


class CommandError(Exception):
    """A failure worth one line on stderr and exit status 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskd", description="Per-user task REST service.")
    parser.add_argument("--version", action="version", version=f"taskd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument(
        "--migrate", action="store_true", help="apply pending migrations before serving"
    )
    migrate_cmd = commands.add_parser("migrate", help="apply pending migrations")
    migrate_cmd.add_argument(
        "--rollback", action="store_true", help="undo the most recently applied migration"
    )
    token = commands.add_parser("token", help="print a signed HS256 token for a user")
    token.add_argument("--user-id", required=True, help="the token's sub")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    smoke_cmd = commands.add_parser(
        "smoke", help="check a running taskd: every endpoint and the auth failures"
    )
    smoke_cmd.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    smoke_cmd.add_argument(
        "--user-id",
        help="the user to act as (default: the --token's sub, else one no account has)",
    )
    smoke_cmd.add_argument("--token", help="a token to use (default: one minted with the secret)")
    smoke_cmd.add_argument("--json", action="store_true", help="print one JSON report")
    smoke_cmd.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per request (default 10)"
    )
    subparsers = {"serve": serve, "migrate": migrate_cmd, "token": token, "smoke": smoke_cmd}
    for command, fields in _COMMAND_OPTIONS.items():
        for option in OPTIONS:
            if option.field in fields:
                subparsers[command].add_argument(
                    option.flag,
                    dest=option.field,
                    metavar="VALUE",
                    help=f"{option.help} [{option.env}]",
                )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {option.field: getattr(args, option.field, None) for option in OPTIONS}
    try:
        settings = load_settings(overrides=overrides)
        logs.configure(settings.log_format)
        if args.command == "serve":
            return _serve(settings, args.migrate)
        if args.command == "migrate":
            return _migrate(settings, args.rollback)
        if args.command == "smoke":
            return _smoke(settings, args)
        return _token(settings, args.user_id, args.ttl)
    except ConfigError as error:
        print(f"taskd: error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except CommandError as error:
        print(f"taskd: error: {error}", file=sys.stderr)
        return 1


def _database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url
    return embedded.start(settings.data_dir)


def _secret(settings: Settings) -> str:
    if settings.secret is not None:
        return settings.secret
    if settings.embedded:
        return embedded.dev_secret(settings.data_dir)
    raise ConfigError("BETTER_AUTH_SECRET: required when DATABASE_URL is set (at least 32 bytes)")


def _with_token_keys(settings: Settings) -> Settings:
    """Serving needs a way to verify tokens: the secret, the JWKS, or the embedded dev secret."""
    if settings.secret is not None or settings.jwks_url is not None:
        return settings
    if settings.embedded:
        return settings.replace(secret=embedded.dev_secret(settings.data_dir))
    raise ConfigError(
        "BETTER_AUTH_SECRET or TASKD_JWKS_URL: one is required when DATABASE_URL is set"
    )


def _serve(settings: Settings, apply_migrations: bool) -> int:
    settings = _with_token_keys(settings)
    database_url = _database_url(settings)
    try:
        todo = migrate.pending(database_url)
    except Exception as error:
        raise CommandError(f"cannot reach the database: {error}") from None
    if todo and (apply_migrations or settings.embedded):
        log.info("%s", _apply_migrations(database_url, settings.user_ids))
    elif todo:
        raise CommandError(
            f"{len(todo)} pending migration(s) ({', '.join(todo)}): "
            "run 'taskd migrate' or 'taskd serve --migrate'"
        )
    else:
        migrate.check_user_ids(database_url, settings.user_ids)
        log.info("%s", migrate.summary([], 0))
    metrics.use_multiprocess_dir()
    try:
        sockets = server.listen(settings)
    except server.ListenError as error:
        raise CommandError(str(error)) from None
    base_url = f"http://{settings.host}:{server.bound_port(sockets)}"

    def announce() -> None:
        log.info("listening on %s", base_url)
        # Only with a secret: the token printed is HS256, which a JWKS-only taskd refuses.
        if settings.embedded and settings.secret is not None:
            _print_dev_instructions(settings, base_url)

    served = settings.replace(database_url=database_url)
    try:
        return daemon.run(served, database_url, sockets, announce)
    except PoolTimeout:
        raise CommandError("the database did not accept connections in time") from None


def _print_dev_instructions(settings: Settings, base_url: str) -> None:
    token = _mint(settings, DEV_TOKEN_USER, DEV_TOKEN_TTL)
    auth = shlex.quote(f"Authorization: Bearer {token}")
    tasks_url = f"{base_url}/api/{DEV_TOKEN_USER}/tasks"
    # Short enough to fit an 80 x 24 terminal with the start-up log lines, the token lines
    # wrapped (tests/test_cli.py checks).
    print(
        f"\ntaskd is serving {base_url} on the embedded PostgreSQL in {settings.data_dir}\n"
        f"  API documentation  {base_url}/docs\n"
        f"  OpenAPI document   {base_url}/openapi.json\n\n"
        f"A token for user {DEV_TOKEN_USER}, valid for 24 hours:\n  {token}\n\n"
        f"Try it:\n  curl -H {auth} {tasks_url}\n\n"
        f"  curl -H {auth} -H 'Content-Type: application/json' "
        f"""-d '{{"title": "Try taskd"}}' {tasks_url}\n""",
        flush=True,
    )


def _migrate(settings: Settings, rollback: bool) -> int:
    database_url = _database_url(settings)
    try:
        if rollback:
            undone = migrate.rollback(database_url)
            print(f"rolled back {undone}" if undone else "nothing to roll back")
        else:
            print(_apply_migrations(database_url, settings.user_ids))
    except ConfigError:
        raise
    except Exception as error:
        raise CommandError(f"migration failed: {error}") from None
    return 0


def _apply_migrations(database_url: str, user_ids: str) -> str:
    """Applies the pending migrations, for a deployment of `user_ids`; returns the line that sums
    them up."""
    started = time.monotonic()
    applied = migrate.apply(database_url, user_ids)
    return migrate.summary(applied, time.monotonic() - started)


def _token(settings: Settings, user: str, ttl: int) -> int:
    user_id = _user_id_option(settings, user)
    if ttl <= 0:
        raise ConfigError("--ttl: must be a positive number of seconds")
    print(_mint(settings, user_id, ttl))
    return 0


def _user_id_option(settings: Settings, value: str) -> UserId:
    """The --user-id of a command, a user id of the deployment's kind (TASKD_USER_IDS)."""
    user_id = parse_user_id(settings.user_ids, value)
    if user_id is None:
        raise ConfigError(f"--user-id: must be {DESCRIPTIONS[settings.user_ids]}")
    return user_id


def _mint(settings: Settings, user_id: UserId, ttl: int) -> str:
    return issue_token(
        _secret(settings),
        user_id,
        ttl,
        now=time.time(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


def _smoke(settings: Settings, args: argparse.Namespace) -> int:
    try:
        base_url = smoke.base_url_of(args.url)
    except ValueError as error:
        raise ConfigError(f"--url: {error}") from None
    if args.user_id is not None:
        user_id = _user_id_option(settings, args.user_id)
    elif args.token is not None:
        user_id = _token_user(settings, args.token)
    else:
        user_id = smoke.DEFAULT_USER_IDS[settings.user_ids]
    token = args.token if args.token is not None else _mint(settings, user_id, smoke.TOKEN_TTL)

    def print_line(step: smoke.Step) -> None:
        if not args.json:
            print(step.line(), flush=True)

    test = smoke.SmokeTest(base_url, user_id, token, timeout=args.timeout, on_step=print_line)
    test.run()
    print(json.dumps(test.report(), indent=2) if args.json else test.summary())
    return 0 if test.passed else 1


def _token_user(settings: Settings, token: str) -> UserId:
    """The user a token speaks for, read without verifying it (the server will)."""
    try:
        subject = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.InvalidTokenError:
        raise ConfigError("--token: not a JWT") from None
    user_id = parse_user_id(settings.user_ids, str(subject))
    if user_id is None:
        raise ConfigError("--token: its sub is no user id; give --user-id")
    return user_id
