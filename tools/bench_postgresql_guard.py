"""Benchmark: the cost of the PostgreSQL guarded end against the unguarded one-liner.
Prints figures; asserts nothing.

    make fleet-up
    DBFLEET_STATE_DIR=/tmp/dbhygiene-fleet-test .venv/bin/python tools/bench_postgresql_guard.py [--victims 100 ...]

It uses a running fleet (DBFLEET_STATE_DIR), opens --sessions idle sessions on one
server and signals them with pg_cancel_backend, which an idle session ignores
(its state and state_change stay as they were), so the same sessions serve as
victims again and again: N victims are N signals over those sessions, in
batches of distinct pids. Compared, for 100 / 1,000 / 5,000 victims:

- one-liner: ``SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE
  application_name LIKE ...`` (no guard at all), repeated to reach N signals
  (the last round LIMITed, so that it sends exactly N);
- batch, fresh per row: the driver's end statement, one per batch (what the
  driver runs);
- batch, one snapshot: the same statement without the per-row
  pg_stat_clear_snapshot() (the guard read once per batch, as before issue 8);
- per victim: the driver's end statement with one victim, one round trip each;
- two floors, one statement per batch as the driver's, neither checking
  anything: "fresh copy": per row pg_stat_clear_snapshot(), then the backend
  status copy that any read of a backend then makes (forced by
  pg_stat_get_backend_pid(1)), then the signal: the least any guard that reads
  each victim afresh can cost; "fresh state read": the same with the victim's
  row read by pg_stat_get_activity(pid), the one SQL function that gives a
  backend's state and state_change (what the guard compares): the least a
  guard with the driver's proof can cost.

With each time, the statements (round trips) one run of it sends, counted on the
driver's connection by tools/bench_statements.py (every execute()).
"""

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, ".build", "collections"))

from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import driver as pg  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import guard  # noqa: E402
from bench_statements import counting  # noqa: E402
from dbfleet import holder  # noqa: E402
from dbfleet import state as fleet_state  # noqa: E402

APPLICATION = "bench-guard"


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


def _chunks(guards, total, size):
    """`total` guards cycling over `guards`, in batches of at most `size` distinct pids."""
    out, batch = [], []
    for n in range(total):
        batch.append(guards[n % len(guards)])
        if len(batch) == min(size, len(guards)):
            out.append(batch)
            batch = []
    if batch:
        out.append(batch)
    return out


def _unfresh(query):
    return query[0].replace("pg_stat_clear_snapshot() AS cleared, ", ""), query[1]


# The floor: per row a cleared snapshot and the copy a fresh read makes, then the signal,
# chained by data dependencies as in the driver's statement (see _postgresql/guard.py "The guard").
_FLOOR_SQL = (
    "SELECT v.ord, CASE WHEN f.copied >= 0 AND pg_cancel_backend(c.pid) THEN 'signalled' ELSE 'gone' END "
    "FROM unnest(%(pids)s::int[]) WITH ORDINALITY AS v(pid, ord) "
    "CROSS JOIN LATERAL (SELECT pg_stat_clear_snapshot() AS cleared, v.pid) AS c "
    "CROSS JOIN LATERAL (SELECT pg_stat_get_backend_pid(1) AS copied, c.pid) AS f ORDER BY v.ord"
)


_STATE_FLOOR_SQL = (
    "SELECT v.ord, CASE WHEN s.pid IS NOT NULL AND pg_cancel_backend(s.pid) THEN 'signalled' ELSE 'gone' END "
    "FROM unnest(%(pids)s::int[]) WITH ORDINALITY AS v(pid, ord) "
    "CROSS JOIN LATERAL (SELECT pg_stat_clear_snapshot() AS cleared, v.pid) AS c "
    "LEFT JOIN LATERAL (SELECT s.pid FROM pg_stat_get_activity(c.pid) AS s WHERE s.pid = c.pid) AS s ON true "
    "ORDER BY v.ord"
)


_HEADER = "%8s  %11s  %17s  %17s  %17s  %17s  %17s" % (
    "victims",
    "one-liner",
    "batch fresh",
    "batch 1 snap",
    "per victim",
    "floor: fresh copy",
    "fresh state read",
)


def _floor(query):
    return _FLOOR_SQL, {"pids": query[1]["pids"]}


def _state_floor(query):
    return _STATE_FLOOR_SQL, {"pids": query[1]["pids"]}


