# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cost of planning budgets (per / keep / keep_by): prints figures, asserts nothing.

    .venv/bin/python tools/bench_budgets.py [--sessions 5000] [--groups 200] [--repeat 15]

Plans one host of N idle sessions spread over G groups (per user and application),
with and without a budget, and the budget at 1x, 2x, 4x and 8x the sessions (the
groups growing with them): the time per session stays flat when the planning is
linear (but for the sort inside each group). Also with a query_matches rule, which
plans in a forked child (``_planner`` "Bounded matching").
"""

import argparse
import datetime
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".build", "collections"))

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _planner  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy  # noqa: E402
from bench_matching import timed  # noqa: E402

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def sessions(count, groups):
    records = []
    for n in range(count):
        group = n % groups
        records.append(
            {
                "id": 1000 + n,
                "key": f"{1000 + n}@x",
                "user": f"app{group % 20}",
                "database": "shop",
                "application": f"pool-{group // 20}",
                "client_addr": f"10.0.{group % 250}.{n % 200}",
                "state": "idle",
                "connected_at": (START + datetime.timedelta(seconds=n)).isoformat(),
                "state_since": (START + datetime.timedelta(seconds=(n * 7919) % count)).isoformat(),
                "idle_seconds": float((n * 7919) % 3600),
                "query_seconds": None,
                "transaction_seconds": None,
                "query": "SELECT 1",
                "superuser": False,
            }
        )
    return records


def policy(budget, regex=False):
    rule = {"name": "pool", "states": ["idle"], "applications": ["pool-*"]}
    rule.update(budget)
    rules = [rule]
    if regex:
        rules.append({"name": "scan", "states": ["active"], "query_matches": r"FROM orders .*'closed'"})
    return parse_policy({"rules": rules, "limits": {"max_terminations": "unlimited", "max_fraction": "unlimited"}})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    keep = max(1, args.sessions // args.groups // 2)
    budget = {"per": ["user", "application"], "keep": keep}
    print(f"{args.sessions} sessions in {args.groups} groups, keep {keep} of each; median / max of {args.repeat} runs")
    records = sessions(args.sessions, args.groups)
    for label, chosen in (
        ("no budget (every match a victim)", policy({})),
        ("budget, keep_by most_recent", policy(budget)),
        ("budget, keep_by oldest", policy(dict(budget, keep_by="oldest"))),
        ("budget + query_matches (forked child)", policy(budget, regex=True)),
    ):
        median, worst = timed(lambda p=chosen: _planner.plan(records, p), args.repeat)
        result = _planner.plan(records, chosen)
        groups = len(result.groups)
        print(
            f"  {label:40s} {median:8.1f} ms  (max {worst:.1f} ms)  victims {len(result.victims)}, "
            f"groups over budget {groups}"
        )
    print("scaling (sessions and groups x1, x2, x4, x8; a linear planner keeps the time per session flat):")
    chosen = policy(budget)
    for factor in (1, 2, 4, 8):
        count, groups = args.sessions * factor, args.groups * factor
        records = sessions(count, groups)
        median, worst = timed(lambda r=records: _planner.plan(r, chosen), max(3, args.repeat // 3))
        result = _planner.plan(records, chosen)
        print(
            f"  {count:6d} sessions, {groups:5d} groups: {median:8.1f} ms  (max {worst:.1f} ms)  "
            f"{1000 * median / count:6.2f} us per session, victims {len(result.victims)}"
        )


if __name__ == "__main__":
    main()
