"""The change window of the drain role's molecule scenario, on every server of the fleet.

    window.py create --tag T     databases T_billing, T_ledger; logins T_app, T_migrator (billing), T_clerk (ledger)
    window.py check  --tag T --refused app:billing --allowed migrator:billing ...
    window.py drop   --tag T

Names are the tag with '-' as '_'. The servers are read through the fleet's admin login
(tests/integration/_change_window_fixtures.py), never through the role.
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from _change_window_fixtures import Window  # noqa: E402
from dbfleet import state  # noqa: E402


def _windows(fleet, tag):
    prefix = tag.replace("-", "_")
    billing, ledger = prefix + "_billing", prefix + "_ledger"
    grants = {prefix + "_app": [billing], prefix + "_migrator": [billing], prefix + "_clerk": [ledger]}
    return prefix, [Window(fleet, s["name"], (billing, ledger), sorted(grants), grants) for s in fleet.servers]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["create", "check", "drop"])
    parser.add_argument("--tag", required=True)
    parser.add_argument("--refused", action="append", default=[], help="who:database that must not connect")
    parser.add_argument("--allowed", action="append", default=[], help="who:database that must connect")
    args = parser.parse_args()
    fleet = state.load()
    if fleet is None:
        raise SystemExit("no fleet at %s" % state.state_dir())
    prefix, windows = _windows(fleet, args.tag)
    problems = []
    for window in windows:
        if args.command == "create":
            window.create()
        elif args.command == "drop":
            window.drop()
        else:
            for pairs, wanted in ((args.refused, False), (args.allowed, True)):
                for pair in pairs:
                    who, _sep, database = pair.partition(":")
                    user, db = "%s_%s" % (prefix, who), "%s_%s" % (prefix, database)
                    if window.can_connect(user, db) is not wanted:
                        problems.append(
                            "%s: %s %s connect to %s" % (window.server["name"], user, "cannot" if wanted else "can", db)
                        )
    if problems:
        raise SystemExit("; ".join(problems))
    print("%s: %s on %d servers" % (args.command, prefix, len(windows)))


if __name__ == "__main__":
    main()
