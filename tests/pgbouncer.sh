#!/usr/bin/env bash
# `make test-pgbouncer`: the whole test suite with the app talking to PostgreSQL through
# PgBouncer in transaction mode, the way a deployment behind PgBouncer (or Neon's pooler) does.
# PgBouncer runs from a scratch directory on a free loopback port, with a wildcard database
# entry so that every database the tests create is reachable through it, and is stopped at the
# end. tests/conftest.py sees TASKD_TEST_PGBOUNCER_URL and gives the app that route, while it
# creates, migrates and drops the databases directly on the server.
#
# Environment: TASKD_TEST_DATABASE_URL names the PostgreSQL server's maintenance database
# (default postgresql://postgres@127.0.0.1:5432/postgres; the embedded server of a plain
# `make test` is not used here). Arguments, if any, replace pytest's default `tests`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.venv/bin
SERVER_URL=${TASKD_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
WORK=$(mktemp -d)
PGBOUNCER_PID=

cleanup() {
    local status=$?
    set +e
    if [[ -n $PGBOUNCER_PID ]]; then
        kill -TERM "$PGBOUNCER_PID" 2>/dev/null
        wait "$PGBOUNCER_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

fail() {
    echo "test-pgbouncer: FAIL: $*" >&2
    exit 1
}

command -v pgbouncer >/dev/null || fail "pgbouncer is not installed (Debian: apt-get install pgbouncer)"

# The server's address and user from the URL, and a loopback port nothing listens on. Clients
# are trusted on loopback; PgBouncer logs in to the server as the same user, with the URL's
# password (from the auth file) when the server asks for one.
read -r DB_HOST DB_PORT DB_USER LISTEN_PORT < <("$BIN/python" -c '
import socket
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

url = urlsplit(sys.argv[1])
user, password = unquote(url.username or "postgres"), unquote(url.password or "")
# Auth file lines are "user" "password", with any double quote doubled.
quoted = ["\"" + value.replace("\"", "\"\"") + "\"" for value in (user, password)]
Path(sys.argv[2]).write_text(" ".join(quoted) + "\n")
with socket.socket() as free:
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
print(url.hostname or "127.0.0.1", url.port or 5432, user, port)
' "$SERVER_URL" "$WORK/userlist.txt")
cat >"$WORK/pgbouncer.ini" <<EOF
[databases]
* = host=$DB_HOST port=$DB_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $LISTEN_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = transaction
; Forget every server session's state when its transaction ends, so that anything that leans on
; session state breaks on every run instead of whenever two clients happen to share a server.
server_reset_query = DISCARD ALL
server_reset_query_always = 1
; Room for the live taskd processes and the concurrency tests' simultaneous requests.
max_client_conn = 1000
default_pool_size = 40
EOF

# PgBouncer refuses to run as root; it can drop to another user itself (`-u`), who must be
# able to read the scratch directory.
run_as=()
if [[ $(id -u) -eq 0 ]]; then
    run_as=(-u postgres)
    chmod 755 "$WORK"
    chmod 644 "$WORK"/*
fi
pgbouncer "${run_as[@]}" "$WORK/pgbouncer.ini" >"$WORK/pgbouncer.log" 2>&1 &
PGBOUNCER_PID=$!

PGBOUNCER_URL="postgresql://$DB_USER@127.0.0.1:$LISTEN_PORT/postgres"
connects_through_pgbouncer() {
    "$BIN/python" -c '
import sys

import psycopg

psycopg.connect(sys.argv[1], connect_timeout=2).close()
' "$PGBOUNCER_URL" 2>/dev/null
}
for _ in $(seq 100); do
    connects_through_pgbouncer && break
    kill -0 "$PGBOUNCER_PID" 2>/dev/null || fail "pgbouncer exited: $(cat "$WORK/pgbouncer.log")"
    sleep 0.1
done
connects_through_pgbouncer || fail "no connection through pgbouncer: $(cat "$WORK/pgbouncer.log")"

echo "test-pgbouncer: $(pgbouncer --version | head -n 1), transaction mode, 127.0.0.1:$LISTEN_PORT"
TASKD_TEST_DATABASE_URL=$SERVER_URL TASKD_TEST_PGBOUNCER_URL=$PGBOUNCER_URL \
    "$BIN/pytest" "${@:-tests}"
