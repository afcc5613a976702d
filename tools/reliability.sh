#!/usr/bin/env bash
# The reliability suite (issue 8): the flipping-sessions race on both engines,
# pgbench under sweeps, concurrent sweeps, frozen and stopped servers, secrets
# at -vvv. Real servers, bounded in count and time, prints figures (lines
# starting with FIGURE), asserts only what must hold.
#
#   bash tools/reliability.sh [pytest args, e.g. -k race]
#
# It starts its own fleet (2 PostgreSQL + 2 MariaDB) and stops it at the end:
#   RELIABILITY_STATE_DIR  fleet state directory (default /tmp/dbhygiene-fleet-reliability)
#   RELIABILITY_FIRST      last octet of the first address (default 160: 127.0.1.160, 127.0.2.160, ...)
#   RELIABILITY_TIMEOUT    hard stop of the whole suite in seconds (default 900)
# Knobs of the tests (defaults in tests/reliability/*.py): RELIABILITY_RACE_KILLS,
# RELIABILITY_RACE_SECONDS, RELIABILITY_RACE_LOADED_SECONDS (the race beside two CPU hogs),
# RELIABILITY_RACE_PLAY_KILLS, RELIABILITY_ALLOWED_WRONG_KILLS,
# RELIABILITY_PGBENCH_SECONDS, RELIABILITY_FREEZE_CAP, RELIABILITY_CONCURRENT_GHOSTS,
# RELIABILITY_WAKE_RACE_KILLS, RELIABILITY_WAKE_RACE_SECONDS (and the others of test_wake_race.py),
# RELIABILITY_TRX_ROUNDS, RELIABILITY_TRX_SESSIONS (and the others of test_transaction_state.py).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
py="$root/.venv/bin/python"
if [ ! -x "$py" ]; then
  echo "reliability: no $py; run \`make venv collection\` first" >&2
  exit 1
fi
export PATH="$root/.venv/bin:$PATH"
export DBFLEET_STATE_DIR="${RELIABILITY_STATE_DIR:-/tmp/dbhygiene-fleet-reliability}"
export DBFLEET_FIRST="${RELIABILITY_FIRST:-160}" DBFLEET_POSTGRES=2 DBFLEET_MARIADB=2
export ANSIBLE_COLLECTIONS_PATH="$root/.build/collections"
mkdir -p "$root/.build"
figures="$root/.build/reliability-figures.txt"
junit="$root/.build/reliability-junit.xml"
: >"$figures"
rm -f "$junit"
export RELIABILITY_FIGURES="$figures"

"$py" -m dbfleet up --postgres 2 --mariadb 2 --first "$DBFLEET_FIRST" || exit 1
cleanup() {
  # A fault test stopped by the timeout may leave a server frozen (SIGSTOP): thaw the fleet's
  # servers (by their pid files) so that `down` can stop them.
  local pidfile pid
  for pidfile in "$DBFLEET_STATE_DIR"/*/data/postmaster.pid "$DBFLEET_STATE_DIR"/*/sock/mysqld.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(head -n 1 "$pidfile")
    # shellcheck disable=SC2046 # the children's pids, one word each
    kill -CONT "$pid" $(pgrep -P "$pid") 2>/dev/null
  done
  "$py" -m dbfleet down >/dev/null
}
trap cleanup EXIT

start=$SECONDS
timeout -k 30 "${RELIABILITY_TIMEOUT:-900}" "$py" -m pytest -q -s -p no:cacheprovider \
  --junitxml="$junit" tests/reliability "$@"
status=$?
[ $status -eq 124 ] && echo "reliability: stopped after ${RELIABILITY_TIMEOUT:-900}s (RELIABILITY_TIMEOUT)"

echo
echo "=== reliability figures ($((SECONDS - start)) s)"
sed 's/^FIGURE /- /' "$figures"
"$py" - "$junit" <<'PY'
import sys
import xml.etree.ElementTree as ET

try:
    root = ET.parse(sys.argv[1]).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    tests, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    print("%d passed, %d failed" % (tests - failures - errors - skipped, failures + errors))
except (OSError, ET.ParseError, AttributeError):
    print("0 passed, 1 failed")
PY
[ $status -eq 0 ]
