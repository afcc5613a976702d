"""MariaDB driver benchmark: listing, and the guarded kill against a bare KILL batch and pt-kill.

Prints figures (medians of --repeat runs); asserts nothing. Runs on a fleet
server of DBFLEET_STATE_DIR (a test fleet, `python -m dbfleet up`), raises its
max_connections for the run and puts it back.

    make fleet-up
    DBFLEET_STATE_DIR=/tmp/dbhygiene-fleet-test .venv/bin/python tools/bench_mysql.py --sessions 100 1000
    # a connection crisis: ghosts idle 30 s under a bound of 0.01 get the window the documented
    # bound gives ghosts idle 3,000 s (50 min)
    ... tools/bench_mysql.py --sessions 100 1000 4000 --idle 30 --ratio-bound 0.01 --no-listing \
        --methods "dbhygiene driver" "bare KILL batch" pt-kill

For each number of idle sessions N:
- listing: the driver's list_sessions() (threads, then program_name apart:
  cold = first listing of a driver, warm = the attributes already known), and
  the former single statement that joined session_connect_attrs;
- ending N idle victims (user app2, idle for --idle seconds): the driver (list + guarded
  end_sessions: victims idle long enough for its bound of (verifying read -> KILL) / idle
  time (--ratio-bound, default the documented 1e-4) in verified blocks, one read of the
  thread list per block and a tight loop of KILLs, the others in guard blocks of
  min(500, 100,000 / threads) victims, each re-read right before its KILL), the same with the
  events_statements_current consumer switched on for the run (the victims are then
  read on their statement events; each session first runs a statement, untimed, so
  that it has its row as on a server that runs with the consumer on), a bare KILL batch
  (SELECT the ids, then every KILL in one multi-statement round trip), one KILL
  per round trip, the floor of any guard that re-reads each victim (the same
  blocks as the driver's, each victim one PROCESSLIST read of its COMMAND, then
  its KILL: no other check, no outcome; and the same on
  performance_schema.events_statements_current, consumer on as above), and pt-kill (Debian's percona-toolkit,
  when installed: from its start until every victim is gone, which includes
  perl's start and its first poll).
- the verified blocks: victims per run in blocks, blocks, victims re-read on their own, and
  the largest (read -> KILL) / idle ratio the driver measured (its `guard` result);
- the victims planned idle are also read in performance_schema's transaction events right
  before their KILL (the fleet runs with them on; the count is printed with the guard paths);
- statements (round trips) of the driver at each N, counted on its connection by
  tools/bench_statements.py (every execute(), connecting included): those of the
  timed list + guarded end, and those of one whole real sweep (untimed:
  _runner.apply_policy with its sweep lock, listing, guarded end and confirm polls).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, ".build", "collections"))

import pymysql  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import driver as my_driver  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import guard as my_guard  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import verified as my_verified  # noqa: E402
from bench_statements import counting  # noqa: E402
from dbfleet import mariadb  # noqa: E402
from dbfleet import state as fleet_state  # noqa: E402

USER = "app2"
APP = "bench-idle"
_GUARD_STEPS = []  # the driver's guard_counts of each timed run
_GUARD_FIGURES = []  # the driver's guard_figures() of each timed run
# The drivers' bound of (verifying read -> KILL) / idle time (--ratio-bound), the ghosts' idle time (--idle).
RUN = {"ratio_bound": my_verified.WINDOW_RATIO_BOUND, "idle": 0.2}


def _params(fleet, server):
    srv = fleet.server(server)
    return {
        "login_host": srv["host"],
        "login_port": srv["port"],
        "login_user": "hygiene",
        "login_password": fleet.password("hygiene"),
        "config_file": "",
        "connect_timeout": 10,
        "query_timeout": 60,
    }


def hold_idle(fleet, server, count, application=APP):
    """`count` idle sessions of USER (program_name `application`), opened by 4 threads; returns
    the connections (also the crisis race's ghosts: tests/reliability/test_wake_race.py)."""
    srv = fleet.server(server)
    held, lock = [], threading.Lock()

    def worker(n):
        mine = []
        for _dummy in range(n):
            mine.append(
                pymysql.connect(
                    host=srv["host"],
                    port=srv["port"],
                    user=USER,
                    password=fleet.password(USER),
                    program_name=application,
                    ssl_disabled=True,
                )
            )
        with lock:
            held.extend(mine)

    threads = [threading.Thread(target=worker, args=(count // 4 + (1 if i < count % 4 else 0),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return held


def _release(held):
    for conn in held:
        try:
            conn.close()
        except Exception:
            pass


def _left(fleet, server):
    with mariadb.admin_connect(fleet.server(server)) as conn:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", (USER,))
        return cur.fetchone()[0]


def _wait_gone(fleet, server, limit=60):
    deadline = time.perf_counter() + limit
    while _left(fleet, server) and time.perf_counter() < deadline:
        time.sleep(0.005)


def _until_gone(fleet, server, start):
    """(seconds until the KILLs were sent, seconds until every victim was gone), from `start`."""
    ended = time.perf_counter() - start
    _wait_gone(fleet, server)
    return ended, time.perf_counter() - start


def _ms(seconds):
    return "%8.1f ms" % (seconds * 1000)


def bench_listing(fleet, server, repeat):
    figures = {"list_sessions cold": [], "list_sessions warm": [], "former joined statement": []}
    for _dummy in range(repeat):
        d = my_driver.open_driver(_params(fleet, server))
        try:
            start = time.perf_counter()
            d.list_sessions()
            figures["list_sessions cold"].append(time.perf_counter() - start)
            start = time.perf_counter()
            d.list_sessions()
            figures["list_sessions warm"].append(time.perf_counter() - start)
            sql, params = d.flavour.list_query(with_superusers=d.superusers_readable)
            sql = sql.replace(
                " AS t ON t.trx_mysql_thread_id = p.ID",
                " AS t ON t.trx_mysql_thread_id = p.ID "
                "LEFT JOIN performance_schema.session_connect_attrs AS a "
                "ON a.PROCESSLIST_ID = p.ID AND a.ATTR_NAME = 'program_name'",
            ).replace("UTC_TIMESTAMP(6)", "UTC_TIMESTAMP(6), a.ATTR_VALUE")
            start = time.perf_counter()
            d._execute((sql, params))
            figures["former joined statement"].append(time.perf_counter() - start)
        finally:
            d.close()
    return figures


def _ours(fleet, server):
    with counting() as counter:  # the driver's connection counts; _wait_gone's, opened later, does not
        d = my_driver.open_driver(_params(fleet, server))
    d.window_ratio_bound = RUN["ratio_bound"]
    try:
        start = time.perf_counter()
        victims = [s for s in d.list_sessions() if s["user"] == USER and s["state"] == "idle"]
        results = d.end_sessions(victims, "terminate")
        ended = time.perf_counter() - start
        statements = counter.count
        _GUARD_STEPS.append(dict(d.guard_counts))
        _GUARD_FIGURES.append(d.guard_figures())
        _wait_gone(fleet, server)
        gone = time.perf_counter() - start
    finally:
        d.close()
    assert all(r[1] == "terminated" for r in results), set(r[1] for r in results)
    return ended, gone, statements


def sweep_statements(fleet, server, sessions):
    """(count, {kind: count}) of the statements of one whole real sweep of `sessions` idle victims; untimed."""
    from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy
    from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import apply_policy

    policy = parse_policy(
        # Hundreds of victims, every session of the server: the default limits lifted.
        {
            "name": "bench",
            "rules": [{"users": [USER], "states": ["idle"]}],
            "limits": {"max_terminations": "unlimited", "max_fraction": "unlimited"},
        }
    )
    held = hold_idle(fleet, server, sessions)
    try:
        time.sleep(RUN["idle"])
        with counting() as counter:
            d = my_driver.open_driver(_params(fleet, server))
        d.window_ratio_bound = RUN["ratio_bound"]
        try:
            d.preflight(signal=True)
            result = apply_policy(d, policy, check_mode=False, wait_timeout=30)
        finally:
            d.close()
        assert len(result["terminated"]) == sessions, (len(result["terminated"]), result.get("msg"))
    finally:
        _release(held)
        _wait_gone(fleet, server)
    return counter.count, counter.by_kind()


def _bare(fleet, server, batch):
    srv = fleet.server(server)
    conn = pymysql.connect(
        host=srv["host"],
        port=srv["port"],
        user="hygiene",
        password=fleet.password("hygiene"),
        ssl_disabled=True,
        client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
    )
    try:
        cur = conn.cursor()
        start = time.perf_counter()
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND COMMAND = 'Sleep'", (USER,))
        ids = [row[0] for row in cur.fetchall()]
        if batch:
            cur.execute(" ".join("KILL CONNECTION %d;" % i for i in ids))
            while cur.nextset():
                pass
        else:
            for thread_id in ids:
                cur.execute("KILL CONNECTION %s", (thread_id,))
        return _until_gone(fleet, server, start)
    finally:
        conn.close()


# No handler: a read the login may not make fails the run instead of being skipped (a floor
# that skipped its reads would measure KILLs alone).
_FLOOR_BLOCK = (
    "BEGIN NOT ATOMIC DECLARE c VARCHAR(64); "
    "FOR v IN ({rows}) DO "
    "SELECT MAX(COMMAND) INTO c FROM information_schema.PROCESSLIST WHERE ID = v.id; "
    "IF c = 'Sleep' THEN KILL CONNECTION v.id; END IF; END FOR; END"
)


_PS_FLOOR_BLOCK = (
    "BEGIN NOT ATOMIC DECLARE q BIGINT; "
    "FOR v IN ({rows}) DO "
    "SELECT MAX(EVENT_ID) INTO q FROM performance_schema.events_statements_current WHERE THREAD_ID = v.tid; "
    "IF q IS NULL OR q > 0 THEN KILL CONNECTION v.id; END IF; END FOR; END"
)


def _with_statement_events(fleet, server, held, run):
    """run() with the events_statements_current consumer on (then as it was); each held
    session first runs a statement, untimed, so that the table has its row as on a server
    that runs with the consumer on."""
    was_on = mariadb.set_statement_events(fleet.server(server), True)
    try:
        for conn in held:
            conn.cursor().execute("SELECT 1")
        time.sleep(RUN["idle"])
        return run()
    finally:
        mariadb.set_statement_events(fleet.server(server), was_on)


def _floor(fleet, server, performance_schema=False):
    """The least a re-read per victim costs: the driver's block sizes, a read and a KILL each."""
    srv = fleet.server(server)
    conn = pymysql.connect(
        host=srv["host"], port=srv["port"], user="hygiene", password=fleet.password("hygiene"), ssl_disabled=True
    )
    try:
        cur = conn.cursor()
        start = time.perf_counter()
        if performance_schema:
            cur.execute(
                "SELECT p.ID, t.THREAD_ID FROM information_schema.PROCESSLIST AS p "
                "JOIN performance_schema.threads AS t ON t.PROCESSLIST_ID = p.ID "
                "WHERE p.USER = %s AND p.COMMAND = 'Sleep'",
                (USER,),
            )
            first_row, row, block = "SELECT %s AS id, %s AS tid", "(%s, %s)", _PS_FLOOR_BLOCK
        else:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND COMMAND = 'Sleep'", (USER,))
            first_row, row, block = "SELECT %s AS id", "(%s)", _FLOOR_BLOCK
        victims = cur.fetchall()
        cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST")
        size = my_guard.guard_batch_size(cur.fetchone()[0])
        for first in range(0, len(victims), size):
            chunk = victims[first : first + size]
            rows = first_row + (" UNION ALL VALUES " + ", ".join([row] * (len(chunk) - 1)) if len(chunk) > 1 else "")
            cur.execute(block.format(rows=rows), tuple(value for victim in chunk for value in victim))
        return _until_gone(fleet, server, start)
    finally:
        conn.close()


def pt_kill_argv(fleet, server, *options):
    """pt-kill killing every Sleep thread of USER on `server` as the hygiene login, with `options`."""
    srv = fleet.server(server)
    return [
        shutil.which("pt-kill"),
        "--host", srv["host"],
        "--port", str(srv["port"]),
        "--user", "hygiene",
        "--password", fleet.password("hygiene"),
        "--match-command", "Sleep",
        "--match-user", USER,
        "--victims", "all",
        "--kill",
    ] + list(options)  # fmt: skip


def _pt_kill(fleet, server):
    argv = pt_kill_argv(fleet, server, "--interval", "0.1", "--run-time", "60")
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_gone(fleet, server)
        gone = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(10)
    return None, gone


def bench_kill(fleet, server, sessions, repeat, only=None):
    methods = [
        ("dbhygiene driver (list + guarded end)", lambda held: _ours(fleet, server)),
        (
            "the driver, statement events on",
            lambda held: _with_statement_events(fleet, server, held, lambda: _ours(fleet, server)),
        ),
        ("bare KILL batch (one round trip)", lambda held: _bare(fleet, server, True)),
        ("bare KILL, one round trip each", lambda held: _bare(fleet, server, False)),
        ("floor: a re-read + KILL per victim", lambda held: _floor(fleet, server)),
        (
            "floor, on performance_schema",
            lambda held: _with_statement_events(
                fleet, server, held, lambda: _floor(fleet, server, performance_schema=True)
            ),
        ),
    ]
    if shutil.which("pt-kill"):
        methods.append(("pt-kill (from its start)", lambda held: _pt_kill(fleet, server)))
    if only:
        methods = [(name, run) for name, run in methods if any(word in name for word in only)]
    figures = dict((name, {"ended": [], "gone": []}) for name, dummy in methods)
    statements = []
    for _dummy in range(repeat):
        for name, run in methods:  # alternating, so drift hits every method alike
            held = hold_idle(fleet, server, sessions)
            try:
                time.sleep(RUN["idle"])
                result = run(held)
                if len(result) == 3:
                    statements.append(result[2])
                if result[0] is not None:
                    figures[name]["ended"].append(result[0])
                figures[name]["gone"].append(result[1])
            finally:
                _release(held)
                _wait_gone(fleet, server)
    return figures, statements


def _print_against_goals(figures):
    """The driver and the floors against pt-kill and the bare KILL batch (until all gone)."""

    def gone(name):
        values = figures.get(name, {}).get("gone")
        return statistics.median(values) if values else None

    ours = {
        "the driver": gone("dbhygiene driver (list + guarded end)"),
        "the floor": gone("floor: a re-read + KILL per victim"),
        "the driver, statement events on": gone("the driver, statement events on"),
        "the floor on performance_schema": gone("floor, on performance_schema"),
    }
    for name, against in (
        ("pt-kill", gone("pt-kill (from its start)")),
        ("bare KILL batch", gone("bare KILL batch (one round trip)")),
    ):
        if against:
            print(
                "  against %-16s %s (until all gone)"
                % (name, ", ".join("%s %.2fx" % (who, value / against) for who, value in ours.items() if value))
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server", default="mariadb2")
    parser.add_argument(
        "--idle",
        type=float,
        default=0.2,
        help="seconds the ghosts sit idle before each run (only ghosts idle long enough for the bound are "
        "verified in blocks: the window a block may take is bound x idle time)",
    )
    parser.add_argument(
        "--ratio-bound",
        type=float,
        default=my_verified.WINDOW_RATIO_BOUND,
        help="the driver's bound of (verifying read -> KILL) / idle time for this run (default: the "
        "documented one); bound b with ghosts idle t allows the window of the documented bound with "
        "ghosts idle t x b / documented",
    )
    parser.add_argument("--methods", nargs="+", help="only the methods whose name holds one of these words")
    parser.add_argument("--no-listing", action="store_true", help="skip the listing figures")
    parser.add_argument("--no-sweep", action="store_true", help="skip the statements of a whole real sweep")
    args = parser.parse_args()
    RUN.update(ratio_bound=args.ratio_bound, idle=args.idle)
    fleet = fleet_state.load(os.environ.get("DBFLEET_STATE_DIR"))
    admin = mariadb.admin_connect(fleet.server(args.server), autocommit=True)
    cur = admin.cursor()
    cur.execute("SELECT @@max_connections")
    (before,) = cur.fetchone()
    cur.execute("SET GLOBAL max_connections = %s", (max(args.sessions) + 100,))
    try:
        cur.execute("SELECT VERSION()")
        print(
            "MariaDB %s on %s, medians of %d runs; ghosts idle %.1f s, the driver's ratio bound %g (the window of "
            "the documented bound %g with ghosts idle %.0f s)"
            % (
                cur.fetchone()[0],
                args.server,
                args.repeat,
                args.idle,
                args.ratio_bound,
                my_verified.WINDOW_RATIO_BOUND,
                args.idle * args.ratio_bound / my_verified.WINDOW_RATIO_BOUND,
            )
        )
        for sessions in args.sessions:
            print("\n== %d idle sessions" % sessions)
            if not args.no_listing:
                held = hold_idle(fleet, args.server, sessions)
                try:
                    listing = bench_listing(fleet, args.server, args.repeat)
                finally:
                    _release(held)
                    _wait_gone(fleet, args.server)
                for name, values in listing.items():
                    print("  listing  %-34s %s" % (name, _ms(statistics.median(values))))
            del _GUARD_STEPS[:], _GUARD_FIGURES[:]
            figures, statements = bench_kill(fleet, args.server, sessions, args.repeat, args.methods)
            steps, events_on = (_GUARD_STEPS[-2], _GUARD_STEPS[-1]) if len(_GUARD_STEPS) > 1 else ({}, {})
            print(
                "  (the guard block re-read %d victims in its PROCESSLIST loop, %d in steps of their own; with "
                "statement events on: %d on their statement events, %d in the PROCESSLIST loop; %d and %d of them "
                "also read in the transaction events, proven outside a transaction)"
                % (
                    steps.get("looped", 0),
                    steps.get("own_step", 0),
                    events_on.get("statement_events", 0),
                    events_on.get("looped", 0),
                    steps.get("transaction_checked", 0),
                    events_on.get("transaction_checked", 0),
                )
            )
            ratios = [f["window_ratio_max"] for f in _GUARD_FIGURES if f["window_ratio_max"] is not None]
            print(
                "  verified blocks: %s victims in %s blocks per run, the others re-read on their own: %s; the largest "
                "window/idle ratio %s (bound %g)"
                % (
                    "/".join(str(f["block_verified"]) for f in _GUARD_FIGURES),
                    "/".join(str(f["blocks"]) for f in _GUARD_FIGURES),
                    "/".join(str(f["re_read"]) for f in _GUARD_FIGURES),
                    "%.2e" % max(ratios) if ratios else "-",
                    args.ratio_bound,
                )
            )
            ours = figures.get("dbhygiene driver (list + guarded end)") or next(iter(figures.values()))
            for name, values in figures.items():
                line = "  ending   %-40s" % name
                if values["ended"]:
                    ratio = statistics.median(ours["ended"]) / statistics.median(values["ended"])
                    line += " KILLs sent %s (ours/this %.2f)" % (_ms(statistics.median(values["ended"])), ratio)
                else:
                    line += " " * 45
                ratio = statistics.median(ours["gone"]) / statistics.median(values["gone"])
                line += "  all gone %s (ours/this %.2f)" % (_ms(statistics.median(values["gone"])), ratio)
                print(line)
            _print_against_goals(figures)
            if args.no_sweep:
                print("  statements of the driver (list + guarded end): %s" % "/".join(str(n) for n in statements))
                continue
            count, kinds = sweep_statements(fleet, args.server, sessions)
            print(
                "  statements (round trips) of the driver, connecting included: list + guarded end %s; "
                "a whole real sweep (apply_policy) %d: %s"
                % (
                    "/".join(str(n) for n in sorted(set(statements))),
                    count,
                    ", ".join("%s %d" % item for item in sorted(kinds.items())),
                )
            )
    finally:
        cur.execute("SET GLOBAL max_connections = %s", (before,))
        admin.close()


if __name__ == "__main__":
    main()
