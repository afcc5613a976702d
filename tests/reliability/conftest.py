# -*- coding: utf-8 -*-
"""The reliability suite's fixtures: the running fleet (tools/reliability.sh starts it).

Run alone (`pytest -s tests/reliability`), it uses the fleet at $DBFLEET_STATE_DIR
and starts it when none runs there.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import admin_execute  # noqa: E402
from dbfleet import testing as fleet_testing  # noqa: E402

# The PostgreSQL log must name the application and the virtual transaction of each line,
# so a kill can be told apart: idle, in a statement (a STATEMENT: line follows), in a transaction.
LOG_LINE_PREFIX = "%m [%p] %q%u@%d app=%a vxid=%v xid=%x "


@pytest.fixture(scope="session")
def fleet():
    fleet = fleet_testing.ensure(os.environ.get("DBFLEET_POSTGRES", "2"), os.environ.get("DBFLEET_MARIADB", "2"))
    if len(fleet.by_engine("postgresql")) < 2 or len(fleet.by_engine("mysql")) < 2:
        pytest.fail("the reliability suite needs 2 PostgreSQL and 2 MariaDB servers in the fleet")
    for server in fleet.by_engine("postgresql"):
        admin_execute(server, "ALTER SYSTEM SET log_line_prefix = %s", (LOG_LINE_PREFIX,))
        admin_execute(server, "SELECT pg_reload_conf()")
    return fleet
