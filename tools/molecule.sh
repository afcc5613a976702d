#!/usr/bin/env bash
# Molecule scenarios of the roles against the running test fleet (make test starts
# it and exports DBFLEET_STATE_DIR). Each run holds its sessions under a tag of its
# own, so it can run beside other tests on the same servers.
# Usage: tools/molecule.sh [role ...] (default: every role's scenario).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.venv/bin:$PATH"
export DBFLEET_STATE_DIR="${DBFLEET_STATE_DIR:-/tmp/dbhygiene-fleet}"
export ANSIBLE_COLLECTIONS_PATH="$root/.build/collections"
if [ ! -f "$DBFLEET_STATE_DIR/inventory.yml" ]; then
  echo "molecule.sh: no fleet at $DBFLEET_STATE_DIR; run make fleet-up (or make test)" >&2
  exit 1
fi
failed=0
# Every role with a molecule scenario; `tools/molecule.sh drain` runs one role's alone.
roles=("$@")
if [ ${#roles[@]} -eq 0 ]; then
  for dir in "$root"/roles/*/molecule/default; do
    roles+=("$(basename "$(dirname "$(dirname "$dir")")")")
  done
fi
for role in "${roles[@]}"; do
  DBHYGIENE_MOLECULE_TAG="mol-$role-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export DBHYGIENE_MOLECULE_TAG
  echo "--- molecule test: roles/$role (sessions tagged $DBHYGIENE_MOLECULE_TAG)"
  if ! (cd "$root/roles/$role" && molecule test); then
    echo "--- molecule test: roles/$role FAILED"
    failed=1
  fi
done
exit $failed
