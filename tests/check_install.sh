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
USER_ID=42
WORK=$(mktemp -d)
VENV=$WORK/venv
LIVE_NAME=check-install LIVE_PYTHON=$VENV/bin/python LIVE_TASKD=$VENV/bin/taskd LIVE_WORK=$WORK
# shellcheck source=tests/live_taskd.sh
source "$ROOT/tests/live_taskd.sh"

trap live_exit EXIT

echo "check-install: installing $ROOT into $VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "$ROOT"

# From here on, nothing may come from the checkout.
cd "$WORK"
installed=$("$VENV/bin/python" -c 'import taskd; print(taskd.__file__)')
[[ $installed == "$VENV"/* ]] || fail "taskd imported from $installed, not from the venv"

live_database

echo "check-install: taskd migrate"
migrated=$("$VENV/bin/taskd" migrate 2>"$WORK/migrate.log") ||
    fail "taskd migrate: $(cat "$WORK/migrate.log")"
[[ $migrated == applied* ]] || fail "taskd migrate printed '$migrated'"

echo "check-install: taskd serve"
live_serve

TOKEN=$("$VENV/bin/taskd" token --user-id "$USER_ID" --ttl 300)
status=$(curl --silent --show-error --max-time 10 --output "$WORK/response" \
    --write-out '%{http_code}' -H "Authorization: Bearer $TOKEN" "$BASE_URL/api/$USER_ID/tasks")
[[ $status == 200 ]] || fail "GET /api/$USER_ID/tasks: HTTP $status: $(cat "$WORK/response")"
[[ $(cat "$WORK/response") == "[]" ]] || fail "GET /api/$USER_ID/tasks: $(cat "$WORK/response")"
echo "check-install: GET $BASE_URL/api/$USER_ID/tasks -> 200"

live_stop
