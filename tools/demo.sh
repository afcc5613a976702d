#!/usr/bin/env bash
# `make demo`: the product in two minutes, on a small fleet of real servers.
# Starts 2 PostgreSQL + 1 MariaDB (127.0.1.101-102, 127.0.2.101; apart from the
# test fleet; DEMO_FIRST=N starts them at .N instead of .101), plants ghost sessions
# next to legitimate work and a lock chain (a transaction left open that the web
# app's updates queue behind), audits in check mode, enforces, audits again.
# `make demo-down` stops the fleet.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py="$root/.venv/bin/python"
export PATH="$root/.venv/bin:$PATH"
export DBFLEET_STATE_DIR="${DBFLEET_STATE_DIR:-/tmp/dbhygiene-fleet-demo}"
export ANSIBLE_COLLECTIONS_PATH="$root/.build/collections"
export ANSIBLE_NOCOLOR=1 ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false
work="$DBFLEET_STATE_DIR/demo"
tag=demo
first="${DEMO_FIRST:-101}"
# One lock chain on each engine.
lock_servers=pg1,mariadb1

bold=""
plain=""
if [ -t 1 ]; then
  bold=$(tput bold 2>/dev/null || true)
  plain=$(tput sgr0 2>/dev/null || true)
fi
step() {
  echo
  echo "${bold}==> $*${plain}"
}
# Run a playbook quietly; show its recap (and the whole log if it broke for another reason than a failed host).
playbook() {
  local log="$work/last-run.log" rc=0
  ansible-playbook "$@" >"$log" 2>&1 || rc=$?
  sed -n '/^PLAY RECAP/,$p' "$log" | sed '/^$/d'
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then
    cat "$log"
    exit "$rc"
  fi
}

step "1/7 Start a small fleet of real servers: 2 PostgreSQL, 1 MariaDB (127.0.1.$first-$((first + 1)), 127.0.2.$first; $DBFLEET_STATE_DIR)"
uplog=$(mktemp)
# (through a log file: the servers it starts must not inherit our stdout, or `make demo | less` never ends)
"$py" -m dbfleet up --postgres 2 --mariadb 1 --first "$first" >"$uplog" 2>&1 ||
  { cat "$uplog"; exit 1; }
sed 's/^/    /' "$uplog"
rm -f "$uplog"
"$py" -m dbfleet status | sed 's/^/    /'

mkdir -p "$work/group_vars"
chmod 700 "$work"
# The fleet's inventory (hosts, the least-privilege `hygiene` login, its password: mode 0600),
# plus a policy in group_vars: the whole configuration of a real deployment.
install -m 600 "$DBFLEET_STATE_DIR/inventory.yml" "$work/inventory.yml"
cat >"$work/group_vars/databases.yml" <<EOF
---
# One policy for every host of both engines. The durations are seconds so the demo
# is quick; in production they would be 30m, 5m and 2h.
dbhygiene_policy:
  name: demo-sweep
  rules:
    - name: blocking-others         # a transaction others have queued behind for 3s: end it first
      blocking_longer_than: 3s
    - name: ghost-idle              # connections left behind by dead apps and scripts
      states: [idle]
      idle_longer_than: 5s
    - name: stuck-transaction       # BEGIN ... and nothing since: holds locks, blocks vacuum
      states: [idle_in_transaction, idle_in_transaction_aborted]
      idle_longer_than: 5s
    - name: runaway-query           # stop the statement, keep the connection
      states: [active]
      running_longer_than: 5s
      action: cancel
  protect:                          # never touched, whatever the rules say
    applications: ["$tag-webapp", "$tag-etl*"]
    users: [replicator, "backup_*"]
  limits:                           # above these, nothing is ended on that host
    max_terminations: 20
    max_fraction: 0.8
