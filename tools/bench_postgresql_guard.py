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
  application_name LIKE ...`` (no guard at all), repeated to reach N signals;
- batch, fresh per row: the driver's end statement, one per batch (what the
  driver runs);
- batch, one snapshot: the same statement without the per-row
  pg_stat_clear_snapshot() (the guard read once per batch, as before issue 8);
- per victim: the driver's end statement with one victim, one round trip each.

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

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _postgresql as pg  # noqa: E402
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


def _timed(run, repeat):
    times = []
    while len(times) < repeat:
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _unfresh(query):
    return query[0].replace("pg_stat_clear_snapshot() AS cleared, ", ""), query[1]


def _measure(d, counter, run_statement, one_liner, statements, guards, total, rounds, repeat):
    """(seconds, statements per run) of: one-liner, batch fresh per row, batch one snapshot, one per victim."""
    runs = (
        (lambda: [d._query(one_liner, "bench") for dummy in range(rounds)], repeat),
        (lambda: [run_statement(q) for q in statements], repeat),
        (lambda: [run_statement(_unfresh(q)) for q in statements], repeat),
        (lambda: [run_statement(pg.end_query([guards[n % len(guards)]], "cancel")) for n in range(total)], 1),
    )
    figures = []
    for run, times in runs:
        before = counter.mark()
        seconds = _timed(run, times)
        figures.append((seconds, (counter.mark() - before) // times))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="pg2")
    parser.add_argument("--sessions", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
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
            guards = [pg.guard_of(s) for s in sessions]
            assert len(guards) == args.sessions, len(guards)

            def run_statement(sql_params):
                rows = d._query(sql_params, "bench")[1]
                assert all(row[1] == "signalled" for row in rows), set(row[1] for row in rows)

            one_liner = (
                "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE %(app)s",
                {"app": APPLICATION + "-%"},
            )
            print(
                "%s: %d idle sessions, pg_cancel_backend, median of %d runs, load average %.1f"
                % (d.target, args.sessions, args.repeat, os.getloadavg()[0])
            )
            print("%8s  %11s  %17s  %17s  %17s" % ("victims", "one-liner", "batch fresh", "batch 1 snap", "per victim"))
            counts = []
            for total in args.victims:
                batches = _chunks(guards, total, pg.BATCH_SIZE)
                statements = [pg.end_query(batch, "cancel") for batch in batches]
                rounds = -(-total // args.sessions)
                figures = _measure(d, counter, run_statement, one_liner, statements, guards, total, rounds, args.repeat)
                base = figures[0][0]
                print(
                    "%8d  %8.1f ms  %7.1f ms (%.1fx)  %7.1f ms (%.1fx)  %7.1f ms (%.0fx)"
                    % (
                        total,
                        base * 1000,
                        figures[1][0] * 1000,
                        figures[1][0] / base,
                        figures[2][0] * 1000,
                        figures[2][0] / base,
                        figures[3][0] * 1000,
                        figures[3][0] / base,
                    )
                )
                counts.append((total, [count for _seconds, count in figures]))
            print("statements (round trips) per run, counted on the driver's connection:")
            print("%8s  %11s  %17s  %17s  %17s" % ("victims", "one-liner", "batch fresh", "batch 1 snap", "per victim"))
            for total, (one, fresh, snap, each) in counts:
                print("%8d  %11d  %17d  %17d  %17d" % (total, one, fresh, snap, each))
    finally:
        for session in held:
            session.close()


if __name__ == "__main__":
    main()
