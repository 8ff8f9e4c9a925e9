# Sourced by tests/check_install.sh, tests/check_clients.sh and tests/fuzz.sh: a fresh database
# on the PostgreSQL server that TASKD_TEST_DATABASE_URL names (default
# postgresql://postgres@127.0.0.1:5432/postgres), a `taskd serve` on it, and their removal. The
# caller sets LIVE_NAME (for messages), LIVE_PYTHON (a python with psycopg), LIVE_TASKD (the taskd
# command) and LIVE_WORK (a scratch directory), and calls live_cleanup from its EXIT trap (or
# makes live_exit its EXIT trap).

SERVER_URL=${TASKD_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
DATABASE=taskd_${LIVE_NAME//-/_}_$$_$RANDOM
SERVER_PID=
DATABASE_CREATED=

fail() {
    echo "$LIVE_NAME: FAIL: $*" >&2
    exit 1
}

# Runs one SQL statement on the server's maintenance database.
admin_sql() {
    "$LIVE_PYTHON" -c '
import sys

import psycopg

with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(sys.argv[2])
' "$SERVER_URL" "$1"
}

# Creates the database and exports what `taskd` needs to use it.
live_database() {
    DATABASE_URL=$("$LIVE_PYTHON" -c '
import sys
from urllib.parse import urlsplit

print(urlsplit(sys.argv[1])._replace(path="/" + sys.argv[2]).geturl())
' "$SERVER_URL" "$DATABASE")
    BETTER_AUTH_SECRET=$("$LIVE_PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))')
    export DATABASE_URL BETTER_AUTH_SECRET API_HOST=127.0.0.1 TASKD_DATA_DIR=$LIVE_WORK/data
    admin_sql "CREATE DATABASE $DATABASE"
    DATABASE_CREATED=1
}

# Starts `taskd serve --port 0 "$@"` and sets BASE_URL once it listens.
live_serve() {
    "$LIVE_TASKD" serve --port 0 "$@" >"$LIVE_WORK/serve.out" 2>"$LIVE_WORK/serve.log" &
    SERVER_PID=$!
    BASE_URL=
    for _ in $(seq 300); do
        BASE_URL=$(sed -n 's/.*listening on \(http:[^ "]*\).*/\1/p' "$LIVE_WORK/serve.log" | head -n 1)
        [[ -n $BASE_URL ]] && return
        kill -0 "$SERVER_PID" 2>/dev/null || fail "taskd serve exited: $(cat "$LIVE_WORK/serve.log")"
        sleep 0.1
    done
    fail "taskd serve did not start listening: $(cat "$LIVE_WORK/serve.log")"
}

# Sends SIGTERM and fails unless taskd exits with status 0.
live_stop() {
    kill -TERM "$SERVER_PID"
    local status=0
    wait "$SERVER_PID" || status=$?
    SERVER_PID=
    [[ $status -eq 0 ]] ||
        fail "taskd serve exited with status $status on SIGTERM: $(cat "$LIVE_WORK/serve.log")"
}

live_cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null
    fi
    if [[ -n $DATABASE_CREATED ]]; then
        admin_sql "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" ||
            echo "$LIVE_NAME: could not drop database $DATABASE" >&2
    fi
}

# An EXIT trap: live_cleanup, LIVE_WORK removed, and a last line that says how the check ended.
live_exit() {
    local status=$?
    set +e
    live_cleanup
    rm -rf "$LIVE_WORK"
    if [[ $status -eq 0 ]]; then
        echo "$LIVE_NAME: OK"
    else
        echo "$LIVE_NAME: FAILED (exit status $status)" >&2
    fi
    exit "$status"
}
