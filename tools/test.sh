#!/usr/bin/env bash
# `make test`: start the test fleet once, run every suite against it, stop it
# (also when a suite fails), and exit non-zero if anything failed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
py="$root/.venv/bin/python"
export PATH="$root/.venv/bin:$PATH"
export DBFLEET_STATE_DIR="${DBFLEET_STATE_DIR:-/tmp/dbhygiene-fleet-test}"
export DBFLEET_POSTGRES="${DBFLEET_POSTGRES:-3}" DBFLEET_MARIADB="${DBFLEET_MARIADB:-3}"
# Last octet of the first server address; another value lets a second fleet run beside this one.
export DBFLEET_FIRST="${DBFLEET_FIRST:-1}"
export ANSIBLE_COLLECTIONS_PATH="$root/.build/collections"

"$py" -m dbfleet up --postgres "$DBFLEET_POSTGRES" --mariadb "$DBFLEET_MARIADB" --first "$DBFLEET_FIRST" || exit 1
trap '"$py" -m dbfleet down' EXIT

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
step sanity bash tools/sanity.sh
step changelog antsibull-changelog lint
step pytest "$py" -m pytest -q -p no:cacheprovider --junitxml="$junit" tests/unit tests/integration
if [ -x tools/molecule.sh ]; then
  step molecule bash tools/molecule.sh
fi
step ansible-lint ansible-lint --profile production

echo
echo "steps passed: ${passed[*]:-none}"
echo "steps failed: ${failed[*]:-none}"
# One closing line with the test counts (pytest's own summary is above).
"$py" - "$junit" "${#failed[@]}" <<'PY'
import sys
import xml.etree.ElementTree as ET

try:
    root = ET.parse(sys.argv[1]).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    tests, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    print("tests: %d passed, %d failed, %d skipped" % (tests - failures - errors - skipped, failures + errors, skipped))
except (OSError, ET.ParseError, AttributeError):
    print("tests: 0 passed, 1 failed")
PY
[ ${#failed[@]} -eq 0 ]
