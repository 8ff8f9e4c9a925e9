#!/usr/bin/env bash
# The fuzzing run (`make fuzz`): schemathesis, a tool we did not write, against a live taskd on
# a fresh database, driven only by taskd's own /openapi.json: every check it has (server errors,
# status codes, headers and bodies against the document, ignored auth, use after free, ...),
# its examples, coverage and fuzzing phases, and stateful runs along the document's links. The
# seed is fixed so a failure reproduces. Everything it creates is removed either way.
#
# Environment: TASKD_TEST_DATABASE_URL names the PostgreSQL server's maintenance database
# (default postgresql://postgres@127.0.0.1:5432/postgres); FUZZ_EXAMPLES (default 150) is the
# number of test cases per operation and phase; FUZZ_SEED (default 20261125) the seed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.venv/bin
SERVER_URL=${TASKD_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
DATABASE=taskd_fuzz_$$_$RANDOM

WORK=$(mktemp -d)
SERVER_PID=
DATABASE_CREATED=

fail() {
    echo "fuzz: FAIL: $*" >&2
    exit 1
}

admin_sql() {
    "$BIN/python" -c '
import sys

import psycopg

with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(sys.argv[2])
' "$SERVER_URL" "$1"
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
            echo "fuzz: could not drop database $DATABASE" >&2
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

DATABASE_URL=$("$BIN/python" -c '
import sys
from urllib.parse import urlsplit

print(urlsplit(sys.argv[1])._replace(path="/" + sys.argv[2]).geturl())
' "$SERVER_URL" "$DATABASE")
BETTER_AUTH_SECRET=$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(48))')
export DATABASE_URL BETTER_AUTH_SECRET API_HOST=127.0.0.1 TASKD_DATA_DIR=$WORK/data

admin_sql "CREATE DATABASE $DATABASE"
DATABASE_CREATED=1

"$BIN/taskd" serve --migrate --port 0 >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER_PID=$!
BASE_URL=
for _ in $(seq 300); do
    BASE_URL=$(sed -n 's/.*listening on \(http:[^ "]*\).*/\1/p' "$WORK/serve.log" | head -n 1)
    [[ -n $BASE_URL ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "taskd serve exited: $(cat "$WORK/serve.log")"
    sleep 0.1
done
[[ -n $BASE_URL ]] || fail "taskd serve did not start listening: $(cat "$WORK/serve.log")"

export SCHEMATHESIS_HOOKS=fuzz_hooks PYTHONPATH=$ROOT/tests
"$BIN/schemathesis" --config-file "$ROOT/tests/schemathesis.toml" run "$BASE_URL/openapi.json" \
    --checks all \
    --seed "${FUZZ_SEED:-20261125}" \
    --max-examples "${FUZZ_EXAMPLES:-150}" \
    --request-timeout 10 \
    --no-color
server_errors=$(grep -cE '"status": ?5[0-9][0-9][,}]' "$WORK/serve.log" || true)
[[ $server_errors -eq 0 ]] || fail "taskd logged $server_errors responses with a 5xx status"
echo "fuzz: OK"
