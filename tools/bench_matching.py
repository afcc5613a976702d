# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cost of the bounded matching of query_matches: prints figures, asserts nothing.

    .venv/bin/python tools/bench_matching.py [--sessions 5000] [--ballast-mb 0]

Plans one host of N sessions three ways: a policy without regex (matched
in-process), the same policy plus a query_matches rule matched in-process
(``_planner._decide``, unbounded, what the code did before) and matched through
``_planner.plan`` (one forked child with a deadline). ``--ballast-mb`` grows the
process first, as an ansible-playbook worker is (fork copies page tables).
"""

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".build", "collections"))

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _planner  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy  # noqa: E402


def sessions(count):
    states = ("idle", "active", "idle_in_transaction")
    return [
        {
            "id": 1000 + n,
            "user": f"app{n % 17}",
            "database": "shop",
            "application": f"web-{n % 5}",
            "client_addr": f"10.{n % 250}.{n % 7}.{n % 200}",
            "state": states[n % 3],
            "idle_seconds": float(n % 3600),
            "query_seconds": float(n % 7200),
            "transaction_seconds": None,
            "query": f"SELECT o.id, o.total FROM orders o WHERE o.customer_id = {n} AND o.state = 'open' "
            + "x" * (n % 200),
            "superuser": False,
        }
        for n in range(count)
    ]


def timed(function, repeat):
    figures = []
    for _run in range(repeat):
        start = time.perf_counter()
        function()
        figures.append(time.perf_counter() - start)
    return statistics.median(figures) * 1000, max(figures) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--ballast-mb", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    ballast = bytearray(os.urandom(1024 * 1024)) * args.ballast_mb  # noqa: F841  (kept alive on purpose)
    records = sessions(args.sessions)
    base = {"rules": [{"name": "ghost", "states": ["idle"], "idle_longer_than": "30m", "users": ["app1*"]}]}
    plain = parse_policy(base)
    regex = parse_policy(
        {
            "rules": base["rules"]
            + [{"name": "orders-scan", "states": ["active"], "query_matches": r"FROM orders o WHERE .*'closed'"}]
        }
    )
    assert regex.needs_bounded_matching and not plain.needs_bounded_matching
    ordered = sorted(records, key=_planner._order)
    print(f"{args.sessions} sessions, process ballast {args.ballast_mb} MB, median / max of {args.repeat} runs")
    for label, function in (
        ("no regex, in-process (plan)", lambda: _planner.plan(records, plain)),
        ("query_matches, in-process (_decide, unbounded)", lambda: _planner._decide(regex, ordered)),
        ("query_matches, forked child (plan)", lambda: _planner.plan(records, regex)),
    ):
        median, worst = timed(function, args.repeat)
        print(f"  {label:50s} {median:8.1f} ms  (max {worst:.1f} ms)")


if __name__ == "__main__":
    main()
