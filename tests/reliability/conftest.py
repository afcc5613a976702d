# -*- coding: utf-8 -*-
"""The reliability suite's fixtures: the running fleet (tools/reliability.sh starts it).

Run alone (`pytest -s tests/reliability`), it uses the fleet at $DBFLEET_STATE_DIR
and starts it when none runs there.
"""

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import ROOT, admin_execute  # noqa: E402
from dbfleet import mariadb, postgres  # noqa: E402
from dbfleet import state as fleet_state  # noqa: E402

# The PostgreSQL log must name the application and the virtual transaction of each line,
# so a kill can be told apart: idle, in a statement (a STATEMENT: line follows), in a transaction.
LOG_LINE_PREFIX = "%m [%p] %q%u@%d app=%a vxid=%v xid=%x "


def _running(server):
    return (postgres if server["engine"] == "postgresql" else mariadb).running_pid(server) is not None


@pytest.fixture(scope="session")
def fleet():
    fleet = fleet_state.load()
    if fleet is None or not all(_running(s) for s in fleet.servers):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dbfleet",
                "up",
                "--postgres",
                os.environ.get("DBFLEET_POSTGRES", "2"),
                "--mariadb",
                os.environ.get("DBFLEET_MARIADB", "2"),
                "--first",
                os.environ.get("DBFLEET_FIRST", "1"),
            ],
            check=True,
            env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tools")),
        )
        fleet = fleet_state.load()
    if len(fleet.by_engine("postgresql")) < 2 or len(fleet.by_engine("mysql")) < 2:
        pytest.fail("the reliability suite needs 2 PostgreSQL and 2 MariaDB servers in the fleet")
    for server in fleet.by_engine("postgresql"):
        admin_execute(server, "ALTER SYSTEM SET log_line_prefix = %s", (LOG_LINE_PREFIX,))
        admin_execute(server, "SELECT pg_reload_conf()")
    return fleet
