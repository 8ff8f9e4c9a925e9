#!/usr/bin/env bash
# The install check (`make check-install`): a non-editable `pip install` of this checkout into a
# fresh venv outside it, then, from outside the checkout, `taskd migrate`, `taskd serve` and one
# authenticated request against a fresh database. Everything it creates is removed either way.
#
# Environment: PYTHON (default python3) makes the venv; TASKD_TEST_DATABASE_URL names the
# PostgreSQL server's maintenance database (default postgresql://postgres@127.0.0.1:5432/postgres).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
SERVER_URL=${TASKD_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
DATABASE=taskd_check_install_$$_$RANDOM
USER_ID=42

WORK=$(mktemp -d)
VENV=$WORK/venv
SERVER_PID=
DATABASE_CREATED=

fail() {
    echo "check-install: FAIL: $*" >&2
    exit 1
}

# Runs one SQL statement on the server's maintenance database, with the installed psycopg.
admin_sql() {
    "$VENV/bin/python" - "$SERVER_URL" "$1" <<'EOF'
import sys

import psycopg

with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(sys.argv[2])
EOF
}

cleanup() {
    local status=$?
    set +e
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null
    fi
    if [[ -n $DATABASE_CREATED ]]; then
        admin_sql "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" ||
            echo "check-install: could not drop database $DATABASE" >&2
    fi
    rm -rf "$WORK"
    if [[ $status -eq 0 ]]; then
        echo "check-install: OK"
    else
        echo "check-install: FAILED (exit status $status)" >&2
    fi
    exit "$status"
}
trap cleanup EXIT

echo "check-install: installing $ROOT into $VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "$ROOT"

# From here on, nothing may come from the checkout.
cd "$WORK"
installed=$("$VENV/bin/python" -c 'import taskd; print(taskd.__file__)')
[[ $installed == "$VENV"/* ]] || fail "taskd imported from $installed, not from the venv"

DATABASE_URL=$("$VENV/bin/python" -c '
import sys
from urllib.parse import urlsplit

print(urlsplit(sys.argv[1])._replace(path="/" + sys.argv[2]).geturl())
' "$SERVER_URL" "$DATABASE")
BETTER_AUTH_SECRET=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(48))')
export DATABASE_URL BETTER_AUTH_SECRET
export API_HOST=127.0.0.1 TASKD_DATA_DIR=$WORK/data

admin_sql "CREATE DATABASE $DATABASE"
DATABASE_CREATED=1

echo "check-install: taskd migrate"
migrated=$("$VENV/bin/taskd" migrate 2>"$WORK/migrate.log") ||
    fail "taskd migrate: $(cat "$WORK/migrate.log")"
[[ $migrated == applied* ]] || fail "taskd migrate printed '$migrated'"

echo "check-install: taskd serve"
"$VENV/bin/taskd" serve --port 0 >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER_PID=$!
BASE_URL=
for _ in $(seq 300); do
    BASE_URL=$(sed -n 's/.*listening on \(http:[^ "]*\).*/\1/p' "$WORK/serve.log" | head -n 1)
    [[ -n $BASE_URL ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "taskd serve exited: $(cat "$WORK/serve.log")"
    sleep 0.1
done
[[ -n $BASE_URL ]] || fail "taskd serve did not start listening: $(cat "$WORK/serve.log")"

TOKEN=$("$VENV/bin/taskd" token --user-id "$USER_ID" --ttl 300)
status=$(curl --silent --show-error --max-time 10 --output "$WORK/response" \
    --write-out '%{http_code}' -H "Authorization: Bearer $TOKEN" "$BASE_URL/api/$USER_ID/tasks")
[[ $status == 200 ]] || fail "GET /api/$USER_ID/tasks: HTTP $status: $(cat "$WORK/response")"
[[ $(cat "$WORK/response") == "[]" ]] || fail "GET /api/$USER_ID/tasks: $(cat "$WORK/response")"
echo "check-install: GET $BASE_URL/api/$USER_ID/tasks -> 200"

kill -TERM "$SERVER_PID"
server_status=0
wait "$SERVER_PID" || server_status=$?
SERVER_PID=
[[ $server_status -eq 0 ]] ||
    fail "taskd serve exited with status $server_status on SIGTERM: $(cat "$WORK/serve.log")"
