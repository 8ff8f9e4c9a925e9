#!/usr/bin/env bash
# The generated-client check (`make check-clients`): a live taskd on a fresh database, its
# /openapi.json fed to the generators frontend and SDK users reach for (openapi-typescript 7 with
# openapi-fetch, @hey-api/openapi-ts, openapi-python-client) with their default options, and a
# flow written against each generated client (tests/clients/): type-checked with `tsc --strict` and
# `mypy --strict`, which must report no error, then run against the live server. A flow exits
# non-zero when any answer differs from what it expects.
#
# It installs what it needs: the npm packages of tests/clients/package-lock.json (`npm ci`, into
# tests/clients/node_modules) and the Python ones of tests/clients/requirements.txt (into the venv
# tests/clients/.venv), each again only when its pins change. Needs Node.js 20.19 or later.
#
# Environment: TASKD_TEST_DATABASE_URL names the PostgreSQL server's maintenance database
# (default postgresql://postgres@127.0.0.1:5432/postgres).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.venv/bin
CLIENTS=$ROOT/tests/clients
CLIENTS_VENV=$CLIENTS/.venv
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
LIVE_NAME=check-clients LIVE_PYTHON=$BIN/python LIVE_TASKD=$BIN/taskd LIVE_WORK=$WORK
# shellcheck source=tests/live_taskd.sh
source "$ROOT/tests/live_taskd.sh"

trap live_exit EXIT

step() {
    echo "check-clients: $*"
}

# Runs a command with its output in $WORK/NAME.log, shown only if it fails.
quietly() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 || fail "$name: $(cat "$WORK/$name.log")"
}

node -e 'const [major, minor] = process.versions.node.split(".").map(Number);
process.exit(major > 20 || (major === 20 && minor >= 19) ? 0 : 1)' ||
    fail "Node.js 20.19 or later is needed (@hey-api/openapi-ts), found $(node --version)"

if [[ ! $CLIENTS/node_modules/.installed -nt $CLIENTS/package-lock.json ]]; then
    step "npm ci in $CLIENTS"
    (cd "$CLIENTS" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$CLIENTS/node_modules/.installed"
fi
if [[ ! $CLIENTS_VENV/.installed -nt $CLIENTS/requirements.txt ]]; then
    step "installing $CLIENTS/requirements.txt into $CLIENTS_VENV"
    rm -rf "$CLIENTS_VENV"
    "$PYTHON" -m venv "$CLIENTS_VENV"
    "$CLIENTS_VENV/bin/pip" install -q --disable-pip-version-check -r "$CLIENTS/requirements.txt"
    touch "$CLIENTS_VENV/.installed"
fi

live_database
live_serve --migrate
curl --silent --show-error --fail --max-time 10 --output "$WORK/openapi.json" "$BASE_URL/openapi.json"

# The TypeScript flows and both generated clients are one tsc project in $TS, whose node_modules
# is the checkout's; the Python flow and its generated package are in $PY.
TS=$WORK/ts
mkdir -p "$TS/generated"
cp "$CLIENTS"/{package.json,tsconfig.json,*.ts} "$TS"
ln -s "$CLIENTS/node_modules" "$TS/node_modules"
PY=$WORK/py
mkdir -p "$PY"
cp "$CLIENTS/python_flow.py" "$PY"

step "generating with openapi-typescript, @hey-api/openapi-ts and openapi-python-client"
quietly openapi-typescript "$TS/node_modules/.bin/openapi-typescript" "$WORK/openapi.json" \
    --output "$TS/generated/openapi-typescript.ts"
# @hey-api/openapi-ts reads tsconfig.json from the working directory for its import style.
quietly openapi-ts env -C "$TS" node_modules/.bin/openapi-ts --input "$WORK/openapi.json" \
    --output generated/hey-api --client @hey-api/client-fetch --no-log-file
# Its post-generation hooks run ruff, which the venv has.
quietly openapi-python-client env -C "$PY" PATH="$CLIENTS_VENV/bin:$PATH" \
    "$CLIENTS_VENV/bin/openapi-python-client" generate \
    --path "$WORK/openapi.json" --meta none --output-path taskd_client
if grep -q "Warning" "$WORK/openapi-python-client.log"; then
    fail "openapi-python-client warned: $(cat "$WORK/openapi-python-client.log")"
fi

# Both checkers run with --strict; the errors they list are counted, and any is a failure (as is
# an exit status without one listed).
typecheck() {
    local name=$1 pattern=$2
    shift 2
    local status=0 errors
    "$@" --strict >"$WORK/$name.log" 2>&1 || status=$?
    errors=$(grep -cE "$pattern" "$WORK/$name.log" || true)
    step "$name --strict: $errors errors"
    [[ $status -eq 0 && $errors -eq 0 ]] || fail "$name: $(cat "$WORK/$name.log")"
}
typecheck tsc "error TS[0-9]+" "$TS/node_modules/.bin/tsc" -p "$TS"
typecheck mypy ": error:" env -C "$PY" "$CLIENTS_VENV/bin/mypy" --no-incremental python_flow.py

# Each flow as its own two users, so that none sees another's tasks.
flow() {
    local user=$1
    shift
    TASKD_URL=$BASE_URL \
        TASKD_TOKEN=$("$BIN/taskd" token --user-id "$user" --ttl 300) \
        TASKD_OTHER_TOKEN=$("$BIN/taskd" token --user-id "$((user + 1))" --ttl 300) \
        "$@"
}
flow 101 node "$TS/build/openapi-fetch-flow.js"
flow 201 node "$TS/build/hey-api-flow.js"
flow 301 env -C "$PY" "$CLIENTS_VENV/bin/python" python_flow.py

server_errors=$(grep -cE '"status": ?5[0-9][0-9][,}]' "$WORK/serve.log" || true)
[[ $server_errors -eq 0 ]] || fail "taskd logged $server_errors responses with a 5xx status"
live_stop
