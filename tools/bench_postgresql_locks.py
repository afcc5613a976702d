"""Benchmark: what the lock columns cost the PostgreSQL listing (issue 11). Prints
figures; asserts nothing.

    DBFLEET_STATE_DIR=/tmp/dbhygiene-fleet-test .venv/bin/python tools/bench_postgresql_locks.py \\
        [--server pg1] [--sessions 1000] [--waiters 50] [--rounds 61]

It uses a running fleet (DBFLEET_STATE_DIR) and opens --sessions idle sessions on
one server. The fleet's servers allow 200 connections; for more, the script
raises max_connections on that server (ALTER SYSTEM, restart) and sets it back
to the fleet's 200 at the end (another restart): never on a fleet others use.

Compared, in rounds whose order rotates (so a noisy machine hurts each alike),
as medians and as the median of the paired differences to the first:

- before: the listing of main before issue 11 (no lock columns);
- after: the driver's listing (sessions and who waits on whom, one statement;
  pg_blocking_pids only for backends waiting on a lock);
- every row: the listing before plus pg_blocking_pids(pid) on every row.

once with no lock waits, then with --waiters of the sessions queued on one row
behind an open transaction. Also the driver's list_sessions() with
_planner.annotate_locks, and annotate_locks alone.
"""

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, ".build", "collections"))

import psycopg2  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _planner  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import driver as pg  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import statements  # noqa: E402
from dbfleet import postgres, state  # noqa: E402
from dbfleet import state as fleet_state  # noqa: E402

# The listing before issue 11 (main at 4e3af6b), for the comparison.
BEFORE_COMMIT = "4e3af6b"
FLEET_MAX_CONNECTIONS = postgres.MAX_CONNECTIONS
TABLE = "bench_locks"


def _before_sql():
    source = subprocess.run(
        ["git", "-C", ROOT, "show", BEFORE_COMMIT + ":plugins/module_utils/_postgresql_sql.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {}
    exec(compile(source, "before", "exec"), names)  # pylint: disable=exec-used  # our own file at a commit
    return names["_LIST_SQL"]


def _params(fleet, server):
    srv = fleet.server(server)
    return {
        "login_host": srv["host"],
        "login_port": srv["port"],
        "login_user": "hygiene",
        "login_password": fleet.password("hygiene"),
        "login_db": "postgres",
        "ssl_mode": "disable",
    }


def _connect(fleet, server, application):
    conn = psycopg2.connect(
        host=server["host"],
        port=server["port"],
        user="app",
        password=fleet.password("app"),
        dbname=state.APP_DATABASE,
        application_name=application,
        sslmode="disable",
    )
    conn.autocommit = True
    return conn


def _report(d, label, before, rounds):
    params = {"own_application": d.application_name, "query_max": 1024}
    after = statements.list_sessions_query(d.application_name, version_num=d.version_num)[0]
    every_row = before.replace(
        "COALESCE(r.rolsuper, false) AS superuser ",
        "COALESCE(r.rolsuper, false) AS superuser, pg_blocking_pids(a.pid) AS blocked_by ",
    )
    forms = [("before", before), ("after", after), ("pg_blocking_pids on every row", every_row)]
    times = {name: [] for name, _sql in forms}
    for n in range(rounds):
        for name, sql in forms[n % 3 :] + forms[: n % 3]:
            started = time.perf_counter()
            d._query((sql, params), "bench")  # pylint: disable=protected-access
            times[name].append(time.perf_counter() - started)
    print(label)
    for name, _sql in forms:
        paired = [x - b for x, b in zip(times[name], times["before"])]
        print(
            "  %-30s median %6.2f ms   paired difference to before: median %+.2f ms"
            % (name, statistics.median(times[name]) * 1000, statistics.median(paired) * 1000)
        )
    whole, alone = [], []
    for _round in range(21):
        started = time.perf_counter()
        sessions = d.list_sessions()
        _planner.annotate_locks(sessions)
        whole.append(time.perf_counter() - started)
        started = time.perf_counter()
        _planner.annotate_locks(sessions)
        alone.append(time.perf_counter() - started)
    print(
        "  list_sessions() + annotate_locks: median %.1f ms (annotate_locks alone %.2f ms)"
        % (statistics.median(whole) * 1000, statistics.median(alone) * 1000)
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="pg1")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--waiters", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=61)
    args = parser.parse_args()
    fleet = fleet_state.load()
    if fleet is None:
        sys.exit("no fleet at DBFLEET_STATE_DIR=%s" % os.environ.get("DBFLEET_STATE_DIR"))
    server = fleet.server(args.server)
    raised = args.sessions + 20 > FLEET_MAX_CONNECTIONS
    if raised:
        postgres.set_max_connections(server, args.sessions + 50)
    held, threads = [], []
    try:
        held = [_connect(fleet, server, "bench-locks-%d" % n) for n in range(args.sessions)]
        before = _before_sql()
        with pg.open_driver(_params(fleet, args.server)) as d:
            print(
                "%s: %d client sessions, server_version_num %s, %d rounds, load average %.1f"
                % (d.target, len(d.list_sessions()), d.version_num, args.rounds, os.getloadavg()[0])
            )
            _report(d, "%d idle sessions, no lock waits" % args.sessions, before, args.rounds)
            admin = postgres.admin_connect(server, state.APP_DATABASE)
            admin.autocommit = True
            try:
                admin.cursor().execute(
                    "DROP TABLE IF EXISTS %s; CREATE TABLE %s (id int PRIMARY KEY, v int); "
                    "INSERT INTO %s VALUES (1, 0); ALTER TABLE %s OWNER TO app" % ((TABLE,) * 4)
                )
                holder = held[0].cursor()
                holder.execute("BEGIN")
                holder.execute("UPDATE %s SET v = v + 1 WHERE id = 1" % TABLE)
                for conn in held[1 : 1 + args.waiters]:
                    thread = threading.Thread(
                        target=lambda c=conn: c.cursor().execute("UPDATE %s SET v = v + 1 WHERE id = 1" % TABLE),
                        daemon=True,
                    )
                    thread.start()
                    threads.append(thread)
                deadline = time.time() + 30
                while _planner.annotate_locks(d.list_sessions())["waiting"] < args.waiters and time.time() < deadline:
                    time.sleep(0.1)
                _report(
                    d,
                    "%d idle sessions, %d of them waiting on one row" % (args.sessions, args.waiters),
                    before,
                    args.rounds,
                )
                holder.execute("ROLLBACK")
                for thread in threads:
                    thread.join(30)
                admin.cursor().execute("DROP TABLE %s" % TABLE)
            finally:
                admin.close()
    finally:
        for conn in held:
            conn.close()
        if raised:
            postgres.set_max_connections(server, FLEET_MAX_CONNECTIONS)


if __name__ == "__main__":
    main()