dbhygiene_report_dir: $work/reports
dbhygiene_audit_log: $work/audit.jsonl
EOF
echo "    inventory: $work/inventory.yml"
echo "    policy:    $work/group_vars/databases.yml"
sed -n '/^dbhygiene_policy/,/max_fraction/p' "$work/group_vars/databases.yml" | sed 's/^/      /'

step "2/7 Plant sessions on every server: ghosts next to legitimate work"
"$py" tools/fleet_sessions.py release --tag "$tag"
"$py" tools/fleet_sessions.py hold --tag "$tag" \
  --session webapp:idle --session webapp:idle --session etl-nightly:active \
  --session legacy-cron:idle --session report-export:idle_in_transaction --session adhoc-query:active \
  --session "desktop-client:row_lock_holder@$lock_servers" \
  --session "webapp:row_lock_waiter@$lock_servers" --session "webapp:row_lock_waiter@$lock_servers" |
  sed 's/^/    /'
echo "    legitimate: $tag-webapp (an idle connection pool), $tag-etl-nightly (a long batch): protected"
echo "    ghosts:     $tag-legacy-cron (idle), $tag-report-export (transaction left open), $tag-adhoc-query (runaway)"
echo "    lock chain: on ${lock_servers/,/ and }, $tag-desktop-client updated a row and left its transaction open;"
echo "                two $tag-webapp UPDATEs of that row wait behind it (protected: they are the victims, not the cause)"
echo "    (letting them age past the policy's 5 seconds)"
sleep 6

step "3/7 Audit in check mode: ansible-playbook dbhygiene.sessions.audit -i inventory.yml --check"
playbook dbhygiene.sessions.audit -i "$work/inventory.yml" --check
echo
cat "$work/reports/audit-latest.md"

step "4/7 Enforce: ansible-playbook dbhygiene.sessions.enforce -i inventory.yml"
echo "    (the dry run of the same command is --check --diff)"
playbook dbhygiene.sessions.enforce -i "$work/inventory.yml"
echo
cat "$work/reports/enforce-latest.md"

step "5/7 The audit trail: one JSON line per session ended ($work/audit.jsonl)"
"$py" - "$work/audit.jsonl" "$work/reports/enforce-latest.json" <<'PY'
import json
import sys

lines = [json.loads(line) for line in open(sys.argv[1])]
real = [line for line in lines if not line["check_mode"]]
ended = json.load(open(sys.argv[2]))["totals"]["ended"]  # this run's lines
for line in real[-ended:]:
    print("    %(time).19s %(host)-9s %(outcome)-10s %(rule)-18s pid %(id)-6s %(user)s/%(application)s" % line)
print("\n    one line in full:")
print("    " + json.dumps(real[-1], indent=1).replace("\n", "\n    "))
PY

step "6/7 Audit again: nothing left to end, no lock chain, the legitimate work untouched"
playbook dbhygiene.sessions.audit -i "$work/inventory.yml"
echo
sed -n '/^\*\*/,/^$/p;/^| host/,/^$/p' "$work/reports/audit-latest.md"
echo "    What the servers themselves say (admin login):"
"$py" tools/fleet_sessions.py check --tag "$tag" --alive webapp --alive etl-nightly --alive adhoc-query \
  --gone legacy-cron --gone report-export --gone desktop-client --idle webapp | sed 's/^/      /'
echo "    (the root blocker $tag-desktop-client is gone; the $tag-webapp UPDATEs that waited behind it completed:"
echo "     their sessions are alive and idle again)"

step "7/7 Where things are"
echo "    reports:     $work/reports/ (audit-latest.md/.json, enforce-latest.md/.json)"
echo "    audit trail: $work/audit.jsonl (mode 0600)"
echo "    try:         ANSIBLE_COLLECTIONS_PATH=$ANSIBLE_COLLECTIONS_PATH \\"
echo "                   .venv/bin/ansible-playbook dbhygiene.sessions.enforce -i $work/inventory.yml --check --diff"
echo "    stop:        make demo-down"
