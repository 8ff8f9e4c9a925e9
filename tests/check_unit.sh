#!/usr/bin/env bash
# The unit check (`make check-unit`): `systemd-analyze verify` finds nothing to say about
# taskd.service, and `systemd-analyze security` rates it "OK" or better: an overall exposure of
# at most 2.5 (on systemd's scale of 0 to 10).
#
# verify insists that ExecStart= binaries exist, so it reads a copy of the unit in which the
# installed path /opt/taskd/bin/taskd is this checkout's .venv/bin/taskd (made by `make`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TASKD=${TASKD:-$ROOT/.venv/bin/taskd}
MAX_EXPOSURE=2.5

fail() {
    echo "check-unit: FAIL: $*" >&2
    exit 1
}

[[ -x $TASKD ]] || fail "$TASKD is missing: run make first"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
sed "s#/opt/taskd/bin/taskd#$TASKD#g" "$ROOT/taskd.service" >"$WORK/taskd.service"

findings=$(systemd-analyze verify "$WORK/taskd.service" 2>&1) || fail "verify: $findings"
[[ -z $findings ]] || fail "verify: $findings"

report=$(systemd-analyze security --offline=true "$WORK/taskd.service")
exposure=$(sed -n 's/.*Overall exposure level for taskd\.service: \([0-9.]*\).*/\1/p' <<<"$report")
[[ -n $exposure ]] || fail "no overall exposure in: $report"
awk -v exposure="$exposure" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(exposure <= max) }' ||
    fail "exposure $exposure is above $MAX_EXPOSURE:
$(grep '✗' <<<"$report")"

echo "check-unit: verify clean, exposure $exposure (at most $MAX_EXPOSURE)"
