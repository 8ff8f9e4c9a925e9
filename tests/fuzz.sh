#!/usr/bin/env bash
# The fuzzing run (`make fuzz`): schemathesis, a tool we did not write, against a live taskd on
# a fresh database, driven only by taskd's own /openapi.json: every check it has (server errors,
# status codes, headers and bodies against the document, ignored auth, use after free, ...),
# its coverage and fuzzing phases, and stateful runs along the document's links. The seed is
# fixed so a failure reproduces. Everything it creates is removed either way.
#
# Environment: TASKD_TEST_DATABASE_URL names the PostgreSQL server's maintenance database
# (default postgresql://postgres@127.0.0.1:5432/postgres); FUZZ_EXAMPLES (default 150) is the
# number of test cases per operation and phase; FUZZ_SEED (default 20261125) the seed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.venv/bin
WORK=$(mktemp -d)
LIVE_NAME=fuzz LIVE_PYTHON=$BIN/python LIVE_TASKD=$BIN/taskd LIVE_WORK=$WORK
# shellcheck source=tests/live_taskd.sh
source "$ROOT/tests/live_taskd.sh"

cleanup() {
    local status=$?
    set +e
    live_cleanup
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

live_database
live_serve --migrate

# Each request carries a token for the user its URL names (tests/fuzz_hooks.py).
export SCHEMATHESIS_HOOKS=fuzz_hooks PYTHONPATH=$ROOT/tests
"$BIN/schemathesis" --config-file "$ROOT/tests/schemathesis.toml" run "$BASE_URL/openapi.json" \
    --checks all \
    --seed "${FUZZ_SEED:-20261125}" \
    --max-examples "${FUZZ_EXAMPLES:-150}" \
    --request-timeout 10 \
    --no-color
server_errors=$(grep -cE '"status": ?5[0-9][0-9][,}]' "$WORK/serve.log" || true)
[[ $server_errors -eq 0 ]] || fail "taskd logged $server_errors responses with a 5xx status"
live_stop
echo "fuzz: OK"