def _measure(d, counter, run_statement, one_liner, statements, guards, total, rounds, repeat):
    """Per method (one-liner, batch fresh per row, batch one snapshot, one per victim, the two
    floors):
    (median seconds, statements per run, median of the ratios to the one-liner of the same
    round). The batch methods run once per round, in turn, so that drift hits them alike;
    one statement per victim, slow, runs once, against the median one-liner."""
    batched = (
        lambda: [d._query(one_liner(size), "bench") for size in rounds],
        lambda: [run_statement(q) for q in statements],
        lambda: [run_statement(_unfresh(q)) for q in statements],
        lambda: [run_statement(_floor(q)) for q in statements],
        lambda: [run_statement(_state_floor(q)) for q in statements],
    )
    times = [[] for _run in batched]
    counts = [0] * len(batched)
    for _round in range(repeat):
        for n, run in enumerate(batched):
            before = counter.mark()
            started = time.perf_counter()
            run()
            times[n].append(time.perf_counter() - started)
            counts[n] = counter.mark() - before
    before = counter.mark()
    started = time.perf_counter()
    for n in range(total):
        run_statement(guard.end_query([guards[n % len(guards)]], "cancel"))
    each = time.perf_counter() - started
    each_count = counter.mark() - before
    base = statistics.median(times[0])
    figures = [
        (statistics.median(t), count, statistics.median(m / b for m, b in zip(t, times[0])))
        for t, count in zip(times, counts)
    ]
    figures.insert(3, (each, each_count, each / base))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="pg2")
    parser.add_argument("--sessions", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--victims", type=int, nargs="+", default=[100, 1000, 5000])
    args = parser.parse_args()
    fleet = fleet_state.load()
    if fleet is None:
        sys.exit("no fleet at DBFLEET_STATE_DIR=%s" % os.environ.get("DBFLEET_STATE_DIR"))
    held = [
        holder.open_session(fleet, args.server, "idle", application="%s-%d" % (APPLICATION, n))
        for n in range(args.sessions)
    ]
    try:
        with counting() as counter:
            driver = pg.open_driver(_params(fleet, args.server))
        with driver as d:
            sessions = [s for s in d.list_sessions() if (s["application"] or "").startswith(APPLICATION)]
            guards = [guard.guard_of(s) for s in sessions]
            assert len(guards) == args.sessions, len(guards)

            def run_statement(sql_params):
                rows = d._query(sql_params, "bench")[1]
                assert all(row[1] == "signalled" for row in rows), set(row[1] for row in rows)

            def one_liner(size):
                return (
                    "SELECT count(pg_cancel_backend(pid)) FROM (SELECT pid FROM pg_stat_activity "
                    "WHERE application_name LIKE %(app)s LIMIT %(size)s) AS s",
                    {"app": APPLICATION + "-%", "size": size},
                )

            print(
                "%s: %d idle sessions, pg_cancel_backend, median of %d rounds (x: median of the ratios "
                "to the one-liner of the same round), load average %.1f"
                % (d.target, args.sessions, args.repeat, os.getloadavg()[0])
            )
            print(_HEADER)
            counts = []
            for total in args.victims:
                batches = _chunks(guards, total, pg.BATCH_SIZE)
                statements = [guard.end_query(batch, "cancel") for batch in batches]
                rounds = [len(batch) for batch in _chunks(guards, total, args.sessions)]  # N signals in all
                figures = _measure(d, counter, run_statement, one_liner, statements, guards, total, rounds, args.repeat)
                print(
                    "%8d  %8.1f ms  %7.1f ms (%.2fx)  %7.1f ms (%.2fx)  %7.1f ms (%.0fx)"
                    "  %7.1f ms (%.2fx)  %7.1f ms (%.2fx)"
                    % (
                        total,
                        figures[0][0] * 1000,
                        figures[1][0] * 1000,
                        figures[1][2],
                        figures[2][0] * 1000,
                        figures[2][2],
                        figures[3][0] * 1000,
                        figures[3][2],
                        figures[4][0] * 1000,
                        figures[4][2],
                        figures[5][0] * 1000,
                        figures[5][2],
                    )
                )
                counts.append((total, [count for _seconds, count, _ratio in figures]))
            print("statements (round trips) per run, counted on the driver's connection:")
            print(_HEADER)
            for total, row in counts:
                print("%8d  %11d  %17d  %17d  %17d  %17d  %17d" % tuple([total] + row))
    finally:
        for session in held:
            session.close()


if __name__ == "__main__":
    main()
